"""Make a dataset decodable by the loader's decoder, once: probe, transcode into a cache, write a manifest.

Three decoders, three backends: DALI's CPU video decoder ("cpu") reads only MJPEG, VP8 and VP9; NVDEC ("gpu",
DALI on CUDA) reads H.264, HEVC, VP9 and AV1; OpenCV ("opencv", the torch loader) reads all the common codecs.
Everything else is transcoded with PyAV into the cache (cpu, opencv: MJPEG in .avi; gpu: H.264 in .mp4 with a
short GOP and no B-frames), at a constant frame rate with every decoded frame kept, so labels stay aligned. Frame
folders pass through on every backend. Sources are never modified and nothing is written inside the dataset root.

Cache: `<cache or $VADGPU_CACHE or ~/.cache/vadgpu>/<dataset>-<short hash of the absolute root>/<backend>/`
holding `manifest.json` and `transcoded/`. A rerun reuses every manifest entry whose source is unchanged
(same size and mtime; no rehashing, decoding or transcoding).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vadgpu.data.labels import check_length
from vadgpu.data.probe import Probe, check_frame_files, key_frame_interval, probe_frames, probe_video
from vadgpu.data.types import Dataset, PreparedVideo, Video
from vadgpu.device import is_cuda, resolve_device
from vadgpu.errors import VadgpuError
from vadgpu.io import atomic_path, atomic_write_json, remove_stale_temporaries
from vadgpu.optional import require

DECODABLE = {"cpu": frozenset({"mjpeg", "vp8", "vp9"}), "gpu": frozenset({"h264", "hevc", "vp9"}),
             "opencv": frozenset({"mjpeg", "h264", "hevc", "vp8", "vp9", "mpeg4"})}
DALI_BACKENDS = ("cpu", "gpu")  # DALI's decoders; "opencv" is the torch loader's
BACKENDS = tuple(DECODABLE)
# What NVDEC decodes on every GPU DALI supports: 8-bit 4:2:0 H.264 (High 10 / 4:2:2 / 4:4:4 only on Blackwell),
# 8- or 10-bit 4:2:0 HEVC and VP9, each from a minimum frame size (width, height). AV1 is not decoded on A100,
# Hopper or Turing, so it is always transcoded.
NVDEC_PIX_FMTS = {"h264": frozenset({"yuv420p", "yuvj420p", "nv12"}),
                  "hevc": frozenset({"yuv420p", "yuvj420p", "nv12", "yuv420p10le", "p010le"}),
                  "vp9": frozenset({"yuv420p", "yuvj420p", "nv12", "yuv420p10le", "p010le"})}
NVDEC_MIN_SIZE = {"h264": (48, 16), "hevc": (144, 144), "vp9": (128, 128)}
# Key frames further apart than this are re-encoded: every seek (a shuffled run, a clip of the torch loader)
# decodes from the key frame before it.
MAX_KEY_INTERVAL = 32
# The decoder behind each backend, as messages name it
DECODERS = {"cpu": "DALI's CPU video reader", "gpu": "DALI's GPU video reader (NVDEC)", "opencv": "OpenCV"}
MANIFEST_NAME = "manifest.json"
INPUT_DATASET = "input"  # the one-video dataset `vadgpu score INPUT` prepares (rooted at the input's folder)
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class _Target:
    """How a backend's transcodes are written."""

    codec: str
    container: str
    extension: str
    pix_fmt: str
    options: dict[str, str]


_TARGETS = {
    # qscale 2: near-lossless MJPEG; every frame is a key frame, so seeking is free.
    "cpu": _Target("mjpeg", "avi", ".avi", "yuvj420p", {"flags": "+qscale", "global_quality": str(2 * 118)}),
    # A key frame every 12 frames and no B-frames keep NVDEC's random access cheap and in sync.
    "gpu": _Target("libx264", "mp4", ".mp4", "yuv420p", {"crf": "18", "preset": "fast", "g": "12", "bf": "0"}),
}
_TARGETS["opencv"] = _TARGETS["cpu"]  # OpenCV seeks an all-key-frame file exactly


