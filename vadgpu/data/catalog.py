"""Datasets as users keep them on disk: `open_dataset(name, root, variant=None)` -> Dataset.

Each reader's docstring shows the layout it expects. Readers only list files and read labels; decoding, codec
checks and the label check for video files happen in `prepare` (frame folders are checked here, where the frame
count is the file count). Problems raise VadgpuError naming the path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vadgpu.data import labels as L
from vadgpu.data.probe import IMAGE_FORMATS, probe_video
from vadgpu.data.types import Dataset, Video
from vadgpu.errors import VadgpuError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
SYNTHETIC_VARIANTS = {"avi": "videos", "mp4": "videos_h264", "frames": "frames"}
PED2_VARIANTS = ("jpg", "ucsd")


def open_dataset(name: str, root: str | Path, variant: str | None = None, labels: str | Path | None = None) -> Dataset:
    """Open dataset `name` (one of DATASETS) stored at `root`.

    `variant` picks among a dataset's layouts (synthetic: "avi" (default), "mp4", "frames"; ped2: "jpg" or
    "ucsd", found automatically). `labels` overrides the label file the reader would pick (ped2, avenue).
    """
    if name not in READERS:
        raise VadgpuError(f"--dataset {name!r} is not known; choose one of {', '.join(DATASETS)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise VadgpuError(f"dataset root {root} does not exist or is not a folder")
    root = root.resolve()
    if variant is not None and name not in ("ped2", "synthetic"):
        raise VadgpuError(f"--variant {variant!r}: dataset {name} has a single layout (no variants)")
    return READERS[name](root, variant=variant, labels=Path(labels) if labels is not None else None)


# ------------------------------------------------------------------------------------------------ listing helpers


def _natural_key(path: Path) -> list:
    # "10.jpg" after "9.jpg", "Test010" after "Test009" whether or not numbers are zero-padded.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise VadgpuError(f"{what} {path} does not exist or is not a folder")
    return path


def list_frames(folder: Path) -> tuple[Path, ...]:
    """Sorted image files of a frame folder; an empty folder or one mixing image formats is an error."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_FORMATS]
    if not files:
        raise VadgpuError(f"frame folder {folder} holds no image files ({', '.join(sorted(set(IMAGE_FORMATS)))})")
    formats = {IMAGE_FORMATS[p.suffix.lower()] for p in files}
    if len(formats) > 1:
        raise VadgpuError(f"frame folder {folder} mixes image formats {sorted(formats)}; keep one per folder")
    return tuple(sorted(files, key=_natural_key))


def _frame_folder_videos(folder: Path, what: str, skip: Callable[[Path], bool] = lambda p: False) -> list[Video]:
    folders = sorted((p for p in _require_dir(folder, what).iterdir() if p.is_dir() and not skip(p)),
                     key=_natural_key)
    if not folders:
        raise VadgpuError(f"{what} {folder} holds no frame folders")
    return [Video(p.name, p, list_frames(p)) for p in folders]


def _video_files(folder: Path, what: str) -> list[Video]:
    files = sorted((p for p in _require_dir(folder, what).iterdir()
                    if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS), key=_natural_key)
    if not files:
        raise VadgpuError(f"{what} {folder} holds no video files ({' '.join(VIDEO_EXTENSIONS)})")
    return [Video(p.stem, p) for p in files]


def _frame_counts(videos: Sequence[Video]) -> list[int]:
    """Frame counts for labels that need them: file counts for folders, the container's count for videos."""
    return [len(v.frame_files) if v.is_folder else probe_video(v.path).num_frames for v in videos]


def _with_labels(videos: Sequence[Video], labels: Sequence[np.ndarray],
                 source: Path | str | Sequence[Path]) -> tuple[Video, ...]:
    """Attach labels and the file they came from (`source`: one file for all, or one per video); folders are
    checked against their file count now, video files later in prepare."""
    sources = list(source) if isinstance(source, (list, tuple)) else [source] * len(videos)
    out = []
    for video, frame_labels, file in zip(videos, labels, sources, strict=True):
        if video.is_folder:
            L.check_length(frame_labels, len(video.frame_files), video.name, file)
        out.append(Video(video.name, video.path, video.frame_files, frame_labels, label_file=str(file)))
    return tuple(out)


