"""DALI clip loaders: decode runs of consecutive frames once, cut every overlapping clip from them on the device.

    spec = ClipSpec(temporal=3, size=(64, 64), channels=1)
    loader = make_loader(prepared.train, spec, batch_size=32, device=device, train=True, seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for batch in loader:          # ClipBatch
            batch.clips               # (N, C, T, H, W) float32 in [0, 1] on `device`

Two DALI pipelines (dali_pipelines.py) decode *runs* (clip_index.py): video files through
`fn.experimental.readers.video`, frame folders through file reading + `fn.decoders.image`. A loader that decodes
T frames per clip decodes each frame T times; here each frame is decoded about once per epoch
(`loader.frames_decoded_per_clip` reports the measured ratio). A batch carries the decoded frames (uint8, on the
device) and the row of every clip frame in them; its clips are gathered and become float32 where they are first
used (ClipBatch): one index_select on CUDA, one pass per frame on the host. Overlapping clips are never copied
before a consumer asks for them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from vadgpu.data.prepare import DECODABLE, DECODERS, backend_for
from vadgpu.data.probe import IMAGE_FORMATS
from vadgpu.data.types import PreparedVideo
from vadgpu.device import resolve_device
from vadgpu.errors import VadgpuError
from vadgpu.optional import require
from vadgpu.pipelines.clip_index import ClipSpec, EpochPlan, RunTable, build_run_table, plan_epoch, span_frames

__all__ = ["ClipSpec", "ClipBatch", "FramePiece", "ClipLoader", "make_loader", "check_decodable",
           "DEFAULT_RUN_LENGTH"]

DEFAULT_RUN_LENGTH = 64  # frames per decoded run: long enough that overlap (span - 1) costs little
SPANS_PER_RUN = 4  # and at least this many clip spans, so a long skip window re-decodes under 1/4 of each run
DEFAULT_RUNS_PER_GROUP = 8  # runs per DALI iteration in training; clips are shuffled across them
TEST_RUNS_PER_GROUP = 1  # in test order nothing is shuffled: one run per iteration keeps a few frames in flight
# Frame-folder formats fn.decoders.image reads on both backends (the names probe.py gives them)
IMAGE_CODECS = frozenset(IMAGE_FORMATS.values())


_FROM_SPANS = object()  # ClipBatch.window not gathered yet


@dataclass
class FramePiece:
    """Consecutive clips of a batch as the frames they are cut from, before any float conversion (what object
    tubes are cut from, objects/tubes.py): span frame j of clip k is `frames[clip[k], :, rows[k, j]]`.

    `frames` is (A, C, B, H, W): uint8 as decoded, or float32 in [0, 1] where the batch holds float clips. The span
    is the skip window where the batch has one, else the clip itself; `clip_in_span` is where the clip's T frames
    sit in it."""

    frames: torch.Tensor  # (A, C, B, H, W)
    clip: torch.Tensor  # (K,) int64
    rows: torch.Tensor  # (K, span) int64
    clip_in_span: slice

    @property
    def has_window(self) -> bool:
        return self.rows.shape[1] > self.clip_in_span.stop - self.clip_in_span.start


class ClipBatch:
    """One batch of clips and where they come from (docs/architecture.md, "Loader interface").

        clips   (N, C, T, H, W) float32 in [0, 1]
        video   (N,) int64: index into the loader's video list
        frame   (N,) int64: centre frame of each clip
        window  (N, C, max_skip * (T - 1) + 1, H, W) float32 when max_skip > 1, else None

    The torch loader hands over materialised uint8 clips; the DALI loader hands over the decoded frames and the
    row of every span frame in them (`FrameSpans`): clips overlap and share their decode group's frames (about 1.4
    decoded frames per clip at T = 16), so nothing holds T copies of a frame until it is asked for. Either way
    `clips` and `window` become float32 on first use, on the batch's device (the point of use: nothing converts or
    copies what is not used). `frame_pieces()` hands over the frames themselves, for consumers that read only part
    of each frame (object tubes).
    """

    def __init__(self, clips: torch.Tensor | None, video: torch.Tensor, frame: torch.Tensor,
                 window: torch.Tensor | None = None, *, spans: "FrameSpans | None" = None,
                 clip_in_span: slice | None = None):
        if (clips is None) == (spans is None):
            raise ValueError("a ClipBatch holds clips or frame spans, one of the two")
        if window is not None and clip_in_span is None:
            raise ValueError("a ClipBatch with a skip window says where its clips sit in it (clip_in_span)")
        self.video, self.frame, self._spans = video, frame, spans
        self._clips = clips
        self._window = window if spans is None else _FROM_SPANS
        self._clip_in_span = spans.spec.clip_in_span if spans is not None else clip_in_span

    @property
    def clips(self) -> torch.Tensor:
        if self._clips is None:
            self._clips = self._spans.clips()
            self._release()
        elif self._clips.dtype == torch.uint8:
            self._clips = unit_float(self._clips)
        return self._clips

    @clips.setter
    def clips(self, value: torch.Tensor) -> None:
        self._clips = value
        self._release()

    @property
    def window(self) -> torch.Tensor | None:
        if self._window is _FROM_SPANS:
            self._window = self._spans.window()
            self._release()
        elif self._window is not None and self._window.dtype == torch.uint8:
            self._window = unit_float(self._window)
        return self._window

    @window.setter
    def window(self, value: torch.Tensor | None) -> None:
        self._window = value
        self._release()

    def frame_pieces(self) -> list[FramePiece]:
        """The batch's clips (with their skip windows) as the frames they come from, nothing converted: one piece
        per decode group on the DALI loader, one for the torch loader's uint8 clips (float32 once `clips` or
        `window` was read and the frames were dropped)."""
        if self._spans is not None:
            plain = self._clip_in_span
            return [FramePiece(frames.unsqueeze(0).transpose(1, 2), torch.zeros_like(rows[:, 0]), rows, plain)
                    for frames, rows in self._spans.pieces]
        frames, plain = self._clips, slice(0, self._clips.shape[2])
        if self._window is not None:
            frames, plain = self._window, self._clip_in_span
        steps = torch.arange(frames.shape[2], device=frames.device)
        clip = torch.arange(frames.shape[0], device=frames.device)
        return [FramePiece(frames, clip, steps.expand(frames.shape[0], -1), plain)]

    def _release(self) -> None:
        """Drop the decoded frames once nothing is left to gather from them."""
        if self._clips is not None and self._window is not _FROM_SPANS:
            self._spans = None

    def __len__(self) -> int:
        return self.video.shape[0]


class FrameSpans:
    """A batch's clips as decoded frames + indices: pieces of (frames (F, C, H, W) uint8, rows (K, S)), where row
    [k, j] is span frame j of the piece's clip k (a batch can take clips from two decode groups)."""

    def __init__(self, pieces: list[tuple[torch.Tensor, torch.Tensor]], spec: ClipSpec):
        self.pieces, self.spec = pieces, spec

    def clips(self) -> torch.Tensor:
        """(N, C, T, H, W) float32 in [0, 1]."""
        plain = self.spec.clip_in_span
        return self._gather([(frames, rows[:, plain]) for frames, rows in self.pieces])

    def window(self) -> torch.Tensor | None:
        """(N, C, S, H, W) float32 in [0, 1], or None without a skip window."""
        return self._gather(self.pieces) if self.spec.has_window else None

    @staticmethod
    def _gather(pieces) -> torch.Tensor:
        return concat_spans([gather_unit_float(frames, rows) for frames, rows in pieces])


