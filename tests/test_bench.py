"""`vadgpu bench throughput` plumbing on a tiny synthetic set (not speed): every stage runs and reports, the
decode limit decodes each frame once, loaders are compared on the same clips, ratios/targets are computed from
the stages, bad options are clear errors. Speed itself is measured by benchmarks/bench_throughput.py."""

from __future__ import annotations

import json
import time

import pytest
import torch
from click.testing import CliRunner

from vadgpu.bench import decode
from vadgpu.bench.report import format_summary
from vadgpu.bench.throughput import STAGES, ThroughputSettings, ratios_and_targets, run_throughput
from vadgpu.bench.timing import measure_rate
from vadgpu.cli.main import cli
from vadgpu.data.catalog import open_dataset
from vadgpu.data.prepare import load_prepared
from vadgpu.data.synth import make_synthetic_dataset
from vadgpu.errors import VadgpuError

pytestmark = pytest.mark.dali  # the DALI pipeline stages; without DALI the torch-loader rows are in test_torch_loader

FAST = ["--preset", "ddl-tiny-cpu", "--batch-size", "4", "--seconds", "0.05", "--repeats", "2", "--warmup", "0",
        "--workers", "1", "--no-progress"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench") / "synth"
    make_synthetic_dataset(root, train_videos=2, test_videos=1, frames=24, frame_size=(48, 64),
                           formats=("avi", "frames"))
    return root


def _same_frames(same: dict, tolerance: float = 3 / 255) -> None:
    """The pipeline's first batch holds the baseline's frames: a grey level or two apart at most, and far closer
    than the same batches one frame apart (neighbouring Ped2 frames at 32x32 differ by 0.04-0.16 at most, so a
    bound of 0.2 on the largest difference would pass a wrong frame)."""
    assert same["max_abs_diff"] <= tolerance, same
    assert same["shifted_max_abs_diff"] > 4 * max(same["max_abs_diff"], 2 / 255), same


def _run(args):
    result = CliRunner().invoke(cli, ["bench", "throughput", *args])
    return result


def test_every_stage_reports_on_mjpeg_video(synth, tmp_path):
    out = tmp_path / "r.json"
    result = _run(["--dataset", "synthetic", "--root", str(synth), "--variant", "avi", "--cache",
                   str(tmp_path / "cache"), "--json", str(out), "--markdown", *FAST])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert list(data["stages"]) == list(STAGES)
    for stage in data["stages"].values():
        rate = stage["rate"]
        assert len(rate["repeats"]) == 2 and 0 < rate["min"] <= rate["median"] <= rate["max"]
        memory = stage["memory"]
        assert memory["host_rss_peak_mib"] > 0 and memory["host_rss_scope"] == "stage"  # Linux: reset per stage
        # the peak is read after the stage, the start before it; their page counts can differ by a few pages
        assert memory["host_rss_peak_mib"] >= memory["host_rss_start_mib"] - 1 > 0
    stages = data["stages"]
    dec = stages["decode"]
    assert dec["unit"] == "frames/s" and dec["decoder"].startswith("PyAV")
    assert dec["rate"]["median"] == max(dec["pool"]["median"], dec["one_process"]["median"])  # the faster one
    # training clips only: the baseline decodes all T frames of every clip; DALI decodes runs once
    assert stages["baseline"]["frames_decoded_per_clip"] == 3.0
    assert 1.0 <= stages["pipeline"]["frames_decoded_per_clip"] < 3.0
    same = stages["pipeline"]["same_as_baseline"]
    assert same["same_clips"] and same["shape"] == [4, 1, 3, 32, 32]
    _same_frames(same)
    assert 0 < stages["train"]["kernels_share_of_step"] < 1 and stages["train"]["parameters"] > 0
    assert set(data["ratios"]) == {"pipeline/baseline", "pipeline+clips/baseline+clips",
                                   "pipeline+kernels/baseline+kernels",
                                   "pipeline clips/s / decode-limit frames/s",
                                   "pipeline decoded frames/s / decode-limit frames/s"}
    assert any(k.startswith("pipeline/baseline >= 1.5 at T=3") for k in data["targets"])
    system = data["system"]
    assert system["cores"] >= 1 and system["cpu"] and system["device"].startswith("cpu")
    assert {"dali", "torch", "cupy"} <= set(system["versions"]) and "load_average_end" in system
    assert data["settings"]["format"] == "mjpeg" and data["settings"]["spec"]["temporal"] == 3
    assert "vadgpu DALI pipeline" in result.output and "| stage |" in result.output and "ratio " in result.output
    assert "goal" not in result.output and "met" not in result.output  # what a user reads: measured ratios only
    row = format_summary([data]).splitlines()[2]
    assert row.startswith("| synthetic | T=3 32x32 C=1 |") and "3.0 / " in row


def test_frame_folders_decode_limit_and_loaders(synth, tmp_path):
    settings = ThroughputSettings(dataset="synthetic", root=str(synth), variant="frames", cache=str(tmp_path),
                                  preset="ddl-tiny-cpu", temporal=5, batch_size=4, seconds=0.05, repeats=1,
                                  warmup=0, workers=1, stages=("decode", "baseline", "pipeline"), progress=False)
    data = run_throughput(settings)
    assert data["stages"]["decode"]["decoder"] == "cv2.imdecode"
    assert data["stages"]["baseline"]["frames_decoded_per_clip"] == 5.0
    assert data["stages"]["pipeline"]["frames_decoded_per_clip"] < 5.0
    assert data["settings"]["spec"]["temporal"] == 5 and "train" not in data["stages"]
    assert not data["targets"] or all("T=5" not in k for k in data["targets"])  # no target for T = 5


def test_object_preset_is_measured_as_it_trains(synth, tmp_path, monkeypatch):
    """An object preset: frames at the videos' size, the dataset's box cache made as training makes it, the window
    resolved from it, the preset's tubes per clip; the train stage times the tube cutting alone, and the result
    goes to the object-mode table, not the loaders' one."""
    from vadgpu.bench.report import format_object_summary, format_table, is_objects

    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "vadgpu-cache"))
    settings = ThroughputSettings(dataset="synthetic", root=str(synth), variant="frames", cache=str(tmp_path),
                                  preset="ddl-objects-cpu", batch_size=2, seconds=0.05, repeats=1, warmup=0,
                                  workers=1, stages=("pipeline+kernels", "train"), progress=False)
    data = run_throughput(settings)
    s, train = data["settings"], data["stages"]["train"]
    assert tuple(s["spec"]["size"]) == (48, 64) and s["spec"]["temporal"] == 5 and is_objects(data)
    assert s["tubes_per_clip"] == 4 and 16 <= s["window"] <= 48 and s["boxes"].endswith(".npz")
    assert train["tubes_only"]["median"] > train["step_only"]["median"] > 0
    assert 0 < train["tubes_share_of_step"] < 1 and 0 < train["kernels_share_of_step"] < 1
    assert data["stages"]["pipeline+kernels"]["rate"]["median"] > 0
    assert "tube cutting alone" in format_table(data)
    assert format_object_summary([data]).splitlines()[-1].startswith("| synthetic | ddl-objects-cpu | 4 per clip, ")


