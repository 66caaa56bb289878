"""What a model file must hold before vadgpu uses it: checked where checkpoints (checkpoint.load_checkpoint) and
exported ONNX files (export.OnnxModel) are read, so that scoring never runs on values it cannot trust.

- weights: every entry of `model` a tensor, every float tensor finite (NaN weights scored every frame NaN, and a
  live alarm never rang);
- `train_scores` (the training videos' raw scores, for --norm train and live thresholds): a mapping whose score
  kinds hold one list of finite numbers per training video, whose `names` fit them, and whose location
  statistics fit their grid;
- the training config's paths and names: text or empty;
- an ONNX file's metadata: a model config vadgpu can build (its tube window a number of pixels, never `auto`),
  whose clip geometry is the graph's input and output;
- scores: `check_finite_scores` refuses a model (or an input) that gives NaN or infinite scores.
Every problem is a VadgpuError naming the file and the field.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Sequence

import numpy as np
import torch

from vadgpu.errors import VadgpuError

SCORE_KINDS = ("patch-max", "psnr", "mse", "mse-location")
LOCATION_KEY = "tube_location"
CONFIG_TEXT = ("dataset", "root", "variant", "boxes", "patches", "out", "preset", "model", "loader", "device")


def check_weights(path, weights: dict) -> None:
    """`weights` (a state_dict): tensors only, float ones finite."""
    odd = [str(k) for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise VadgpuError(f"checkpoint {path} is damaged: its weights hold {type(weights[odd[0]]).__name__} under "
                          f"{odd[0]}, not a tensor")
    broken = [str(k) for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise VadgpuError(f"checkpoint {path}: {len(broken)} of its {len(weights)} weight tensors hold NaN or "
                          f"infinite values ({', '.join(broken[:3])}{' ...' if len(broken) > 3 else ''}); the "
                          "training diverged or the file is damaged, and every score would be NaN")


def _scores_of_video(value: Any) -> np.ndarray | None:
    """One video's stored scores as float64, or None when they are not a flat sequence of finite numbers."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 1 or not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
            return None
        array = value.detach().to(torch.float64).numpy()
    elif isinstance(value, (list, tuple)):
        if not all(isinstance(v, Real) and not isinstance(v, bool) for v in value):
            return None
        array = np.asarray(value, dtype=np.float64)
    else:
        return None
    return array if array.size and np.isfinite(array).all() else None


def _check_location(where: str, record: Any) -> None:
    if not isinstance(record, dict):
        raise VadgpuError(f"{where}: train_scores.{LOCATION_KEY} is a {type(record).__name__}, not a mapping")
    grid = record.get("grid")
    if (not isinstance(grid, (list, tuple)) or len(grid) != 2
            or not all(isinstance(g, int) and not isinstance(g, bool) and 1 <= g <= 1024 for g in grid)):
        raise VadgpuError(f"{where}: train_scores.{LOCATION_KEY}.grid must be two whole numbers in [1, 1024], not "
                          f"{grid!r}")
    if not isinstance(record.get("kind"), str):
        raise VadgpuError(f"{where}: train_scores.{LOCATION_KEY}.kind must be a score kind's name")
    cells = grid[0] * grid[1]
    for key in ("mean", "std", "count"):
        values = _scores_of_video(record.get(key))
        if values is None or values.size != cells:
            raise VadgpuError(f"{where}: train_scores.{LOCATION_KEY}.{key} must hold {cells} finite numbers (one "
                              "per cell of its grid)")
        negative = (values < 0).any() and key in ("std", "count")
        if negative or (key == "count" and (values != np.round(values)).any()):
            raise VadgpuError(f"{where}: train_scores.{LOCATION_KEY}.{key} holds impossible values")


def check_train_scores(where: str, stored: Any) -> None:
    """`stored` (a checkpoint's or an ONNX file's train_scores; None: absent) in the layout
    evaluation/train_scores.py writes; `where` names the file in messages."""
    if stored is None:
        return
    if not isinstance(stored, dict):
        raise VadgpuError(f"{where}: train_scores is a {type(stored).__name__}, not a mapping")
    names = stored.get("names")
    if names is not None and (not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names)):
        raise VadgpuError(f"{where}: train_scores.names must be a list of video names")
    for key in ("dataset", "root", "variant"):
        if stored.get(key) is not None and not isinstance(stored[key], str):
            raise VadgpuError(f"{where}: train_scores.{key} must be text, not {stored[key]!r:.60}")
    for kind in sorted(set(SCORE_KINDS) | {k for k in stored if isinstance(k, str) and k.endswith("-location")}):
        if kind not in stored:
            continue
        videos = stored[kind]
        if not isinstance(videos, (list, tuple)) or not videos:
            raise VadgpuError(f"{where}: train_scores.{kind} must be a list of per-video scores")
        for index, value in enumerate(videos):
            if _scores_of_video(value) is None:
                raise VadgpuError(f"{where}: train_scores.{kind}[{index}] is not a list of finite scores")
        if names is not None and len(names) != len(videos):
            raise VadgpuError(f"{where}: train_scores.{kind} has {len(videos)} videos but names lists {len(names)}")
    if stored.get(LOCATION_KEY) is not None:
        _check_location(where, stored[LOCATION_KEY])


