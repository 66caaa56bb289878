"""Object tubes: the crop against a numpy reference and against roi_align on float frames, windows, box coordinates,
the training sampler (from decoded uint8 frames as from float clips), test boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vadgpu.objects.tubes import (SAMPLING_RATIO, FrameBoxes, TubeSampler, boxes_in_windows, crop_tubes,
                                  tube_windows)


def reference_crop(frame: np.ndarray, window: np.ndarray, size: int) -> np.ndarray:
    """Bilinear crop of a (H, W) frame: each output pixel averages SAMPLING_RATIO^2 samples of its bin, pixel
    centres at integer + 0.5 (positions clamped to the frame)."""
    height, width = frame.shape
    x1, y1, x2, y2 = window
    bin_w, bin_h = (x2 - x1) / size, (y2 - y1) / size
    out = np.zeros((size, size))
    r = SAMPLING_RATIO
    for i in range(size):
        for j in range(size):
            acc = 0.0
            for a in range(r):
                for b in range(r):
                    y = min(max(y1 + (i + (a + 0.5) / r) * bin_h - 0.5, 0.0), height - 1.0)
                    x = min(max(x1 + (j + (b + 0.5) / r) * bin_w - 0.5, 0.0), width - 1.0)
                    y0, x0 = min(int(y), height - 2), min(int(x), width - 2)
                    dy, dx = y - y0, x - x0
                    acc += ((1 - dy) * (1 - dx) * frame[y0, x0] + (1 - dy) * dx * frame[y0, x0 + 1]
                            + dy * (1 - dx) * frame[y0 + 1, x0] + dy * dx * frame[y0 + 1, x0 + 1])
            out[i, j] = acc / r**2
    return out


def test_crop_equals_numpy_reference():
    rng = np.random.default_rng(0)
    frames = rng.random((2, 1, 3, 40, 60)).astype(np.float32)  # (N, C, T, H, W)
    windows = np.array([[5.0, 3.0, 29.0, 27.0], [36.0, 16.0, 60.0, 40.0], [0.0, 0.0, 24.0, 24.0]], np.float32)
    owner = np.array([0, 1, 1])
    tubes = crop_tubes(torch.from_numpy(frames), torch.from_numpy(owner), torch.from_numpy(windows), 16)
    assert tubes.shape == (3, 1, 3, 16, 16)
    for m in range(3):
        for t in range(3):
            ref = reference_crop(frames[owner[m], 0, t], windows[m], 16)
            np.testing.assert_allclose(tubes[m, 0, t].numpy(), ref, atol=1e-5)


def roi_align_tubes(frames: torch.Tensor, owner: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """How tubes were cut before they were cut from uint8: every frame of float clips (N, C, L, H, W) through
    torchvision's roi_align (aligned, SAMPLING_RATIO^2 samples per output pixel) -> (M, C, L, size, size)."""
    from torchvision.ops import roi_align

    n, c, length, height, width = frames.shape
    flat = frames.transpose(1, 2).reshape(n * length, c, height, width)
    index = (owner[:, None] * length + torch.arange(length)).reshape(-1, 1).float()
    rois = torch.cat([index, windows.float().repeat_interleave(length, dim=0)], dim=1)
    out = roi_align(flat, rois, (size, size), spatial_scale=1.0, sampling_ratio=SAMPLING_RATIO, aligned=True)
    return out.view(-1, length, c, size, size).transpose(1, 2)


@pytest.mark.parametrize("channels", [1, 3])
def test_tubes_cut_from_uint8_frames_are_roi_align_s_on_the_float_frames(channels):
    """The tubes crop_tubes cuts from decoded uint8 frames (converting only each window's pixels) against the
    former way, roi_align over the whole frames made float: the same to float32 rounding (the products are summed
    in another order), and the float frames give the same tubes as their uint8 source. A window one pixel off
    differs by far more, so the comparison can see a misplaced crop."""
    from vadgpu.pipelines.loader import unit_float

    generator = torch.Generator().manual_seed(channels)
    frames = torch.randint(0, 256, (3, channels, 4, 60, 90), dtype=torch.uint8, generator=generator)
    floats = unit_float(frames)
    centres = torch.rand(24, 2, generator=generator).repeat(1, 2)
    centres[:4] = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    owner = torch.arange(3).repeat_interleave(8)
    for side in (17, 24, 60):  # an odd side, an even one, the whole frame height
        windows = tube_windows(centres, (60, 90), side)
        before = roi_align_tubes(floats, owner, windows, 16)
        tubes = crop_tubes(frames, owner, windows, 16, extent=side)
        assert tubes.dtype == torch.float32 and tubes.shape == (24, channels, 4, 16, 16)
        assert float((tubes - before).abs().max()) < 1e-6, side
        assert torch.equal(crop_tubes(floats, owner, windows, 16), tubes)  # extent read from the windows
        moved = roi_align_tubes(floats, owner, windows + torch.tensor([1.0, 0.0, 1.0, 0.0]), 16)
        assert float((tubes - moved)[4:].abs().max()) > 0.1
    # a subset of the frames, in any order (what the sampler asks for from a decode group's frames)
    steps = torch.tensor([[3, 0], [1, 1]])
    some = crop_tubes(frames, owner[:2], windows[:2], 16, steps=steps)
    assert torch.equal(some[0], tubes[0][:, [3, 0]]) and torch.equal(some[1], tubes[1][:, [1, 1]])
    assert crop_tubes(frames, owner[:0], windows[:0], 16, extent=60).shape == (0, channels, 4, 16, 16)