def test_decode_limit_decodes_each_frame_once(synth, tmp_path):
    for variant in ("avi", "frames"):
        prepared = load_prepared(open_dataset("synthetic", synth, variant=variant), "cpu", cache=tmp_path / variant,
                                 progress=False)
        jobs, is_folder = decode.decode_jobs(prepared.train)
        assert is_folder == (variant == "frames")
        stream = decode.serial_stream(jobs, is_folder, channels=3)
        assert sum(next(stream) for _ in jobs) == sum(v.num_frames for v in prepared.train) == 48


def test_undecodable_frame_names_the_file(tmp_path):
    bad = tmp_path / "000.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(VadgpuError, match="000.jpg: OpenCV cannot decode"):
        decode.decode_job((str(bad),), is_folder=True, channels=1)
    with pytest.raises(VadgpuError, match="000.jpg: PyAV cannot decode"):
        decode.decode_job((str(bad),), is_folder=False, channels=1)


def test_measure_rate_counts_units_per_second():
    def stream():
        while True:
            time.sleep(0.01)
            yield 5

    rate = measure_rate(stream(), seconds=0.1, repeats=3, warmup=0.02)
    assert len(rate.repeats) == 3 and rate.units >= 3 * 5 * 2
    assert 100 < rate.median <= 500  # 5 units per >= 10 ms
    with pytest.raises(VadgpuError, match="ended early"):
        measure_rate(iter([1, 1]), seconds=10, repeats=1, warmup=0)