@dataclass(frozen=True)
class PreparedDataset:
    dataset: Dataset
    backend: str
    train: list[PreparedVideo]
    test: list[PreparedVideo]
    manifest: Path
    probed: int  # videos probed / hashed in this run (0 on a rerun with unchanged sources)
    transcoded_now: int  # videos transcoded in this run
    source_codecs: dict[Path, str]  # source path -> codec of the source (before any transcode)

    @property
    def videos(self) -> list[PreparedVideo]:
        return self.train + self.test

    @property
    def transcoded(self) -> int:
        """Videos whose decode path is a transcode in the cache."""
        return sum(v.decode_path != v.video.path for v in self.videos)


def backend_for(device: str | torch.device | None) -> str:
    """The DALI backend for a device: "gpu" on CUDA, "cpu" otherwise (resolving "auto" like everything else)."""
    return "gpu" if is_cuda(resolve_device(device)) else "cpu"


def cache_dir_for(dataset: Dataset, backend: str, cache: str | Path | None = None) -> Path:
    """Where prepare keeps a dataset's manifest and transcodes for `backend`; never inside the dataset root."""
    base = Path(cache or os.environ.get("VADGPU_CACHE") or Path.home() / ".cache" / "vadgpu").expanduser().resolve()
    root = dataset.root.resolve()
    folder = base / f"{dataset.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:10]}" / backend
    # A root that holds the home folder (a lone video in ~ scored on its own) is no dataset folder: the usual
    # cache under ~/.cache may lie inside it.
    home = Path.home().resolve()
    if dataset.name == INPUT_DATASET:  # `vadgpu score INPUT`: the input's folder is no dataset; a cache beside the
        # input is fine, only one inside a frame-folder input is not
        inputs = [v.path.resolve() for v in dataset.test if v.is_folder]
        inside = [p for p in inputs if folder == p or p in folder.parents]
        if inside:
            raise VadgpuError(f"the cache {base} (VADGPU_CACHE) lies inside the input frame folder {inside[0]}, "
                              "which is never written to; set VADGPU_CACHE to a folder outside it")
    elif (folder == root or root in folder.parents) and not (home == root or root in home.parents):
        raise VadgpuError(f"--cache {base}: the cache must not lie inside the dataset root {root} (it may be "
                          "read-only and is never written to)")
    return folder


def load_prepared(dataset: Dataset, device: str | torch.device | None, cache: str | Path | None = None,
                  progress: bool = True, loader: str = "dali") -> PreparedDataset:
    """What loaders call: prepare for the decoder of `loader` on `device` (a no-op when the cache is current)."""
    backend = "opencv" if loader == "torch" else backend_for(device)
    return prepare_dataset(dataset, backend=backend, cache=cache, progress=progress)


def prepare_dataset(dataset: Dataset, backend: str = "cpu", cache: str | Path | None = None,
                    progress: bool = True) -> PreparedDataset:
    """Probe every video, transcode what `backend` cannot decode, check labels, write the manifest."""
    if backend not in BACKENDS:
        raise VadgpuError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    folder = cache_dir_for(dataset, backend, cache)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VadgpuError(f"cannot create the cache folder {folder} ({exc.strerror}); pick another with --cache "
                          "or VADGPU_CACHE") from exc
    manifest_path = folder / MANIFEST_NAME
    old = _read_manifest(manifest_path)
    entries: dict[str, dict[str, Any]] = dict(old.get("videos", {}))
    prepared: dict[str, list[PreparedVideo]] = {"train": [], "test": []}
    source_codecs = {}
    probed = transcoded_now = 0
    jobs = [("train", v) for v in dataset.train] + [("test", v) for v in dataset.test]
    bar = tqdm(jobs, desc=f"prepare {dataset.name} ({backend})", unit="video",
               disable=not progress or not sys.stderr.isatty())
    for split, video in bar:
        key = _relative(video.path, dataset.root)
        fingerprint = _fingerprint(video)
        entry = entries.get(key)
        if not _reusable(entry, fingerprint, folder):
            entry = _prepare_one(video, split, fingerprint, backend, folder)
            entries[key] = entry
            probed += 1
            transcoded_now += entry["transcoded"]
        prepared[split].append(_prepared_video(video, entry, dataset.label_source, folder))
        source_codecs[video.path] = entry["codec"]
    # Entries for sources that are gone (other variants of the same root stay) are dropped.
    entries = {k: e for k, e in entries.items() if Path(e["path"]).exists()}
    manifest = {"version": MANIFEST_VERSION, "dataset": dataset.name, "root": str(dataset.root), "backend": backend,
                "label_source": dataset.label_source, "videos": entries}
    if manifest != old:
        try:
            atomic_write_json(manifest_path, manifest)
        except VadgpuError as exc:
            raise VadgpuError(f"{exc.message}: the cache folder {folder} is not writable; pick another with "
                              "--cache or VADGPU_CACHE") from exc
    _remove_stale_transcodes(folder, entries)
    return PreparedDataset(dataset, backend, prepared["train"], prepared["test"], manifest_path, probed,
                           transcoded_now, source_codecs)


