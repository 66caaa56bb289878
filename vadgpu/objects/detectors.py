"""Object detectors for the box cache: ultralytics YOLO, Darknet YOLO through OpenCV DNN, background subtraction.

Every detector takes a list of BGR uint8 frames of one video and returns one `Detections` per frame: pixel
`x1, y1, x2, y2` boxes, scores and class ids (indices into `detector.class_names`). Detection runs once, offline,
on the CPU (`vadgpu data boxes`); the training loop only reads the cached boxes.

    detector.begin_video(source)   # reset per-video state (tracker, background model) before a new video
    detector.detect(frames)        # -> list[Detections], one per frame
    detector.track(frames)         # only where `tracks_objects`: detections with track ids, state kept across calls
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from vadgpu.errors import VadgpuError

# COCO classes that are whole moving objects in surveillance scenes: people and what they ride or push. Ped2's
# anomalies are bikers, skaters, carts and wheelchairs; yolov3-tiny reports carts as car/truck. Accessories
# (backpack, handbag, umbrella) are left out: their boxes lie inside a person's box and would make a second,
# smaller track of the same object.
DEFAULT_CLASSES = ("person", "bicycle", "car", "motorbike", "bus", "truck", "skateboard")


@dataclass
class Detections:
    """The objects found in one frame."""

    boxes: np.ndarray  # (K, 4) float32 pixel x1, y1, x2, y2
    scores: np.ndarray  # (K,) float32 in [0, 1]
    classes: np.ndarray  # (K,) int64 index into the detector's class_names
    tracks: np.ndarray | None = None  # (K,) int64 track ids (-1: not tracked), set by a tracker

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)


class Detector:
    """Base class: the interface the box cache uses. Subclasses set `name` and `class_names`."""

    name = "detector"
    class_names: tuple[str, ...] = ()
    tracks_objects = False  # True: `track()` assigns its own track ids (else the IoU tracker does)

    def begin_video(self, source) -> None:
        """Called before the first frame of each video; `source` is an objects.frames.FrameSource."""

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        raise NotImplementedError

    def track(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        raise NotImplementedError(f"{type(self).__name__} does not track; use vadgpu.objects.tracking.IoUTracker")

    def describe(self) -> str:
        """One line for the cache metadata and logs."""
        return self.name


def _require_file(path: str | os.PathLike | None, option: str) -> Path:
    if path is None:
        raise VadgpuError(f"{option} is required for this detector")
    path = Path(path)
    if not path.is_file():
        raise VadgpuError(f"{option} {path}: no such file")
    return path


def resolve_classes(requested: Sequence[str] | None, class_names: Sequence[str], source: str) -> np.ndarray | None:
    """Class names -> sorted int64 ids in `class_names`; None keeps every class. Unknown names are an error."""
    if requested is None:
        return None
    lookup = {name.strip().lower(): i for i, name in enumerate(class_names)}
    unknown = [c for c in requested if c.strip().lower() not in lookup]
    if unknown:
        raise VadgpuError(
            f"--classes: {', '.join(unknown)} not among the {len(class_names)} classes of {source} "
            f"(e.g. {', '.join(list(class_names)[:8])})"
        )
    return np.array(sorted({lookup[c.strip().lower()] for c in requested}), np.int64)


def _keep_classes(det: Detections, class_ids: np.ndarray | None) -> Detections:
    if class_ids is None:
        return det
    keep = np.isin(det.classes, class_ids)
    tracks = None if det.tracks is None else det.tracks[keep]
    return Detections(det.boxes[keep], det.scores[keep], det.classes[keep], tracks)


def _check_frames(frames: Sequence[np.ndarray]) -> None:
    for frame in frames:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise VadgpuError(f"detectors take BGR uint8 frames (H, W, 3), got {got}")


def load_darknet(cfg: Path, weights: Path, what: str):
    """A Darknet network (cfg + weights) as an OpenCV DNN net on the CPU; `what` names the files in the error
    when OpenCV cannot load them."""
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        raise VadgpuError(f"OpenCV {cv2.__version__} has no readNetFromDarknet (removed in 5.0); install opencv<5")
    try:
        net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    except cv2.error as exc:
        raise VadgpuError(f"{what}: OpenCV cannot load them ({exc})") from exc
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


class DarknetDetector(Detector):
    """YOLO (v3 / v3-tiny / v4) in Darknet format through OpenCV's DNN module (`cv2.dnn.readNetFromDarknet`)."""

    name = "darknet"

    def __init__(
        self,
        cfg: str | os.PathLike,
        weights: str | os.PathLike,
        names: str | os.PathLike,
        classes: Sequence[str] | None = DEFAULT_CLASSES,
        conf: float = 0.25,
        nms: float = 0.45,
        input_size: int = 416,
        letterbox: bool = True,
        batch_size: int = 4,
    ) -> None:
        self.cfg = _require_file(cfg, "--cfg")
        self.weights = _require_file(weights, "--weights")
        names_path = _require_file(names, "--names")
        self.class_names = tuple(
            line.strip() for line in names_path.read_text(encoding="utf-8").splitlines() if line.strip()
        )
        if not self.class_names:
            raise VadgpuError(f"--names {names_path}: no class names in the file")
        self.class_ids = resolve_classes(classes, self.class_names, str(names_path))
        self.net = load_darknet(self.cfg, self.weights, f"--cfg {self.cfg} / --weights {self.weights}")
        self.out_names = self.net.getUnconnectedOutLayersNames()
        self.conf, self.nms, self.input_size = conf, nms, input_size
        self.letterbox, self.batch_size = letterbox, batch_size

    def describe(self) -> str:
        return f"darknet:{self.weights.name}@{self.input_size}{'-letterbox' if self.letterbox else ''}"

    def _input(self, frame: np.ndarray) -> tuple[np.ndarray, float, float, float, float]:
        """Network input (S, S, 3) BGR and the map back: x_pixel = (x_input - pad_x) / scale_x."""
        size = self.input_size
        h, w = frame.shape[:2]
        if not self.letterbox:
            return cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR), size / w, size / h, 0.0, 0.0
        # Letterbox keeps the aspect ratio (what the network saw in training); grey padding as in Darknet.
        scale = min(size / w, size / h)
        new_w, new_h = round(w * scale), round(h * scale)
        pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
        canvas = np.full((size, size, 3), 127, np.uint8)
        canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = cv2.resize(frame, (new_w, new_h))
        return canvas, scale, scale, float(pad_x), float(pad_y)

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """One Detections per frame, after confidence threshold, class filter and per-class NMS."""
        _check_frames(frames)
        results: list[Detections] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            inputs = [self._input(f) for f in chunk]
            blob = cv2.dnn.blobFromImages([i[0] for i in inputs], 1 / 255.0, swapRB=True, crop=False)
            self.net.setInput(blob)
            outs = [o.reshape(len(chunk), -1, o.shape[-1]) for o in self.net.forward(self.out_names)]
            rows = np.concatenate(outs, axis=1)  # (B, R, 5 + classes): cx, cy, w, h in [0, 1], obj, class probs
            for b, (frame, (_, sx, sy, px, py)) in enumerate(zip(chunk, inputs)):
                results.append(self._decode(rows[b], frame.shape[:2], sx, sy, px, py))
        return results

    def _decode(self, rows: np.ndarray, hw: tuple[int, int], sx: float, sy: float, px: float, py: float) -> Detections:
        # OpenCV's region layer already multiplies the class probabilities by the objectness.
        probs = rows[:, 5:]
        classes = probs.argmax(axis=1)
        scores = probs[np.arange(len(rows)), classes]
        keep = scores >= self.conf
        if self.class_ids is not None:
            keep &= np.isin(classes, self.class_ids)
        if not keep.any():
            return Detections.empty()
        rows, classes, scores = rows[keep], classes[keep], scores[keep]
        size = self.input_size
        cx, cy, bw, bh = (rows[:, i] * size for i in range(4))
        x1, x2 = (cx - bw / 2 - px) / sx, (cx + bw / 2 - px) / sx
        y1, y2 = (cy - bh / 2 - py) / sy, (cy + bh / 2 - py) / sy
        h, w = hw
        boxes = np.stack([x1.clip(0, w), y1.clip(0, h), x2.clip(0, w), y2.clip(0, h)], axis=1).astype(np.float32)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), classes.tolist(), self.conf, self.nms)
        idx = np.asarray(idx, np.int64).reshape(-1)
        return Detections(boxes[idx], scores[idx].astype(np.float32), classes[idx].astype(np.int64))


