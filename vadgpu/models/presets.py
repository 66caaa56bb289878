"""Named model settings. Each preset is (architecture, config overrides on that architecture's defaults).

Paper presets (for a GPU):
    ddl-paper              DDL as published: 256x256 RGB, T = 3, widths 64-128-256-512 (the reference code's
                           latent_dim = 512), lambda = 1e-2, the paper's region-norm distinction loss
                           (`distinction="pixel"` selects the reference code's form; see ddl_loss.py).
    dualpath-ped2          128x128 gray, F = 16, 500 memory items, T = 16, skips {2, 3, 4, 5}.
    dualpath-avenue        as dualpath-ped2 but RGB: the authors' code changes only the input channels (and the
    dualpath-shanghaitech  learning rate and epoch count, which are training settings) between datasets. Their
                           public code also shows F = 32, 2000 items and shrink 0.0005 at 256x256; we keep the
                           issue's Ped2 numbers for all three and say so here.
CPU presets (this 2-core machine; sizes measured in the README's table):
    ddl-tiny-cpu, dualpath-tiny-cpu   32x32 gray, tiny widths: tests and the demo.
    ddl-ped2-cpu           64x64 gray, T = 3, widths 8-16-32-64: 1.5-2.4 min per Ped2 epoch (315 steps of 8
                           clips, data loading and pseudo-anomalies included) in the README's Ped2 runs on an
                           otherwise idle machine; 8.2 min at 128x128 (benchmarks/ped2/ddl-s128.yaml).
    dualpath-ped2-cpu      64x64 gray, T = 8, F = 6, 100 items: about 1.7 min per Ped2 epoch.
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
    "dualpath-tiny-cpu": (
        "dualpath",
        {"size": (32, 32), "temporal": 4, "features": 4, "memory_items": 20, "skips": (2, 3), "max_skip": 3},
    ),
}