# -------------------------------------------------------------------------------------------------- manifest


def _read_manifest(path: Path) -> dict:
    import json

    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # a damaged cache index is rebuilt, never trusted
    return manifest if isinstance(manifest, dict) and manifest.get("version") == MANIFEST_VERSION else {}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def _fingerprint(video: Video) -> dict[str, Any]:
    """Size and mtime of the source (and the file names of a folder): cheap, and enough to skip rehashing."""
    try:
        if not video.is_folder:
            stat = video.path.stat()
            return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        stats = [p.stat() for p in video.frame_files]
    except FileNotFoundError as exc:
        raise VadgpuError(f"source of video {video.name} disappeared: {exc.filename}") from exc
    names = hashlib.sha1("\n".join(p.name for p in video.frame_files).encode()).hexdigest()
    return {"files": len(stats), "bytes": sum(s.st_size for s in stats),
            "mtime_ns": max(s.st_mtime_ns for s in stats), "names_sha1": names}


def _decode_path(entry: dict, folder: Path) -> Path:
    """Where an entry's decoder reads: the source itself, or a transcode, stored relative to the cache folder (so a
    copied cache reads and keeps its own transcodes; older manifests hold absolute paths, which join unchanged)."""
    return folder / entry["decode_path"]


def _reusable(entry: dict | None, fingerprint: dict, folder: Path) -> bool:
    if not entry or entry.get("fingerprint") != fingerprint:
        return False
    decode_path = _decode_path(entry, folder)
    if not entry["transcoded"]:
        return decode_path.exists()
    return decode_path.is_file() and decode_path.stat().st_size == entry.get("decode_bytes")


def _remove_stale_transcodes(folder: Path, entries: dict[str, dict]) -> None:
    """Delete transcodes no manifest entry points to (their source changed), and the temporaries of transcodes
    whose writer was killed; other hidden files are writes in flight."""
    keep = {_decode_path(e, folder) for e in entries.values() if e["transcoded"]}
    transcoded = folder / "transcoded"
    if transcoded.is_dir():
        for path in transcoded.rglob("*"):
            if path.is_dir():
                remove_stale_temporaries(path)
            elif path.is_file() and not path.name.startswith(".") and path not in keep:
                path.unlink()


def _sha256(video: Video) -> str:
    digest = hashlib.sha256()
    for path in video.frame_files or (video.path,):
        if video.is_folder:
            digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _prepare_one(video: Video, split: str, fingerprint: dict, backend: str, folder: Path) -> dict[str, Any]:
    """Probe (and if needed transcode) one source; returns its manifest entry."""
    sha = _sha256(video)
    entry: dict[str, Any] = {"name": video.name, "split": split, "path": str(video.path), "sha256": sha,
                             "fingerprint": fingerprint}
    if video.is_folder:
        probe = probe_frames(video.frame_files)
        check_frame_files(video.frame_files, probe.width, probe.height)
        return {**entry, "kind": "frames", "codec": probe.codec, "frames": probe.num_frames, "fps": probe.fps,
                "width": probe.width, "height": probe.height, "decode_path": str(video.path),
                "decode_codec": probe.codec, "transcoded": False}
    header = probe_video(video.path)
    reason = transcode_reason(video.path, header, backend)
    if reason is None:
        probe = probe_video(video.path, decode=True)  # the decoded count is what labels are checked against
        return {**entry, "kind": "video", "codec": probe.codec, "frames": probe.num_frames, "fps": probe.fps,
                "width": probe.width, "height": probe.height, "decode_path": str(video.path),
                "decode_codec": probe.codec, "transcoded": False}
    entry["transcode_reason"] = reason
    target = _TARGETS[backend]
    out = folder / "transcoded" / split / f"{video.name}-{sha[:12]}{target.extension}"
    started = time.perf_counter()
    written = transcode(video.path, out, target)
    if written < header.num_frames:
        out.unlink()
        raise VadgpuError(f"video {video.path}: the container states {header.num_frames} frames but only {written} "
                          "decode (the file is truncated or damaged)")
    result = probe_video(out)
    if result.num_frames != written:
        raise VadgpuError(f"transcode of {video.path} to {out} holds {result.num_frames} frames, expected {written}")
    return {**entry, "kind": "video", "codec": header.codec, "frames": written, "fps": result.fps,
            "width": result.width, "height": result.height, "decode_path": str(out.relative_to(folder)),
            "decode_codec": result.codec,
            "transcoded": True, "decode_bytes": out.stat().st_size,
            "transcode_seconds": round(time.perf_counter() - started, 3)}


