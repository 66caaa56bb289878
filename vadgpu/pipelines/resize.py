"""The one CPU resize of both loaders and of live scoring: OpenCV INTER_AREA, optionally straight into channel planes.
A leaf module, so the loaders and the DALI pipelines share it without importing each other."""

from __future__ import annotations

import numpy as np


def resize_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One uint8 frame (H, W[, C]) to `size` (H, W) with OpenCV's INTER_AREA: how both loaders resize on the CPU."""
    import cv2

    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def resize_into(image: np.ndarray, planes: np.ndarray) -> None:
    """One uint8 frame (H, W[, C]) resized as resize_frame does, written channels first into `planes` (C, h, w):
    OpenCV writes the resize and splits the channels in place (a numpy channels-last to channels-first transpose
    costs several times the resize at 256x256 RGB)."""
    import cv2

    channels, height, width = planes.shape
    if channels == 1:
        source = image.reshape(image.shape[:2])
        if source.shape == (height, width):
            planes[0] = source
        else:
            cv2.resize(source, (width, height), dst=planes[0], interpolation=cv2.INTER_AREA)
    else:
        cv2.split(resize_frame(image, (height, width)), list(planes))
