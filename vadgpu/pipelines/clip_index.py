"""The clip index shared by the DALI loader and the baseline: which clips exist, which runs of consecutive frames
are decoded to cut them, and in which order (per epoch, per shard) they are emitted.

Terms:
    clip    T frames around a centre frame c (frames c - T//2 .. c + T - 1 - T//2, edge-replicated at the ends)
    window  the max_skip * (T - 1) + 1 frames around c from which skip clips are gathered (when max_skip > 1)
    span    what one clip needs: the window when max_skip > 1, else the clip itself
    run     consecutive frames [lo, lo + length) of one video, decoded once; it serves ("owns") the clips whose
            spans fall inside it, so each frame is decoded about once per epoch instead of T times

Both loaders emit the same clips in the same order for the same (seed, epoch, shard): the baseline is a
frame-exact reference for the DALI pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vadgpu.errors import VadgpuError


@dataclass(frozen=True)
class ClipSpec:
    """What a clip looks like: T frames, resized to (H, W), 1 (gray) or 3 (RGB) channels, optional skip window."""

    temporal: int
    size: tuple[int, int]  # (H, W)
    channels: int = 1
    max_skip: int = 0

    def __post_init__(self):
        if self.temporal < 1:
            raise VadgpuError(f"clip temporal length must be >= 1, got {self.temporal}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise VadgpuError(f"clip size must be (H, W) with positive sides, got {self.size!r}")
        if self.channels not in (1, 3):
            raise VadgpuError(f"clip channels must be 1 (gray) or 3 (RGB), got {self.channels}")
        if self.max_skip < 0:
            raise VadgpuError(f"max_skip must be >= 0, got {self.max_skip}")

    @classmethod
    def for_model(cls, config, skip_window: bool = True, frame_size: tuple[int, int] | None = None) -> "ClipSpec":
        """The clips a model config (`temporal`, `size`, `channels`, `max_skip`, `clips`) is trained on; with
        skip_window=False the plain clips alone (scoring reads no skip window). In object mode the loader
        delivers whole frames at the videos' own `frame_size` (H, W), from which the tubes are cut."""
        size = tuple(config.size)
        if getattr(config, "clips", "frames") == "objects":
            if frame_size is None:
                raise VadgpuError("object clips are cut from frames at the videos' size: pass frame_size")
            size = tuple(frame_size)
        return cls(temporal=config.temporal, size=size, channels=config.channels,
                   max_skip=config.max_skip if skip_window else 0)

    @property
    def has_window(self) -> bool:
        return self.max_skip > 1

    @property
    def span_offsets(self) -> np.ndarray:
        """Frame offsets from the centre that one clip needs: the skip window, or the clip itself."""
        scale = self.max_skip if self.has_window else 1
        half = self.temporal // 2
        return np.arange(-scale * half, scale * (self.temporal - 1 - half) + 1, dtype=np.int64)

    @property
    def clip_in_span(self) -> slice:
        """Where the plain clip (skip 1) sits inside the span."""
        centre = -int(self.span_offsets[0])
        half = self.temporal // 2
        return slice(centre - half, centre - half + self.temporal)


@dataclass(frozen=True)
class RunTable:
    """All runs of a split and the clips each run owns (clips of one run are contiguous, in frame order)."""

    run_video: np.ndarray  # (R,) index into the video list
    run_lo: np.ndarray  # (R,) first frame of the run
    run_length: np.ndarray  # (R,) frames in the run
    clip_run: np.ndarray  # (K,) owning run of every clip
    clip_centre: np.ndarray  # (K,) centre frame of every clip
    run_first_clip: np.ndarray  # (R + 1,) clips of run r are clip_run[run_first_clip[r]:run_first_clip[r + 1]]

    @property
    def num_runs(self) -> int:
        return len(self.run_video)


def build_run_table(num_frames: list[int], spec: ClipSpec, train: bool, run_length: int) -> RunTable:
    """Cut every video into runs of at most `run_length` frames that together own every clip once.

    Training clips are full clips only (centres T//2 .. n - 1 - (T - 1 - T//2)); test clips have every frame as
    a centre. Consecutive runs overlap by span - 1 frames so no clip straddles two runs.
    """
    offsets = spec.span_offsets
    left, right = -int(offsets[0]), int(offsets[-1])
    span = left + right + 1
    if run_length < span:
        raise VadgpuError(f"run_length {run_length} is shorter than one clip span ({span} frames)")
    half = spec.temporal // 2
    run_video, run_lo, run_len, clip_run, clip_centre = [], [], [], [], []
    for video, n in enumerate(num_frames):
        first, last = (half, n - 1 - (spec.temporal - 1 - half)) if train else (0, n - 1)
        c = first
        while c <= last:
            # the run's first owned centre is c; it owns every later centre whose clamped span still fits
            lo = max(c - left, 0)
            c_end = last if lo + run_length - 1 >= n - 1 else min(lo + run_length - 1 - right, last)
            hi = min(c_end + right, n - 1)
            run = len(run_video)
            run_video.append(video)
            run_lo.append(lo)
            run_len.append(hi - lo + 1)
            clip_run.extend([run] * (c_end - c + 1))
            clip_centre.extend(range(c, c_end + 1))
            c = c_end + 1
    clip_run_arr = np.asarray(clip_run, dtype=np.int64)
    first_clip = np.searchsorted(clip_run_arr, np.arange(len(run_video) + 1))
    return RunTable(
        run_video=np.asarray(run_video, dtype=np.int64),
        run_lo=np.asarray(run_lo, dtype=np.int64),
        run_length=np.asarray(run_len, dtype=np.int64),
        clip_run=clip_run_arr,
        clip_centre=np.asarray(clip_centre, dtype=np.int64),
        run_first_clip=first_clip.astype(np.int64),
    )


