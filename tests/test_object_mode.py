"""Object mode and centre-frame prediction: the models' predict mode, the frame score over objects, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from vadgpu.errors import VadgpuError
from vadgpu.models.registry import build_model

PREDICT_PRESETS = ["ddl-objects-cpu", "dualpath-objects-cpu"]


@pytest.mark.parametrize("preset", PREDICT_PRESETS)
def test_predict_mode_never_sees_the_centre_frame(preset):
    torch.manual_seed(0)
    model = build_model(preset).eval()
    cfg = model.config
    clips = torch.rand(3, cfg.channels, cfg.temporal, *cfg.size)
    changed = clips.clone()
    changed[:, :, cfg.temporal // 2] = torch.rand_like(changed[:, :, 0])
    with torch.no_grad():
        target, out = model.reconstruct(clips)
        target2, out2 = model.reconstruct(changed)
    assert torch.equal(out, out2)  # the prediction ignores the centre ...
    assert not torch.equal(target, target2)  # ... which is still the target it is scored against
    neighbour = clips.clone()
    neighbour[:, :, 0] = torch.rand_like(neighbour[:, :, 0])
    with torch.no_grad():
        assert not torch.equal(model.reconstruct(neighbour)[1], out)  # the neighbours are seen


def test_reconstruct_mode_sees_the_centre_frame():
    model = build_model("ddl-objects-cpu", target="reconstruct").eval()
    cfg = model.config
    clips = torch.rand(2, 1, cfg.temporal, *cfg.size)
    changed = clips.clone()
    changed[:, :, cfg.temporal // 2] = 0
    with torch.no_grad():
        assert not torch.equal(model.reconstruct(clips)[1], model.reconstruct(changed)[1])


def test_predict_needs_an_odd_clip_of_three_or_more():
    with pytest.raises(VadgpuError, match="temporal"):
        build_model("ddl-objects-cpu", temporal=4)
    with pytest.raises(VadgpuError, match="clips"):
        build_model("ddl-objects-cpu", clips="tubes")
    with pytest.raises(VadgpuError, match="target"):
        build_model("ddl-objects-cpu", target="forecast")
    with pytest.raises(VadgpuError, match="square"):
        build_model("ddl-objects-cpu", size=(32, 48))


def test_frame_score_is_the_max_over_its_objects_and_empty_frames_take_the_video_minimum():
    from vadgpu.scoring.tubes import TubeScorer, fill_frames_without_objects
    from vadgpu.objects.tubes import FrameBoxes

    class MeanModel(torch.nn.Module):
        """'Reconstructs' the centre frame as zeros: the tube's MSE is the mean square of its pixels."""

        def reconstruct(self, clips):
            centre = clips[:, :, clips.shape[2] // 2]
            return centre, torch.zeros_like(centre)

    clips = torch.zeros(3, 1, 3, 40, 40)
    clips[0, :, :, 0:14, 0:14] = 1.0  # bright object in the top-left corner of clip 0
    clips[0, :, :, 26:40, 26:40] = 0.5
    # clip 0: two boxes (top-left bright, bottom-right dim); clip 1: one box on black; clip 2: none
    boxes = FrameBoxes(np.array([0, 0, 0]), np.array([0, 0, 1]),
                       np.array([[0.0, 0.0, 0.25, 0.25], [0.75, 0.75, 1.0, 1.0], [0.4, 0.4, 0.6, 0.6]]), [3])
    scorer = TubeScorer(boxes, window=10, size=10, score="mse", mix_weight=0.5)
    raw = scorer(MeanModel(), clips, torch.tensor([0, 0, 0]), torch.tensor([0, 1, 2])).numpy()
    assert raw[0] == pytest.approx(1.0) and raw[1] == pytest.approx(0.0) and raw[2] == -np.inf
    filled, empty = fill_frames_without_objects(raw)
    assert empty == 1 and filled[2] == pytest.approx(0.0)
    video, frame, box, raw_tube, score = scorer.records[0]
    assert frame.tolist() == [0, 0, 1] and score.tolist() == pytest.approx([1.0, 0.25, 0.0])
    assert raw_tube.tolist() == score.tolist()  # no location statistics: the score is the raw one


def test_object_mode_trains_and_evaluates_end_to_end(object_run, monkeypatch):
    import json

    base, root, run, runner, cli = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    result = runner.invoke(cli, ["eval", "--run", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "eval" / "metrics.json").read_text())
    assert record["protocol"]["score"] == "mse"  # the object models' defaults
    assert record["protocol"]["tube_norm"] == "location" and record["protocol"]["norm"] == "none"
    objects = record["objects"]
    assert objects["calibration"]["from"].startswith("the weights file")
    window = yaml.safe_load((run / "config.yaml").read_text())["window"]  # `auto`, resolved by training
    assert objects["calibration"]["window"] == window and objects["calibration"]["tube_size"] == 32
    assert objects["tubes_scored"] > 0 and objects["calibration"]["appearance"] is None
    assert objects["calibration"]["tube_score"] == "location z of the tube's mse"
    rows = (run / "eval" / "objects" / "01.csv").read_text().splitlines()
    assert rows[0] == "frame,rank,score,raw_score,x1,y1,x2,y2" and len(rows) > 1
    frames = [int(r.split(",")[0]) for r in rows[1:]]
    assert frames == sorted(frames)
    # scoring an unlabelled video runs background subtraction over it first
    video = root / "testing" / "videos" / "02.avi"
    result = runner.invoke(cli, ["score", str(video), "--checkpoint", str(run / "model.pt"),
                                 "--out", str(base / "scored"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (base / "scored" / "objects.csv").is_file() and (base / "scored" / "scores.csv").is_file()
    # a training checkpoint has no location statistics: a notice, and the raw tube scores
    result = runner.invoke(cli, ["score", str(video), "--checkpoint", str(run / "checkpoints" / "last.pt"),
                                 "--out", str(base / "scored-last"), "--no-progress"])
    assert result.exit_code == 0 and "--tube-norm none" in result.output, result.output
    result = runner.invoke(cli, ["score", str(video), "--checkpoint", str(run / "checkpoints" / "last.pt"),
                                 "--tube-norm", "location", "--out", str(base / "scored-x"), "--no-progress"])
    assert result.exit_code != 0 and "no location statistics" in result.output, result.output


@pytest.mark.av
def test_object_heatmap_video_draws_every_frame(object_run, monkeypatch):
    import av

    base, root, run, runner, cli = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    video = root / "testing" / "videos" / "02.avi"
    result = runner.invoke(cli, ["score", str(video), "--checkpoint", str(run / "model.pt"), "--heatmap-mp4",
                                 "--out", str(base / "scored-heat"), "--no-progress"])
    assert result.exit_code == 0, result.output
    with av.open(str(base / "scored-heat" / "02-heatmap.mp4")) as container:  # the scored boxes, every frame
        assert sum(1 for _ in container.decode(video=0)) == 40


def test_box_cache_of_another_dataset_or_detector_is_refused(object_run, monkeypatch, tmp_path):
    import yaml

    base, root, run, runner, cli = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    trained = yaml.safe_load((run / "config.yaml").read_text())["boxes"]
    with np.load(trained, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez(tmp_path / "ped2.npz", **{**arrays, "dataset": np.array("ped2")})
    result = runner.invoke(cli, ["eval", "--run", str(run), "--no-progress", "--boxes", str(tmp_path / "ped2.npz"),
                                 "--out", str(tmp_path / "e1")])
    assert result.exit_code != 0 and "ped2" in result.output and "synthetic" in result.output
    np.savez(tmp_path / "yolo.npz", **{**arrays, "detector": np.array("darknet:yolov3-tiny")})
    result = runner.invoke(cli, ["eval", "--run", str(run), "--no-progress", "--boxes", str(tmp_path / "yolo.npz"),
                                 "--out", str(tmp_path / "e2")])
    assert result.exit_code != 0 and "darknet:yolov3-tiny" in result.output and "bgsub" in result.output
