"""Named model settings. Each preset is (architecture, config overrides on that architecture's defaults).

Paper presets (for a GPU):
    ddl-paper              DDL as published: 256x256 RGB, T = 3, widths 64-128-256-512 (the reference code's
                           latent_dim = 512), lambda = 1e-2, the paper's region-norm distinction loss
                           (`distinction="pixel"` selects the reference code's form; see ddl_loss.py).
    dualpath-ped2          the dual-path network at the authors' Ped2 geometry (128x128 gray, T = 16, F = 16,
                           500 memory items, shrinkage 0.0025) with vadgpu's training form: [0, 1] input, sigmoid
                           output, both paths for every sample with masked losses, vadgpu's loss terms, pseudo_p
                           0.25, one source per sample, skips {2, 3, 4, 5} around the clip's own centre.
    dualpath-avenue        as dualpath-ped2 but RGB. Not the authors' geometry: their later scripts train Avenue at
    dualpath-shanghaitech  192x192 (F = 16, 500 items) and ShanghaiTech at 256x256 with F = 24 and 1000 items, with
                           the shrinkage threshold 0.0025 everywhere (their `Mem` default; no script passes another).
                           Kept as they were so that runs made with them stay comparable; the -authors presets below
                           have the authors' numbers.
The authors' form (SVIL2024/DualPath-PseudoAnomaly-VAD, main_ped2.py / main_avenue.py / main_shanghai.py, read
side by side with vadgpu; written anew, nothing copied). Model settings, all presets:
    input_norm zscore (data.py: each frame minus its mean over its std), output linear (no sigmoid), routing split
    (index_select: D_n's BatchNorm sees only normal samples), loss_terms authors (signed MSE over the batch,
    loss_feas, kl_fea, kl_out3, entropy, each memory term x 2e-4; dualpath_authors.py), pseudo_kind_draw batch (one
    `random.choice` of the source per batch), shuffle_draw batch (one `shuffle_index` per batch), skips {2} taken
    from another clip (skip_source other; theirs: a second, shuffled loader with jump 2), noise std 0.81 in z-units
    (their sigma_noise 0.9, squared before use) clamped to [-1, 1], the deepest skip only, shrinkage 0.0025.
    dualpath-ped2-authors          128x128 gray, T = 16, F = 16, 500 items, pseudo_p 0.02
    dualpath-avenue-authors        192x192 RGB, T = 16, F = 16, 500 items, pseudo_p 0.01
    dualpath-shanghaitech-authors  256x256 RGB, T = 16, F = 24, 1000 items, pseudo_p 0.01
    dualpath-ped2-authors-cpu      the authors' form at dualpath-ped2-cpu's geometry (64x64 gray, T = 8, F = 6,
                                   100 items), pseudo_p 0.02: the CPU comparison of the two loss forms
  Their training settings are `vadgpu train` options, not model settings: AUTHORS_TRAINING below holds them
  (batch 2, Adam, fp16 autocast, cosine per epoch to 0.1 x lr; Ped2 lr 1e-4, 20 epochs, decay over 10, seed 2026;
  Avenue lr 1e-5, 10 epochs, decay over 20, seed 42; ShanghaiTech lr 1e-5, 10 epochs, decay over 10, seed 42) and
  docs/models.md gives the commands. Not followed: their main training loader does not shuffle (DataLoader
  shuffle=False; vadgpu's does); their object source (YOLOv3-SPP boxes at confidence 0.3 in each frame, CIFAR-100
  crops of random size, a sub-box per box and frame, a linear distance blend) is vadgpu's patch source instead;
  they keep the epoch with the best test AUC, which vadgpu does not do (the last checkpoint is the model). Their
  CIFAR patches are [0, 1] tensors pasted into z-scored frames, as vadgpu's patch bank is here; whether their
  detector code (Yolov3/mynewdetect.py, not read line by line) rescales them was not verified.
CPU presets (for a 2-core CPU; sizes measured in docs/models.md's table):
    ddl-tiny-cpu, dualpath-tiny-cpu   32x32 gray, tiny widths: tests and the demo.
    ddl-ped2-cpu           64x64 gray, T = 3, widths 8-16-32-64: 1.5-2.4 min per Ped2 epoch (315 steps of 8
                           clips, data loading and pseudo-anomalies included) in the Ped2 runs of docs/results on an
                           otherwise idle machine; 8.2 min at 128x128 (benchmarks/ped2/ddl-s128.yaml).
    dualpath-ped2-cpu      64x64 gray, T = 8, F = 6, 100 items: about 1.7 min per Ped2 epoch.
Object presets (`clips="objects"`, `target="predict"`: one tube per tracked object, cut in a fixed window of native
pixels around the object's centre-frame box and resized to `size`; the centre frame is predicted from its
neighbours; see objects/tubes.py and docs/models.md, object mode). Their window is `auto`: training sets it from
the training boxes (0.8 x their median height, objects/window.py; 24 px on Ped2). Training options are not model
settings, but object models share one default: OBJECT_STEPS optimiser steps whatever the training split's size
(engine/config.py), unless --epochs or --steps says otherwise:
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

from vadgpu.models.base import WINDOW_AUTO

# The dual-path authors' model settings (see the docstring); each preset adds its geometry and pseudo-anomaly rate.
_AUTHORS: dict[str, Any] = {
    "size": (128, 128), "temporal": 16, "channels": 1, "features": 16, "memory_items": 500, "shrink": 0.0025,
    "skip_concat": (True, False, False), "input_norm": "zscore", "output": "linear", "routing": "split",
    "loss_terms": "authors", "w_feas": 2e-4, "w_kl_fea": 2e-4, "w_kl_out3": 2e-4, "w_entropy": 2e-4,
    "pseudo_p": 0.01, "pseudo_kinds": ("skip", "shuffle", "noise", "patch"), "pseudo_kind_draw": "batch",
    "shuffle_draw": "batch", "skips": (2,), "max_skip": 2, "skip_source": "other", "noise_sigma": 0.81,
}

# What every object preset shares: tubes around tracked objects, the centre frame predicted, the window sized by
# training from the training boxes.
_OBJECTS: dict[str, Any] = {"clips": "objects", "target": "predict", "window": WINDOW_AUTO}

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddl-paper": ("ddl", {}),
    "ddl-ped2-cpu": ("ddl", {"size": (64, 64), "channels": 1, "width": 8}),
    "ddl-tiny-cpu": ("ddl", {"size": (32, 32), "channels": 1, "width": 4}),
    "dualpath-ped2": ("dualpath", {}),
    "dualpath-avenue": ("dualpath", {"channels": 3}),
    "dualpath-shanghaitech": ("dualpath", {"channels": 3}),
    "dualpath-ped2-cpu": ("dualpath", {"size": (64, 64), "temporal": 8, "features": 6, "memory_items": 100}),
    "ddl-objects-cpu": ("ddl", {**_OBJECTS, "size": (32, 32), "temporal": 5, "channels": 1, "width": 8}),
    "ddl-objects": ("ddl", {**_OBJECTS, "size": (64, 64), "temporal": 5, "channels": 3, "width": 32}),
    "dualpath-objects-cpu": ("dualpath", {**_OBJECTS, "size": (32, 32), "temporal": 5, "features": 8,
                                          "memory_items": 100, "skips": (2, 3), "max_skip": 3}),
    "dualpath-objects": ("dualpath", {**_OBJECTS, "size": (64, 64), "temporal": 9, "features": 16,
                                      "memory_items": 500}),
    "dualpath-ped2-authors": ("dualpath", {**_AUTHORS, "pseudo_p": 0.02}),
    "dualpath-avenue-authors": ("dualpath", {**_AUTHORS, "size": (192, 192), "channels": 3}),
    "dualpath-shanghaitech-authors": ("dualpath", {**_AUTHORS, "size": (256, 256), "channels": 3, "features": 24,
                                                   "memory_items": 1000}),
    "dualpath-ped2-authors-cpu": ("dualpath", {**_AUTHORS, "pseudo_p": 0.02, "size": (64, 64), "temporal": 8,
                                               "features": 6, "memory_items": 100}),
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
    "dualpath-ped2": "the dual-path model at the authors' Ped2 size, vadgpu's training form (GPU)",
    "dualpath-avenue": "dualpath-ped2 in RGB, vadgpu's training form (GPU)",
    "dualpath-shanghaitech": "dualpath-ped2 in RGB, vadgpu's training form (GPU)",
    "dualpath-ped2-cpu": "the dual-path model on full frames on a CPU (the CPU default for --model dualpath)",
    "ddl-objects-cpu": "DDL on object tubes on a CPU (the Ped2 recipe, `make demo`)",
    "ddl-objects": "DDL on object tubes at a GPU's scale",
    "dualpath-objects-cpu": "the dual-path model on object tubes on a CPU",
    "dualpath-objects": "the dual-path model on object tubes at a GPU's scale",
    "dualpath-tiny-cpu": "tests and quick trials",
    "dualpath-ped2-authors": "the dual-path model as its authors' later code trains it on Ped2 (GPU)",
    "dualpath-avenue-authors": "the dual-path model as its authors' later code trains it on Avenue (GPU)",
    "dualpath-shanghaitech-authors": "the dual-path model as its authors' later code trains it on ShanghaiTech (GPU)",
    "dualpath-ped2-authors-cpu": "the authors' loss form at dualpath-ped2-cpu's size (CPU comparison)",
}

# The authors' training settings for their presets, as `vadgpu train` options (TrainConfig fields): what their
# scripts' argparse defaults are. `--schedule cosine-epochs` is their cosine_decay_multiplier stepped per epoch.
# The CPU preset has none: it is compared with dualpath-ped2-cpu under one and the same schedule.
_AUTHORS_COMMON: dict[str, Any] = {"batch_size": 2, "schedule": "cosine-epochs", "lr_floor": 0.1, "amp_dtype": "fp16"}
AUTHORS_TRAINING: dict[str, dict[str, Any]] = {
    "dualpath-ped2-authors": {**_AUTHORS_COMMON, "lr": 1e-4, "epochs": 20, "decay_epochs": 10, "seed": 2026},
    "dualpath-avenue-authors": {**_AUTHORS_COMMON, "lr": 1e-5, "epochs": 10, "decay_epochs": 20, "seed": 42},
    "dualpath-shanghaitech-authors": {**_AUTHORS_COMMON, "lr": 1e-5, "epochs": 10, "decay_epochs": 10, "seed": 42},
}

# The training settings the CPU object presets were measured with (benchmarks/ped2/run_objects.sh, the results in
# docs/results/ped2.md): `vadgpu train --preset NAME` starts from them, a config file or a flag overrides each.
_OBJECT_TRAINING: dict[str, Any] = {"batch_size": 16, "tubes_per_clip": 4, "lr": 1e-3, "schedule": "cosine"}
PRESET_TRAINING: dict[str, dict[str, Any]] = {"ddl-objects-cpu": _OBJECT_TRAINING,
                                              "dualpath-objects-cpu": _OBJECT_TRAINING}

# An object model's training length when neither epochs nor steps is given: optimiser steps, not epochs, so that a
# small training split trains as long as a large one (Ped2's 16 videos give ~155 steps of 16 clips an epoch; its
# recipe of 5 epochs, ~775 steps, was measured good). Frame models keep epochs (TrainConfig's DEFAULT_EPOCHS).
OBJECT_STEPS = 800

# The preset `--model M` trains when no --preset is given: {architecture: {"cpu": ..., "cuda": ...}}.
DEFAULT_PRESETS: dict[str, dict[str, str]] = {
    "ddl": {"cpu": "ddl-ped2-cpu", "cuda": "ddl-paper"},
    "dualpath": {"cpu": "dualpath-ped2-cpu", "cuda": "dualpath-ped2"},
}
