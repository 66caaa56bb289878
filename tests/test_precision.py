"""--precision: fp32 (the default) scores exactly as before, bf16 (bfloat16 autocast of the tube network and the
appearance backbone) close to it, in `vadgpu score`, `vadgpu eval`, live scoring and `vadgpu bench score`; the
shipped ped2-ddl model (location + appearance terms) on a short synthetic video. Speed and the AUC cost on Ped2:
docs/results/throughput.md."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.cli_helpers import invoke
from vadgpu.errors import VadgpuError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BF16_RTOL = 0.03  # bf16 against fp32, per frame; measured 0.9 % at most (0.3 % mean) on this video


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """(the video's frame folder, the VADGPU_CACHE folder, score_input of it with no --precision)."""
    from vadgpu.data.synth import make_synthetic_dataset
    from vadgpu.evaluation.runner import score_input
    from vadgpu.scoring.protocol import Protocol

    base = tmp_path_factory.mktemp("precision")
    root = make_synthetic_dataset(base / "synth", seed=0, train_videos=1, test_videos=1, frames=24,
                                  formats=("frames",))
    video = root / "testing" / "frames" / "01"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VADGPU_CACHE", str(base / "cache"))
        result = score_input(video, "ped2-ddl", out=base / "default", protocol=Protocol(score=None), progress=False)
    return video, base / "cache", result


def test_fp32_is_the_default_and_bf16_moves_the_scores_slightly(scored, tmp_path, monkeypatch):
    from vadgpu.evaluation.runner import score_input
    from vadgpu.scoring.protocol import Protocol

    video, cache, default = scored
    monkeypatch.setenv("VADGPU_CACHE", str(cache))
    code, output = invoke(["score", str(video), "--checkpoint", "ped2-ddl", "--precision", "fp32", "--out",
                           str(tmp_path / "fp32"), "--no-progress"])
    assert code == 0, output
    for name in ("scores.csv", "objects.csv"):  # byte for byte what leaving the option out gives
        assert (tmp_path / "fp32" / name).read_bytes() == (default.out / name).read_bytes()
    bf16 = score_input(video, "ped2-ddl", out=tmp_path / "bf16", protocol=Protocol(score=None), progress=False,
                       precision="bf16")
    assert not np.array_equal(bf16.video.raw, default.video.raw)  # the networks did run in bfloat16
    np.testing.assert_allclose(bf16.video.raw, default.video.raw, rtol=BF16_RTOL)
    np.testing.assert_allclose(bf16.video.score, default.video.score, rtol=BF16_RTOL)


def test_a_detector_loads_in_bf16_and_streams_close_to_fp32(scored):
    from vadgpu import Detector

    video, _, _ = scored
    raw = {}
    for precision in ("fp32", "bf16"):
        detector = Detector.load("ped2-ddl", "cpu", precision=precision)
        assert detector.precision == precision
        raw[precision] = np.array([r.raw_score for r in detector.stream(str(video), keep_images=False)])
    assert raw["fp32"].size == 24 and not np.array_equal(raw["bf16"], raw["fp32"])
    np.testing.assert_allclose(raw["bf16"], raw["fp32"], rtol=BF16_RTOL)


def test_the_option_is_documented_and_a_bad_value_is_a_clear_error(scored, tmp_path):
    from vadgpu import Detector

    for command in (["score"], ["eval"], ["bench", "score"]):
        code, output = invoke([*command, "--help"])
        assert code == 0 and "--precision [fp32|bf16]" in output, output
        assert "AVX512-BF16" in " ".join(output.split()), output  # click wraps the help text
    video, _, _ = scored
    code, output = invoke(["score", str(video), "--checkpoint", "ped2-ddl", "--precision", "fp16", "--out",
                           str(tmp_path / "bad")])
    assert code == 2 and "'fp16' is not one of 'fp32', 'bf16'" in output, output
    assert not (tmp_path / "bad").exists()
    with pytest.raises(VadgpuError, match="--precision 'fp16': choose from fp32, bf16"):
        Detector.load("ped2-ddl", "cpu", precision="fp16")
    with pytest.raises(VadgpuError, match="an ONNX model runs in float32"):
        Detector.load(tmp_path / "model.onnx", "cpu", precision="bf16")


def test_bf16_on_a_cpu_without_its_instructions_says_so_once_and_runs(monkeypatch, caplog):
    import torch

    from vadgpu import precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    precision._notice_no_bf16_cpu.cache_clear()
    with caplog.at_level(logging.WARNING, logger="vadgpu"):
        for _ in range(2):
            assert precision.check_precision("bf16", torch.device("cpu")) == "bf16"
        precision.check_precision("fp32", torch.device("cpu"))
    notices = [r.getMessage() for r in caplog.records if "no bfloat16 instructions" in r.getMessage()]
    assert len(notices) == 1 and "slower than fp32" in notices[0]
    precision._notice_no_bf16_cpu.cache_clear()


def test_eval_records_its_precision(scored, tmp_path, monkeypatch):
    import json

    video, cache, _ = scored
    monkeypatch.setenv("VADGPU_CACHE", str(cache))
    root = video.parents[2]
    code, output = invoke(["eval", "--checkpoint", "ped2-ddl", "--dataset", "synthetic", "--root", str(root),
                           "--precision", "bf16", "--out", str(tmp_path / "eval"), "--no-progress"])
    assert code == 0, output
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["precision"] == "bf16"
