"""The two DALI pipelines that decode runs of consecutive frames, and the decoder that drives one epoch of them.

    video_run_pipeline   fn.experimental.readers.video over a per-epoch file list (one line per run, exact frame
                         ranges); 'gpu' (NVDEC) on CUDA, 'cpu' (libavcodec) otherwise
    frame_run_pipeline   the run's frame files read in Python (external source) + fn.decoders.image; 'mixed'
                         (nvJPEG) on CUDA, 'cpu' otherwise

On CUDA both end in the same graph (gray/RGB, resize, [0, 1] float, channels first) and hand their output to torch
with `feed_ndarray` into a tensor on the device: a device-to-device copy, never through the host. On the CPU the
graph ends at gray/RGB and the frames leave DALI as uint8 at their source size; OpenCV resizes them (INTER_AREA,
as the torch loader does) and they become float only then: DALI's CPU resize costs 3-4x the JPEG decode of a
360x240 frame at 256x256 RGB, OpenCV's a twentieth of it.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types

from vadgpu.data.types import PreparedVideo
from vadgpu.device import dali_device_id, is_cuda
from vadgpu.errors import VadgpuError
from vadgpu.pipelines.clip_index import ClipSpec, EpochPlan, RunTable, shard_bounds
from vadgpu.pipelines.resize import resize_into

READER_NAME = "runs"
PREFETCH = 2  # DALI iterations in flight: one decoding while the previous one is cut into clips


def _to_clip_frames(frames, spec: ClipSpec, rgb_input: bool, layout: str, cuda: bool):
    """Gray/RGB, resize to spec.size, float in [0, 1], channels first. Colour before resize, as the baseline does.
    On the CPU only the colour conversion: the rest is `host_frames`."""
    if rgb_input and spec.channels == 1:
        frames = fn.color_space_conversion(frames, image_type=types.RGB, output_type=types.GRAY)
    if not cuda:
        return frames  # uint8 (F,) H, W, C at the source size
    height, width = spec.size
    frames = fn.resize(frames, resize_x=width, resize_y=height, interp_type=types.INTERP_LINEAR, antialias=True)
    return fn.crop_mirror_normalize(frames, dtype=types.FLOAT, output_layout=layout, mean=[0.0], std=[255.0])


@pipeline_def
def video_run_pipeline(file_list: str, spec: ClipSpec, run_length: int, cuda: bool, shard_id: int, num_shards: int):
    """One sample per file-list line: `run_length` frames (edge-padded past the run's end), label = run id."""
    frames, run_id = fn.experimental.readers.video(
        device="gpu" if cuda else "cpu",
        file_list=file_list,
        file_list_format="frames",
        file_list_include_end=False,
        sequence_length=run_length,
        pad_mode="edge",
        shard_id=shard_id,
        num_shards=num_shards,
        stick_to_shard=True,
        random_shuffle=False,  # the order is the epoch plan's, already shuffled under the seed
        name=READER_NAME,
    )  # (F, H, W, 3) uint8 per sample
    return _to_clip_frames(frames, spec, rgb_input=True, layout="FCHW", cuda=cuda), run_id


@pipeline_def
def frame_run_pipeline(source, spec: ClipSpec, cuda: bool):
    """One sample per frame file of the group's runs, in run order."""
    encoded = fn.external_source(source=source, batch=True, batch_info=True, dtype=types.UINT8)
    frames = fn.decoders.image(encoded, device="mixed" if cuda else "cpu",
                               output_type=types.GRAY if spec.channels == 1 else types.RGB)  # (H, W, C)
    return _to_clip_frames(frames, spec, rgb_input=False, layout="CHW", cuda=cuda)


class FrameRunSource:
    """External source: the encoded bytes of every frame of group `iteration`'s runs (one DALI batch per group)."""

    def __init__(self, videos: Sequence[PreparedVideo], table: RunTable, groups: list[np.ndarray]):
        self.videos, self.table, self.groups = videos, table, groups

    def files(self, group: np.ndarray) -> list[Path]:
        t = self.table
        return [f for r in group
                for f in self.videos[t.run_video[r]].video.frame_files[t.run_lo[r] : t.run_lo[r] + t.run_length[r]]]

    def __call__(self, info) -> list[np.ndarray]:
        if info.iteration >= len(self.groups):
            raise StopIteration
        out = []
        for path in self.files(self.groups[info.iteration]):
            try:
                out.append(np.fromfile(path, dtype=np.uint8))
            except OSError as exc:
                raise VadgpuError(f"{path}: cannot read frame file ({exc.strerror})") from exc
        return out


def _to_torch(tensor_list, device: torch.device) -> torch.Tensor:
    """Copy a DALI output into a new torch tensor on the same device (GPU stays on the GPU)."""
    from nvidia.dali.plugin.pytorch import feed_ndarray

    dense = tensor_list.as_tensor()
    out = torch.empty(tuple(dense.shape()), dtype=torch.float32, device=device)
    feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream(device) if is_cuda(device) else None)
    return out