def check_decodable(videos: Sequence[PreparedVideo], backend: str) -> bool:
    """Raise VadgpuError for anything the backend's decoder would fail on or silently drop; True for frame folders.

    DALI's CPU video reader skips files it cannot decode without a word, so the codec is checked here, per file,
    against what `vadgpu data prepare` leaves untranscoded for the backend (prepare.DECODABLE).
    """
    if not videos:
        raise VadgpuError("no videos to load (the split is empty)")
    folders = {v.video.is_folder for v in videos}
    if len(folders) > 1:
        raise VadgpuError(
            f"{videos[0].video.path.parent}: the split mixes video files and frame folders; one loader reads one "
            "kind (convert the videos to frame folders or the folders to videos)"
        )
    for v in videos:
        if not v.decode_path.exists():
            raise VadgpuError(f"{v.decode_path}: not found (video {v.name}); rerun `vadgpu data prepare`")
        if v.num_frames < 1:
            raise VadgpuError(f"{v.decode_path}: has no frames (video {v.name})")
        if v.video.is_folder:
            if v.codec.lower() not in IMAGE_CODECS:
                raise VadgpuError(f"{v.decode_path}: frame format {v.codec!r} is not an image format "
                                  f"{DECODERS[backend]} decodes")
            if len(v.video.frame_files) != v.num_frames:
                raise VadgpuError(
                    f"{v.decode_path}: {len(v.video.frame_files)} frame files but the record says {v.num_frames}"
                )
        elif v.codec.lower() not in DECODABLE[backend]:
            raise VadgpuError(
                f"{v.decode_path}: codec {v.codec!r} is not read by {DECODERS[backend]} here "
                f"(it takes {', '.join(sorted(DECODABLE[backend]))}); run `vadgpu data prepare` to transcode "
                "it into the cache"
            )
    return folders.pop()