def check_training_config(path, config: dict) -> None:
    """The training config inside a checkpoint: paths and names are text (or empty)."""
    for key in CONFIG_TEXT:
        if config.get(key) is not None and not isinstance(config[key], str):
            raise VadgpuError(f"checkpoint {path} is damaged: its config's {key} is {config[key]!r:.60}, not text")


def check_finite_scores(scores: Sequence[np.ndarray], names: Sequence[str], model: str,
                        without_boxes: bool = False) -> None:
    """Per-video raw scores from `model` (its file): all finite, else one error naming the video and frame.
    `without_boxes`: an object model's frames without a box, scored -inf until they are filled, pass."""
    for video, values in zip(names, scores):
        values = np.asarray(values, dtype=np.float64)
        bad = np.isnan(values) | (values == np.inf) | (~without_boxes & (values == -np.inf))
        if bad.any():
            raise VadgpuError(f"{model} gives {'NaN' if np.isnan(values[bad][0]) else 'infinite'} scores "
                              f"({int(bad.sum())} of {bad.size} frames of video {video}, the first at frame "
                              f"{int(np.flatnonzero(bad)[0])}): its weights are broken, nothing can be scored")


def check_finite_score(value: float, frame: int, model: str) -> float:
    """One live raw score (frame `frame`): finite, else the error of check_finite_scores."""
    if not math.isfinite(value):
        raise VadgpuError(f"{model} gives a {'NaN' if math.isnan(value) else 'infinite'} score at frame {frame}: "
                          "its weights are broken, nothing can be scored")
    return value


def read_onnx_metadata(path, session, text: str):
    """(metadata, model config, train_scores) of an exported ONNX file: its vadgpu metadata JSON `text`, checked
    against the graph the onnxruntime `session` runs."""
    import json

    from vadgpu.models.onnx_model import FRAMES_NAME, INPUT_NAME, MAPS_NAME, OUTPUT_NAME
    from vadgpu.models.base import check_window_resolved
    from vadgpu.models.registry import model_config_from_dict
    from vadgpu.scoring.train_scores import from_json

    where = f"--model {path}"
    try:
        metadata = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise VadgpuError(f"{where}: its vadgpu metadata is not JSON ({exc})") from exc
    if not isinstance(metadata, dict) or not isinstance(metadata.get("model_config"), dict):
        raise VadgpuError(f"{where}: its vadgpu metadata holds no model_config mapping")
    name = metadata.get("model_name")
    if name is not None and not isinstance(name, str):
        raise VadgpuError(f"{where}: its metadata's model_name is {name!r:.60}, not text")
    try:
        config = model_config_from_dict(metadata["model_config"], name)
    except VadgpuError as exc:
        raise VadgpuError(f"{where}: its metadata's {exc.format_message()}") from exc
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise VadgpuError(f"{where}: its metadata's model_config cannot be read ({type(exc).__name__}: "
                          f"{exc})") from exc
    check_window_resolved(config, where)
    shapes = {"input": (INPUT_NAME, FRAMES_NAME, session.get_inputs(),
                        [config.channels, config.temporal, *config.size]),
              "output": (OUTPUT_NAME, MAPS_NAME, session.get_outputs(), [config.channels, *config.size])}
    for role, (wanted, backbone, nodes, dims) in shapes.items():  # the appearance backbone's node: optional
        names = [n.name for n in nodes]
        if names not in ([wanted], [wanted, backbone]):
            raise VadgpuError(f"{where}: the graph's {role}s are {names}, not {wanted!r} (and {backbone!r})")
        shape = list(nodes[0].shape)
        fixed = [d if isinstance(d, int) else None for d in shape[1:]]
        if len(shape) != len(dims) + 1 or any(d is not None and d != e for d, e in zip(fixed, dims)):
            raise VadgpuError(f"{where}: its metadata says {role} (N, {', '.join(map(str, dims))}) but the graph's "
                              f"{role} {wanted} is {shape}: the metadata does not describe this graph")
    check_train_scores(where, metadata.get("train_scores"))
    try:
        stored = from_json(metadata.get("train_scores"))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise VadgpuError(f"{where}: its metadata's train_scores cannot be read ({exc})") from exc
    return metadata, config, stored
