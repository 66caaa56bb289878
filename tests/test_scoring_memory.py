"""What keeps scoring's memory small changes no score: tubes cut from the decoded frames (ClipBatch.frame_pieces),
never from float clips, the tube network in small calls of equal size, the appearance backbone's input made per
call, pools without unread padding, one decode run per test group, the C heap released after each video, and the
scoring path importing neither torchvision's Python package nor scikit-learn before it needs them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from clip_media import H, W, ids

from tests.cli_helpers import read_csv
from vadgpu import heap
from vadgpu.objects.darknet_torch import _MaxPool
from vadgpu.objects.tubes import centre_frames, crop_piece_tubes, crop_tubes, tube_windows
from vadgpu.pipelines.loader import ClipSpec, make_loader


@pytest.mark.dali
@pytest.mark.parametrize("kind", ["avi", "jpg"])
def test_tubes_and_centre_frames_from_frame_pieces_are_those_of_the_float_clips(media, kind):
    videos = media[kind]
    spec = ClipSpec(5, (H, W), 1)
    kw = dict(batch_size=7, train=False, device="cpu", run_length=12)  # batches across runs and videos
    batches, twins = list(make_loader(videos, spec, **kw)), list(make_loader(videos, spec, **kw))
    assert ids(batches) == ids(twins)
    generator = torch.Generator().manual_seed(0)
    for batch, twin in zip(batches, twins):
        pieces, clips = batch.frame_pieces(), twin.clips
        assert all(piece.frames.dtype == torch.uint8 for piece in pieces)
        owner = np.sort(np.random.default_rng(len(batch)).integers(0, len(batch), 9))
        xy = torch.rand(9, 2, generator=generator) * 0.8
        windows = tube_windows(torch.cat([xy, xy + 0.1], 1), (H, W), 20)
        want = crop_tubes(clips, torch.from_numpy(owner), windows, 16, extent=20)
        assert torch.equal(crop_piece_tubes(pieces, owner, windows, 16, 20), want)
        assert torch.equal(centre_frames(pieces), clips[:, :, 2])
    assert any(len(batch.frame_pieces()) == 2 for batch in batches)  # a batch across two decode groups


@pytest.mark.dali
def test_test_batches_do_not_depend_on_the_decode_groups(media):
    videos, spec = media["jpg"], ClipSpec(5, (H, W), 1)
    kw = dict(batch_size=6, train=False, device="cpu", run_length=8)
    one_run = list(make_loader(videos, spec, **kw))  # the test default: a run per decode group
    assert make_loader(videos, spec, **kw).runs_per_group == 1
    grouped = list(make_loader(videos, spec, runs_per_group=4, **kw))
    assert ids(one_run) == ids(grouped)
    assert all(torch.equal(a.clips, b.clips) for a, b in zip(one_run, grouped))


def test_a_darknet_pool_skips_only_padding_it_would_never_read():
    pool = _MaxPool(2, 2, 1)  # yolov3-tiny's: one row and column of padding on the right and bottom
    for shape in ((1, 3, 8, 12), (2, 4, 7, 9), (1, 1, 2, 5)):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
        padded = F.max_pool2d(F.pad(x, pool.pad, value=float("-inf")), 2, 2)
        assert torch.equal(pool(x), padded)
    assert pool._padding_unread(torch.zeros(1, 1, 8, 12)) and not pool._padding_unread(torch.zeros(1, 1, 7, 12))


# Scores equal to this: the same arithmetic in another order of calls is bit for bit equal in a fresh process,
# but a library loaded beside torch (ultralytics, in the whole test run) can change the last bit of its bilinear
# resize, and a z-score carries that on.
SAME = 1e-5


def _same_rows(a: list[dict[str, str]], b: list[dict[str, str]]) -> None:
    """Two CSV tables hold the same rows, numbers within SAME."""
    assert len(a) == len(b) and all(ra.keys() == rb.keys() for ra, rb in zip(a, b))
    for ra, rb in zip(a, b):
        for key, value in ra.items():
            try:
                assert abs(float(value) - float(rb[key])) <= SAME, (key, value, rb[key])
            except ValueError:
                assert value == rb[key], (key, value, rb[key])


def _evaluate(root, model, out, **kw):
    from vadgpu.evaluation.runner import evaluate
    from vadgpu.scoring.protocol import Protocol

    result = evaluate(model, dataset="synthetic", root=root, out=out, protocol=Protocol(score=None), progress=False,
                      device="cpu", **kw)
    return {v.name: v.raw for v in result.videos}


def _float_clip_scores(self, model, clips, video, frame):
    """A TubeScorer's batch as scored before: (N, C, T, H, W) float clips, every tube in one network call, the
    appearance of each clip's middle frame."""
    from vadgpu.scoring.kinds import error_map, scores_from_errors
    from vadgpu.scoring.tubes import TubeRecord

    owner_np, rows_np = self.boxes.select_rows(video.numpy(), frame.numpy())
    best = torch.full((clips.shape[0],), float("-inf"))
    if owner_np.size == 0:
        return best
    owner, centres = torch.from_numpy(owner_np), torch.from_numpy(self.boxes.boxes[rows_np])
    windows = tube_windows(centres, tuple(clips.shape[-2:]), self.window)
    target, recon = model.reconstruct(crop_tubes(clips, owner, windows, self.size, extent=self.window))
    raw = scores_from_errors(error_map(target, recon), self.score, self.mix_weight)
    middle = clips[:, :, clips.shape[2] // 2]
    tube = self.location.apply(centres, raw) + self.appearance.weight * self.appearance(middle, owner, centres)
    self.records.append(TubeRecord(video.numpy()[owner_np], frame.numpy()[owner_np], self.boxes.boxes[rows_np],
                                   raw.numpy(), tube.numpy()))
    return best.scatter_reduce(0, owner, tube, reduce="amax")


def test_object_scores_are_those_of_float_clips_in_one_network_call(object_run, calibrated_model, tmp_path,
                                                                     monkeypatch):
    """An object model with both terms (location and appearance) over the synthetic test videos: tubes cut from
    the decoded frames and scored in small calls score every tube as float clips (within SAME) with every tube in one
    network call, and scoring the videos one at a time gives the scores of scoring them together."""
    from vadgpu.scoring import tubes

    base, root, _, _, _ = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    monkeypatch.setattr(tubes, "CPU_TUBE_CHUNK", 3)  # several calls of 2-3 tubes per batch
    small = _evaluate(root, calibrated_model, tmp_path / "small")
    with monkeypatch.context() as before:
        before.setattr(tubes.TubeScorer, "__call__", _float_clip_scores)
        before.setattr(tubes.TubeScorer, "takes_frame_pieces", False)
        whole = _evaluate(root, calibrated_model, tmp_path / "whole")
    assert sorted(small) == sorted(whole) == ["01", "02"]
    for name in small:
        np.testing.assert_allclose(small[name], whole[name], rtol=0, atol=SAME)
        _same_rows(read_csv(tmp_path / "small" / "objects" / f"{name}.csv"),
                   read_csv(tmp_path / "whole" / "objects" / f"{name}.csv"))
        alone = _evaluate(root, calibrated_model, tmp_path / f"alone-{name}", videos=[name])
        np.testing.assert_allclose(alone[name], whole[name], rtol=0, atol=SAME)


def test_box_features_equal_those_of_the_whole_network_input_and_padded_pools(tiny_darknet, monkeypatch):
    """BoxFeatures resizes a gray frame once, makes the network input of each backbone call (CPU_FRAMES frames)
    alone and skips the pools' padding they never read: the features of the three-channel input of all frames
    resized at once, cut into the same calls, every pool padded."""
    from vadgpu.objects import appearance, darknet_torch
    from vadgpu.objects.roi_align import roi_align

    features = appearance.BoxFeatures.from_darknet(tiny_darknet, short_side=64)
    frames = torch.rand(3, 1, 50, 70, generator=torch.Generator().manual_seed(2))  # gray, resized to 64 x 96
    owner = torch.tensor([0, 2, 2, 1])
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.4, 0.2, 0.9, 0.9], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.4, 0.5]])
    got = features(frames, owner, boxes)
    monkeypatch.setattr(darknet_torch._MaxPool, "_padding_unread", lambda self, x: False)
    x = F.interpolate(frames.expand(-1, 3, -1, -1), size=(64, 96), mode="bilinear", align_corners=False)
    x = x.contiguous(memory_format=torch.channels_last)
    step = appearance.CPU_FRAMES
    with torch.inference_mode():
        maps = torch.cat([features.backbone(x[i:i + step]) for i in range(0, len(x), step)])
    rois = torch.cat([owner.float()[:, None], boxes * torch.tensor([96.0, 64.0, 96.0, 64.0])], dim=1)
    pooled = roi_align(maps, rois, (2, 2), 1 / (96 / maps.shape[-1]), 2, True)
    torch.testing.assert_close(got, F.normalize(pooled.flatten(1), dim=1), rtol=0, atol=1e-6)


