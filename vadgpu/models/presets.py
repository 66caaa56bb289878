"""Named model settings. Each preset is (architecture, config overrides on that architecture's defaults).

Paper presets (for a GPU):
    ddl-paper              DDL as published: 256x256 RGB, T = 3, widths 64-128-256-512 (the reference code's
                           latent_dim = 512), lambda = 1e-2, the paper's region-norm distinction loss
                           (`distinction="pixel"` selects the reference code's form; see ddl_loss.py).
    dualpath-ped2          128x128 gray, F = 16, 500 memory items, T = 16, skips {2, 3, 4, 5}.
    dualpath-avenue        as dualpath-ped2 but RGB: the authors' code changes only the input channels (and the
    dualpath-shanghaitech  learning rate and epoch count, which are training settings) between datasets. Their
                           public code also shows F = 32, 2000 items and shrink 0.0005 at 256x256; we keep the
                           Ped2 numbers above for all three and say so here.
CPU presets (for a 2-core CPU; sizes measured in the README's table):
    ddl-tiny-cpu, dualpath-tiny-cpu   32x32 gray, tiny widths: tests and the demo.
    ddl-ped2-cpu           64x64 gray, T = 3, widths 8-16-32-64: 1.5-2.4 min per Ped2 epoch (315 steps of 8
                           clips, data loading and pseudo-anomalies included) in the README's Ped2 runs on an
                           otherwise idle machine; 8.2 min at 128x128 (benchmarks/ped2/ddl-s128.yaml).
    dualpath-ped2-cpu      64x64 gray, T = 8, F = 6, 100 items: about 1.7 min per Ped2 epoch.
Object presets (`clips="objects"`, `target="predict"`: one tube per tracked object, cut in a fixed window of 48
native pixels around the object's centre-frame box and resized to `size`; the centre frame is predicted from its
neighbours; see objects/tubes.py and the README's object-mode section):
    ddl-objects-cpu        DDL on 32x32 gray tubes, T = 5, widths 8-16-32-64, the learned blend weight.
    dualpath-objects-cpu   dual-path on 32x32 gray tubes, T = 5, F = 8, 100 items, skips {2, 3}, all four sources.
    ddl-objects            the same DDL at a GPU's scale: 64x64 RGB tubes, widths 32-64-128-256.
    dualpath-objects       the same dual-path at a GPU's scale: 64x64 gray tubes, T = 9, F = 16, 500 items,
                           skips {2, 3, 4, 5}. Neither GPU form has been trained by the project yet.

`vadgpu train --model M` without `--preset` takes DEFAULT_PRESETS[M]: the CPU preset on a machine without CUDA
(a paper preset would take minutes per step there and write gigabyte checkpoints), the paper preset on CUDA.
`vadgpu presets` lists every preset with its size, geometry and PURPOSES line.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddl-paper": ("ddl", {}),
    "ddl-ped2-cpu": ("ddl", {"size": (64, 64), "channels": 1, "width": 8}),
    "ddl-tiny-cpu": ("ddl", {"size": (32, 32), "channels": 1, "width": 4}),
    "dualpath-ped2": ("dualpath", {}),
    "dualpath-avenue": ("dualpath", {"channels": 3}),
    "dualpath-shanghaitech": ("dualpath", {"channels": 3}),
    "dualpath-ped2-cpu": ("dualpath", {"size": (64, 64), "temporal": 8, "features": 6, "memory_items": 100}),
    "ddl-objects-cpu": ("ddl", {"clips": "objects", "target": "predict", "window": 48, "size": (32, 32),
                                "temporal": 5, "channels": 1, "width": 8}),
    "ddl-objects": ("ddl", {"clips": "objects", "target": "predict", "window": 48, "size": (64, 64), "temporal": 5,
                            "channels": 3, "width": 32}),
    "dualpath-objects-cpu": ("dualpath", {"clips": "objects", "target": "predict", "window": 48, "size": (32, 32),
                                          "temporal": 5, "features": 8, "memory_items": 100, "skips": (2, 3),
                                          "max_skip": 3}),
    "dualpath-objects": ("dualpath", {"clips": "objects", "target": "predict", "window": 48, "size": (64, 64),
                                      "temporal": 9, "features": 16, "memory_items": 500}),
    "dualpath-tiny-cpu": (
        "dualpath",
        {"size": (32, 32), "temporal": 4, "features": 4, "memory_items": 20, "skips": (2, 3), "max_skip": 3},
    ),
}

# What each preset is for: the last column of `vadgpu presets` (every preset has one; tests hold them equal).
PURPOSES: dict[str, str] = {
    "ddl-paper": "DDL as published (GPU)",
    "ddl-ped2-cpu": "DDL on full frames on a CPU (the CPU default for --model ddl)",
    "ddl-tiny-cpu": "tests and quick trials",
    "dualpath-ped2": "the dual-path paper settings for Ped2 (GPU)",
    "dualpath-avenue": "the dual-path paper settings for Avenue, RGB (GPU)",
    "dualpath-shanghaitech": "the dual-path paper settings for ShanghaiTech, RGB (GPU)",
    "dualpath-ped2-cpu": "the dual-path model on full frames on a CPU (the CPU default for --model dualpath)",
    "ddl-objects-cpu": "DDL on object tubes on a CPU (the Ped2 recipe, `make demo`)",
    "ddl-objects": "DDL on object tubes at a GPU's scale",
    "dualpath-objects-cpu": "the dual-path model on object tubes on a CPU",
    "dualpath-objects": "the dual-path model on object tubes at a GPU's scale",
    "dualpath-tiny-cpu": "tests and quick trials",
}

# The preset `--model M` trains when no --preset is given: {architecture: {"cpu": ..., "cuda": ...}}.
DEFAULT_PRESETS: dict[str, dict[str, str]] = {
    "ddl": {"cpu": "ddl-ped2-cpu", "cuda": "ddl-paper"},
    "dualpath": {"cpu": "dualpath-ped2-cpu", "cuda": "dualpath-ped2"},
}
