"""The OpenCV baseline DataLoader: same interface, index, order and shards as the DALI loader; T decodes per clip;
worker processes change nothing; unreadable frames name the file. (Tensor agreement with DALI is in
test_loader.py::test_dali_cpu_clips_equal_baseline.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clip_media import H, W, ids

from vadgpu.data.types import PreparedVideo, Video
from vadgpu.errors import VadgpuError
from vadgpu.pipelines.baseline import make_baseline_loader
from vadgpu.pipelines.loader import ClipBatch, ClipSpec, make_loader

SMALL = dict(device="cpu", run_length=12, runs_per_group=2)


@pytest.mark.parametrize("kind", ["avi", "jpg"])
def test_workers_give_the_same_batches(media, kind):
    spec = ClipSpec(3, (24, 32), 1, max_skip=2)
    serial = list(make_baseline_loader(media[kind], spec, batch_size=8, seed=4, num_workers=0, **SMALL))
    parallel = list(make_baseline_loader(media[kind], spec, batch_size=8, seed=4, num_workers=2, **SMALL))
    assert ids(serial) == ids(parallel)
    assert all(torch.equal(a.clips, b.clips) and torch.equal(a.window, b.window) for a, b in zip(serial, parallel))


@pytest.mark.dali
def test_same_interface_order_and_shards_as_dali(media):
    spec = ClipSpec(3, (24, 32), 3, max_skip=2)
    for shard in range(2):
        kw = dict(batch_size=5, seed=9, shard_id=shard, num_shards=2, **SMALL)
        base, dali = make_baseline_loader(media["avi"], spec, **kw), make_loader(media["avi"], spec, **kw)
        base.set_epoch(3), dali.set_epoch(3)
        got = list(base)
        assert len(base) == len(dali) == len(got)
        assert ids(got) == ids(list(dali))
        b = got[0]
        assert isinstance(b, ClipBatch) and b.clips.shape == (5, 3, 3, 24, 32) and b.window.shape == (5, 3, 5, 24, 32)
        assert b.video.dtype == torch.int64 and b.frame.dtype == torch.int64


def test_decodes_every_frame_of_every_clip(media):
    spec = ClipSpec(5, (24, 32), 1)
    loader = make_baseline_loader(media["jpg"], spec, batch_size=8, train=True, **SMALL)
    batches = list(loader)
    assert loader.frames_decoded_per_clip == 5.0 and loader.clips_emitted == sum(len(b) for b in batches)
    test = make_baseline_loader(media["jpg"], spec, batch_size=8, train=False, **SMALL)
    list(test)  # edge clips repeat frames 0 / n-1, which are read once per clip: slightly under T per clip
    n = media["jpg"][0].num_frames
    assert test.frames_decoded_per_clip == pytest.approx((5 * n - 2 * (2 + 1)) / n)


def test_unreadable_frame_names_the_file(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    files = tuple(folder / f"{i:03d}.jpg" for i in range(5))
    for f in files:
        f.write_bytes(b"not an image")
    video = PreparedVideo(Video("bad", folder, files), folder, 5, 25.0, W, H, "jpeg")
    with pytest.raises(VadgpuError, match=r"bad/00\d\.jpg: OpenCV cannot read"):
        list(make_baseline_loader([video], ClipSpec(3, (H, W), 1), batch_size=2, train=False, **SMALL))
    with pytest.raises(VadgpuError, match="num-workers"):
        make_baseline_loader([video], ClipSpec(3, (H, W), 1), num_workers=-1, **SMALL)


@pytest.mark.shared
@pytest.mark.dali
def test_ped2_baseline_matches_dali_on_real_frames(ped2_root):
    files = tuple(sorted((ped2_root / "training" / "frames" / "05").glob("*.jpg")))[:40]
    video = PreparedVideo(Video("05", files[0].parent, files), files[0].parent, len(files), 25.0, 360, 240, "jpeg")
    spec = ClipSpec(3, (64, 64), 1)
    kw = dict(batch_size=16, train=False, device="cpu")
    dali, base = list(make_loader([video], spec, **kw)), list(make_baseline_loader([video], spec, **kw))
    assert ids(dali) == ids(base) == [(0, f) for f in range(40)]
    diff = torch.cat([(a.clips - b.clips).abs().flatten() for a, b in zip(dali, base)])
    # the same decoder and the same OpenCV resize on the CPU (DALI's own resize on CUDA: a few levels on edges)
    assert float(diff.mean()) < 0.01 and float(np.quantile(diff.numpy(), 0.99)) < 0.06