def host_frames(tensor_list, spec: ClipSpec, pool: ThreadPoolExecutor | None = None, parts: int = 1
                ) -> torch.Tensor:
    """CPU backend: DALI's uint8 samples ((F,) H, W, C at their source size) -> (N, (F,) C, H, W) uint8 at spec.size,
    resized like the torch loader resizes (resize.resize_into), in `parts` pieces on `pool`'s threads where given
    (OpenCV releases the GIL); they become float where first used (ClipBatch)."""
    height, width = spec.size
    samples = [np.asarray(sample) for sample in tensor_list]
    lead = samples[0].shape[:-3]  # (F,) for video runs, () for single frames
    out = np.empty((len(samples), *lead, spec.channels, height, width), dtype=np.uint8)
    sources = [f for sample in samples for f in sample.reshape(-1, *sample.shape[-3:])]
    targets = out.reshape(-1, spec.channels, height, width)

    def resize(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            resize_into(sources[i], targets[i])

    if pool is None or parts < 2:
        resize(0, len(sources))
    else:
        chunks = np.linspace(0, len(sources), parts + 1).astype(int)
        for done in [pool.submit(resize, lo, hi) for lo, hi in zip(chunks[:-1], chunks[1:])]:
            done.result()
    return torch.from_numpy(out)  # (N, (F,) C, H, W)


def _host_ints(tensor_list) -> np.ndarray:
    if hasattr(tensor_list, "as_cpu"):
        tensor_list = tensor_list.as_cpu()
    return np.asarray(tensor_list.as_tensor()).reshape(-1).astype(np.int64)


class RunDecoder:
    """Decode one shard's epoch group by group; yields (frames (F, C, H, W), row of each run's first frame,
    frames decoded)."""

    def __init__(self, videos: Sequence[PreparedVideo], spec: ClipSpec, table: RunTable, plan: EpochPlan,
                 device: torch.device, is_folder: bool, run_length: int, num_threads: int, seed: int,
                 shard_id: int, num_shards: int):
        self.videos, self.table, self.plan, self.device, self.spec = videos, table, plan, device, spec
        # the host resize of the CPU backend, beside DALI's own threads
        self._threads = num_threads
        self._pool = None if is_cuda(device) or num_threads < 2 else ThreadPoolExecutor(num_threads)
        self.is_folder, self.run_length = is_folder, run_length
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._links: dict[str, str] = {}  # private link name -> source path, to name sources in errors
        common = dict(num_threads=num_threads, device_id=dali_device_id(device), seed=seed,
                      prefetch_queue_depth=PREFETCH)
        cuda = is_cuda(device)
        if is_folder:
            self.source = FrameRunSource(videos, table, plan.groups)
            batch = max(int(table.run_length[g].sum()) for g in plan.groups)
            self.pipe = frame_run_pipeline(source=self.source, spec=spec, cuda=cuda, batch_size=batch, **common)
        else:
            lo, hi = shard_bounds(len(plan.run_order), shard_id, num_shards)
            if not np.array_equal(np.concatenate(plan.groups), plan.run_order[lo:hi][: sum(map(len, plan.groups))]):
                raise RuntimeError("epoch plan and reader shard disagree")  # a bug, not a user error
            file_list = self._write_file_list(plan.run_order)
            batch = max(len(g) for g in plan.groups)
            self.pipe = video_run_pipeline(file_list=file_list, spec=spec, run_length=run_length, cuda=cuda,
                                           shard_id=shard_id, num_shards=num_shards, batch_size=batch, **common)
        try:
            self._guard(self.pipe.build, plan.groups[0])
        except VadgpuError:
            if not is_folder:
                self._check_reader_kept_every_run(None)  # raises a precise error if it finds the culprit
            raise
        if not is_folder:
            self._check_reader_kept_every_run(len(plan.run_order))

    def _write_file_list(self, order: np.ndarray) -> str:
        # DALI's file list is whitespace-separated, so the sources are linked under plain names in a private
        # folder (the sources themselves are never touched)
        self._tmp = tempfile.TemporaryDirectory(prefix="vadgpu-runs-")
        folder = Path(self._tmp.name)
        links = []
        for i, v in enumerate(self.videos):
            link = folder / f"{i:05d}{v.decode_path.suffix}"
            link.symlink_to(Path(v.decode_path).resolve())
            links.append(link)
            self._links[str(link)] = str(v.decode_path)
        t = self.table
        lines = [f"{links[t.run_video[r]]} {r} {t.run_lo[r]} {t.run_lo[r] + t.run_length[r]}\n" for r in order]
        path = folder / "runs.txt"
        path.write_text("".join(lines), encoding="utf-8")
        return str(path)

    def _guard(self, call, group: np.ndarray):
        """Run a DALI call; its failure becomes a VadgpuError naming the files of the group being decoded."""
        try:
            return call()
        except (RuntimeError, IndexError, ValueError) as exc:
            if self.is_folder:  # name the frame file itself, not only its folder
                from vadgpu.data.probe import frame_file_problem

                for path in self.source.files(group):
                    problem = frame_file_problem(Path(path))[0]
                    if problem is not None:
                        raise VadgpuError(f"DALI could not decode frame {path}: it {problem}") from exc
            names = sorted({str(self.videos[v].decode_path) for v in self.table.run_video[group]})
            raise VadgpuError(f"DALI could not decode {', '.join(names)}: {self._reason(exc)}") from exc

    def _reason(self, exc: Exception) -> str:
        # DALI's message wraps the cause in the pipeline traceback and C++ context; keep the cause
        text = " ".join(str(exc).split()) or type(exc).__name__
        text = text.split("encountered:", 1)[-1].split("C++ context", 1)[0].strip()
        for link, source in self._links.items():
            text = text.replace(link, source)
        return text[:400]

    def _check_reader_kept_every_run(self, expected: int | None) -> None:
        """The video reader skips files it cannot open with only a log line; find them and say so."""
        if expected is not None and self.pipe.reader_meta(READER_NAME)["epoch_size"] == expected:
            return
        from vadgpu.optional import available

        bad = []
        if available("av"):  # find the culprits; without PyAV the message says less
            import av

            for v in self.videos:
                try:
                    with av.open(str(v.decode_path)) as container:
                        next(container.decode(video=0))
                except (av.FFmpegError, StopIteration, IndexError) as exc:
                    bad.append(f"{v.decode_path} ({type(exc).__name__}: {exc})")
        if bad or expected is not None:
            raise VadgpuError("DALI's video reader could not open " + ("; ".join(bad) or "some of the files")
                              + "; check the files or rerun `vadgpu data prepare`")

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict[int, int], int]]:
        t, groups = self.table, self.plan.groups
        # Schedule iterations by hand: pipe.run() keeps PREFETCH iterations in flight and so decodes up to that
        # many groups past the end of every epoch (measured: as many frames as a whole small epoch).
        for g in range(min(PREFETCH, len(groups))):
            self._guard(self.pipe.schedule_run, groups[g])
        for g, group in enumerate(groups):
            outputs = self._guard(self.pipe.outputs, group)
            frames = (_to_torch(outputs[0], self.device) if is_cuda(self.device)
                      else host_frames(outputs[0], self.spec, self._pool, self._threads))
            if g + PREFETCH < len(groups):
                self._guard(self.pipe.schedule_run, groups[g + PREFETCH])
            if self.is_folder:  # (F, C, H, W): the group's runs back to back
                starts = np.concatenate([[0], np.cumsum(t.run_length[group])[:-1]])
                yield frames, dict(zip(group.tolist(), starts.tolist())), int(t.run_length[group].sum())
            else:  # (B, run_length, C, H, W): one padded run per sample, maybe past the group's end
                got = _host_ints(outputs[1])
                if not np.array_equal(got[: len(group)], group):
                    raise RuntimeError(f"video reader returned runs {got[:len(group)]}, expected {group}")
                rows = (np.arange(len(group)) * self.run_length).tolist()
                yield frames.flatten(0, 1), dict(zip(group.tolist(), rows)), int(t.run_length[got].sum())

    def close(self) -> None:
        self.pipe = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