def transcode_reason(path: Path, probe: Probe, backend: str) -> str | None:
    """Why the backend's decoder cannot take the file as it is (then prepare transcodes it), or None."""
    if probe.codec not in DECODABLE[backend]:
        return f"{DECODERS[backend]} does not read {probe.codec}"
    if backend == "gpu":
        low_w, low_h = NVDEC_MIN_SIZE["h264"]  # what the H.264 transcode needs
        if probe.width < low_w or probe.height < low_h:
            raise VadgpuError(f"video {path}: {probe.width}x{probe.height} is below NVDEC's smallest frame "
                              f"({low_w}x{low_h}); decode it on the CPU (--device cpu, or --loader torch)")
        if probe.pix_fmt is not None and probe.pix_fmt not in NVDEC_PIX_FMTS[probe.codec]:
            return f"NVDEC does not decode {probe.codec} in {probe.pix_fmt}"
        min_w, min_h = NVDEC_MIN_SIZE[probe.codec]
        if probe.width < min_w or probe.height < min_h:
            return f"NVDEC decodes {probe.codec} from {min_w}x{min_h}, this is {probe.width}x{probe.height}"
    interval = key_frame_interval(path)
    if interval is not None and interval > MAX_KEY_INTERVAL:
        return f"key frames up to {interval} frames apart (a seek decodes from the one before)"
    return None


def _prepared_video(video: Video, entry: dict, label_source: str | None, folder: Path) -> PreparedVideo:
    if video.labels is not None:
        check_length(video.labels, entry["frames"], video.name, video.label_file or label_source)
    return PreparedVideo(video, _decode_path(entry, folder), entry["frames"], entry["fps"], entry["width"],
                         entry["height"], entry["decode_codec"])


# ------------------------------------------------------------------------------------------------- transcode


def transcode(source: Path, out: Path, target: _Target) -> int:
    """Re-encode every frame of `source` into `out` (written atomically) at a constant rate; returns the count."""
    av = require("av", f"transcoding {source}")
    try:
        with av.open(str(source)) as container, atomic_path(out) as tmp:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = Fraction(stream.average_rate or stream.guessed_rate or 25).limit_denominator(1001)
            # yuv420p needs even sizes; scaling by one pixel at most is harmless, cropping would lose content.
            even = target.pix_fmt.startswith("yuv420") and target.codec != "mjpeg"
            width = stream.codec_context.width + (stream.codec_context.width % 2 if even else 0)
            height = stream.codec_context.height + (stream.codec_context.height % 2 if even else 0)
            written = 0
            with av.open(str(tmp), "w", format=target.container) as sink:
                encoder = sink.add_stream(target.codec, rate=rate, options=target.options)
                encoder.width, encoder.height, encoder.pix_fmt = width, height, target.pix_fmt
                for frame in container.decode(stream):
                    frame = frame.reformat(width=width, height=height, format=target.pix_fmt)
                    frame.pts = written  # constant frame rate: frame i at i / rate, whatever the source said
                    frame.time_base = 1 / rate
                    for packet in encoder.encode(frame):
                        sink.mux(packet)
                    written += 1
                for packet in encoder.encode():
                    sink.mux(packet)
            if written == 0:  # raised inside atomic_path, so no empty file is left in the cache
                raise VadgpuError(f"video {source} holds no decodable frames")
    except (av.error.FFmpegError, OSError) as exc:
        raise VadgpuError(f"cannot transcode video {source} to {out}: {exc}") from exc
    return written
