"""`vadgpu.Detector`: the same scores from a file, a frame folder and frames pushed as arrays, results with their
plot and dict, the event rules and a false-alarm rate through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cli_helpers import invoke, read_csv

from vadgpu.checkpoint import save_checkpoint
from vadgpu.errors import VadgpuError
from vadgpu.models.registry import build_model

av = pytest.importorskip("av", reason="live scoring reads video files with PyAV")
pytestmark = pytest.mark.av
FRAMES = 30


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A synthetic test video as AVI (MJPEG) and as a frame folder, and a ddl-tiny-cpu model.pt with training
    scores."""
    import cv2

    from vadgpu.data.synth import make_synthetic_dataset

    base = tmp_path_factory.mktemp("detector")
    root = make_synthetic_dataset(base / "synth", seed=2, train_videos=1, test_videos=1, frames=FRAMES,
                                  frame_size=(48, 64), formats=("avi",))
    avi = root / "testing" / "videos" / "01.avi"
    with av.open(str(avi)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    folder = base / "frames" / "01"
    folder.mkdir(parents=True)
    for i, image in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), image)  # lossless: the folder holds the decoded frames
    rng = np.random.default_rng(0)
    scores = {"names": ["01"], "dataset": "synthetic", "root": str(root), "variant": None,
              **{kind: [torch.from_numpy(rng.normal(0.05, 0.01, 200))] for kind in ("patch-max", "psnr", "mse")}}
    torch.manual_seed(0)
    model = build_model("ddl-tiny-cpu")
    save_checkpoint(base / "model.pt", {"model_name": "ddl-tiny-cpu", "model_config": model.config.to_dict(),
                                        "model": model.state_dict(), "epoch": 1, "step": 1, "train_scores": scores})
    return {"model": base / "model.pt", "avi": avi, "folder": folder, "frames": frames, "base": base}


def test_file_folder_and_arrays_give_the_same_results(setup):
    from vadgpu import Detector

    detector = Detector.load(setup["model"], "cpu", threshold=0.0)
    from_file = list(detector.stream(setup["avi"]))
    from_folder = list(detector.stream(setup["folder"]))
    pushed = list(detector.stream(iter(setup["frames"]), fps=10))
    assert [r.frame for r in from_file] == list(range(FRAMES))
    for other in (from_folder, pushed):
        assert [r.score for r in other] == [r.score for r in from_file]
        assert [r.alarm for r in other] == [r.alarm for r in from_file]
    assert pushed[5].time == pytest.approx(0.5) and from_folder[5].time == pytest.approx(0.2)  # 10 fps, 25 fps
    result = from_file[10]
    picture = result.plot()
    assert picture.shape == setup["frames"][10].shape and picture.dtype == np.uint8
    assert not np.array_equal(picture, setup["frames"][10])  # the score is drawn on it
    record = result.to_dict()
    assert record["frame"] == 10 and record["wall_time"].endswith("+00:00") and record["boxes"] == []
    assert json.loads(json.dumps(record)) == record


def test_the_cli_scores_equal_the_detector_and_events_carry_their_settings(setup, tmp_path):
    from vadgpu import Detector

    out = tmp_path / "cli"
    code, output = invoke(["score", str(setup["avi"]), "--live", "--checkpoint", str(setup["model"]), "--out",
                           str(out), "--device", "cpu", "--threshold", "0", "--threshold-off", "-1",
                           "--min-duration", "2", "--merge-gap", "3"])
    assert code == 0, output
    rows = read_csv(out / "scores.csv")
    detector = Detector.load(setup["model"], "cpu", threshold=0.0, threshold_off=-1.0, min_duration=2,
                             merge_gap=3)
    with detector.stream(str(setup["avi"])) as live:
        results = list(live)
    assert [float(r["score"]) for r in rows] == [r.score for r in results]
    assert [int(r["alarm"]) for r in rows] == [int(r.alarm) for r in results]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert len(events) == len(live.events) >= 1
    event = events[0]
    assert (event["threshold"], event["threshold_off"], event["source"]) == (0.0, -1.0, str(setup["avi"]))
    assert event["model"] == str(setup["model"]) and event["start_wall_time"] and event["alarm_frame"] >= 1


