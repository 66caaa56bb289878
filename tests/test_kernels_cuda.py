"""The CUDA side of the kernels: NVRTC compile checks (no GPU needed, run in CI) and gpu-marked tests that the
CuPy kernels equal the torch reference and that a perturbation step never synchronises with the host."""

from __future__ import annotations

import pytest
import torch

from vadgpu import kernels as K
from vadgpu.errors import VadgpuError
from vadgpu.kernels import cupy_ops, nvrtc


@pytest.fixture(scope="module")
def compiled() -> list[nvrtc.CompileResult]:
    return nvrtc.compile_all()


def test_every_kernel_source_compiles_for_ampere_and_hopper(compiled):
    sources = set(nvrtc.kernel_sources())
    assert sources == set(cupy_ops.KERNELS), "every .cu file is used by cupy_ops and every used file exists"
    assert {(r.source, r.arch) for r in compiled} == {(s, a) for s in sources for a in ("compute_80", "compute_90")}
    for result in compiled:
        assert result.nvrtc.startswith("12."), f"compiled with NVRTC {result.nvrtc}, not the cu12 wheel's"
        assert set(cupy_ops.KERNELS[result.source]) <= set(result.entries), (result.source, result.entries)
        assert result.ptx_bytes > 1000


def test_nvrtc_comes_from_the_cu12_wheel():
    library, _ = nvrtc.load_nvrtc()
    assert library.is_file() and "cuda_nvrtc" in library.parts and library.name == "libnvrtc.so.12"


def test_a_broken_kernel_fails_with_the_nvrtc_log(tmp_path):
    broken = tmp_path / "broken.cu"
    broken.write_text('extern "C" __global__ void bad(float* x) { x[0] = undefined_name; }\n')
    with pytest.raises(VadgpuError, match=r"(?s)broken\.cu does not compile for compute_80.*undefined_name"):
        nvrtc.compile_all([broken], archs=("compute_80",))


# --- on a GPU --------------------------------------------------------------------------------------------------

SEEDS = (0, 1, 2)


def cuda_inputs(seed: int, n: int = 6, c: int = 3, t: int = 8, h: int = 40, w: int = 56):
    g = torch.Generator(device="cuda").manual_seed(seed + 100)
    clips = torch.rand(n, c, t, h, w, device="cuda", generator=g)
    window = torch.rand(n, c, 5 * (t - 1) + 1, h, w, device="cuda", generator=g)
    xy = torch.rand(n, 1, 2, device="cuda", generator=g) * 0.5
    size = 0.2 + torch.rand(n, 1, 2, device="cuda", generator=g) * 0.5
    drift = torch.linspace(0, 0.1, t, device="cuda")[None, :, None]
    boxes = torch.cat([xy + drift, xy + size + drift], dim=2).clamp(0, 1)  # (N, T, 4)
    valid = torch.arange(n, device="cuda") % 3 != 1
    patches = torch.rand(7, c, 9, 11, device="cuda", generator=g)
    return clips, window, boxes, valid, patches


def both_backends(fn):
    out = {}
    for backend in ("torch", "cupy"):
        g = torch.Generator(device="cuda").manual_seed(1234)
        out[backend] = fn(g, backend)
    return out["torch"], out["cupy"]


def assert_close(a: torch.Tensor, b: torch.Tensor, boundary_fraction: float = 0.0):
    # Box kernels decide inside/outside per pixel centre; a one-ulp difference exactly on a box edge may flip
    # a pixel, so those allow a tiny fraction of pixels to differ.
    bad = ~torch.isclose(a, b, rtol=1e-5, atol=1e-5)
    assert bad.float().mean().item() <= boundary_fraction, f"{int(bad.sum())} of {bad.numel()} values differ"


@pytest.mark.gpu
@pytest.mark.parametrize("seed", SEEDS)
def test_cupy_equals_torch_for_every_kernel(seed):
    clips, window, boxes, valid, patches = cuda_inputs(seed)
    skips = torch.tensor([2, 3, 4, 5, 2, 3], device="cuda")
    a, b = both_backends(lambda g, be: K.skip_frames(window, skips, clips.shape[2], backend=be))
    assert torch.equal(a, b)
    a, b = both_backends(lambda g, be: K.shuffle_motion(clips, g, backend=be))
    assert torch.equal(a, b)
    a, b = both_backends(lambda g, be: K.gaussian_noise(clips, 0.2, g, backend=be))
    assert_close(a, b)
    (a, ma), (b, mb) = both_backends(lambda g, be: K.paste_patches(clips, boxes, valid, patches, g, backend=be))
    assert_close(a, b, 1e-3)
    assert_close(ma, mb, 1e-3)
    logit = torch.tensor(0.4, device="cuda")
    (a, ma), (b, mb) = both_backends(lambda g, be: K.ddl_blend(clips, boxes, valid, logit, g, backend=be))
    assert_close(a, b, 1e-3)
    assert_close(ma, mb, 1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("seed", SEEDS)
def test_cupy_ddl_gradients_equal_torch(seed):
    clips, _, boxes, valid, _ = cuda_inputs(seed)
    grads = []
    for backend in ("torch", "cupy"):
        logit = torch.tensor(-0.3, device="cuda", requires_grad=True)
        x = clips.clone().requires_grad_(True)
        g = torch.Generator(device="cuda").manual_seed(seed)
        out, _ = K.ddl_blend(x, boxes, valid, logit, g, backend=backend)
        (out * torch.linspace(0, 1, out.numel(), device="cuda").reshape(out.shape)).sum().backward()
        grads.append((logit.grad, x.grad))
    assert torch.allclose(grads[0][0], grads[1][0], rtol=1e-4)
    assert_close(grads[0][1], grads[1][1], 1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cupy", "torch"])
def test_a_perturbation_step_makes_no_host_sync(backend):
    clips, window, boxes, valid, patches = cuda_inputs(0)

    class Batch:
        pass

    batch = Batch()
    batch.clips, batch.window = clips, window
    logit = torch.zeros((), device="cuda", requires_grad=True)
    policy = K.PseudoAnomalyPolicy(0.5, ["skip", "shuffle", "noise", "patch", "ddl"], backend=backend)
    g = torch.Generator(device="cuda").manual_seed(0)
    policy(batch, boxes, valid, patches, g, logit=logit)  # warm-up: kernel compile, cached tables
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = policy(batch, boxes, valid, patches, g, logit=logit)
        out.clips.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.kind.device.type == "cuda" and logit.grad is not None
