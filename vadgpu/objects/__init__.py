"""Objects in the scene for object-level pseudo-anomalies: detectors, tracks, the box cache, the patch bank."""

from vadgpu.objects.boxes import ObjectBoxes, build_box_cache, read_box_cache
from vadgpu.objects.detectors import (
    DEFAULT_CLASSES,
    BackgroundSubtractionDetector,
    DarknetDetector,
    Detections,
    UltralyticsDetector,
    make_detector,
)
from vadgpu.objects.patches import load_patch_bank, procedural_textures
from vadgpu.objects.tracking import IoUTracker, iou_matrix, track_video

__all__ = [
    "DEFAULT_CLASSES",
    "BackgroundSubtractionDetector",
    "DarknetDetector",
    "Detections",
    "IoUTracker",
    "ObjectBoxes",
    "UltralyticsDetector",
    "build_box_cache",
    "iou_matrix",
    "load_patch_bank",
    "make_detector",
    "procedural_textures",
    "read_box_cache",
    "track_video",
]
