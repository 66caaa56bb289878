"""A colour bar drawn into a BGR frame with OpenCV: the legend of a heat panel that colours values with "inferno"
blended over the gray frame (the heatmap videos of `vadgpu score --heatmap-mp4`).

    draw_colour_bar(image, right=630, top=8, bottom=232, low=-1.2, high=4.5, max_opacity=0.75, title="tube score")

The bar runs from `low` (bottom) to `high` (top); each row is coloured as the panel colours that value, over a
middle gray: inferno at the value's level, with an opacity that grows from 0 to `max_opacity`. The two end values
are written beside it, the title above.
"""

from __future__ import annotations

import cv2
import numpy as np

WIDTH = 10  # pixels
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT, _EDGE, _GRAY = (235, 235, 235), (200, 200, 200), 128


def bar_colours(rows: int, max_opacity: float) -> np.ndarray:
    """(rows, 3) BGR uint8: the top row is the highest level (1), the bottom row the lowest (0)."""
    level = np.linspace(1.0, 0.0, rows, dtype=np.float32)
    colour = cv2.applyColorMap((level * 255).round().astype(np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0]
    alpha = (max_opacity * level)[:, None]
    return (alpha * colour + (1 - alpha) * _GRAY).round().astype(np.uint8)


def draw_colour_bar(image: np.ndarray, right: int, top: int, bottom: int, low: float, high: float,
                    max_opacity: float, title: str = "") -> None:
    """Draw the bar into `image` (H, W, 3) BGR uint8 in place, its right edge at column `right`, rows `top` to
    `bottom`, labelled with `high` at the top and `low` at the bottom."""
    left = right - WIDTH
    image[top:bottom, left:right] = bar_colours(bottom - top, max_opacity)[:, None, :]
    cv2.rectangle(image, (left - 1, top - 1), (right, bottom), _EDGE, 1)
    for value, y in ((high, top + 10), (low, bottom)):
        text = f"{value:.3g}"
        (width, _), _ = cv2.getTextSize(text, _FONT, 0.4, 1)
        cv2.putText(image, text, (left - 4 - width, y), _FONT, 0.4, _TEXT, 1, cv2.LINE_AA)
    if title:
        (width, _), _ = cv2.getTextSize(title, _FONT, 0.4, 1)
        cv2.putText(image, title, (left - 4 - width, top + 26), _FONT, 0.4, _TEXT, 1, cv2.LINE_AA)