def _labels_for_all(path: Path, videos: Sequence[Video]) -> list[np.ndarray]:
    """Read a label file that covers every test video: .mat / .m intervals, or a back-to-back .npy / .json."""
    names = [v.name for v in videos]
    if not path.is_file():
        raise VadgpuError(f"label file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".m":
        return L.per_video_intervals(L.read_ucsd_m_intervals(path), _frame_counts(videos), names, path)
    if suffix == ".mat":
        return L.per_video_intervals(L.read_mat_intervals(path), _frame_counts(videos), names, path)
    if suffix in (".npy", ".json"):
        return L.split_concatenated(L.read_label_file(path), _frame_counts(videos), names, path)
    raise VadgpuError(f"label file {path}: unknown format {path.suffix!r} (use .mat, .m, .npy or .json)")


def _first_existing(candidates: Sequence[Path], what: str) -> Path:
    for path in candidates:
        if path.is_file():
            return path
    raise VadgpuError(f"no {what} found; looked for {', '.join(str(p) for p in candidates)}")


# --------------------------------------------------------------------------------------------------------- readers


def _open_ped2(root: Path, variant: str | None, labels: Path | None) -> Dataset:
    """UCSD Ped2, in either of two layouts (found automatically, or `variant="jpg"` / `"ucsd"`).

    jpg re-encoding (the common copy):          original UCSD release:
        ROOT/training/frames/01/000.jpg ...         ROOT/UCSDped2/Train/Train001/001.tif ...
        ROOT/testing/frames/01/000.jpg ...          ROOT/UCSDped2/Test/Test001/001.tif ...
        ROOT/ped2.mat  (gt: intervals per video)    ROOT/UCSDped2/Test/Test001_gt/  (pixel masks, ignored)
        or ROOT/frame_labels_ped2.npy               ROOT/UCSDped2/Test/UCSDped2.m  (gt_frame intervals)
           ((1, 2010): test videos back to back)    (ROOT may also be the UCSDped2 folder itself)
    """
    if variant not in (None, *PED2_VARIANTS):
        raise VadgpuError(f"--variant {variant!r}: ped2 layouts are {', '.join(PED2_VARIANTS)}")
    ucsd = root / "UCSDped2" if (root / "UCSDped2").is_dir() else root
    if variant == "jpg" or (variant is None and (root / "training" / "frames").is_dir()):
        train = _frame_folder_videos(root / "training" / "frames", "Ped2 training frames")
        test = _frame_folder_videos(root / "testing" / "frames", "Ped2 testing frames")
        label_path = labels or _first_existing([root / "ped2.mat", root / "frame_labels_ped2.npy"],
                                               "Ped2 label file")
    elif variant == "ucsd" or (variant is None and (ucsd / "Train").is_dir()):
        train = _frame_folder_videos(ucsd / "Train", "UCSD Ped2 Train folder")
        test = _frame_folder_videos(ucsd / "Test", "UCSD Ped2 Test folder", skip=lambda p: p.name.endswith("_gt"))
        label_path = labels or _first_existing([ucsd / "Test" / "UCSDped2.m", ucsd / "UCSDped2.m"],
                                               "UCSD Ped2 label file")
    else:
        raise VadgpuError(f"dataset root {root} is not a Ped2 layout: expected {root / 'training' / 'frames'} "
                          f"(jpg copy) or {root / 'UCSDped2' / 'Train'} (UCSD release)")
    return Dataset("ped2", root, tuple(train), _with_labels(test, _labels_for_all(label_path, test), label_path),
                   str(label_path))


def _open_avenue(root: Path, variant: str | None, labels: Path | None) -> Dataset:
    """CUHK Avenue.

        ROOT/training_videos/01.avi ... 16.avi
        ROOT/testing_videos/01.avi ... 21.avi
        ROOT/ground_truth_demo/testing_label_mask/1_label.mat ... 21_label.mat   (volLabel: a mask per frame)
        or ROOT/frame_labels_avenue.npy   (test videos back to back)   or ROOT/avenue.mat (gt intervals)
    """
    train = _video_files(root / "training_videos", "Avenue training_videos folder")
    test = _video_files(root / "testing_videos", "Avenue testing_videos folder")
    mask_dir = root / "ground_truth_demo" / "testing_label_mask"
    if labels is None and mask_dir.is_dir():
        numbers = [int(re.sub(r"\D", "", video.name) or -1) for video in test]
        files = [_first_existing([mask_dir / f"{number}_label.mat"], f"mask label file for test video {video.name}")
                 for number, video in zip(numbers, test)]
        per_video = [L.read_mask_mat(file) for file in files]
        return Dataset("avenue", root, tuple(train), _with_labels(test, per_video, files), str(mask_dir))
    label_path = labels or _first_existing([root / "frame_labels_avenue.npy", root / "avenue.mat"],
                                           f"Avenue labels ({mask_dir} or a label file)")
    return Dataset("avenue", root, tuple(train), _with_labels(test, _labels_for_all(label_path, test), label_path),
                   str(label_path))


def _open_shanghaitech(root: Path, variant: str | None, labels: Path | None) -> Dataset:
    """ShanghaiTech Campus.

        ROOT/training/videos/01_001.avi ...
        ROOT/testing/frames/01_0014/000.jpg ...
        ROOT/testing/test_frame_mask/01_0014.npy   (0/1 per frame)
    """
    if labels is not None:
        raise VadgpuError("--labels: shanghaitech reads one mask file per test video from testing/test_frame_mask")
    train = _video_files(root / "training" / "videos", "ShanghaiTech training videos folder")
    test = _frame_folder_videos(root / "testing" / "frames", "ShanghaiTech testing frames folder")
    mask_dir = _require_dir(root / "testing" / "test_frame_mask", "ShanghaiTech label folder")
    files = [_first_existing([mask_dir / f"{v.name}.npy"], f"labels of test video {v.name}") for v in test]
    per_video = [L.read_npy_labels(file) for file in files]
    return Dataset("shanghaitech", root, tuple(train), _with_labels(test, per_video, files), str(mask_dir))


def _mixed_split(folder: Path, what: str) -> list[Video]:
    """Video files and frame folders side by side, sorted by name; `labels/` is not a video."""
    videos = []
    for path in sorted(_require_dir(folder, what).iterdir(), key=_natural_key):
        if path.is_dir() and path.name != "labels":
            videos.append(Video(path.name, path, list_frames(path)))
        elif path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
            videos.append(Video(path.stem, path))
    if not videos:
        raise VadgpuError(f"{what} {folder} holds no video files or frame folders")
    names = [v.name for v in videos]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise VadgpuError(f"{what} {folder}: more than one video named {', '.join(duplicates)}")
    return videos


def _open_generic(root: Path, variant: str | None, labels: Path | None) -> Dataset:
    """Any videos or frame folders.

        ROOT/training/<name>.mp4 | <name>.avi | ... | <name>/<frames>.jpg|png|tif   (normal only)
        ROOT/testing/<name>.mp4 | ... | <name>/<frames>
        ROOT/testing/labels/<name>.npy | <name>.json   (optional; if the folder exists, every test video needs one)
    """
    if labels is not None:
        raise VadgpuError("--labels: generic datasets read per-video files from testing/labels/")
    train = _mixed_split(root / "training", "training folder")
    test = _mixed_split(root / "testing", "testing folder")
    label_dir = root / "testing" / "labels"
    if not label_dir.is_dir():
        return Dataset("generic", root, tuple(train), tuple(test), None)
    files = [_first_existing([label_dir / f"{v.name}.npy", label_dir / f"{v.name}.json"],
                             f"labels of test video {v.name}") for v in test]
    per_video = [L.read_label_file(file) for file in files]
    return Dataset("generic", root, tuple(train), _with_labels(test, per_video, files), str(label_dir))


def _open_synthetic(root: Path, variant: str | None, labels: Path | None) -> Dataset:
    """The dataset `vadgpu data synth` writes (see vadgpu.data.synth); `variant` picks the format.

        ROOT/synthetic.json
        ROOT/{training,testing}/videos/NN.avi        variant "avi" (MJPEG, the default where present)
        ROOT/{training,testing}/videos_h264/NN.mp4   variant "mp4" (H.264)
        ROOT/{training,testing}/frames/NN/NNN.jpg    variant "frames"
        ROOT/testing/labels/NN.npy

    Without a variant: the first of avi, mp4, frames that the dataset holds.
    """
    from vadgpu.data.synth import MANIFEST_NAME

    present = [v for v, sub in SYNTHETIC_VARIANTS.items() if (root / "training" / sub).is_dir()]
    variant = variant or (present[0] if present else "avi")
    if variant not in SYNTHETIC_VARIANTS:
        raise VadgpuError(f"--variant {variant!r}: synthetic variants are {', '.join(SYNTHETIC_VARIANTS)}")
    if labels is not None:
        raise VadgpuError("--labels: the synthetic dataset reads its labels from testing/labels/")
    if not (root / MANIFEST_NAME).is_file():
        raise VadgpuError(f"{root} is not a synthetic dataset (no {MANIFEST_NAME}); make one with `vadgpu data synth`")
    sub = SYNTHETIC_VARIANTS[variant]
    split = {}
    for name in ("training", "testing"):
        folder = root / name / sub
        what = f"synthetic {name}/{sub} folder"
        split[name] = _frame_folder_videos(folder, what) if variant == "frames" else _video_files(folder, what)
    label_dir = root / "testing" / "labels"
    files = [_first_existing([label_dir / f"{v.name}.npy"], f"labels of test video {v.name}")
             for v in split["testing"]]
    per_video = [L.read_npy_labels(file) for file in files]
    return Dataset("synthetic", root, tuple(split["training"]), _with_labels(split["testing"], per_video, files),
                   str(label_dir))


# Every dataset the catalog knows, by the name users give (--dataset): add a reader here to add a dataset.
READERS: dict[str, Callable[..., Dataset]] = {
    "ped2": _open_ped2, "avenue": _open_avenue, "shanghaitech": _open_shanghaitech,
    "generic": _open_generic, "synthetic": _open_synthetic,
}
DATASETS = tuple(READERS)