def span_frames(table: RunTable, clips: np.ndarray, num_frames: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """(K, span) absolute frame indices each clip needs, edge-replicated at the ends of its video."""
    centre = table.clip_centre[clips]
    last = num_frames[table.run_video[table.clip_run[clips]]] - 1
    frames = centre[:, None] + spec.span_offsets[None, :]  # (K, span)
    return np.clip(frames, 0, last[:, None])


def shard_bounds(count: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """Contiguous part `shard_id` of `count` items: the same split DALI's readers use (floor(i * count / n))."""
    return shard_id * count // num_shards, (shard_id + 1) * count // num_shards


@dataclass(frozen=True)
class EpochPlan:
    """One shard's epoch: runs decoded in `groups` (one DALI iteration each) and clips emitted in `clip_order`."""

    run_order: np.ndarray  # (R,) all runs of the epoch, every shard's; shard i reads its shard_bounds block
    groups: list[np.ndarray]  # this shard's run ids per decode group, in decode order
    clip_order: np.ndarray  # (M,) clip ids in emission order, shard padding included
    group_end: np.ndarray  # (G,) emission positions [group_end[g-1], group_end[g]) have their frames in group g
    batch_size: int

    def __len__(self) -> int:
        return -(-len(self.clip_order) // self.batch_size)


def plan_epoch(
    table: RunTable,
    *,
    train: bool,
    seed: int,
    epoch: int,
    shard_id: int,
    num_shards: int,
    runs_per_group: int,
    batch_size: int,
) -> EpochPlan:
    """Order, shard and group the runs for one epoch; every shard gets the same number of clips.

    Training: runs are shuffled under (seed, epoch) (the same permutation on every shard, so shards are disjoint),
    then clips are shuffled within each group of `runs_per_group` runs, which mixes videos inside a batch while
    each run is decoded once. Every shard emits ceil(total / num_shards) clips: a shard with more drops its last
    ones (different ones each epoch), a shard with fewer repeats clips of its last group.
    Test: runs and clips stay in video/frame order; every shard emits as many clips as the largest shard (repeats
    in the smaller ones), so nothing is dropped and a single shard sees every frame exactly once as a centre.
    """
    if not 0 <= shard_id < num_shards:
        raise VadgpuError(f"shard_id {shard_id} is outside 0..{num_shards - 1} (num_shards={num_shards})")
    if batch_size < 1 or runs_per_group < 1:
        raise VadgpuError(f"batch_size ({batch_size}) and runs_per_group ({runs_per_group}) must be >= 1")
    n_runs = table.num_runs
    if n_runs < num_shards:
        raise VadgpuError(f"only {n_runs} runs of frames to split over {num_shards} shards; use fewer shards")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_runs) if train else np.arange(n_runs)
    clips_per_run = np.diff(table.run_first_clip)
    shard_clips = [int(clips_per_run[order[slice(*shard_bounds(n_runs, s, num_shards))]].sum())
                   for s in range(num_shards)]
    if train:
        target = -(-sum(shard_clips) // num_shards)
    else:
        target = max(shard_clips)

    runs = order[slice(*shard_bounds(n_runs, shard_id, num_shards))]
    groups = [runs[i : i + runs_per_group] for i in range(0, len(runs), runs_per_group)]
    clip_rng = np.random.default_rng([seed, epoch, 1 + shard_id])
    pieces = []
    for group in groups:
        clips = np.concatenate([np.arange(table.run_first_clip[r], table.run_first_clip[r + 1]) for r in group])
        pieces.append(clip_rng.permutation(clips) if train else clips)
    if shard_clips[shard_id] < target:
        # pad with repeats from the last group: its frames are still on the device when the epoch ends
        pieces[-1] = np.resize(pieces[-1], len(pieces[-1]) + target - shard_clips[shard_id])
    group_end = np.cumsum([len(p) for p in pieces])
    clip_order = np.concatenate(pieces)[:target]
    keep = int(np.searchsorted(group_end, target, side="left")) + 1  # groups that still hold emitted clips
    groups, group_end = groups[:keep], np.minimum(group_end[:keep], target)
    return EpochPlan(run_order=order, groups=groups, clip_order=clip_order, group_end=group_end, batch_size=batch_size)
