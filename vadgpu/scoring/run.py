"""Run a scorer over whole videos: the test-order loader (every frame exactly once as a centre frame, edges
replicated), one scorer call per batch on the device, one host transfer of the per-frame scores at the end."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from vadgpu.bench.stages import stage, timed
from vadgpu.data.types import PreparedVideo
from vadgpu.errors import VadgpuError
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
    lines = None if progress else _ProgressLines(desc, videos)  # no bar: a line per video, never silent
    with torch.inference_mode(), tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True,
                                      disable=None if progress else True) as bar:
        for batch in timed(clips, "decode"):
            with stage("clips"):
                frames = batch.clips
            scores.append(scorer(model, frames, batch.video, batch.frame))
            video_ids.append(batch.video)
            frame_ids.append(batch.frame)
            bar.update(len(batch.frame))
            if lines is not None:
                lines.update(len(batch.frame))
    if not scores:
        raise VadgpuError("the loader gave no clips: the videos have no frames to score")
    with stage("protocol"):
        raw = place(videos, torch.cat(scores), torch.cat(video_ids), torch.cat(frame_ids))
        check_finite_scores(raw, [v.name for v in videos], str(getattr(model, "path", "the model")),
                            model.config.clips == "objects")
        return [scorer.finish(r) for r in raw]


class _ProgressLines:
    """What a progress bar would say, as `vadgpu` log lines: one at the start, one as each video is done (the test
    loader gives the videos in order, each frame once)."""

    def __init__(self, desc: str, videos: Sequence[PreparedVideo]):
        from vadgpu.log import logger

        self.log, self.desc, self.videos = logger.info, desc, list(videos)
        self.total, self.done, self.next, self.started = sum(v.num_frames for v in videos), 0, 0, time.perf_counter()
        self.log(f"{desc}: {self.total} frames of {len(self.videos)} video(s)")

    def update(self, frames: int) -> None:
        self.done += frames
        ends = np.cumsum([v.num_frames for v in self.videos])
        while self.next < len(self.videos) and self.done >= ends[self.next]:
            video = self.videos[self.next]
            self.next += 1
            self.log(f"{self.desc}: video {video.name} done ({self.next}/{len(self.videos)}, {int(ends[self.next - 1])}"
                     f"/{self.total} frames, {time.perf_counter() - self.started:.0f} s)")


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
