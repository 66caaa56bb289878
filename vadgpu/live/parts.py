"""What live scoring needs of a model besides the network: an object model's tube scorer (from its calibration
record, with the stream's boxes) and the training frame scores its normalisation and alarm threshold come from."""

from __future__ import annotations

from pathlib import Path

from vadgpu.errors import VadgpuError
from vadgpu.log import logger
from vadgpu.precision import DEFAULT_PRECISION


def live_parts(model, ckpt: dict, model_source, protocol, source, boxes, device, precision: str = DEFAULT_PRECISION):
    """(an object model's LiveObjectScorer or None, the training frame scores and their video names) for live
    scoring: an object model scores with its calibration record, with the boxes of `boxes` (a box cache holding
    the file SOURCE) or found by background subtraction as the frames arrive, its networks in `precision`."""
    if model.config.clips != "objects":
        from vadgpu.scoring.train_scores import raw_train_scores

        if boxes is not None:
            raise VadgpuError("--boxes: a frame model scores whole frames and reads no boxes")
        stored = ckpt.get("train_scores") if ckpt else model.train_scores
        return None, raw_train_scores(stored, protocol), (stored or {}).get("names") or []
    from vadgpu.live.objects import LiveObjectScorer
    from vadgpu.objects.detectors import BackgroundSubtractionDetector
    from vadgpu.objects.tubes import FrameBoxes
    from vadgpu.scoring.calibration import for_scoring, stored_calibration
    from vadgpu.scoring.tubes import TubeScorer

    calibration = stored_calibration(ckpt, model_source) if ckpt else model.calibration
    cached = None
    if boxes is not None:
        if not Path(source).is_file():
            raise VadgpuError(f"--boxes with live scoring replays a file with its cached boxes; {source} is a stream")
        from vadgpu.evaluation.runner import prepare_input

        video = prepare_input(source, device, progress=False, loader="torch")
        cached = FrameBoxes.load(boxes, [video], split="test")
    if calibration is not None:
        if boxes is None:  # the stream's boxes come from background subtraction
            detector = BackgroundSubtractionDetector().describe()
            if calibration.detector is not None and calibration.detector != detector:
                raise VadgpuError(f"live scoring finds boxes by background subtraction ({detector}), but the model "
                                  f"was calibrated on boxes from {calibration.detector}")
        else:
            calibration = for_scoring(calibration, protocol, boxes, model_source)
        if protocol.appearance == "none":
            calibration = calibration.without_appearance()
        if calibration.appearance is not None:
            calibration.appearance.to(device)

        def make_scorer(frame_boxes):
            return calibration.tube_scorer(model, frame_boxes, protocol, device, precision)
        train = calibration.train_frame_scores()
        floor = float(min(s.min() for s in train)) if train else 0.0
        return (LiveObjectScorer(model, make_scorer, floor, cached, calibration.background), train,
                calibration.names)
    if protocol.tube_norm == "location":
        logger.warning(f"{model_source} has no calibration record (`vadgpu calibrate` adds it): tube scores are "
                       "raw errors")
    cfg = model.config

    def make_raw_scorer(frame_boxes):
        return TubeScorer(frame_boxes, cfg.window, cfg.size[0], protocol.score, protocol.mix_weight,
                          precision=precision)
    return LiveObjectScorer(model, make_raw_scorer, 0.0, cached), None, []
