"""prepare: pass-through vs transcode per backend, idempotent reruns, untouched sources, manifest, bad inputs, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vadgpu.cli.main import cli
from vadgpu.data import prepare as prepare_module
from vadgpu.data.catalog import open_dataset
from vadgpu.data.prepare import backend_for, cache_dir_for, load_prepared, prepare_dataset
from vadgpu.data.probe import probe_video
from vadgpu.data.synth import encode_video, make_synthetic_dataset
from vadgpu.errors import VadgpuError

av = pytest.importorskip("av", reason="these tests write and read videos with PyAV")
pytestmark = pytest.mark.av  # the whole module: declared, so `-m av` selects it

FRAMES = 24


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under root: proves sources are neither rewritten nor touched."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def decoded_count(path: Path) -> tuple[str, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.codec.canonical_name, sum(1 for _ in container.decode(stream))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("prep") / "synth", train_videos=2, test_videos=2,
                                  frames=FRAMES, frame_size=(48, 64))


@pytest.fixture
def generic_root(tmp_path, synth_root) -> Path:
    """A generic dataset with an MPEG-4 part 2 video (decodable by neither DALI backend) beside H.264 and frames."""
    root = tmp_path / "generic"
    (root / "training").mkdir(parents=True)
    video = np.random.default_rng(0).integers(0, 255, (FRAMES, 48, 64, 3), dtype=np.uint8)
    encode_video(video, root / "training" / "mpeg4.avi", "avi", "mpeg4", "yuv420p")
    shutil.copy(synth_root / "training/videos_h264/01.mp4", root / "training" / "h264.mp4")
    shutil.copytree(synth_root / "testing/frames/01", root / "testing" / "clip")
    return root


def test_cpu_backend_passes_mjpeg_and_frames_through(synth_root, tmp_path):
    before = tree_digest(synth_root)
    for variant, codec in (("avi", "mjpeg"), ("frames", "jpeg")):
        result = prepare_dataset(open_dataset("synthetic", synth_root, variant), "cpu", cache=tmp_path, progress=False)
        assert result.transcoded == 0
        for video in result.videos:
            assert video.decode_path == video.video.path and video.codec == codec
            assert video.num_frames == FRAMES and (video.width, video.height) == (64, 48) and video.fps == 25.0
    assert tree_digest(synth_root) == before


def test_cpu_backend_transcodes_h264_and_mpeg4(synth_root, generic_root, tmp_path):
    before = tree_digest(generic_root)
    result = prepare_dataset(open_dataset("generic", generic_root), "cpu", cache=tmp_path, progress=False)
    by_name = {v.name: v for v in result.videos}
    assert result.source_codecs[generic_root / "training" / "mpeg4.avi"] == "mpeg4"
    assert result.source_codecs[generic_root / "training" / "h264.mp4"] == "h264"
    for name in ("mpeg4", "h264"):
        video = by_name[name]
        assert video.decode_path.is_relative_to(cache_dir_for(result.dataset, "cpu", tmp_path))
        assert video.decode_path.suffix == ".avi" and video.codec == "mjpeg"
        assert decoded_count(video.decode_path) == ("mjpeg", FRAMES) == ("mjpeg", video.num_frames)
    assert by_name["clip"].decode_path == generic_root / "testing" / "clip" and by_name["clip"].codec == "jpeg"
    assert result.transcoded == result.transcoded_now == 2
    assert tree_digest(generic_root) == before
    # The transcode keeps the picture: compare with the source's frames.
    with av.open(str(generic_root / "training" / "h264.mp4")) as a, av.open(str(by_name["h264"].decode_path)) as b:
        diff = [np.abs(x.to_ndarray(format="rgb24").astype(int) - y.to_ndarray(format="rgb24")).mean()
                for x, y in zip(a.decode(video=0), b.decode(video=0))]
    assert len(diff) == FRAMES and max(diff) < 4


def test_gpu_backend_transcodes_mjpeg_to_h264(synth_root, tmp_path):
    avi = prepare_dataset(open_dataset("synthetic", synth_root, "avi"), "gpu", cache=tmp_path, progress=False)
    assert avi.transcoded == 4 and {v.codec for v in avi.videos} == {"h264"}
    assert decoded_count(avi.test[0].decode_path) == ("h264", FRAMES)
    mp4 = prepare_dataset(open_dataset("synthetic", synth_root, "mp4"), "gpu", cache=tmp_path, progress=False)
    assert mp4.transcoded == 0 and all(v.decode_path == v.video.path for v in mp4.videos)


def test_rerun_does_no_work(generic_root, tmp_path, monkeypatch):
    dataset = open_dataset("generic", generic_root)
    first = prepare_dataset(dataset, "cpu", cache=tmp_path, progress=False)
    manifest_state = first.manifest.stat().st_mtime_ns
    cache_state = tree_digest(first.manifest.parent)

    def forbidden(*args, **kwargs):
        raise AssertionError("a rerun with unchanged sources must not hash, probe or transcode")

    for name in ("transcode", "probe_video", "probe_frames", "_sha256"):
        monkeypatch.setattr(prepare_module, name, forbidden)
    again = prepare_dataset(open_dataset("generic", generic_root), "cpu", cache=tmp_path, progress=False)
    assert (again.probed, again.transcoded_now) == (0, 0)
    assert again.videos == first.videos
    assert first.manifest.stat().st_mtime_ns == manifest_state and tree_digest(first.manifest.parent) == cache_state


def test_changed_source_is_redone_and_stale_transcode_removed(generic_root, tmp_path):
    first = prepare_dataset(open_dataset("generic", generic_root), "cpu", cache=tmp_path, progress=False)
    old = {v.name: v.decode_path for v in first.videos}
    source = generic_root / "training" / "h264.mp4"
    encode_video(np.zeros((FRAMES + 2, 48, 64, 3), np.uint8), source, "mp4", "libx264", "yuv420p")
    again = prepare_dataset(open_dataset("generic", generic_root), "cpu", cache=tmp_path, progress=False)
    assert (again.probed, again.transcoded_now) == (1, 1)
    new = {v.name: v for v in again.videos}
    assert new["h264"].num_frames == FRAMES + 2 and new["h264"].decode_path != old["h264"]
    assert not old["h264"].exists() and new["mpeg4"].decode_path == old["mpeg4"]


def test_manifest_contents(synth_root, tmp_path):
    result = prepare_dataset(open_dataset("synthetic", synth_root, "mp4"), "cpu", cache=tmp_path, progress=False)
    manifest = json.loads(result.manifest.read_text())
    assert manifest["backend"] == "cpu" and manifest["dataset"] == "synthetic"
    entry = manifest["videos"]["testing/videos_h264/01.mp4"]
    source = synth_root / "testing/videos_h264/01.mp4"
    assert entry["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert (entry["codec"], entry["decode_codec"], entry["frames"], entry["fps"]) == ("h264", "mjpeg", FRAMES, 25.0)
    assert (entry["width"], entry["height"], entry["path"]) == (64, 48, str(source))
    assert entry["transcoded"] is True and not Path(entry["decode_path"]).is_absolute()  # relative: a copied
    assert (result.manifest.parent / entry["decode_path"]).is_file()  # cache keeps reading its own transcodes


def test_default_cache_location(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "env-cache"))
    result = load_prepared(open_dataset("synthetic", synth_root), "cpu", progress=False)
    assert result.manifest.parent.parent.parent == tmp_path / "env-cache"
    assert result.manifest.parent.name == "cpu" and result.manifest.parent.parent.name.startswith("synthetic-")
    with pytest.raises(VadgpuError, match=r"must not lie inside the dataset root"):
        prepare_dataset(open_dataset("synthetic", synth_root), "cpu", cache=synth_root / "cache")


def test_backend_for():
    assert backend_for("cpu") == "cpu" and backend_for(torch.device("cpu")) == "cpu"
    if not torch.cuda.is_available():
        assert backend_for("auto") == "cpu"
        with pytest.raises(VadgpuError, match="CUDA"):
            backend_for("cuda")


@pytest.mark.gpu
@pytest.mark.dali
def test_gpu_backend_prepares_what_the_cpu_backend_does(synth_root, tmp_path):
    assert backend_for("auto") == "gpu" and backend_for("cuda") == "gpu"
    for variant in ("avi", "mp4", "frames"):  # MJPEG is transcoded for NVDEC, H.264 and jpg are not
        dataset = open_dataset("synthetic", synth_root, variant)
        cpu = prepare_dataset(dataset, "cpu", cache=tmp_path / f"cpu-{variant}", progress=False)
        gpu = prepare_dataset(dataset, "gpu", cache=tmp_path / f"gpu-{variant}", progress=False)
        assert [(v.name, v.num_frames, v.height, v.width) for v in gpu.videos] == \
            [(v.name, v.num_frames, v.height, v.width) for v in cpu.videos]
        for a, b in zip(cpu.test, gpu.test):
            assert np.array_equal(np.asarray(a.labels), np.asarray(b.labels))
        if variant == "avi":
            assert all(v.decode_path != v.video.path for v in gpu.videos)  # NVDEC has no MJPEG
            assert all(probe_video(v.decode_path, decode=True).num_frames == v.num_frames for v in gpu.videos)


# ----------------------------------------------------------------------------------------------------- errors


def test_corrupt_video_named(generic_root, tmp_path):
    (generic_root / "training" / "broken.avi").write_bytes(os.urandom(4096))
    with pytest.raises(VadgpuError, match=r"broken.avi cannot be read"):
        prepare_dataset(open_dataset("generic", generic_root), "cpu", cache=tmp_path, progress=False)


def test_truncated_video_named(synth_root, tmp_path):
    root = tmp_path / "generic"
    (root / "training").mkdir(parents=True)
    data = (synth_root / "training/videos/01.avi").read_bytes()
    (root / "training" / "cut.avi").write_bytes(data[: len(data) // 2])
    shutil.copytree(synth_root / "testing/frames/01", root / "testing" / "clip")
    # Cut mid-frame: either the last packet fails to decode or fewer frames decode than the header states.
    with pytest.raises(VadgpuError, match=r"cut.avi(: the container states 24 frames but only \d+ decode| cannot be)"):
        prepare_dataset(open_dataset("generic", root), "cpu", cache=tmp_path / "cache", progress=False)


def test_zero_frame_video_named(generic_root, tmp_path):
    with av.open(str(generic_root / "training" / "empty.avi"), "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        container.start_encoding()
    with pytest.raises(VadgpuError, match=r"empty.avi holds no decodable frames"):
        prepare_dataset(open_dataset("generic", generic_root), "cpu", cache=tmp_path, progress=False)
    with pytest.raises(VadgpuError, match=r"missing.mp4 does not exist"):
        probe_video(generic_root / "missing.mp4")


def test_video_label_mismatch_names_video_and_counts(generic_root, tmp_path):
    shutil.move(generic_root / "training" / "h264.mp4", generic_root / "testing" / "walk.mp4")
    (generic_root / "testing" / "labels").mkdir()
    np.save(generic_root / "testing" / "labels" / "walk.npy", np.zeros(FRAMES - 3, np.uint8))
    np.save(generic_root / "testing" / "labels" / "clip.npy", np.zeros(FRAMES, np.uint8))
    dataset = open_dataset("generic", generic_root)  # a video file's count is only known after decoding
    with pytest.raises(VadgpuError, match=rf"video walk .*have {FRAMES - 3} frames but the video has {FRAMES}"):
        prepare_dataset(dataset, "cpu", cache=tmp_path, progress=False)


def test_empty_folder_and_missing_root(tmp_path):
    (tmp_path / "g" / "training" / "empty").mkdir(parents=True)
    with pytest.raises(VadgpuError, match=r"frame folder .*empty holds no image files"):
        open_dataset("generic", tmp_path / "g")
    result = CliRunner().invoke(cli, ["data", "prepare", "--dataset", "ped2", "--root", str(tmp_path / "absent")])
    assert result.exit_code == 1 and "absent does not exist" in result.output


def test_cli_prepare(synth_root, tmp_path):
    args = ["data", "prepare", "--dataset", "synthetic", "--root", str(synth_root), "--variant", "mp4",
            "--cache", str(tmp_path), "--device", "cpu"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "h264 -> mjpeg" in first.output and "transcoded 4 video(s)" in first.output
    assert f"manifest: {tmp_path}" in first.output
    second = CliRunner().invoke(cli, args)
    assert "probed 0 and transcoded 0" in second.output


@pytest.mark.shared
def test_real_ped2_prepare(ped2_root, tmp_path):
    result = prepare_dataset(open_dataset("ped2", ped2_root), "cpu", cache=tmp_path, progress=False)
    assert sum(v.num_frames for v in result.train) == 2550 and sum(v.num_frames for v in result.test) == 2010
    assert {v.codec for v in result.videos} == {"jpeg"} and result.transcoded == 0
    assert (result.train[0].width, result.train[0].height) == (360, 240)


# ------------------------------------------------------------------------ what each decoder takes as it is


def _video(path: Path, codec: str, pix_fmt: str, frames: int = 40, size=(48, 64), **options) -> Path:
    pattern = (np.arange(frames)[:, None, None, None] * 5 + np.zeros((1, *size, 3))).astype(np.uint8)
    encode_video(pattern, path, "mp4", codec, pix_fmt, {k: str(v) for k, v in options.items()})
    return path


def test_what_nvdec_and_seeking_need_is_transcoded(tmp_path):
    """Pass-through only what the decoder reads and seeks cheaply: NVDEC takes 8-bit 4:2:0 H.264 and 4:2:0 HEVC
    from 144x144 (so smaller HEVC and 10-bit H.264 are transcoded); a file whose key frames lie far apart is
    transcoded for every backend; a frame below NVDEC's smallest H.264 size is an error naming the file."""
    from vadgpu.data.prepare import MAX_KEY_INTERVAL, transcode_reason

    short = _video(tmp_path / "short.mp4", "libx264", "yuv420p", g=12, bf=0)
    long_gop = _video(tmp_path / "long.mp4", "libx264", "yuv420p", g=40)
    ten_bit = _video(tmp_path / "ten.mp4", "libx264", "yuv420p10le", g=12)
    hevc = _video(tmp_path / "hevc.mp4", "libx265", "yuv420p", **{"x265-params": "keyint=12:log-level=error"})
    tiny = _video(tmp_path / "tiny.mp4", "libx264", "yuv420p", size=(16, 32), g=12)
    for backend in ("gpu", "opencv"):
        assert transcode_reason(short, probe_video(short), backend) is None
        assert "key frames up to 40 frames apart" in transcode_reason(long_gop, probe_video(long_gop), backend)
    assert MAX_KEY_INTERVAL < 40
    assert "NVDEC does not decode h264 in yuv420p10le" == transcode_reason(ten_bit, probe_video(ten_bit), "gpu")
    assert transcode_reason(ten_bit, probe_video(ten_bit), "opencv") is None
    assert "from 144x144" in transcode_reason(hevc, probe_video(hevc), "gpu")
    assert "does not read h264" in transcode_reason(short, probe_video(short), "cpu")
    with pytest.raises(VadgpuError, match=r"tiny.mp4: 32x16 is below NVDEC's smallest frame \(48x16\)"):
        transcode_reason(tiny, probe_video(tiny), "gpu")
    # prepare records why it transcoded
    root = tmp_path / "generic"
    (root / "training").mkdir(parents=True)
    (root / "testing").mkdir()
    shutil.copy(long_gop, root / "training" / "long.mp4")
    shutil.copy(short, root / "testing" / "short.mp4")
    result = prepare_dataset(open_dataset("generic", root), "opencv", cache=tmp_path / "cache", progress=False)
    long_entry = json.loads(result.manifest.read_text())["videos"]["training/long.mp4"]
    assert long_entry["transcoded"] and "key frames" in long_entry["transcode_reason"]
    assert result.train[0].codec == "mjpeg" and result.test[0].codec == "h264"  # the short-GOP file passes
