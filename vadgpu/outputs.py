"""Where vadgpu may write, and what it may replace: the one guard every command that writes calls before its work.

Three rules, each checked before anything is created:

1. Never inside a source. An output (file or folder) must not be, or lie inside, what the command reads: a
   dataset root, a frame-folder input, the input file, the checkpoint being exported, the shipped weights.
2. Never over a file vadgpu did not write. An existing file at a name the command writes is replaced only when
   its content shows that vadgpu wrote it (`written_by_vadgpu`: the JSON, CSV, YAML and JSONL files by their
   keys and headers, checkpoints by their keys, PNGs and MP4s by the tag vadgpu writes into them, exports by
   their vadgpu metadata, box caches by their arrays). Anything else is an error naming the file, --overwrite
   or not: move it away or choose another output.
3. --overwrite names exactly what vadgpu wrote. `vadgpu train` and `vadgpu export` replace even their own earlier
   outputs only with --overwrite, and then only the files rule 2 recognises.

PNGs written before vadgpu tagged them (Matplotlib's own tag only) count as vadgpu's only beside the anchor file
of the same output (metrics.json, scores.csv, log.jsonl) when that one is vadgpu's.
"""

from __future__ import annotations

import glob
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

from vadgpu.errors import VadgpuError

MARK = "written by vadgpu"  # the tag in vadgpu's PNGs (tEXt Software) and MP4s (comment)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ONNX_PRODUCER = b"\x12\x06vadgpu"  # ModelProto.producer_name (field 2) = "vadgpu", serialised near the start
_CSV_HEADERS = ("video,frame,raw_score,score", "frame,time,raw_score,score,alarm",
                "frame,rank,score,raw_score,x1,y1,x2,y2")
_BOX_CACHE_MEMBERS = {"video_names.npy", "video_splits.npy", "detector.npy", "dataset.npy", "x1.npy"}
_TENSORBOARD = re.compile(r"^events\.out\.tfevents\.")
_READ_LIMIT = 64 << 20  # bytes read to recognise a text file or a pickle
Source = tuple[Path, str]  # (path, what it is: "the dataset root", "the input frame folder" ...)


def png_metadata() -> dict[str, str]:
    """The PNG text chunks of every figure vadgpu saves (Matplotlib's savefig(metadata=...))."""
    from vadgpu import __version__

    return {"Software": f"{MARK} {__version__} (Matplotlib)"}


def video_metadata() -> dict[str, str]:
    """The container metadata of every MP4 vadgpu writes (PyAV's container.metadata)."""
    from vadgpu import __version__

    return {"comment": f"{MARK} {__version__}"}


# ---------------------------------------------------------------------------------------------------- recognising


def _text_head(path: Path, limit: int = _READ_LIMIT) -> str:
    with open(path, "rb") as fh:
        return fh.read(limit).decode("utf-8")


def _json_ours(path: Path) -> bool:
    record = json.loads(_text_head(path))
    return isinstance(record, dict) and ("vadgpu_version" in record or {"steps", "epochs", "preset"} <= set(record)
                                         or {"system", "settings", "stages"} <= set(record))


def _jsonl_ours(path: Path) -> bool:
    with open(path, "rb") as fh:
        first = fh.readline(1 << 20).decode("utf-8").strip()
    if not first:
        return path.stat().st_size == 0 or not _text_head(path, 1 << 16).strip()
    record = json.loads(first)
    return isinstance(record, dict) and ("step" in record or {"start_frame", "peak_score"} <= set(record))


def _csv_ours(path: Path) -> bool:
    with open(path, "rb") as fh:
        header = fh.readline(4096).decode("utf-8").strip()
    return header.removesuffix(",label") in _CSV_HEADERS


def _yaml_ours(path: Path) -> bool:
    import yaml

    from vadgpu.engine.config import FIELD_NAMES, REMOVED_OPTIONS

    values = yaml.safe_load(_text_head(path))
    return (isinstance(values, dict) and {"dataset", "root", "out"} <= set(values)
            and set(values) <= set(FIELD_NAMES) | set(REMOVED_OPTIONS))


