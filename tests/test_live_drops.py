"""Live scoring reads its frames ahead on a worker thread: a file is scored exactly as frame by frame, a live
source that scoring cannot keep up with drops its oldest waiting frames (counted, the frame numbers keep their
gaps, no clip spans one), an error in the source reaches the caller, and leaving the loop leaves no reader
thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from cli_helpers import invoke, read_csv
from clip_media import write_ts
from stream_server import StreamServer
from vadgpu.checkpoint import save_checkpoint
from vadgpu.errors import VadgpuError
from vadgpu.live.reader import drops_frames
from vadgpu.live.scoring import CausalScorer
from vadgpu.models.registry import build_model

av = pytest.importorskip("av", reason="live scoring reads video files with PyAV")
pytestmark = pytest.mark.av
FRAMES = 40


def _frames(n: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Moving noise blocks, every frame distinct."""
    base = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return [np.roll(base, 2 * i, axis=1) for i in range(n)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """ddl-tiny-cpu weights with random values and an H.264 MPEG-TS of FRAMES frames."""
    base = tmp_path_factory.mktemp("drops")
    torch.manual_seed(0)
    model = build_model("ddl-tiny-cpu")
    path = save_checkpoint(base / "model.pt", {"model_name": "ddl-tiny-cpu", "model_config": model.config.to_dict(),
                                               "model": model.state_dict(), "epoch": 1, "step": 1})
    return {"model": path, "ts": write_ts(base / "clip.ts", _frames(FRAMES))}


@pytest.fixture
def detector(setup):
    from vadgpu import Detector

    return Detector.load(setup["model"], "cpu", norm="none")


def _slow_scorer(monkeypatch, seconds: float) -> list[list[int]]:
    """Every frame takes `seconds` more to score; returns the list that receives each clip's frame numbers."""
    push, clip_frames, clips = CausalScorer.push, CausalScorer.clip_frames, []

    def slow_push(self, index, image):
        time.sleep(seconds)
        return push(self, index, image)

    def spied(self, centre, last):
        clips.append(clip_frames(self, centre, last))
        return clips[-1]
    monkeypatch.setattr(CausalScorer, "push", slow_push)
    monkeypatch.setattr(CausalScorer, "clip_frames", spied)
    return clips


def _paced(frames, fps: float, forever: bool = False):
    """The frames at `fps` frames per second, as a camera delivers them (again and again with `forever`)."""
    start, i = time.monotonic(), 0
    while True:
        for image in frames:
            time.sleep(max(0.0, start + i / fps - time.monotonic()))
            i += 1
            yield image
        if not forever:
            return


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "vadgpu-reader"]


def test_which_sources_drop_frames(setup):
    assert drops_frames("auto", "rtsp://camera/stream") and drops_frames("auto", "/dev/video0")
    assert not drops_frames("auto", setup["ts"]) and not drops_frames("auto", "-") and not drops_frames("auto", [])
    assert drops_frames("always", "-") and drops_frames("always", iter([]))
    assert not drops_frames("never", "http://camera/stream")
    with pytest.raises(VadgpuError, match="never dropped"):
        drops_frames("always", setup["ts"])
    with pytest.raises(VadgpuError, match="auto, always, never"):
        drops_frames("sometimes", "-")


def test_a_file_scores_as_frame_by_frame_and_drops_nothing(setup, detector, monkeypatch):
    from vadgpu.live.stream import FrameStream

    scorer, expected = CausalScorer(detector.model, detector.protocol, detector.stats, detector.device), []
    for frame in FrameStream(str(setup["ts"])):  # the reference: read and score in turn, in this thread
        expected += scorer.push(frame.index, frame.image)
    expected += scorer.finish()
    _slow_scorer(monkeypatch, 0.005)  # the reader fills its queue and waits
    live = detector.stream(setup["ts"])
    results = list(live)
    assert [(r.frame, r.raw_score, r.score) for r in results] == [(i, raw, s) for i, raw, s, _ in expected]
    assert len(results) == FRAMES and live.summary.dropped_frames == 0 and not _readers()


def test_a_live_source_that_scoring_cannot_keep_up_with_drops_its_oldest_frames(detector, monkeypatch, caplog):
    clips = _slow_scorer(monkeypatch, 0.03)  # 3 times slower than the source's 100 frames/s
    live = detector.stream(_paced(_frames(FRAMES), fps=100), drop_frames="always")
    with caplog.at_level("WARNING", logger="vadgpu"):
        frames = [r.frame for r in live]
    dropped = live.summary.dropped_frames
    assert dropped > 0 and len(frames) + dropped == FRAMES  # every frame scored or counted
    assert frames == sorted(frames) and any(b - a > 1 for a, b in zip(frames, frames[1:]))  # the source's numbers
    assert frames[-1] == FRAMES - 1  # the oldest waiting frame is dropped, never the newest
    scored = set(frames)
    assert len(clips) == len(frames) and all(set(range(min(c), max(c) + 1)) <= scored for c in clips)  # no gap inside
    assert sum("dropped" in r.message for r in caplog.records) == 1  # the first drop; then at most every 30 s
    assert not _readers()


def test_a_stream_url_drops_frames_by_default_and_the_command_counts_them(setup, monkeypatch, tmp_path):
    _slow_scorer(monkeypatch, 0.08)
    server = StreamServer(setup["ts"].parent, parts=FRAMES, seconds=0.02)
    try:
        code, output = invoke(["score", f"{server.url}/paced/{setup['ts'].name}", "--checkpoint",
                               str(setup["model"]), "--out", str(tmp_path / "out"), "--device", "cpu", "--norm",
                               "none", "--retry-delay", "0.05"])
    finally:
        server.close()
    assert code == 0 and "started again from its first frame" in output, output  # a file served live ends
    frames = [int(r["frame"]) for r in read_csv(tmp_path / "out" / "scores.csv")]
    dropped = int(output.split("dropped ")[1].split(" frame(s)")[0])
    assert dropped > 0 and len(frames) + dropped == frames[-1] + 1 and frames != list(range(len(frames)))


@pytest.mark.parametrize("error", [VadgpuError("camera unplugged at frame 6"), OSError("device gone")])
def test_an_error_in_the_source_reaches_the_caller(detector, error):
    def camera():
        yield from _frames(6)
        raise error

    results = []
    with pytest.raises(type(error), match=str(error)):
        for result in detector.stream(camera()):
            results.append(result.frame)
    assert results == list(range(6 - detector.delay_frames)) and not _readers()


@pytest.mark.parametrize("drop", ["always", "never"])
def test_leaving_the_loop_leaves_no_reader_thread(detector, drop):
    for result in detector.stream(_paced(_frames(10), fps=200, forever=True), drop_frames=drop):
        if result.frame >= 5:
            break
    assert not _readers()