def test_a_false_alarm_rate_sets_the_threshold_from_the_training_scores(setup, tmp_path):
    from vadgpu import Detector
    from vadgpu.live.events import EventRules, count_events

    strict = Detector.load(setup["model"], "cpu", false_alarms_per_hour=0)
    loose = Detector.load(setup["model"], "cpu", false_alarms_per_hour=3600)
    assert strict.rules().threshold > loose.rules().threshold
    assert sum(count_events(v, strict.rules()) for v in strict.train_videos) == 0
    assert max(v.max() for v in strict.train_videos) < strict.rules().threshold
    assert isinstance(strict.rules(), EventRules)
    code, output = invoke(["score", str(setup["avi"]), "--live", "--checkpoint", str(setup["model"]), "--out",
                           str(tmp_path / "far"), "--device", "cpu", "--false-alarms-per-hour", "0"])
    assert code == 0, output
    assert f"threshold {strict.rules(25).threshold:.3f}" in output
    code, output = invoke(["score", str(setup["avi"]), "--checkpoint", str(setup["model"]), "--out",
                           str(tmp_path / "off"), "--merge-gap", "3"])
    assert code != 0 and "--merge-gap: for live scoring" in output


def test_bad_frames_are_one_clear_error(setup):
    from vadgpu import Detector

    detector = Detector.load(setup["model"], "cpu")
    with pytest.raises(VadgpuError, match="not an .H, W, 3. uint8 BGR array"):
        list(detector.stream([np.zeros((48, 64), np.uint8)]))
    with pytest.raises(VadgpuError, match="not one frame"):
        detector.stream(np.zeros((48, 64, 3), np.uint8))


def test_event_clips_hold_the_pre_and_post_roll(tmp_path):
    from vadgpu.detector import Result
    from vadgpu.live.clips import EventClips
    from vadgpu.live.events import Event

    clips = EventClips(tmp_path / "clips", 0.2)  # 5 frames at 25 fps
    event = Event(10, 0.4, 15, 0.6, 12, 3.0)
    for i in range(30):
        image = np.full((48, 64, 3), 8 * i, np.uint8)
        clips.add(Result(i, i / 25, 0.0, 1.0, 1.0, [[4, 4, 20, 30, 2.5]] if 10 <= i <= 15 else [], 10 <= i <= 15,
                         2.0, [event] if i == 10 else [], [event] if i == 15 else [], image), 25.0)
    clips.close()
    (path,) = clips.paths
    assert path.name == "event-000010.mp4"
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == 5 + 6 + 5  # frames 5 ... 20
    assert abs(int(frames[0][30, 40].mean()) - 40) < 8 and abs(int(frames[-1][30, 40].mean()) - 160) < 8


def test_the_cli_saves_a_clip_per_event(setup, tmp_path):
    out = tmp_path / "clipped"
    code, output = invoke(["score", str(setup["avi"]), "--live", "--checkpoint", str(setup["model"]), "--out",
                           str(out), "--device", "cpu", "--norm", "none", "--threshold", "-1e9", "--save-clips", "1"])
    assert code == 0, output
    (clip,) = sorted((out / "clips").glob("event-*.mp4"))
    with av.open(str(clip)) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES  # one event from the first frame to the last
    assert "wrote 1 event clip(s)" in output


def test_an_exported_onnx_model_streams_the_same_scores(setup, tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX scoring needs the export extra")
    from vadgpu import Detector

    onnx_file = tmp_path / "model.onnx"
    assert invoke(["export", "--checkpoint", str(setup["model"]), "--out", str(onnx_file)])[0] == 0
    frames = setup["frames"][:12]
    from_pt = [r.score for r in Detector.load(setup["model"], "cpu").stream(frames)]
    from_onnx = [r.score for r in Detector.load(onnx_file).stream(frames)]
    np.testing.assert_allclose(from_onnx, from_pt, rtol=1e-4, atol=1e-4)


def test_leaving_the_loop_ends_the_open_event(setup):
    from vadgpu import Detector

    detector = Detector.load(setup["model"], "cpu", threshold=-1e9)
    live = detector.stream(setup["frames"])
    for result in live:
        if result.frame == 5:
            break
    live.close()
    assert [(e.start_frame, e.end_frame, e.ended_by) for e in live.events] == [(0, 5, "stopped by the caller")]
    with pytest.raises(VadgpuError, match="scored once"):
        list(live)
    with detector.stream(setup["frames"], max_frames=8) as bounded:
        results = list(bounded)
    assert len(results) == 8 and bounded.events[0].ended_by == "end of stream"
    assert bounded.summary.frames == 8 and bounded.summary.threshold == -1e9
