"""The torch loader (`--loader torch`) and runs without the optional packages: H.264 read frame-exact by OpenCV,
the loader choice and its messages, the OpenCV probe, and a whole train + eval + score in an interpreter where
neither DALI nor PyAV can be imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from clip_media import FRAMES, H, W, frame_image

from vadgpu.data.probe import probe_video, probe_video_opencv
from vadgpu.errors import VadgpuError
from vadgpu.pipelines import choose
from vadgpu.pipelines.choose import open_loader, resolve_loader
from vadgpu.pipelines.clip_index import ClipSpec
from vadgpu.pipelines.loader import to_device

REPO = Path(__file__).resolve().parents[1]


def _truth(index: int) -> torch.Tensor:
    return torch.from_numpy(frame_image(index)).permute(2, 0, 1).float() / 255.0  # (3, H, W)


@pytest.mark.parametrize("train", [True, False])
def test_torch_loader_reads_h264_frame_exact(media, train):
    """Each clip frame is nearer its own source frame than either neighbour (the pattern moves 5 px a frame), so a
    seek that lands one frame off fails; H.264 has inter frames, which OpenCV must decode from a key frame."""
    spec = ClipSpec(3, (H, W), 3)
    loader = open_loader("torch", media["h264"], spec, batch_size=4, device=torch.device("cpu"), train=train,
                         seed=1, workers=0)
    n = FRAMES["h264"]
    checked = 0
    for batch in loader:
        for clip, centre in zip(batch.clips, batch.frame.tolist()):
            for t, index in enumerate(np.clip(np.arange(centre - 1, centre + 2), 0, n - 1)):
                got = clip[:, t]
                err = {d: float((got - _truth(index + d)).abs().mean()) for d in (-1, 0, 1) if 0 <= index + d < n}
                assert min(err, key=err.get) == 0, (centre, t, err)
                checked += 1
    assert checked == 3 * (n if not train else n - 2)


def test_resolve_loader(monkeypatch):
    assert resolve_loader("torch") == ("torch", None)
    assert resolve_loader("auto")[0] == ("dali" if choose.available("nvidia.dali") else "torch")
    with pytest.raises(VadgpuError, match="--loader 'opencv'"):
        resolve_loader("opencv")
    monkeypatch.setattr(choose, "available", lambda module: False)
    kind, notice = resolve_loader(None)
    assert kind == "torch" and "DALI is not installed" in notice and "nvidia-dali" in notice


@pytest.mark.parametrize("kind", ["avi", "vp9", "h264"])
def test_opencv_probe_agrees_with_pyav(media, kind):
    path = media[kind][0].decode_path
    pyav, opencv = probe_video(path, decode=True), probe_video_opencv(path)
    assert (opencv.codec, opencv.num_frames, opencv.width, opencv.height) == \
           (pyav.codec, pyav.num_frames, pyav.width, pyav.height) == (pyav.codec, FRAMES[kind], W, H)
    assert opencv.fps == pytest.approx(pyav.fps)


def test_opencv_probe_names_a_bad_file(tmp_path):
    bad = tmp_path / "fake.mp4"
    bad.write_bytes(b"\0" * 1000)
    with pytest.raises(VadgpuError, match="fake.mp4"):
        probe_video_opencv(bad)


def test_to_device_on_the_cpu_is_the_same_data():
    data = np.arange(6, dtype=np.int64)
    out = to_device(data, torch.device("cpu"))
    assert out.dtype == torch.int64 and out.tolist() == data.tolist()


@pytest.mark.gpu
def test_to_device_copies_without_a_host_sync():
    data = np.arange(1000, dtype=np.int64)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = to_device(data, torch.device("cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.is_cuda and out.cpu().tolist() == data.tolist()


# An interpreter where `import nvidia.dali` and `import av` fail, as on a machine that has neither.
BLOCKER = textwrap.dedent("""
    import sys

    for name in ("nvidia.dali", "av"):
        sys.modules[name] = None  # how a missing package looks to import and to importlib.util.find_spec