def test_heap_release_at_the_start_after_a_video_and_after_a_batch_that_grew(monkeypatch):
    calls, resident = [], [100]
    monkeypatch.setattr(heap, "release_free_memory", lambda: calls.append(resident[0]))
    monkeypatch.setattr(heap, "resident_bytes", lambda: resident[0])
    release = heap.HeapRelease(growth=50)
    assert calls == [100]  # what was freed before scoring
    resident[0] = 140
    release.step(False)
    assert calls == [100]  # grown by less than 50 since it started
    release.step(True)
    assert calls == [100, 140]  # a video is done
    resident[0] = 191
    release.step(False)
    assert calls == [100, 140, 191]  # 51 above the last release


@pytest.mark.skipif(heap._glibc() is None, reason="glibc's malloc_trim is not available here")
def test_release_gives_freed_heap_memory_back():
    """100 MiB of 64 KiB blocks (inside the heap: below malloc's mmap threshold), each followed by a small block
    that stays: freeing the large ones leaves them resident between the small ones, the release hands them back."""
    pairs = [(np.ones(64 * 1024 // 8), np.ones(256)) for _ in range(1600)]
    keep = [small for _, small in pairs]
    del pairs
    freed = heap.resident_bytes()
    assert heap.release_free_memory()
    after = heap.resident_bytes()
    assert sum(float(k.sum()) for k in keep) == 1600 * 256
    assert after < freed - 50 * 2**20, (freed, after)


def test_the_scoring_path_imports_no_torchvision_package_or_scikit_learn():
    """roi_align comes from torchvision's compiled operators alone (the Python package imports torch._dynamo and
    its models: ~150 MiB); metrics and plots import scikit-learn and matplotlib where they are made."""
    script = ("import sys, torch\n"
              "from vadgpu.evaluation.runner import evaluate\n"
              "from vadgpu.scoring.calibration import calibrate\n"
              "from vadgpu.objects.roi_align import roi_align\n"
              "x = torch.rand(2, 3, 20, 30)\n"
              "rois = torch.tensor([[0.0, 1.0, 2.0, 15.0, 12.5], [1.0, 0.0, 0.0, 30.0, 20.0]])\n"
              "out = roi_align(x, rois, (4, 4), 0.5, 2, True)\n"
              "print(sorted(m for m in ('torchvision', 'torch._dynamo', 'sklearn', 'matplotlib', 'scipy.optimize')"
              " if m in sys.modules))\n"
              "from torchvision.ops import roi_align as reference\n"
              "print(torch.equal(out, reference(x, rois, (4, 4), 0.5, 2, True)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "True"]
