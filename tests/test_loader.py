"""DALI clip loaders (CPU backend here): clip index, order, sharding, windows, errors, and agreement with the
OpenCV baseline on real encoded files (MJPEG .avi, VP9 .webm, jpg and tif frame folders) written on the fly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from clip_media import H, W, ids, prepared_video

from vadgpu.data.types import PreparedVideo, Video
from vadgpu.errors import VadgpuError
from vadgpu.pipelines.baseline import make_baseline_loader
from vadgpu.pipelines.clip_index import build_run_table, span_frames
from vadgpu.pipelines.loader import ClipSpec, make_loader

pytestmark = pytest.mark.dali

@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("temporal,max_skip,run_length", [(1, 0, 1), (3, 0, 3), (4, 0, 12), (3, 3, 7), (16, 2, 64)])
def test_run_table_owns_every_clip_once_inside_its_run(temporal, max_skip, run_length, train):
    spec = ClipSpec(temporal, (8, 8), 1, max_skip)
    num_frames = [1, temporal, 5, 40, 131]
    table = build_run_table(num_frames, spec, train, run_length)
    half = temporal // 2
    want = [(v, c) for v, n in enumerate(num_frames)
            for c in (range(half, n - (temporal - 1 - half)) if train else range(n))]
    assert list(zip(table.run_video[table.clip_run].tolist(), table.clip_centre.tolist())) == want
    assert (table.run_length >= 1).all() and (table.run_length <= run_length).all()
    frames = span_frames(table, np.arange(len(want)), np.array(num_frames), spec)  # (K, span)
    lo = table.run_lo[table.clip_run]
    assert (frames >= lo[:, None]).all() and (frames < (lo + table.run_length[table.clip_run])[:, None]).all()
    # runs overlap only by what the clips need: a run owns at least run_length - span + 1 clips
    step = run_length - len(spec.span_offsets) + 1
    for v in range(len(num_frames)):
        clips = sum(1 for w, _ in want if w == v)
        assert (table.run_video == v).sum() <= -(-clips // step)


KINDS = ["avi", "vp9", "jpg", "tif"]
SMALL = dict(device="cpu", run_length=12, runs_per_group=2)  # small runs: several runs and groups per video



@pytest.mark.parametrize("kind", KINDS)
def test_test_clips_cover_every_frame_once_in_order(media, kind):
    videos = media[kind]
    loader = make_loader(videos, ClipSpec(5, (H, W), 1), batch_size=7, train=False, **SMALL)
    batches = list(loader)
    assert len(batches) == len(loader)
    assert ids(batches) == [(v, f) for v, pv in enumerate(videos) for f in range(pv.num_frames)]
    b = batches[0]
    assert b.clips.shape == (7, 1, 5, H, W) and b.clips.dtype == torch.float32 and b.window is None
    assert 0.0 <= float(b.clips.min()) and float(b.clips.max()) <= 1.0
    # centre 0: frames -2, -1 are edge-replicated copies of frame 0; centre 1: frame -1 -> 0
    assert torch.equal(b.clips[0, :, 0], b.clips[0, :, 2]) and torch.equal(b.clips[0, :, 1], b.clips[0, :, 2])
    assert torch.equal(b.clips[1, :, 0], b.clips[0, :, 2]) and not torch.equal(b.clips[0, :, 2], b.clips[0, :, 3])
    last = batches[-1]
    assert torch.equal(last.clips[-1, :, 3], last.clips[-1, :, 2])
    assert torch.equal(last.clips[-1, :, 4], last.clips[-1, :, 2])


@pytest.mark.parametrize("kind", ["avi", "jpg"])
def test_training_decodes_each_frame_about_once(media, kind):
    videos = media[kind]
    spec = ClipSpec(3, (32, 32), 1)
    loader = make_loader(videos, spec, batch_size=8, train=True, seed=1, device="cpu", run_length=16)
    got = ids(list(loader))
    full = [(v, f) for v, pv in enumerate(videos) for f in range(1, pv.num_frames - 1)]  # full clips only
    assert sorted(got) == full and got != full  # every training clip once, shuffled
    assert 1.0 <= loader.frames_decoded_per_clip <= 16 / 14 + 0.05  # runs of 16 frames hold 14 clips
    baseline = make_baseline_loader(videos, spec, batch_size=8, train=True, seed=1, device="cpu", run_length=16)
    list(baseline)
    assert baseline.frames_decoded_per_clip == pytest.approx(3.0)  # the per-clip loader: T decodes per clip


def _compare(a_batches, b_batches):
    assert ids(a_batches) == ids(b_batches)
    return torch.cat([(a.clips - b.clips).abs().flatten() for a, b in zip(a_batches, b_batches)])


# DALI and OpenCV run the same decoders for images (libjpeg-turbo, libtiff): frames are identical at native
# size but for rare 1-level rounding in RGB -> gray of TIFFs. Video frames go YUV -> RGB (-> gray) through
# different converters (DALI's kernels vs swscale), which changes gray by at most 1-2 levels and RGB by ~4 levels
# on average: OpenCV upsamples the 4:2:0 chroma more coarsely (measured: DALI is 1.5 levels from the source pattern
# on average, OpenCV 3.7).
# On the CPU both loaders resize with OpenCV's INTER_AREA (on CUDA, DALI's antialiased linear filter: equal on
# flat areas, a few levels apart on edges), so resized clips are compared by mean and 99th percentile.
NATIVE_TOL = {("jpg", 1): (1e-4, 1e-5), ("tif", 1): (1e-4, 1e-5), ("jpg", 3): (1e-4, 1e-5), ("tif", 3): (1e-4, 1e-5),
              ("avi", 1): (0.008, 2.5 / 255), ("vp9", 1): (0.008, 2.5 / 255),
              ("avi", 3): (0.02, 0.06), ("vp9", 3): (0.02, 0.06)}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_dali_cpu_clips_equal_baseline(media, kind, channels):
    videos = media[kind]
    kw = dict(batch_size=6, train=True, seed=5, **SMALL)
    native = ClipSpec(3, (H, W), channels)
    dali, base = list(make_loader(videos, native, **kw)), list(make_baseline_loader(videos, native, **kw))
    diff = _compare(dali, base)
    mean_tol, p99_tol = NATIVE_TOL[(kind, channels)]
    assert float(diff.mean()) <= mean_tol and float(diff.quantile(0.99)) <= p99_tol
    # one frame off must fail the comparison: the tolerance is far below the frame-to-frame change
    shifted = torch.cat([(a.clips[:, :, 1:] - b.clips[:, :, :-1]).abs().flatten() for a, b in zip(dali, base)])
    assert float(shifted.mean()) > 4 * max(mean_tol, 0.01)

    resized = ClipSpec(3, (32, 40), channels)
    diff = _compare(list(make_loader(videos, resized, **kw)), list(make_baseline_loader(videos, resized, **kw)))
    assert float(diff.mean()) <= 0.02 and float(diff.quantile(0.99)) <= 0.12


def test_same_seed_same_batches_and_epochs_reshuffle(media):
    videos = media["jpg"] + media["tif"]  # two folders of different lengths
    spec = ClipSpec(3, (24, 32), 1)
    a = make_loader(videos, spec, batch_size=5, seed=7, **SMALL)
    b = make_loader(videos, spec, batch_size=5, seed=7, **SMALL)
    first, again = list(a), list(b)
    assert ids(first) == ids(again)
    assert all(torch.equal(x.clips, y.clips) for x, y in zip(first, again))
    a.set_epoch(1)
    assert sorted(ids(list(a))) == sorted(ids(first)) and ids(list(a)) != ids(first)
    a.set_epoch(0)
    assert ids(list(a)) == ids(first)
    assert ids(list(make_loader(videos, spec, batch_size=5, seed=8, **SMALL))) != ids(first)


@pytest.mark.parametrize("train", [True, False])
def test_shards_are_disjoint_with_equal_batch_counts(media, train):
    videos = media["avi"]
    spec = ClipSpec(3, (24, 32), 1)
    shards = [make_loader(videos, spec, batch_size=4, train=train, seed=2, shard_id=s, num_shards=3, **SMALL)
              for s in range(3)]
    outs = [ids(list(s)) for s in shards]
    assert len({len(s) for s in shards}) == 1 and all(len(o) == len(outs[0]) for o in outs)
    sets = [set(o) for o in outs]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    everything = {(v, f) for v, pv in enumerate(videos) for f in (range(pv.num_frames) if not train
                                                                   else range(1, pv.num_frames - 1))}
    union = sets[0] | sets[1] | sets[2]
    if train:  # each shard emits ceil(total / 3): a larger shard drops at most the excess
        assert union <= everything and len(union) >= len(everything) - 3 * 12
    else:  # evaluation drops nothing: smaller shards repeat clips instead
        assert union == everything


@pytest.mark.parametrize("train", [True, False])
def test_max_skip_window_holds_the_frames_around_the_centre(media, train):
    video = media["jpg"][0]
    spec = ClipSpec(3, (H, W), 1, max_skip=3)
    batches = list(make_loader([video], spec, batch_size=8, train=train, seed=0, **SMALL))
    images = np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in video.video.frame_files])  # (n, H, W)
    for b in batches:
        assert b.window.shape == (len(b), 1, 3 * 2 + 1, H, W)
        assert torch.equal(b.window[:, :, 2:5], b.clips)  # the plain clip sits at window index 3 +- 1
        for i, centre in enumerate(b.frame.tolist()):
            want = images[np.clip(np.arange(centre - 3, centre + 4), 0, video.num_frames - 1)] / 255.0
            assert torch.allclose(b.window[i, 0], torch.from_numpy(want).float(), atol=1e-6)


def test_h264_without_prepare_names_the_file(media):
    with pytest.raises(VadgpuError, match=r"c\.mp4.*h264.*vadgpu data prepare"):
        make_loader(media["h264"], ClipSpec(3, (32, 32), 1), device="cpu")


def test_bad_inputs_raise_clear_errors(media, tmp_path):
    spec = ClipSpec(3, (32, 32), 1)
    with pytest.raises(VadgpuError, match="mixes video files and frame folders"):
        make_loader(media["avi"] + media["jpg"], spec, device="cpu")
    gone = media["avi"][0]
    missing = PreparedVideo(Video("x", tmp_path / "x.avi"), tmp_path / "x.avi", 10, 25.0, W, H, "mjpeg")
    with pytest.raises(VadgpuError, match=r"x\.avi: not found"):
        make_loader([gone, missing], spec, device="cpu")
    with pytest.raises(VadgpuError, match="shard_id 3"):
        make_loader(media["avi"], spec, device="cpu", shard_id=3, num_shards=3)
    with pytest.raises(VadgpuError, match="channels"):
        ClipSpec(3, (32, 32), 2)
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 40)
    corrupt_video = prepared_video(corrupt, 20, "mjpeg")
    for videos in ([corrupt_video], [gone, corrupt_video]):  # alone / dropped silently
        with pytest.raises(VadgpuError, match=r"could not open .*corrupt\.avi"):
            list(make_loader(videos, spec, device="cpu", train=False))
    broken = tmp_path / "broken"
    broken.mkdir()
    files = tuple(broken / f"{i:03d}.jpg" for i in range(6))
    for f in files:
        f.write_bytes(b"\xff\xd8 not a jpeg")
    folder = PreparedVideo(Video("broken", broken, files), broken, 6, 25.0, W, H, "jpeg")
    with pytest.raises(VadgpuError, match=r"could not decode .*broken"):
        list(make_loader([folder], spec, device="cpu", train=False))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_gpu_is_an_error(media):
    with pytest.raises(VadgpuError, match="CUDA"):
        make_loader(media["avi"], ClipSpec(3, (32, 32), 1), device="cuda")


@pytest.mark.shared
def test_ped2_training_loader_over_two_videos(ped2_root):
    videos = []
    for name in ("01", "02"):
        files = tuple(sorted((ped2_root / "training" / "frames" / name).glob("*.jpg")))
        videos.append(PreparedVideo(Video(name, files[0].parent, files), files[0].parent, len(files), 25.0, 360, 240,
                                    "jpeg"))
    loader = make_loader(videos, ClipSpec(3, (64, 64), 1), batch_size=32, device="cpu", train=True, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader)
    assert sum(len(b) for b in batches) == sum(v.num_frames - 2 for v in videos)
    assert batches[0].clips.shape == (32, 1, 3, 64, 64)
    assert loader.frames_decoded_per_clip < 1.1
    assert 0.05 < float(batches[0].clips.mean()) < 0.95


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["vp9", "h264", "jpg"])  # MJPEG goes to H.264 in prepare for the GPU
def test_cuda_pipeline_matches_baseline(media, kind):
    """NVDEC / nvJPEG output on the GPU, same clips as the OpenCV baseline (H.264 needs no prepare on CUDA)."""
    spec = ClipSpec(3, (32, 40), 3, max_skip=2)
    kw = dict(batch_size=6, train=False, device="cuda", run_length=12, runs_per_group=2)
    gpu, ref = list(make_loader(media[kind], spec, **kw)), list(make_baseline_loader(media[kind], spec, **kw))
    assert gpu[0].clips.is_cuda and gpu[0].window.is_cuda and gpu[0].frame.is_cuda
    diff = _compare(gpu, ref)
    assert float(diff.mean()) <= 0.02 and float(diff.quantile(0.99)) <= 0.15


def test_synthetic_h264_through_prepare_loads_and_matches_frames(tmp_path):
    """The end-to-end path: synth writes H.264 and jpg folders of the same frames; prepare transcodes the H.264 for
    the CPU reader; both load, and the decoded video clips agree with the frame-folder clips."""
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared
    from vadgpu.data.synth import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "synth", train_videos=2, test_videos=1, frames=20, frame_size=(48, 64),
                                  formats=("mp4", "frames"))
    spec = ClipSpec(3, (24, 32), 1)
    out = {}
    for variant in ("mp4", "frames"):
        prepared = load_prepared(open_dataset("synthetic", root, variant=variant), "cpu", cache=tmp_path / "cache",
                                 progress=False)
        if variant == "mp4":
            assert all(v.codec in ("mjpeg", "vp8", "vp9") and v.decode_path != v.video.path for v in prepared.train)
        out[variant] = list(make_loader(prepared.train, spec, batch_size=8, train=False, device="cpu"))
    assert ids(out["mp4"]) == ids(out["frames"]) == [(v, f) for v in range(2) for f in range(20)]
    diff = torch.cat([(a.clips - b.clips).abs().flatten() for a, b in zip(out["mp4"], out["frames"])])
    assert float(diff.mean()) < 0.03  # two lossy encodes of the same rendered frames


def test_runs_hold_several_spans_of_a_long_skip_window(media):
    """The dual-path paper geometry (T=16, skips up to 5: a 76-frame window) must not shrink runs to one clip
    each: a run is at least SPANS_PER_RUN windows long, so overlap re-decodes under a quarter of it."""
    from vadgpu.pipelines.loader import SPANS_PER_RUN

    spec = ClipSpec(16, (H, W), 1, max_skip=5)
    assert len(spec.span_offsets) == 76
    loader = make_loader(media["avi"], spec, batch_size=2, device="cpu", train=True)
    assert loader.run_length == SPANS_PER_RUN * 76
    assert make_loader(media["avi"], ClipSpec(3, (H, W), 1), device="cpu").run_length == 64


@pytest.mark.parametrize("channels", [1, 3])
def test_float_clips_equal_the_uint8_gather_after_normalisation(channels):
    """The DALI loader hands over frames + rows and gathers straight into float: bit for bit what gathering the
    uint8 clips and normalising them gives."""
    from vadgpu.pipelines.loader import ClipBatch, FrameSpans, gather_spans, gather_unit_float, unit_float

    rng = np.random.default_rng(channels)
    frames = torch.from_numpy(rng.integers(0, 256, (20, channels, 9, 11), dtype=np.uint8))
    rows = torch.from_numpy(np.sort(rng.integers(0, 20, (6, 7)), axis=1))
    uint8 = gather_spans(frames, rows)
    assert uint8.dtype == torch.uint8 and uint8.shape == (6, channels, 7, 9, 11)
    for k in range(6):
        for s in range(7):
            assert torch.equal(uint8[k, :, s], frames[rows[k, s]])
    assert torch.equal(gather_unit_float(frames, rows), unit_float(uint8))
    # a batch over two decode groups, with a skip window (T = 3, max_skip 3: a span of 7, the clip at 2..4)
    spec = ClipSpec(3, (9, 11), channels, max_skip=3)
    pieces = [(frames, rows[:4]), (frames.flip(0), rows[4:])]
    batch = ClipBatch(None, torch.zeros(6), torch.zeros(6), spans=FrameSpans(pieces, spec))
    want = torch.cat([unit_float(gather_spans(f, r)) for f, r in pieces])
    assert len(batch) == 6 and torch.equal(batch.window, want) and torch.equal(batch.clips, want[:, :, 2:5])
    assert batch._spans is None  # both gathered: the decoded frames are let go


@pytest.mark.shared
def test_ped2_pipeline_equals_baseline_at_users_geometries(ped2_root):
    """256x256 RGB and 128x128 gray, T = 16, real Ped2 jpgs: the same libjpeg-turbo decode and the same OpenCV
    resize on both loaders, so the clips are equal (documented tolerance: 1 level, for DALI's and OpenCV's
    colour conversions; measured 0)."""
    files = tuple(sorted((ped2_root / "training" / "frames" / "03").glob("*.jpg")))[:40]
    video = PreparedVideo(Video("03", files[0].parent, files), files[0].parent, len(files), 25.0, 360, 240, "jpeg")
    for size, channels in (((256, 256), 3), ((128, 128), 1)):
        spec = ClipSpec(16, size, channels)
        kw = dict(batch_size=8, train=True, seed=1, device="cpu", run_length=24, runs_per_group=2)
        dali, base = list(make_loader([video], spec, **kw)), list(make_baseline_loader([video], spec, **kw))
        assert dali[0].clips.shape == (8, channels, 16, *size)
        diff = _compare(dali, base)
        assert float(diff.max()) <= 1 / 255 + 1e-6, (size, channels)