def test_crop_at_native_size_is_the_pixels():
    frames = torch.arange(2 * 3 * 20 * 30, dtype=torch.float32).view(1, 2, 3, 20, 30)  # (N, C, T, H, W)
    tube = crop_tubes(frames, torch.tensor([0]), torch.tensor([[4.0, 6.0, 14.0, 16.0]]), 10)
    assert torch.allclose(tube[0], frames[0, :, :, 6:16, 4:14])


def test_windows_are_fixed_size_and_inside_the_frame():
    boxes = torch.tensor([[0.45, 0.45, 0.55, 0.55], [0.0, 0.0, 0.05, 0.05], [0.9, 0.8, 1.0, 1.0]])
    win = tube_windows(boxes, (100, 200), 48)
    side = win[:, 2:] - win[:, :2]
    assert torch.allclose(side, torch.full_like(side, 48.0))
    assert torch.allclose(win[0], torch.tensor([76.0, 26.0, 124.0, 74.0]))  # centred on (100, 50)
    assert (win[:, :2] >= 0).all() and (win[:, 2] <= 200).all() and (win[:, 3] <= 100).all()
    assert torch.allclose(tube_windows(boxes[:1], (30, 200), 48)[:, 3] - tube_windows(boxes[:1], (30, 200), 48)[:, 1],
                          torch.tensor([30.0]))  # at most the shorter side


def test_boxes_in_windows():
    boxes = torch.tensor([[[0.25, 0.25, 0.5, 0.5]]])  # (1, T=1, 4) in a 100x100 frame: pixels 25..50
    win = torch.tensor([[20.0, 20.0, 60.0, 60.0]])
    inside = boxes_in_windows(boxes, win, (100, 100))
    assert torch.allclose(inside, torch.tensor([[[0.125, 0.125, 0.75, 0.75]]]))


class FixedBoxes:
    """A stand-in for ObjectBoxes: clip 0 has a track, clip 1 has none."""

    def sample(self, video, frame, generator):
        boxes = torch.tensor([0.4, 0.4, 0.6, 0.6]).expand(len(video), 3, 4).clone()
        valid = video == 0
        return boxes * valid[:, None, None], valid


def test_sampler_tubes_per_clip_and_background_for_clips_without_objects():
    from types import SimpleNamespace

    clips = torch.rand(2, 1, 3, 60, 80)
    batch = SimpleNamespace(clips=clips, video=torch.tensor([0, 1]), frame=torch.tensor([5, 9]), window=None)
    sampler = TubeSampler(FixedBoxes(), window=20, size=8, per_clip=3)
    tubes = sampler(batch, torch.Generator().manual_seed(0))
    assert tubes.clips.shape == (6, 1, 3, 8, 8)
    assert tubes.video.tolist() == [0, 0, 0, 1, 1, 1] and tubes.frame.tolist() == [5, 5, 5, 9, 9, 9]
    assert tubes.valid.tolist() == [True] * 3 + [False] * 3
    assert (tubes.boxes[3:] == 0).all() and (tubes.boxes[:3] > 0).all()
    # the valid tubes are the crop around the box centre (40, 30): window 30..50 x 20..40
    expected = crop_tubes(clips, torch.tensor([0]), torch.tensor([[30.0, 20.0, 50.0, 40.0]]), 8)
    assert torch.allclose(tubes.clips[0], expected[0])