def _png_software(path: Path) -> str:
    """The Software text of a PNG ('' if none, or not a PNG): its chunks before the image data."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not head.startswith(_PNG_SIGNATURE):
        return ""
    at = len(_PNG_SIGNATURE)
    while at + 8 <= len(head):
        length, kind = int.from_bytes(head[at:at + 4], "big"), head[at + 4:at + 8]
        if kind == b"IDAT":
            break
        if kind == b"tEXt":
            key, _, value = head[at + 8:at + 8 + length].partition(b"\0")
            if key == b"Software":
                return value.decode("latin-1")
        at += 12 + length
    return ""


def _torch_pickle(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        member = next((i for i in archive.infolist() if i.filename.endswith("/data.pkl")), None)
        if member is None or member.file_size > _READ_LIMIT:
            return b""
        return archive.read(member)


def _checkpoint_ours(path: Path) -> bool:
    pickled = _torch_pickle(path)
    return b"model_config" in pickled and b"model_name" in pickled


def _torchscript_ours(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("extra/vadgpu.json") for name in archive.namelist())


def _onnx_ours(path: Path) -> bool:
    with open(path, "rb") as fh:
        return _ONNX_PRODUCER in fh.read(256)


def _mp4_ours(path: Path) -> bool:
    mark, size = MARK.encode(), path.stat().st_size
    with open(path, "rb") as fh:
        if mark in fh.read(1 << 20):
            return True
        fh.seek(max(0, size - (1 << 20)))
        return mark in fh.read()


def _box_cache_ours(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return _BOX_CACHE_MEMBERS <= set(archive.namelist())


RECOGNISERS = {"json": _json_ours, "jsonl": _jsonl_ours, "csv": _csv_ours, "yaml": _yaml_ours,
               "checkpoint": _checkpoint_ours, "torchscript": _torchscript_ours, "onnx": _onnx_ours,
               "mp4": _mp4_ours, "box cache": _box_cache_ours}
_BY_SUFFIX = {".json": ("json",), ".jsonl": ("jsonl",), ".csv": ("csv",), ".yaml": ("yaml",), ".yml": ("yaml",),
              ".pt": ("checkpoint", "torchscript"), ".pth": ("checkpoint",), ".onnx": ("onnx",),
              ".ts": ("torchscript",), ".mp4": ("mp4",), ".npz": ("box cache",)}
EXPORTS = ("onnx", "torchscript")


def written_by_vadgpu(path: str | os.PathLike, kinds: Sequence[str] | None = None,
                      anchor: str | os.PathLike | None = None) -> bool:
    """Whether the file at `path` is one vadgpu wrote, judged by its content (see the module docstring) as one of
    `kinds` (RECOGNISERS' keys; default: by its suffix). A PNG tagged by vadgpu is; an untagged Matplotlib PNG
    is when `anchor` (a file of the same output) is. Unreadable or unknown files are not."""
    path = Path(path)
    if not path.is_file():
        return False
    if _TENSORBOARD.match(path.name):
        return True
    try:
        if path.suffix.lower() == ".png" and kinds is None:
            software = _png_software(path)
            return software.startswith(MARK) or (software.startswith("Matplotlib") and anchor is not None
                                                 and written_by_vadgpu(anchor))
        for kind in kinds if kinds is not None else _BY_SUFFIX.get(path.suffix.lower(), ()):
            try:
                if RECOGNISERS[kind](path):
                    return True
            except (zipfile.BadZipFile, EOFError):
                continue
    except (OSError, ValueError, UnicodeDecodeError, RecursionError, Exception):  # noqa: BLE001  any content
        return False
    return False


# ------------------------------------------------------------------------------------------------------- guarding


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def resolved(path: str | os.PathLike) -> Path:
    """An absolute path with every symlink in it resolved (the parts that do not exist yet kept as given)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def check_not_in_sources(path: str | os.PathLike, option: str, sources: Iterable[Source]) -> None:
    """Rule 1: `path` must not be a source nor lie inside a source folder."""
    target = resolved(path)
    for source, what in sources:
        if source is None:
            continue
        source_path = resolved(source)
        if _inside(target, source_path):
            where = "is" if target == source_path else "lies inside"
            raise VadgpuError(f"{option} {path} {where} {what} {source}: vadgpu never writes into what it reads; "
                              "choose an output elsewhere")


def check_output_file(path: str | os.PathLike, option: str, *, sources: Iterable[Source] = (),
                      kinds: Sequence[str] | None = None, overwrite: bool | None = None, what: str = "output"
                      ) -> Path:
    """Rules 1-3 for one output file. `overwrite` None: the command replaces its own earlier output without being
    asked; False / True: the command's --overwrite flag (rule 3). Returns the path."""
    path = Path(path)
    check_not_in_sources(path, option, sources)
    if path.is_dir():
        raise VadgpuError(f"{option} {path} is a folder; give a file name")
    if path.exists() or path.is_symlink():
        if not written_by_vadgpu(path, kinds):
            raise VadgpuError(f"{option} {path} exists and is not {what} written by vadgpu; vadgpu never replaces "
                              "a file it did not write (--overwrite neither): move it away or choose another name")
        if overwrite is False:
            raise VadgpuError(f"{option} {path} exists ({what} written earlier); pass --overwrite to replace it")
    return path


def foreign_outputs(folder: str | os.PathLike, patterns: Iterable[str], anchor: str | None = None) -> list[Path]:
    """The existing entries of `folder` at the output names `patterns` (glob patterns relative to it) that vadgpu
    did not write (rule 2); `anchor`: the output's file that vouches for its untagged Matplotlib PNGs."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    anchor_path = None if anchor is None else folder / anchor
    foreign = []
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            if path.is_dir() or not written_by_vadgpu(path, anchor=anchor_path):
                foreign.append(path)
    return foreign


def check_output_folder(folder: str | os.PathLike, option: str, patterns: Iterable[str], *,
                        sources: Iterable[Source] = (), anchor: str | None = None) -> Path:
    """Rules 1 and 2 for an output folder whose files are named by `patterns`: what is there under those names
    must be vadgpu's own earlier output, which the command then replaces. Returns the folder."""
    folder = Path(folder)
    check_not_in_sources(folder, option, sources)
    if folder.exists() and not folder.is_dir():
        raise VadgpuError(f"{option} {folder} is a file, not a folder")
    foreign = foreign_outputs(folder, patterns, anchor)
    if foreign:
        names = ", ".join(str(p.relative_to(folder)) for p in foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise VadgpuError(f"{option} {folder} holds {names}, which vadgpu did not write and would replace; vadgpu "
                          "never replaces a file it did not write (--overwrite neither): move it away or choose "
                          "another folder")
    return folder


# The files each command writes into its output folder, and the one that vouches for its untagged PNGs.
EVAL_OUTPUTS = ("metrics.json", "scores.csv", "roc.png", "curves/*.png", "objects/*.csv")
LIVE_OUTPUTS = ("scores.csv", "events.jsonl", "clips/event-*.mp4")


def score_outputs(name: str, heatmap: bool = True) -> tuple[str, ...]:
    """What `vadgpu score INPUT` writes into its folder for an input named `name` (report.safe_name of it)."""
    name = glob.escape(name)
    return ("scores.csv", f"{name}.png", "objects.csv") + ((f"{name}-heatmap.mp4",) if heatmap else ())


def check_export_out(out: str | os.PathLike, checkpoint: str | os.PathLike, overwrite: bool) -> Path:
    """`vadgpu export --out`: not the checkpoint it reads nor inside the shipped weights' folder; an existing file
    only when it is an earlier vadgpu export and --overwrite is given."""
    from vadgpu.checkpoint import checkpoint_file
    from vadgpu.weights import FOLDER

    sources = [(checkpoint_file(checkpoint), "the checkpoint it exports"), (FOLDER, "vadgpu's shipped weights")]
    return check_output_file(out, "--out", sources=sources, kinds=EXPORTS, overwrite=overwrite, what="an export")


def check_calibrate_out(out: str | os.PathLike, checkpoint: str | os.PathLike) -> Path:
    """`vadgpu calibrate --out`: never inside the shipped weights' folder; an existing file only when it is a vadgpu
    checkpoint (the weights file it calibrates, replaced atomically, or an earlier calibrated copy)."""
    from vadgpu.weights import FOLDER

    return check_output_file(out, "--out", sources=[(FOLDER, "vadgpu's shipped weights")], kinds=("checkpoint",),
                             what="a weights file")


def check_eval_out(out: str | os.PathLike, root: str | os.PathLike | None) -> Path:
    """`vadgpu eval --out`: not inside the dataset root; what is there under eval's names is vadgpu's."""
    return check_output_folder(out, "--out", EVAL_OUTPUTS, sources=[(root, "the dataset root")],
                               anchor="metrics.json")


def check_score_out(out: str | os.PathLike, source: str | os.PathLike, heatmap: bool = True) -> Path:
    """`vadgpu score INPUT --out`: not the input nor inside an input frame folder; what is there under score's
    names for this input (the heatmap MP4's when `heatmap`) is vadgpu's."""
    from vadgpu.evaluation.report import safe_name

    source = Path(source)
    name = safe_name(source.name if source.is_dir() else source.stem)
    return check_output_folder(out, "--out", score_outputs(name, heatmap), sources=[(source, "the input")],
                               anchor="scores.csv")


def check_live_outs(out: str | os.PathLike, video_out: str | os.PathLike | None, source: str,
                    source_is_file: bool) -> None:
    """Live scoring's --out folder and --video-out file: never the input file, never over another file."""
    sources = [(Path(source), "the input")] if source_is_file else []
    check_output_folder(out, "--out", LIVE_OUTPUTS, sources=sources, anchor="scores.csv")
    if video_out is not None:
        check_output_file(video_out, "--video-out", sources=sources, kinds=("mp4",), what="a video")
