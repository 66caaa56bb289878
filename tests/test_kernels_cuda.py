"""The CUDA side of the kernels: NVRTC compile checks (no GPU needed, run in CI) and gpu-marked tests that the
CuPy kernels equal the torch reference and that a perturbation step never synchronises with the host."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest
import torch

from vadgpu import kernels as K
from vadgpu.errors import VadgpuError
from vadgpu.kernels import cupy_ops, nvrtc, params, torch_ops


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


def test_runtime_asks_for_the_cu12_nvrtc_wheel_only_for_a_cuda12_cupy(monkeypatch):
    calls = []
    monkeypatch.setattr(nvrtc, "load_nvrtc", lambda: calls.append(1))
    monkeypatch.setattr(nvrtc, "cupy_cuda_major", lambda: 13)
    nvrtc.prepare_runtime_nvrtc()  # cupy-cuda13x brings its own NVRTC: the cu12 wheel is not needed
    assert calls == []
    monkeypatch.setattr(nvrtc, "cupy_cuda_major", lambda: 12)
    nvrtc.prepare_runtime_nvrtc()
    assert calls == [1]


def test_the_installed_cupy_is_the_cuda12_wheel():
    assert nvrtc.cupy_cuda_major() == 12


def test_a_broken_kernel_fails_with_the_nvrtc_log(tmp_path):
    broken = tmp_path / "broken.cu"
    broken.write_text('extern "C" __global__ void bad(float* x) { x[0] = undefined_name; }\n')
    with pytest.raises(VadgpuError, match=r"(?s)broken\.cu does not compile for compute_80.*undefined_name"):
        nvrtc.compile_all([broken], archs=("compute_80",))


# --- the CUDA sources run on the CPU ----------------------------------------------------------------------------
# Without a GPU the kernels' logic (indexing, geometry, blending) is still checked: a C++ compiler builds each .cu
# with a shim for the few CUDA names they use and one "thread" that walks the grid-stride loop over everything;
# cupy_ops' launcher is swapped for one that calls these builds, so argument order and types, output allocation
# and the DDL autograd Function are exercised too. Only CuPy, DLPack and streams are left to the GPU tests.

CUDA_ON_CPU = """
#include <math.h>
#define __global__
#define __device__
#define __forceinline__ inline
struct vadgpu_dim3 { unsigned x; };
static const vadgpu_dim3 blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
static inline int min(int a, int b) { return a < b ? a : b; }
"""


@pytest.fixture(scope="module")
def kernels_on_cpu(tmp_path_factory) -> dict[str, ctypes.CDLL]:
    cxx = shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++ or clang++) to run the CUDA sources on the CPU")
    build = tmp_path_factory.mktemp("cuda_on_cpu")
    shim = build / "cuda_on_cpu.h"
    shim.write_text(CUDA_ON_CPU)
    libs = {}
    for name, source in nvrtc.kernel_sources().items():
        lib = build / f"{source.stem}.so"
        # -ffp-contract=off: no FMA, as NVRTC's --fmad=false, so results round like the torch reference
        subprocess.run([cxx, "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-include", str(shim), "-x", "c++",
                        str(source), "-o", str(lib)], check=True, capture_output=True)
        libs[name] = ctypes.CDLL(str(lib))
    return libs


@pytest.fixture
def cupy_ops_on_cpu(kernels_on_cpu, monkeypatch):
    def launch(source, name, device, work_items, args):
        assert name in cupy_ops.KERNELS[source] and device.type == "cpu"
        converted = []
        for a in args:
            if isinstance(a, torch.Tensor):
                assert a.is_contiguous(), name
                converted.append(ctypes.c_void_p(a.data_ptr()))
            else:
                converted.append({np.int64: ctypes.c_longlong, np.int32: ctypes.c_int}[type(a)](int(a)))
        getattr(kernels_on_cpu[source], name)(*converted)

    monkeypatch.setattr(cupy_ops, "_launch", launch)
    return cupy_ops


def cpu_case(seed: int, n: int = 5, c: int = 3, t: int = 7, h: int = 20, w: int = 28):
    g = torch.Generator().manual_seed(seed)
    clips = torch.rand(n, c, t, h, w, generator=g)
    corner = torch.rand(n, 1, 2, generator=g) * 0.5
    size = 0.15 + torch.rand(n, 1, 2, generator=g) * 0.5
    drift = torch.linspace(0, 0.15, t)[None, :, None]
    boxes = torch.cat([corner + drift, corner + size + drift], dim=2).clamp(0, 1)  # (N, T, 4)
    valid = torch.arange(n) % 3 != 1
    return g, clips, boxes, valid


def assert_close(a: torch.Tensor, b: torch.Tensor, boundary_fraction: float = 0.0):
    # Box kernels decide inside/outside per pixel centre; a one-ulp difference exactly on a box edge may flip
    # a pixel, so those allow a tiny fraction of pixels to differ.
    assert a.shape == b.shape and a.dtype == b.dtype
    bad = ~torch.isclose(a, b, rtol=1e-5, atol=1e-5)
    assert bad.float().mean().item() <= boundary_fraction, f"{int(bad.sum())} of {bad.numel()} values differ"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cuda_sources_match_torch_on_cpu(cupy_ops_on_cpu, seed):
    g, clips, boxes, valid = cpu_case(seed)
    n, _, t = clips.shape[:3]
    window = torch.rand(n, 3, 4 * (t - 1) + 1, *clips.shape[3:], generator=g)
    index = params.skip_index(torch.tensor([2, 3, 4, 1, 2]), t, window.shape[2])
    assert torch.equal(cupy_ops_on_cpu.gather_frames(window, index), torch_ops.gather_frames(window, index))
    perms = params.draw_permutations(n, t, g, clips.device)
    assert torch.equal(cupy_ops_on_cpu.gather_frames(clips, perms), torch_ops.gather_frames(clips, perms))
    noise, sigma = torch.randn(clips.shape, generator=g), torch.tensor([0.0, 0.1, 0.5, 1.0, 0.2])
    assert_close(cupy_ops_on_cpu.add_gaussian_noise(clips, noise, sigma),
                 torch_ops.add_gaussian_noise(clips, noise, sigma))
    patches = torch.rand(4, 3, 7, 9, generator=g)
    index, subbox = params.draw_patch_params(n, 4, g, clips.device)
    got = cupy_ops_on_cpu.paste_patches(clips, boxes, valid, patches, index, subbox)
    want = torch_ops.paste_patches(clips, boxes, valid, patches, index, subbox)
    assert want[1].sum() > 0
    for a, b in zip(got, want):
        assert_close(a, b, 1e-3)
    noise = torch.rand(clips.shape, generator=g)
    grads = []
    for ops in (cupy_ops_on_cpu, torch_ops):
        logit = torch.tensor(0.7, requires_grad=True)
        x = clips.clone().requires_grad_(True)
        out, mask = ops.ddl_blend(x, boxes, valid, noise, logit)
        (out * torch.linspace(0, 1, out.numel()).reshape(out.shape)).sum().backward()
        grads.append((out.detach(), mask, logit.grad, x.grad))
    for a, b in zip(*grads):
        assert_close(a, b, 1e-3)


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