@pytest.mark.parametrize("channels", [1, 3])
def test_sampler_cuts_the_same_tubes_from_a_loader_s_frames_as_from_float_clips(channels):
    """A ClipBatch as both loaders hand it over (the DALI loader's decoded frames + rows, over two decode groups;
    the torch loader's uint8 clips), with a skip window: the sampler's tubes and window tubes equal those it cuts
    from the same clips made float, and the batch's float clips are never made."""
    from types import SimpleNamespace

    from vadgpu.pipelines.clip_index import ClipSpec
    from vadgpu.pipelines.loader import ClipBatch, FrameSpans, gather_spans, unit_float

    generator = torch.Generator().manual_seed(channels)
    frames = torch.randint(0, 256, (20, channels, 50, 70), dtype=torch.uint8, generator=generator)
    rows = torch.sort(torch.randint(0, 20, (4, 7), generator=generator), dim=1).values
    spec = ClipSpec(3, (50, 70), channels, max_skip=3)  # a span of 7 frames, the clip at 2..4
    pieces = [(frames, rows[:3]), (frames.flip(0), rows[3:])]
    span = torch.cat([gather_spans(f, r) for f, r in pieces])  # (4, C, 7, 50, 70) uint8
    video, frame = torch.tensor([0, 1, 0, 1]), torch.tensor([5, 6, 7, 8])
    dali = ClipBatch(None, video, frame, spans=FrameSpans(pieces, spec))
    torch_loader = ClipBatch(span[:, :, 2:5].contiguous(), video, frame, span, clip_in_span=spec.clip_in_span)
    floats = SimpleNamespace(clips=unit_float(span[:, :, 2:5].contiguous()), window=unit_float(span),
                             video=video, frame=frame)
    sampler = TubeSampler(FixedBoxes(), window=20, size=8, per_clip=3)
    want = sampler(floats, torch.Generator().manual_seed(0))
    assert want.clips.shape == (12, channels, 3, 8, 8) and want.window.shape == (12, channels, 7, 8, 8)
    for batch in (dali, torch_loader):
        got = sampler(batch, torch.Generator().manual_seed(0))
        assert torch.equal(got.clips, want.clips) and torch.equal(got.window, want.window)
        assert torch.equal(got.boxes, want.boxes) and torch.equal(got.valid, want.valid)
        assert batch._clips is None or batch._clips.dtype == torch.uint8  # nothing made float


def test_frame_boxes_select_and_count():
    video = np.array([1, 0, 0, 1])
    frame = np.array([2, 0, 0, 2])
    boxes = np.array([[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.4, 0.4], [0.5, 0.5, 0.6, 0.6], [0.7, 0.7, 0.8, 0.8]])
    fb = FrameBoxes(video, frame, boxes, [2, 3])
    assert fb.count(0).tolist() == [2, 0] and fb.count(1).tolist() == [0, 0, 2]
    owner, picked = fb.select(np.array([0, 0, 1]), np.array([1, 0, 2]))
    assert owner.tolist() == [1, 1, 2, 2]
    assert picked.shape == (4, 4)
    assert sorted(picked[:2, 0].tolist()) == pytest.approx([0.3, 0.5])


@pytest.mark.gpu
def test_tubes_on_cuda_match_the_cpu_and_need_no_host_sync():
    from types import SimpleNamespace

    class DeviceBoxes:
        """ObjectBoxes' sampling contract on the device: one fixed track for even clips, none for odd ones."""

        def sample(self, video, frame, generator):
            boxes = torch.tensor([0.3, 0.2, 0.5, 0.6], device=video.device).expand(len(video), 3, 4).clone()
            valid = video % 2 == 0
            return boxes * valid[:, None, None], valid

    clips = torch.rand(4, 1, 3, 60, 80)
    windows = torch.tensor([[5.0, 3.0, 29.0, 27.0], [50.0, 30.0, 80.0, 60.0]])
    owner = torch.tensor([0, 3])
    cpu = crop_tubes(clips, owner, windows, 16)
    gpu = crop_tubes(clips.cuda(), owner.cuda(), windows.cuda(), 16)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)
    batch = SimpleNamespace(clips=clips.cuda(), video=torch.arange(4, device="cuda"),
                            frame=torch.full((4,), 5, device="cuda"), window=None)
    sampler = TubeSampler(DeviceBoxes(), window=20, size=8, per_clip=2)
    generator = torch.Generator(device="cuda").manual_seed(0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        tubes = sampler(batch, generator)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert tubes.clips.is_cuda and tubes.clips.shape == (8, 1, 3, 8, 8)
    assert tubes.valid.tolist() == [True, True, False, False, True, True, False, False]