class ClipLoader:
    """Iterate ClipBatch over one shard; `len()` is the batch count per epoch, equal on every shard."""

    def __init__(
        self,
        videos: Sequence[PreparedVideo],
        spec: ClipSpec,
        *,
        batch_size: int,
        device: torch.device,
        train: bool,
        seed: int,
        shard_id: int,
        num_shards: int,
        run_length: int,
        runs_per_group: int | None,
        num_threads: int | None,
    ):
        self.videos = list(videos)
        self.spec = spec
        self.batch_size = batch_size
        self.device = device
        self.train = train
        self.seed = seed
        self.shard_id = shard_id
        self.num_shards = num_shards
        if runs_per_group is None:
            runs_per_group = DEFAULT_RUNS_PER_GROUP if train else TEST_RUNS_PER_GROUP
        self.runs_per_group = runs_per_group
        self.num_threads = max(1, num_threads or os.cpu_count() or 1)
        self.is_folder = check_decodable(self.videos, self.decode_backend())
        self.num_frames = np.array([v.num_frames for v in self.videos], dtype=np.int64)
        self.run_length = max(run_length, SPANS_PER_RUN * len(spec.span_offsets))
        self.table: RunTable = build_run_table(self.num_frames.tolist(), spec, train, self.run_length)
        if len(self.table.clip_centre) == 0:
            raise VadgpuError(
                f"{self.videos[0].decode_path.parent}: no video has {spec.temporal} frames, so there are no clips"
            )
        self.epoch = 0
        self._plan = self._make_plan()  # checks shard arguments now, not on first iteration
        self.frames_decoded = 0  # in the current / last epoch
        self.clips_emitted = 0

    def decode_backend(self) -> str:
        """The `vadgpu data prepare` backend whose output this loader decodes (prepare.DECODABLE)."""
        return backend_for(self.device)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle (training) for `epoch`; the same (seed, epoch) gives the same batches."""
        self.epoch = int(epoch)
        self._plan = self._make_plan()

    def __len__(self) -> int:
        return len(self._plan)

    @property
    def frames_decoded_per_clip(self) -> float:
        """Frames the pipeline decoded per clip emitted, measured over the current / last epoch."""
        return self.frames_decoded / max(self.clips_emitted, 1)

    def _make_plan(self) -> EpochPlan:
        return plan_epoch(self.table, train=self.train, seed=self.seed, epoch=self.epoch, shard_id=self.shard_id,
                          num_shards=self.num_shards, runs_per_group=self.runs_per_group,
                          batch_size=self.batch_size)

    def __iter__(self) -> Iterator[ClipBatch]:
        from vadgpu.pipelines.dali_pipelines import RunDecoder

        plan = self._plan
        self.frames_decoded = self.clips_emitted = 0
        decoder = RunDecoder(self.videos, self.spec, self.table, plan, self.device, self.is_folder,
                             self.run_length, self.num_threads, self.seed, self.shard_id, self.num_shards)
        pieces: list[tuple[torch.Tensor, torch.Tensor, np.ndarray]] = []
        have = start = 0
        try:
            for g, (frames, row_of_run, decoded) in enumerate(decoder):  # frames (F, C, H, W) on the device
                self.frames_decoded += decoded
                clips = plan.clip_order[start : plan.group_end[g]]
                start = plan.group_end[g]
                rows = self._rows(clips, row_of_run)  # (K, span) row of every needed frame in `frames`
                pos = 0
                while pos < len(clips):
                    take = min(self.batch_size - have, len(clips) - pos)
                    pieces.append((frames, rows[pos : pos + take], clips[pos : pos + take]))
                    have, pos = have + take, pos + take
                    if have == self.batch_size:
                        yield self._batch(pieces)
                        pieces, have = [], 0
            if pieces:
                yield self._batch(pieces)
        finally:
            decoder.close()

    def _rows(self, clips: np.ndarray, row_of_run: dict[int, int]) -> torch.Tensor:
        runs = self.table.clip_run[clips]
        base = np.fromiter((row_of_run[r] for r in runs), dtype=np.int64, count=len(runs))
        frames = span_frames(self.table, clips, self.num_frames, self.spec)  # (K, span) frame indices in the video
        rows = base[:, None] + frames - self.table.run_lo[runs, None]
        return to_device(rows, self.device)

    def _batch(self, pieces: list[tuple[torch.Tensor, torch.Tensor, np.ndarray]]) -> ClipBatch:
        clips = np.concatenate([c for _, _, c in pieces])
        self.clips_emitted += len(clips)
        video = to_device(self.table.run_video[self.table.clip_run[clips]], self.device)
        frame = to_device(self.table.clip_centre[clips], self.device)
        return ClipBatch(None, video, frame, spans=FrameSpans([(f, r) for f, r, _ in pieces], self.spec))


# On the CPU the gathers run in numpy: torch's intra-op thread pool stalls against DALI's decoding threads on a
# busy 2-core machine (measured 39 ms vs under 1 ms per batch gather); on CUDA they are plain device ops.
def gather_spans(frames: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """frames (F, C, H, W), rows (K, S) -> the clips' span frames (K, C, S, H, W), contiguous."""
    if frames.is_cuda:
        return frames.index_select(0, rows.reshape(-1)).unflatten(0, tuple(rows.shape)).transpose(1, 2).contiguous()
    source, index = frames.numpy(), rows.numpy()
    (k, s), (c, h, w) = index.shape, source.shape[1:]
    if c == 1:  # (K, S, 1, H, W) is (K, 1, S, H, W) in memory: one gather
        return torch.from_numpy(source[index].reshape(k, 1, s, h, w))
    # one copy per frame, straight into place (a gather, then a transpose, is two; measured 1.5-5x slower at
    # 256x256 RGB)
    out = np.empty((k, c, s, h, w), dtype=source.dtype)
    for i in range(k):
        for j in range(s):
            out[i, :, j] = source[index[i, j]]
    return torch.from_numpy(out)


