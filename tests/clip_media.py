"""Short encoded videos and frame folders for the loader tests, written on the fly (`write_media`), and `ids`.

The conftest fixture `media` writes them once per session.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from vadgpu.data.types import PreparedVideo, Video

W, H = 64, 48
FRAMES = {"avi": 30, "vp9": 24, "h264": 20, "jpg": 26, "tif": 22}


def frame_image(i: int) -> np.ndarray:
    """(H, W, 3) RGB: a smooth pattern that moves 5 px per frame, so a clip one frame off differs clearly."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    r = 128 + 100 * np.sin((x + 5 * i) / 7.0)
    g = 128 + 100 * np.cos((y + 3 * i) / 6.0)
    b = 128 + 60 * np.sin((x + y + 4 * i) / 9.0)
    return np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)


def encode_video(path: Path, codec: str, n: int, pix_fmt: str, options: dict) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        for i in range(n):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")))
        container.mux(stream.encode())


def prepared_video(path: Path, n: int, codec: str) -> PreparedVideo:
    return PreparedVideo(Video(path.stem, path), path, n, 25.0, W, H, codec)


def prepared_folder(folder: Path, n: int, ext: str) -> PreparedVideo:
    folder.mkdir()
    files = []
    for i in range(n):
        files.append(folder / f"{i:03d}.{ext}")
        cv2.imwrite(str(files[-1]), cv2.cvtColor(frame_image(i), cv2.COLOR_RGB2BGR))
    return PreparedVideo(Video(folder.name, folder, tuple(files)), folder, n, 25.0, W, H,
                         "jpeg" if ext == "jpg" else "tiff")


def write_media(root: Path) -> dict[str, list[PreparedVideo]]:
    """One or two short videos per format under `root`; avi has two of different lengths to exercise run
    boundaries."""
    encode_video(root / "a.avi", "mjpeg", FRAMES["avi"], "yuvj420p", {"q:v": "2"})
    encode_video(root / "a2.avi", "mjpeg", 17, "yuvj420p", {"q:v": "2"})
    encode_video(root / "b.webm", "libvpx-vp9", FRAMES["vp9"], "yuv420p", {"crf": "4", "b:v": "0", "g": "6"})
    encode_video(root / "c.mp4", "libx264", FRAMES["h264"], "yuv420p", {})
    return {
        "avi": [prepared_video(root / "a.avi", FRAMES["avi"], "mjpeg"), prepared_video(root / "a2.avi", 17, "mjpeg")],
        "vp9": [prepared_video(root / "b.webm", FRAMES["vp9"], "vp9")],
        "h264": [prepared_video(root / "c.mp4", FRAMES["h264"], "h264")],
        "jpg": [prepared_folder(root / "jpg", FRAMES["jpg"], "jpg")],
        "tif": [prepared_folder(root / "tif", FRAMES["tif"], "tif")],
    }


def ids(batches) -> list[tuple[int, int]]:
    return list(zip(torch.cat([b.video for b in batches]).tolist(), torch.cat([b.frame for b in batches]).tolist()))


def write_ts(target: Path, images) -> Path:
    """RGB frames (H, W, 3 uint8, an iterable) as an H.264 MPEG-TS at 25 fps (a format that streams without
    seeking)."""
    import av

    with av.open(str(target), "w", format="mpegts") as out:
        stream = None
        for image in images:
            if stream is None:
                stream = out.add_stream("libx264", rate=25)
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return target