""")


def test_train_eval_score_without_dali_and_pyav(synth, tmp_path):
    root, _, _ = synth
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO)]),
           "VADGPU_CACHE": str(tmp_path / "cache")}

    def vadgpu(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vadgpu", *args], env=env, capture_output=True, text=True,
                              timeout=300)

    probe = subprocess.run([sys.executable, "-c", "import av"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0  # the blocker works
    assert vadgpu("--help").returncode == 0
    run = tmp_path / "run"
    # ddl-tiny-cpu blends boxes, so this also makes the background-subtraction cache with OpenCV decoding
    trained = vadgpu("train", "--dataset", "synthetic", "--root", str(root), "--model", "ddl", "--preset",
                     "ddl-tiny-cpu", "--epochs", "1", "--max-steps", "2", "--out", str(run), "--no-progress")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "torch loader" in trained.stdout + trained.stderr
    evaluated = vadgpu("eval", "--run", str(run), "--no-progress")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert "micro AUC" in evaluated.stdout and (run / "eval" / "metrics.json").is_file()
    video = sorted((root / "testing" / "videos").glob("*.avi"))[0]
    scored = vadgpu("score", str(video), "--checkpoint", str(run / "model.pt"), "--out", str(tmp_path / "scores"),
                    "--no-progress")
    assert scored.returncode == 0, scored.stdout + scored.stderr
    assert (tmp_path / "scores" / "scores.csv").is_file()
    asked = vadgpu("train", "--dataset", "synthetic", "--root", str(root), "--model", "ddl", "--preset",
                   "ddl-tiny-cpu", "--loader", "dali", "--out", str(tmp_path / "run2"), "--no-progress")
    assert asked.returncode == 1 and "needs NVIDIA DALI" in asked.stderr and "Traceback" not in asked.stderr
    heatmap = vadgpu("score", str(video), "--checkpoint", str(run / "model.pt"), "--out", str(tmp_path / "s2"),
                     "--heatmap-mp4", "--no-progress")
    assert heatmap.returncode == 1 and "needs PyAV" in heatmap.stderr and "pip install av" in heatmap.stderr


@pytest.mark.av
def test_prepare_for_the_torch_loader_keeps_h264(tmp_path):
    """The torch loader's decoder reads H.264, so its prepare backend ("opencv") transcodes nothing here, and its
    cache is its own (DALI's CPU backend transcodes the same files to MJPEG)."""
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared
    from vadgpu.data.synth import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "synth", seed=0, train_videos=1, test_videos=1, frames=20,
                                  frame_size=(48, 64), formats=("mp4",))
    dataset = open_dataset("synthetic", root, variant="mp4")
    prepared = load_prepared(dataset, "cpu", cache=tmp_path / "cache", progress=False, loader="torch")
    assert prepared.backend == "opencv" and prepared.transcoded == 0
    assert {v.codec for v in prepared.videos} == {"h264"}
    assert load_prepared(dataset, "cpu", cache=tmp_path / "cache", progress=False).transcoded == 2


@pytest.mark.av
@pytest.mark.parametrize("codec", ["h264", "mjpeg"])
def test_pack_keeps_every_frame_and_label_in_the_generic_layout(tmp_path, codec):
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.pack import pack_dataset
    from vadgpu.data.synth import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "synth", seed=0, train_videos=1, test_videos=1, frames=20,
                                  frame_size=(48, 64), formats=("frames",))
    source = open_dataset("synthetic", root, variant="frames")
    result = pack_dataset(source, tmp_path / "packed", codec=codec, progress=False)
    packed = open_dataset("generic", result.out)
    assert [v.name for v in packed.train] == [v.name for v in source.train]
    assert result.frames == 40 and result.videos == 2
    for video, original in zip(packed.test, source.test):
        probe = probe_video_opencv(video.path)
        assert probe.num_frames == 20 and (probe.width, probe.height) == (64, 48)
        assert np.array_equal(video.labels, original.labels)
    with pytest.raises(VadgpuError, match="exists"):
        pack_dataset(source, result.out, progress=False)
    assert not list(tmp_path.glob(".packed*"))  # no temporary left beside it