def gather_unit_float(frames: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """unit_float(gather_spans(frames, rows)), bit for bit; on the host in one pass, each frame divided straight into
    its place in the float clips."""
    if frames.is_cuda:
        return unit_float(gather_spans(frames, rows))
    source, index = frames.numpy(), rows.numpy()
    (k, s), (c, h, w) = index.shape, source.shape[1:]
    out = np.empty((k, c, s, h, w), dtype=np.float32)
    scale = np.float32(255.0)
    for i in range(k):
        for j in range(s):
            np.divide(source[index[i, j]], scale, out=out[i, :, j])
    return torch.from_numpy(out)


def _contiguous(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous() if x.is_cuda else torch.from_numpy(np.ascontiguousarray(x.numpy()))


def concat_spans(spans: list[torch.Tensor]) -> torch.Tensor:
    if len(spans) == 1:
        return spans[0]
    if spans[0].is_cuda:
        return torch.cat(spans)
    return torch.from_numpy(np.concatenate([s.numpy() for s in spans]))


def assemble_batch(span: torch.Tensor, clips: np.ndarray, table: RunTable, spec: ClipSpec,
                   device: torch.device) -> ClipBatch:
    """Turn span frames (N, C, S, H, W) of clip ids `clips` into a ClipBatch (shared with the baseline)."""
    window, plain = (span, _contiguous(span[:, :, spec.clip_in_span])) if spec.has_window else (None, span)
    video = to_device(table.run_video[table.clip_run[clips]], device)
    frame = to_device(table.clip_centre[clips], device)
    return ClipBatch(clips=plain, video=video, frame=frame, window=window, clip_in_span=spec.clip_in_span)


def unit_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1], the same way wherever it happens (numpy on the host: torch's thread
    pool would compete with the decoding threads; on CUDA a device op)."""
    if frames.is_cuda:
        return frames.float().div_(255.0)
    return torch.from_numpy(np.divide(frames.numpy(), np.float32(255.0), dtype=np.float32))


def to_device(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host data onto `device` without making the host wait: on CUDA through pinned memory with a non-blocking
    copy (a copy from pageable memory synchronises with the stream, so the CPU would idle through the previous
    step's backward and optimiser)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array)) if isinstance(array, np.ndarray) else array
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def make_loader(
    videos: Sequence[PreparedVideo],
    spec: ClipSpec,
    batch_size: int = 32,
    device: str | torch.device | None = "auto",
    train: bool = True,
    seed: int = 0,
    shard_id: int = 0,
    num_shards: int = 1,
    *,
    run_length: int = DEFAULT_RUN_LENGTH,
    runs_per_group: int | None = None,
    num_threads: int | None = None,
) -> ClipLoader:
    """DALI clip loader over `videos` (video files or frame folders, made decodable by `vadgpu data prepare`).

    Training: full clips only, runs shuffled per epoch under `seed`, clips shuffled across `runs_per_group` runs
    (default DEFAULT_RUNS_PER_GROUP). Test: every frame once as a centre, in video/frame order, ends
    edge-replicated; by default one run per decode group (TEST_RUNS_PER_GROUP: little is decoded ahead, and the
    clips are the same for any grouping). Shard `shard_id` of `num_shards` gets a disjoint part with the same batch
    count as every other shard. `device` goes through vadgpu.device.resolve_device: CUDA decodes on the GPU
    (NVDEC / nvJPEG), CPU uses DALI's CPU backend.
    """
    require("nvidia.dali", "the DALI clip loader (use --loader torch where DALI is not installed)")
    device = resolve_device(device)
    return ClipLoader(videos, spec, batch_size=batch_size, device=device, train=train, seed=seed,
                      shard_id=shard_id, num_shards=num_shards, run_length=run_length,
                      runs_per_group=runs_per_group, num_threads=num_threads)