def ultralytics_config_dir() -> Path:
    """Where ultralytics keeps its settings when YOLO_CONFIG_DIR is not set (never the user's home config)."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "vadgpu" / "ultralytics"


# Globals an ultralytics weights file may name besides torch / ultralytics layer classes: plain data types.
_ULTRALYTICS_DATA_GLOBALS = frozenset({
    "collections.OrderedDict", "builtins.getattr", "builtins.set", "builtins.frozenset", "numpy.dtype",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct", "numpy.ndarray", "pathlib.PosixPath", "pathlib.WindowsPath",
    "pathlib._local.PosixPath", "pathlib._local.WindowsPath", "ultralytics.utils.IterableSimpleNamespace",
    "ultralytics.yolo.utils.IterableSimpleNamespace", "ultralytics.nn.modules.block.Silence",
    "ultralytics.nn.tasks.YOLOv10DetectionModel", "ultralytics.utils.loss.v10DetectLoss",
})


def _is_layer_class(name: str) -> bool:
    """Whether `module.Class` names a torch or ultralytics nn.Module subclass (importing those packages only)."""
    import importlib

    import torch

    module, _, attr = name.rpartition(".")
    if not module.startswith(("torch.nn.", "ultralytics.")):
        return False
    try:
        obj = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return False
    return isinstance(obj, type) and issubclass(obj, torch.nn.Module)


def check_ultralytics_weights(path: Path) -> None:
    """Refuse a weights file that names anything but layer classes and plain data, before anything unpickles it.

    The pickle inside is scanned, not run (`torch.serialization.get_unsafe_globals_in_checkpoint`)."""
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # not a zip archive, a damaged one, or no data.pkl inside
        raise VadgpuError(f"--weights {path}: ultralytics cannot load it (not a PyTorch checkpoint archive: "
                          f"{type(exc).__name__}: {exc})") from exc
    foreign = sorted(n for n in names if n not in _ULTRALYTICS_DATA_GLOBALS and not _is_layer_class(n))
    if foreign:
        raise VadgpuError(f"--weights {path}: refused, the file would run code outside the ultralytics and torch "
                          f"layer classes when loaded ({', '.join(foreign[:5])}); load only weights you trust")


def import_ultralytics_safely():
    """`ultralytics.YOLO`, with ultralytics' restricted loading on (torch.load(weights_only=True) and an allow-list of
    its layer classes), also when ultralytics was imported before without ULTRALYTICS_SAFE_LOAD."""
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"  # read once, when ultralytics is first imported
    from ultralytics import YOLO
    from ultralytics.nn import tasks

    if not getattr(tasks, "_SafeLoad", None) or not tasks._SafeLoad.SUPPORTED:
        raise VadgpuError("this ultralytics or torch version cannot load weights without unpickling code; "
                          "install ultralytics >= 8.4 with torch >= 2.6")
    tasks.SAFE_LOAD = True  # the switch torch_safe_load reads at every load
    return YOLO


class UltralyticsDetector(Detector):
    """Any ultralytics YOLO weights file the user names; tracks with ultralytics' ByteTrack."""

    name = "ultralytics"
    tracks_objects = True

    def __init__(
        self,
        weights: str | os.PathLike,
        classes: Sequence[str] | None = DEFAULT_CLASSES,
        conf: float = 0.25,
        imgsz: int = 640,
        tracker: str = "bytetrack.yaml",
    ) -> None:
        # Checked before ultralytics sees the name: given a missing file it would try to download one.
        self.weights = _require_file(weights, "--weights")
        check_ultralytics_weights(self.weights)
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_CONFIG_DIR", str(ultralytics_config_dir()))
        YOLO = import_ultralytics_safely()
        try:
            self.model = YOLO(str(self.weights), task="detect")
        except Exception as exc:  # ultralytics raises many types for a bad file; the user needs the file name
            raise VadgpuError(f"--weights {self.weights}: ultralytics cannot load it ({type(exc).__name__}: {exc})")
        names = self.model.names
        self.class_names = tuple(names[i] for i in sorted(names)) if isinstance(names, dict) else tuple(names)
        # Keep only DEFAULT_CLASSES that this model knows (a custom model may have other classes).
        if classes is DEFAULT_CLASSES:
            known = {n.lower() for n in self.class_names}
            classes = [c for c in classes if c in known] or None
        self.class_ids = resolve_classes(classes, self.class_names, str(self.weights))
        self.conf, self.imgsz, self.tracker = conf, imgsz, tracker
        self._new_video = True

    def describe(self) -> str:
        return f"ultralytics:{self.weights.name}@{self.imgsz}"

    def _kwargs(self) -> dict:
        classes = None if self.class_ids is None else self.class_ids.tolist()
        return dict(conf=self.conf, imgsz=self.imgsz, classes=classes, device="cpu", verbose=False)

    @staticmethod
    def _to_detections(result) -> Detections:
        b = result.boxes
        if b is None or len(b) == 0:
            det = Detections.empty()
            det.tracks = np.zeros(0, np.int64)
            return det
        ids = None if b.id is None else b.id.numpy().astype(np.int64)
        det = Detections(
            b.xyxy.numpy().astype(np.float32), b.conf.numpy().astype(np.float32), b.cls.numpy().astype(np.int64)
        )
        det.tracks = ids if ids is not None else np.full(len(det), -1, np.int64)
        return det

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        _check_frames(frames)
        if not frames:
            return []
        results = self.model.predict(list(frames), **self._kwargs())
        out = []
        for r in results:
            det = self._to_detections(r)
            det.tracks = None
            out.append(det)
        return out

    def begin_video(self, source) -> None:
        self._new_video = True

    def track(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Detections with ByteTrack ids; the tracker's state lasts until the next `begin_video`."""
        _check_frames(frames)
        out = []
        for frame in frames:
            # persist=False on a video's first frame makes ultralytics build a fresh tracker.
            results = self.model.track(frame, persist=not self._new_video, tracker=self.tracker, **self._kwargs())
            self._new_video = False
            out.append(self._to_detections(results[0]))
        return out


class BackgroundSubtractionDetector(Detector):
    """Moving objects for fixed cameras, no weights: difference to a per-video median background.

    The background is the per-pixel median of up to `background_frames` frames spread over the video (robust to
    people passing through, unlike an online model that absorbs whoever stands still at the start). Foreground =
    |frame - background| > `threshold`, opened (removes noise) and closed (joins a person's parts), then connected
    components of at least `min_area` (a fraction of the frame area) become boxes. One class, "object".
    """

    name = "bgsub"
    class_names = ("object",)

    def __init__(
        self,
        threshold: int = 25,
        min_area: float = 0.001,
        open_size: int = 3,
        close_size: int = 5,
        background_frames: int = 60,
    ) -> None:
        if not 0 < threshold < 255:
            raise VadgpuError(f"bgsub threshold {threshold}: must be in (0, 255)")
        if not 0 <= min_area < 1:
            raise VadgpuError(f"bgsub min_area {min_area}: a fraction of the frame area in [0, 1)")
        self.threshold, self.min_area = threshold, min_area
        self.background_frames = background_frames
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (open_size, open_size))
        self._close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close_size, close_size))
        self.background: np.ndarray | None = None  # (H, W) float32 gray

    def describe(self) -> str:
        return f"bgsub:median{self.background_frames}-t{self.threshold}-a{self.min_area}"

    @staticmethod
    def gray(frame: np.ndarray) -> np.ndarray:
        """A BGR frame as the detector compares it: gray, blurred (5 x 5 Gaussian)."""
        return cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (5, 5), 0)

    def set_background(self, frames: Sequence[np.ndarray]) -> None:
        """Median of `frames` (evenly thinned to `background_frames`) as this video's background."""
        _check_frames(frames)
        if not frames:
            raise VadgpuError("bgsub: no frames to build a background from")
        pick = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), self.background_frames)).round().astype(int))
        self.set_gray_background([self.gray(frames[i]) for i in pick])

    def set_gray_background(self, grays: Sequence[np.ndarray]) -> None:
        """Median of frames already made gray by `gray` (all of them) as the background."""
        self.background = np.median(np.stack(grays), axis=0).astype(np.float32)

    def begin_video(self, source) -> None:
        self.set_background(source.sample(self.background_frames))

    def scene_background(self, sources: Sequence) -> np.ndarray:
        """A fixed camera's empty scene from several of its videos (FrameSources, all of one frame size): the
        per-pixel median of `background_frames` frames spread evenly over all of them, gray and blurred as `gray`
        makes them; (H, W) uint8."""
        if not sources:
            raise VadgpuError("bgsub: no videos to build a scene background from")
        per_video = -(-self.background_frames // len(sources))
        grays = [self.gray(frame) for source in sources for frame in source.sample(per_video)]
        if len({g.shape for g in grays}) != 1:
            raise VadgpuError("bgsub: the videos differ in frame size; a scene background needs one size")
        return np.median(np.stack(grays), axis=0).round().astype(np.uint8)

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Boxes of moving regions. Without `begin_video`/`set_background`, the background comes from `frames`."""
        _check_frames(frames)
        if self.background is None:
            self.set_background(frames)
        out = []
        for frame in frames:
            gray = self.gray(frame)
            if gray.shape != self.background.shape:
                raise VadgpuError(f"bgsub: frame size {gray.shape} differs from the background {self.background.shape}")
            diff = np.abs(gray.astype(np.float32) - self.background)  # (H, W)
            fg = (diff > self.threshold).astype(np.uint8)
            fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self._open)
            fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self._close)
            n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
            min_px = self.min_area * fg.size
            boxes, scores = [], []
            for i in range(1, n):  # 0 is the background component
                x, y, w, h, area = stats[i]
                if area < min_px:
                    continue
                boxes.append((x, y, x + w, y + h))
                # Score: how strongly the region differs from the background, in [0, 1].
                scores.append(min(1.0, float(diff[labels == i].mean()) / 255.0 * 4))
            if not boxes:
                out.append(Detections.empty())
                continue
            out.append(
                Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.zeros(len(boxes), np.int64))
            )
        return out


# Where each detector's weights come from (vadgpu downloads nothing: the user brings the files).
WEIGHTS_SOURCES = {
    "darknet": "a Darknet YOLO .weights file, e.g. yolov3-tiny.weights from the Darknet project's releases, with "
               "its .cfg (default: beside the weights, same name) and coco.names (default: beside the weights)",
    "ultralytics": "an ultralytics YOLO .pt file, e.g. yolov8n.pt from the ultralytics releases",
}


def make_detector(
    kind: str,
    weights: str | None = None,
    cfg: str | None = None,
    names: str | None = None,
    classes: Sequence[str] | None = None,
    conf: float | None = None,
) -> Detector:
    """Build a detector by CLI name: darknet | ultralytics | bgsub (classes=None keeps DEFAULT_CLASSES)."""
    given = {"--weights": weights, "--cfg": cfg, "--names": names, "--classes": classes, "--conf": conf}
    unused = {"ultralytics": ("--cfg", "--names"), "bgsub": tuple(given)}.get(kind, ())
    stray = [option for option in unused if given[option] is not None]
    if stray:  # an option that would be ignored is more likely a mistake than intended
        raise VadgpuError(f"--detector {kind} takes no {', '.join(stray)}")
    if kind in WEIGHTS_SOURCES:  # the weights first: the other files are found beside them
        if weights is None:
            raise VadgpuError(f"--detector {kind} needs --weights FILE: {WEIGHTS_SOURCES[kind]} (or --detector "
                              "bgsub, which needs no weights)")
        _require_file(weights, "--weights")
    classes = DEFAULT_CLASSES if classes is None else tuple(classes)
    conf_kw = {} if conf is None else {"conf": conf}
    if kind == "darknet":
        return DarknetDetector(cfg, weights, names, classes=classes, **conf_kw)
    if kind == "ultralytics":
        return UltralyticsDetector(weights, classes=classes, **conf_kw)
    if kind == "bgsub":
        return BackgroundSubtractionDetector()
    raise VadgpuError(f"--detector {kind!r}: use darknet, ultralytics or bgsub")
