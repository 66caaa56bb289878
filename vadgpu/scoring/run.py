"""Run a scorer over whole videos: the test-order loader (every frame exactly once as a centre frame, edges
replicated), one scorer call per batch on the device, one host transfer of the per-frame scores at the end.
Nothing of a video outlives its batches but its scores (and a tube scorer's records): the loader decodes a run of
frames at a time, and the C heap's freed memory goes back to the kernel after each video and whenever it has
piled up (heap.py)."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from vadgpu.bench.stages import stage, timed
from vadgpu.data.types import PreparedVideo
from vadgpu.errors import VadgpuError
from vadgpu.heap import HeapRelease
from vadgpu.model_checks import check_finite_scores

DEFAULT_BATCH_SIZE = 16


def score_videos(model, videos: Sequence[PreparedVideo], scorer, device: torch.device,
                 batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True, desc: str = "scoring",
                 loader: str = "auto") -> list[np.ndarray]:
    """Raw score of every frame of every video, as `scorer` (a FrameScorer or TubeScorer) gives it for the clip
    centred on that frame: [(frames,) float64], after `scorer.finish` (frames without a box filled). An object
    model's clips come at the videos' own size. `loader`: dali, torch or auto (pipelines/choose.py)."""
    from vadgpu.objects.tubes import native_frame_size
    from vadgpu.pipelines.choose import open_loader, resolve_loader
    from vadgpu.pipelines.clip_index import ClipSpec

    if batch_size < 1:
        raise VadgpuError(f"--batch-size {batch_size} must be at least 1")
    frame_size = native_frame_size(videos) if model.config.clips == "objects" else None
    spec = ClipSpec.for_model(model.config, skip_window=False, frame_size=frame_size)
    with stage("decode"):
        clips = open_loader(resolve_loader(loader)[0], list(videos), spec, batch_size=batch_size, device=device,
                            train=False)
    scores, video_ids, frame_ids = [], [], []  # per batch, on the device: one host transfer at the end
    total = sum(v.num_frames for v in videos)
    ends, heap = _VideoEnds(videos), HeapRelease()
    lines = None if progress else _ProgressLines(desc, ends)  # no bar: a line per video, never silent
    with torch.inference_mode(), tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True,
                                      disable=None if progress else True) as bar:
        for batch in timed(clips, "decode"):
            with stage("clips"):  # a tube scorer cuts its tubes from the decoded frames, a frame scorer takes clips
                frames = batch.frame_pieces() if getattr(scorer, "takes_frame_pieces", False) else batch.clips
            scores.append(scorer(model, frames, batch.video, batch.frame))
            video_ids.append(batch.video)
            frame_ids.append(batch.frame)
            del batch, frames
            bar.update(len(frame_ids[-1]))
            finished = ends.advance(len(frame_ids[-1]))
            if lines is not None:
                lines.done(finished)
            heap.step(bool(finished))
    if not scores:
        raise VadgpuError("the loader gave no clips: the videos have no frames to score")
    with stage("protocol"):
        raw = place(videos, torch.cat(scores), torch.cat(video_ids), torch.cat(frame_ids))
        check_finite_scores(raw, [v.name for v in videos], str(getattr(model, "path", "the model")),
                            model.config.clips == "objects")
        return [scorer.finish(r) for r in raw]


class _VideoEnds:
    """Which videos a run of scored frames has finished: the test loader gives the videos in order, each frame
    once."""

    def __init__(self, videos: Sequence[PreparedVideo]):
        self.videos = list(videos)
        self.ends = np.cumsum([v.num_frames for v in self.videos])
        self.total, self.frames, self.next = int(self.ends[-1]) if self.videos else 0, 0, 0

    def advance(self, frames: int) -> list[int]:
        """Count `frames` more scored frames; the indices of the videos they finished."""
        self.frames += frames
        finished = []
        while self.next < len(self.videos) and self.frames >= self.ends[self.next]:
            finished.append(self.next)
            self.next += 1
        return finished


class _ProgressLines:
    """What a progress bar would say, as `vadgpu` log lines: one at the start, one as each video is done."""

    def __init__(self, desc: str, ends: _VideoEnds):
        from vadgpu.log import logger

        self.log, self.desc, self.ends, self.started = logger.info, desc, ends, time.perf_counter()
        self.log(f"{desc}: {ends.total} frames of {len(ends.videos)} video(s)")

    def done(self, finished: list[int]) -> None:
        videos, seconds = self.ends.videos, time.perf_counter() - self.started
        for index in finished:
            self.log(f"{self.desc}: video {videos[index].name} done ({index + 1}/{len(videos)}, "
                     f"{int(self.ends.ends[index])}/{self.ends.total} frames, {seconds:.0f} s)")


def place(videos: Sequence[PreparedVideo], scores: torch.Tensor, video_ids: torch.Tensor,
          frame_ids: torch.Tensor) -> list[np.ndarray]:
    """Put each score at (video, frame); every frame must come exactly once (the test loader's contract)."""
    scores = scores.double().cpu().numpy()
    video_ids, frame_ids = video_ids.cpu().numpy(), frame_ids.cpu().numpy()
    out = []
    for index, video in enumerate(videos):
        mine = video_ids == index
        frames = frame_ids[mine]
        counts = np.bincount(frames, minlength=video.num_frames) if frames.size else np.zeros(video.num_frames)
        if frames.size and (frames.min() < 0 or frames.max() >= video.num_frames):
            raise VadgpuError(f"video {video.name}: the loader gave frame {frames.max()} of {video.num_frames}")
        if (counts != 1).any():
            bad = int(np.flatnonzero(counts != 1)[0])
            raise VadgpuError(f"video {video.name} ({video.decode_path}): frame {bad} was scored {int(counts[bad])} "
                              f"times; the test loader must give every frame exactly once")
        placed = np.empty(video.num_frames)
        placed[frames] = scores[mine]
        out.append(placed)
    return out
