"""`vadgpu bench score` and its stage clock on a tiny synthetic object model (location + appearance terms): the
clock charges every second once and does nothing when not installed, scores are the same with it, and the bench
reports every stage of score, eval and live with shares that add up. Speed itself: docs/results/throughput.md."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest

from tests.cli_helpers import invoke, needs_export, read_csv
from vadgpu.bench.stages import OTHER, StageClock, stage, timed
from vadgpu.errors import VadgpuError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OBJECT_STAGES = {"decode", "clips", "boxes", "tube cut", "network", "tube scores", "appearance", "protocol", OTHER}
APPEARANCE_PARTS = {"appearance.backbone", "appearance.pool", "appearance.bank"}


def test_without_a_clock_the_marks_do_nothing():
    assert stage("network") is stage("decode")  # one shared no-op context, nothing made per call
    items = [1, 2, 3]
    assert timed(items, "decode") is items
    with stage("network"):
        pass


def test_the_clock_charges_each_second_to_one_stage():
    started = time.perf_counter()
    with StageClock() as clock:
        time.sleep(0.02)  # other
        with stage("outer"):
            time.sleep(0.03)
            with stage("inner"):  # pauses "outer"
                time.sleep(0.04)
            with pytest.raises(ValueError), stage("inner"):
                raise ValueError("a stage that fails still ends")
        assert [x for x in timed(iter([1, 2]), "reading")] == [1, 2]
    wall = time.perf_counter() - started
    seconds = clock.seconds
    assert seconds["outer"] == pytest.approx(0.03, abs=0.015)
    assert seconds["inner"] == pytest.approx(0.04, abs=0.015)
    assert seconds[OTHER] == pytest.approx(0.02, abs=0.015)
    assert clock.total == pytest.approx(wall, rel=0.02)  # every second once, nothing lost
    assert clock.calls == {"outer": 1, "inner": 2, "reading": 3}  # the third next() ends the iterator
    assert stage("x") is stage("y")  # uninstalled on leaving


def test_scores_are_the_same_with_the_clock_installed(calibrated_model, object_run, tmp_path, monkeypatch):
    from vadgpu.evaluation.runner import score_input
    from vadgpu.scoring.protocol import Protocol

    base, root, run, runner, cli = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    video = root / "testing" / "videos" / "01.avi"
    plain = score_input(video, calibrated_model, out=tmp_path / "plain", protocol=Protocol(score=None),
                        progress=False)
    with StageClock() as clock:
        clocked = score_input(video, calibrated_model, out=tmp_path / "clocked", protocol=Protocol(score=None),
                              progress=False)
    assert OBJECT_STAGES | APPEARANCE_PARTS | {"prepare", "writing", "model load"} <= set(clock.seconds)
    np.testing.assert_array_equal(clocked.video.raw, plain.video.raw)
    np.testing.assert_array_equal(clocked.video.score, plain.video.score)
    assert (tmp_path / "clocked" / "objects.csv").read_bytes() == (tmp_path / "plain" / "objects.csv").read_bytes()


def _check_mode(summary: dict, stages: set[str]) -> None:
    table = summary["stages"]
    assert stages <= set(table), set(table)
    top = {name: row for name, row in table.items() if "." not in name}
    assert sum(row["share"] for row in top.values()) == pytest.approx(1.0, abs=0.01)
    assert sum(row["seconds"] for row in top.values()) == pytest.approx(summary["seconds"], rel=0.02)
    parts = [row["seconds"] for name, row in table.items() if name.startswith("appearance.")]
    assert sum(parts) <= table["appearance"]["seconds"] + 1e-3
    assert summary["frames"] > 0 and summary["frames_per_s"] > 0 and summary["startup_s"] > 0
    assert "model load" not in table  # start-up, apart
    for run in summary["runs"]:
        # the stage times add up to what was measured outside the clock
        assert sum(run["stages"].values()) == pytest.approx(run["wall_s"], rel=0.03)
        assert run["seconds"] == pytest.approx(run["wall_s"] - run["startup_s"], abs=1e-3)
    assert summary["first_run"]["frames"] > 0  # the warm-up run, reported apart
    assert summary["memory"]["host_rss_peak_mib"] > 0 and summary["decode_limit_frames_per_s"] > 0


def test_bench_score_reports_every_stage_of_every_mode(calibrated_model, object_run, tmp_path, monkeypatch):
    base, root, run, runner, cli = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    out = tmp_path / "results" / "score.json"
    extra = root / "testing" / "videos" / "02.avi"  # an input beside the dataset's video
    code, output = invoke(["bench", "score", str(extra), "--checkpoint", str(calibrated_model), "--dataset",
                           "synthetic", "--root", str(root), "--videos", "01", "--out", str(out), "--markdown",
                           "--no-progress"])
    assert code == 0, output
    result = json.loads(out.read_text())
    assert list(result["modes"]) == ["score", "eval", "live"]
    assert result["settings"]["videos"] == ["01", "02"]
    modes = result["modes"]
    _check_mode(modes["score"], OBJECT_STAGES | APPEARANCE_PARTS | {"prepare", "writing"})
    _check_mode(modes["eval"], OBJECT_STAGES | APPEARANCE_PARTS | {"prepare", "writing"})
    _check_mode(modes["live"], OBJECT_STAGES | APPEARANCE_PARTS)
    assert [r["label"] for r in modes["score"]["runs"]] == ["01", "02"] == [r["label"] for r in modes["live"]["runs"]]
    assert modes["eval"]["frames"] == modes["score"]["runs"][0]["frames"] == 40  # the named test video alone
    assert result["stages"] == {mode: summary["stages"] for mode, summary in modes.items()}
    for reader in ("clip loader", "frame reader"):
        assert result["decode_limit"][reader]["frames_per_s"] > 0
    assert result["startup"]["imports_s"] > 0 and set(result["startup"]["model_load_s"]) == set(modes)
    system = result["system"]
    assert system["device"].startswith("cpu") and system["versions"]["torch"]
    assert len(system["load_average_start"]) == len(system["load_average_end"]) == 3
    assert system["source"] is None or len(system["source"]["commit"]) == 40
    for text in ("total (start-up apart)", "  - backbone", "decode limit, clip loader", "| stage | score s",
                 f"wrote {out}"):
        assert text in output, text
    # its own record is replaced by the next run; anything else at --out is refused before measuring
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"mine": 1}')
    code, output = invoke(["bench", "score", "--checkpoint", str(calibrated_model), "--dataset", "synthetic",
                           "--root", str(root), "--out", str(foreign)])
    assert code != 0 and "not a benchmark result written by vadgpu" in output and foreign.read_text() == '{"mine": 1}'


def test_bench_score_help_and_bad_options(object_run, tmp_path):
    base, root, run, runner, cli = object_run
    code, output = invoke(["bench", "score", "--help"])
    assert code == 0
    for text in ("--modes", "--videos", "--score-boxes", "--eval-boxes", "--repeats", "--no-warmup", "ped2-ddl",
                 "frames/s if it alone ran", "vadgpu bench score --dataset ped2"):
        assert text in output, text
    out = ["--out", str(tmp_path / "r.json")]
    for args, message in ((["--modes", "eval", "--checkpoint", str(run / "model.pt"), str(root)],
                           "--dataset and --root"),
                          (["--modes", "score,later", "--dataset", "synthetic", "--root", str(root)], "later"),
                          (["--dataset", "synthetic", "--root", str(root), "--videos", "01,99"], "no test video 99"),
                          (["--checkpoint", str(run / "model.pt")], "nothing to score")):
        code, output = invoke(["bench", "score", *args, *out])
        assert code == 1 and "Error: " in output and message in output, output
    assert not (tmp_path / "r.json").exists()


@needs_export
def test_bench_score_times_an_onnx_model_under_onnxruntime(calibrated_model, object_run, tmp_path, monkeypatch):
    base, root, run, runner, cli = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    onnx_file = tmp_path / "model.onnx"
    code, output = invoke(["export", "--checkpoint", str(calibrated_model), "--format", "onnx", "--out",
                           str(onnx_file)])
    assert code == 0, output
    out = tmp_path / "onnx.json"
    dataset = ["--dataset", "synthetic", "--root", str(root), "--videos", "01"]
    code, output = invoke(["bench", "score", "--model", str(onnx_file), *dataset, "--modes", "score,live",
                           "--out", str(out), "--no-progress"])
    assert code == 0, output
    result = json.loads(out.read_text())
    settings = result["settings"]
    assert settings["runtime"] == "onnxruntime" and settings["model_file"] == str(onnx_file)
    assert settings["checkpoint"] is None and settings["model"]["appearance"]
    assert result["system"]["versions"]["onnxruntime"]
    _check_mode(result["modes"]["score"], OBJECT_STAGES | APPEARANCE_PARTS | {"prepare", "writing"})
    _check_mode(result["modes"]["live"], OBJECT_STAGES | APPEARANCE_PARTS)
    assert "onnxruntime" in output and str(onnx_file) in output
    from vadgpu.bench.score_report import format_summary

    assert "| score, 01, onnxruntime | live, 01, onnxruntime |" in format_summary([result])
    # the scores of the torch path within the export's tolerance, through the bench's own score runs
    from vadgpu.bench.score import ScoreBench, ScoreBenchSettings

    scored = {}
    for key, settings in (("torch", ScoreBenchSettings(checkpoint=str(calibrated_model))),
                          ("onnx", ScoreBenchSettings(model_file=str(onnx_file)))):
        bench = ScoreBench(replace(settings, dataset="synthetic", root=str(root), videos=("01",), modes=("score",)))
        bench.scratch = tmp_path / key
        bench.scratch.mkdir()
        assert bench._score_one(bench.videos[0], None) == 40
        scored[key] = [float(r["raw_score"]) for r in read_csv(next(bench.scratch.glob("score-*")) / "scores.csv")]
    np.testing.assert_allclose(scored["onnx"], scored["torch"], rtol=1e-4, atol=1e-4)  # float32 rounding
    for args, message in ((["--modes", "score,eval"], "--modes eval takes a weights file"),
                          (["--modes", "score", "--precision", "bf16"], "float32 under onnxruntime"),
                          (["--modes", "score", "--checkpoint", str(calibrated_model)], "not both")):
        code, output = invoke(["bench", "score", "--model", str(onnx_file), *dataset, *args, "--out",
                               str(tmp_path / "r.json")])
        assert code == 1 and message in output, output
    assert not (tmp_path / "r.json").exists()


def test_evaluate_takes_named_test_videos_and_refuses_unknown_ones():
    from types import SimpleNamespace

    from vadgpu.evaluation.runner import named_videos

    videos = [SimpleNamespace(name=n) for n in ("01", "02", "03")]
    assert [v.name for v in named_videos(videos, ["03", "01"], "here")] == ["01", "03"]  # the split's order
    with pytest.raises(VadgpuError, match="here: no test video named 07 .it has 01, 02, 03"):
        named_videos(videos, ["07"], "here")


@pytest.mark.gpu
def test_bench_score_on_cuda(calibrated_model, object_run, tmp_path, monkeypatch):
    base, root, run, runner, cli = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    out = tmp_path / "cuda.json"
    code, output = invoke(["bench", "score", "--checkpoint", str(calibrated_model), "--dataset", "synthetic",
                           "--root", str(root), "--videos", "01", "--device", "cuda", "--out", str(out),
                           "--no-progress"])
    assert code == 0, output
    result = json.loads(out.read_text())
    assert result["settings"]["device"].startswith("cuda") and "gpu" in result["system"]
    for summary in result["modes"].values():
        assert summary["memory"]["gpu_torch_peak_mib"] > 0
        assert {"network", "appearance", "tube cut"} <= set(summary["stages"])
