"""The patch bank for object-level pseudo-anomalies: (P, C, h, w) float32 in [0, 1] on the device, loaded once.

Sources, by what `source` names:
    a file      CIFAR-100 in its standard python pickle format: the `train` (or `test`) file of
                cifar-100-python, as the dual-path method uses. The dataset is distributed only as a pickle,
                so this is the one place vadgpu unpickles; it does so only for a path the user names, and with
                an unpickler that refuses every global except the numpy array constructors the file needs.
    a folder    any images in it (jpg, png, bmp, tif, webp; searched recursively), read with OpenCV.
    None        procedural textures (stripes, checkers, blobs, noise), deterministic under `seed`: a patch bank
                that needs no download.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import torch

from vadgpu.errors import VadgpuError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
TEXTURES = ("stripes", "checkers", "blobs", "noise")


def load_patch_bank(
    source: str | os.PathLike | None = None,
    channels: int = 3,
    size: tuple[int, int] = (32, 32),
    device: torch.device | str = "cpu",
    max_patches: int = 4096,
    seed: int = 0,
) -> torch.Tensor:
    """Patches (P, C, h, w) float32 in [0, 1] on `device`, P <= max_patches (a seeded subset of larger sources)."""
    if channels not in (1, 3):
        raise VadgpuError(f"patch bank channels {channels}: use 1 (gray) or 3 (RGB)")
    h, w = size
    if h < 1 or w < 1 or max_patches < 1:
        raise VadgpuError(f"patch bank size {size} / max_patches {max_patches}: must be positive")
    rng = np.random.default_rng(seed)
    if source is None:
        images = procedural_textures(max_patches, (h, w), seed=seed)  # (P, h, w, 3) RGB uint8
    else:
        path = Path(source)
        if path.is_dir():
            images = _read_folder(path, max_patches, rng)
        elif path.is_file():
            images = _read_cifar(path)
            if len(images) > max_patches:
                images = images[np.sort(rng.choice(len(images), max_patches, replace=False))]
        else:
            raise VadgpuError(f"patch source {path}: no such file or folder")
    out = np.stack([_fit(img, (h, w), channels) for img in images])  # (P, h, w, C) uint8
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(device=device, dtype=torch.float32) / 255.0


def _fit(rgb: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    h, w = size
    shrink = rgb.shape[0] > h or rgb.shape[1] > w
    img = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]  # (h, w, 1)
    return img  # (h, w, 3)


def _read_folder(folder: Path, max_patches: int, rng: np.random.Generator) -> list[np.ndarray]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise VadgpuError(f"patch folder {folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if len(files) > max_patches:
        files = [files[i] for i in np.sort(rng.choice(len(files), max_patches, replace=False))]
    images = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise VadgpuError(f"patch folder {folder}: OpenCV cannot read {f}")
        images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return images


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global in the file is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # numpy's protocol-5 array reduction
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # python 2 pickles encode byte strings through codecs
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}")
        return super().find_class(module, name)


def _read_cifar(path: Path) -> np.ndarray:
    """CIFAR-100 python-format file -> (P, 32, 32, 3) RGB uint8."""
    try:
        with open(path, "rb") as fh:
            batch = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError) as exc:
        raise VadgpuError(f"patch source {path}: not a CIFAR-100 python pickle (`train` of cifar-100-python): "
                          f"{exc}") from exc
    if not isinstance(batch, dict):
        raise VadgpuError(f"patch source {path}: a CIFAR-100 file holds a dict, this holds {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) == 0:
        shape = getattr(data, "shape", None)
        raise VadgpuError(f"patch source {path}: expected a 'data' array of shape (N, 3072), found {shape}")
    # Rows are the red plane, then green, then blue, each 32x32 row-major.
    return data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (P, 32, 32, 3)


def procedural_textures(count: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """`count` varied RGB textures (count, h, w, 3) uint8, cycling stripes / checkers / blobs / noise with random
    scale, orientation and colours; the same seed gives the same textures."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((count, h, w, 3), np.uint8)
    for i in range(count):
        kind = TEXTURES[i % len(TEXTURES)]
        if kind == "stripes":
            angle, period = rng.uniform(0, np.pi), rng.uniform(3, max(4, min(h, w) / 2))
            t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
        elif kind == "checkers":
            angle, cell = rng.uniform(0, np.pi), rng.uniform(2, max(3, min(h, w) / 3))
            u, v = xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle)
            t = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
        elif kind == "blobs":
            t = np.zeros((h, w), np.float32)
            for _ in range(rng.integers(2, 7)):
                cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1.5, max(2, min(h, w) / 3))
                t += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            t = t / max(float(t.max()), 1e-6)
        else:  # noise at a random scale: white noise, blurred
            t = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), rng.uniform(0.5, 3))
            t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)  # two random colours mixed by the pattern
        out[i] = (c0 + t[..., None] * (c1 - c0)).clip(0, 255).astype(np.uint8)
    return out