def test_ratios_and_targets():
    def stage(median):
        return {"rate": {"median": median}}

    stages = {"decode": stage(1000.0), "baseline": stage(100.0),
              "pipeline": {**stage(400.0), "frames_decoded_per_clip": 1.5},
              "baseline+kernels": stage(90.0), "pipeline+kernels": stage(300.0),
              "train": {**stage(10.0), "kernels_share_of_step": 0.08}}
    ratios, targets = ratios_and_targets(stages, temporal=16)
    assert ratios == {"pipeline/baseline": 4.0, "pipeline+kernels/baseline+kernels": 3.333,
                      "pipeline clips/s / decode-limit frames/s": 0.4,
                      "pipeline decoded frames/s / decode-limit frames/s": 0.6}
    assert targets["pipeline/baseline >= 3.0 at T=16"] == {"value": 4.0, "met": True}
    assert targets["pipeline/decode limit >= 0.7"]["met"] is False
    assert targets["pipeline decoded frames/decode limit >= 0.5"] == {"value": 0.6, "met": True}
    assert targets["kernels share of a step <= 0.05"] == {"value": 0.08, "met": False}


@pytest.mark.parametrize("args, message", [
    (["--stages", "decode,warp"], "--stages decode,warp"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--seconds", "0"], "--seconds 0"),
    (["--preset", "nope"], "unknown model preset 'nope'"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "tpu"], "--device"),
])
def test_bad_options_are_clear_errors(synth, tmp_path, args, message):
    result = _run(["--dataset", "synthetic", "--root", str(synth), "--variant", "avi", "--cache",
                   str(tmp_path), *FAST, *args])
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_json_path_that_is_a_folder_is_an_error(synth, tmp_path):
    result = _run(["--dataset", "synthetic", "--root", str(synth), "--json", str(tmp_path), *FAST])
    assert result.exit_code == 2 and "--json" in result.output and "is a directory" in result.output


def test_missing_root_is_an_error(tmp_path):
    result = _run(["--dataset", "synthetic", "--root", str(tmp_path / "absent"), *FAST])
    assert result.exit_code == 1 and "absent" in result.output and "Traceback" not in result.output


@pytest.mark.shared
def test_real_ped2_pipeline_matches_baseline(ped2_root, tmp_path):
    settings = ThroughputSettings(dataset="ped2", root=str(ped2_root), cache=str(tmp_path), preset="ddl-tiny-cpu",
                                  batch_size=4, seconds=0.05, repeats=1, warmup=0, workers=1,
                                  stages=("baseline", "pipeline"), progress=False)
    data = run_throughput(settings)
    same = data["stages"]["pipeline"]["same_as_baseline"]
    assert same["same_clips"]
    _same_frames(same)
    assert data["settings"]["frames"] == 2550 and data["settings"]["format"] == "jpeg"


@pytest.mark.gpu
def test_cuda_path_reports_gpu_memory_and_decodes_the_cpu_frames(synth, tmp_path):
    # jpg frames at their own size: nvJPEG against libjpeg-turbo, no resize filter between them (on CUDA DALI
    # resizes with an antialiased linear filter, OpenCV with INTER_AREA: test_loader compares those)
    settings = ThroughputSettings(dataset="synthetic", root=str(synth), variant="frames", cache=str(tmp_path),
                                  device="cuda", preset="ddl-tiny-cpu", size=(48, 64), batch_size=4, seconds=0.05,
                                  repeats=1, warmup=0, stages=("baseline", "pipeline", "pipeline+kernels", "train"),
                                  progress=False)
    data = run_throughput(settings)
    assert data["system"]["device"].startswith("cuda") and "gpu" in data["system"]
    assert all(s["memory"]["gpu_torch_peak_mib"] > 0 for k, s in data["stages"].items() if k != "baseline")
    assert data["stages"]["pipeline"]["frames_decoded_per_clip"] < 3.0
    same = data["stages"]["pipeline"]["same_as_baseline"]  # the GPU pipeline's clips against the CPU loader's
    assert same["same_clips"] and same["shape"] == [4, 1, 3, 48, 64]
    _same_frames(same)
    assert data["stages"]["train"]["parameters"] > 0 and 0 < data["stages"]["train"]["kernels_share_of_step"] < 1
