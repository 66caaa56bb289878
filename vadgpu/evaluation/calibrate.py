"""Which calibration record an object model is scored with, and `vadgpu calibrate` (a record into a weights file).

`vadgpu eval` uses the record stored in the weights file when it was fitted on the dataset's training split; on
another dataset (a camera the model was not calibrated for), or when `--appearance WEIGHTS` asks for an appearance
term the record lacks, it fits one in a pass over that dataset's training videos (scoring/calibration.py), which is
what `vadgpu calibrate` does and stores.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from vadgpu.errors import VadgpuError
from vadgpu.log import logger
from vadgpu.scoring.appearance import DEFAULT_WEIGHT
from vadgpu.scoring.calibration import (Calibration, calibrate, for_scoring, requested_features,
                                        stored_calibration)
from vadgpu.scoring.protocol import NO_APPEARANCE, Protocol

FROM_FILE = "the weights file (its calibration record)"
FROM_PASS = "a calibration pass over the training videos"


def eval_calibration(ckpt: dict, checkpoint, model, protocol: Protocol, train: list, boxes, dataset: str,
                     variant: str | None, device: torch.device, batch_size: int, progress: bool, loader: str
                     ) -> tuple[Calibration, str]:
    """The record `vadgpu eval` scores the test split with, and where it came from (module docstring)."""
    stored = stored_calibration(ckpt, checkpoint)
    features = requested_features(protocol)
    if stored is not None and features is not None and stored.appearance is not None:
        stored.check_features(features.identity(), protocol.appearance)
    names = [v.name for v in train]
    if stored is not None and stored.fits(dataset, variant, names) and not (
            features is not None and stored.appearance is None):
        return for_scoring(stored, protocol, boxes, checkpoint), FROM_FILE
    if features is None and stored is not None and stored.appearance is not None \
            and protocol.appearance != NO_APPEARANCE:
        features = stored.appearance.features  # the record's network, fitted again on this camera's videos
    weight = protocol.appearance_weight or (stored.appearance.weight if stored is not None and stored.appearance
                                            is not None else DEFAULT_WEIGHT)
    if not train:
        raise VadgpuError(f"dataset {dataset} has no training videos to calibrate the object model on")
    if stored is not None:
        logger.info(f"{checkpoint}: its calibration record was fitted on {stored.dataset.get('name')}, not on "
                    f"{dataset}'s training videos: calibrating on them (`vadgpu calibrate` would store it)")
    calibration = calibrate(model, train, boxes, dataset=dataset, variant=variant, device=device,
                            features=features, weight=weight, batch_size=batch_size, progress=progress,
                            loader=loader)
    return for_scoring(calibration, replace(protocol, appearance_weight=None), boxes, checkpoint), FROM_PASS


def calibrate_file(checkpoint: str | Path, *, appearance: str | Path | None = None, weight: float = DEFAULT_WEIGHT,
                   dataset: str | None = None, root: str | Path | None = None, variant: str | None = None,
                   boxes: str | Path | None = None, out: str | Path | None = None, device: str = "auto",
                   batch_size: int = 16, progress: bool = True, loader: str = "auto") -> tuple[Path, Calibration]:
    """Fit an object model's calibration record on a dataset's training videos (by default the one it was trained
    on, with its training boxes) and write the weights file with it to `out` (default: `checkpoint` itself,
    replaced atomically). Returns (the file written, the record)."""
    from vadgpu.checkpoint import load_checkpoint, save_model_file
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared
    from vadgpu.device import resolve_device
    from vadgpu.evaluation.runner import dataset_defaults, load_model
    from vadgpu.objects.appearance import BoxFeatures
    from vadgpu.outputs import check_calibrate_out
    from vadgpu.pipelines.choose import resolve_loader

    checkpoint = Path(checkpoint)
    if out is None and not checkpoint.is_file():
        raise VadgpuError(f"{checkpoint} names weights shipped with vadgpu, which stay as they are: give --out FILE")
    out = check_calibrate_out(out if out is not None else checkpoint, checkpoint)
    device = resolve_device(device)
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    model = load_model(ckpt, device)
    if model.config.clips != "objects":
        raise VadgpuError(f"{checkpoint} holds a frame model ({ckpt.get('model_name')}); the calibration record is "
                          "an object model's (a frame model's training scores are written by `vadgpu train`)")
    features = None if appearance is None else BoxFeatures.from_darknet(appearance)
    config = ckpt.get("config") or {}
    dataset, root, variant, trained_on = dataset_defaults(checkpoint, config, dataset, root, variant)
    data = open_dataset(dataset, root, variant=variant)
    loader = resolve_loader(loader)[0]
    prepared = load_prepared(data, device, progress=progress, loader=loader)
    train = list(prepared.train)
    if boxes is None and trained_on and config.get("boxes") and Path(config["boxes"]).is_file():
        boxes = config["boxes"]
    if boxes is None:
        from vadgpu.objects.default_boxes import ensure_box_cache

        boxes = ensure_box_cache(data, {"train": train, "test": list(prepared.test)}, progress=progress)
    calibration = calibrate(model, train, boxes, dataset=data.name, variant=variant, device=device,
                            features=features, weight=weight, batch_size=batch_size, progress=progress, loader=loader)
    state = {k: v for k, v in ckpt.items() if k != "train_scores"}  # an object model's old record is superseded
    state["calibration"] = calibration.to_record()
    save_model_file(out, state)
    return out, calibration
