"""`vadgpu bench score`: the scoring path end to end, stage by stage, in three modes.

    score   evaluation.runner.score_input for each video, as `vadgpu score VIDEO` runs it: prepare, the boxes
            (background subtraction into a fresh scratch cache for every run, so each run detects as on a video
            seen for the first time; `score_boxes="cache"` reads the warm-up run's cache instead), scoring, the
            protocol, scores.csv + the score curve + objects.csv (into a scratch folder)
    eval    evaluation.runner.evaluate over the chosen test videos of a dataset, with its box cache (made before
            timing where missing): metrics.json, scores.csv, curves, objects/
    live    vadgpu.Detector.stream over each video as fast as its frames are read (no pacing, no images kept)

With `model_file` (an ONNX file from `vadgpu export`) score and live run that file under onnxruntime, as `vadgpu score
--model FILE` and `Detector.load(FILE)` do, in float32; its "network" and "appearance.backbone" stages are then
onnxruntime's calls. Eval takes a weights file only.

Every run goes under a StageClock (bench/stages.py), which charges each second to the stage the scoring path
marked (decode, clips, boxes, tube cut, network, ...; `STAGES`), the rest to "other". "model load" (the weights
file, the network, the calibration record) is start-up: it is reported with the imports (a fresh interpreter
importing the scoring path) and left out of each mode's frames/s and stage table. Before the timed runs, each
mode runs once on the first video (warm-up: lazy imports, first calls, the loader's first pipeline); its time is
reported as the first run. Beside the stages: the decode limit (the same loader alone over the same videos: the
clip loader for score and eval, the frame reader for live), peak RSS per mode, the load average, the machine,
the versions and the source commit. On CUDA the clock synchronises the device at each stage boundary (only here).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from vadgpu.bench.stages import OTHER, StageClock
from vadgpu.bench.system import PeakMemory, describe_system, source_commit
from vadgpu.errors import VadgpuError
from vadgpu.precision import DEFAULT_PRECISION, check_precision

MODES = ("score", "eval", "live")
SCORE_BOXES = ("detect", "cache")
STARTUP_STAGES = ("model load",)
# The table's rows, in the path's order, with what each holds; a name with a dot is a part of the row before it.
STAGES = {
    "prepare": "probe the video, the prepare manifest",
    "decode": "waiting for the clip loader (live: the frame reader)",
    "clips": "decoded frames -> float clips",
    "boxes": "detection or box-cache read; each batch's boxes",
    "tube cut": "tube windows, roi_align crops",
    "network": "autoencoder forward + tube error",
    "tube scores": "location z, frame max, kept records",
    "appearance": "backbone + roi_align + bank distances",
    "appearance.backbone": "resize + backbone layers",
    "appearance.pool": "roi_align + L2 normalise",
    "appearance.bank": "distances to the training objects",
    "protocol": "placing, no-box frames, smoothing, normalisation (eval: + metrics)",
    "writing": "scores.csv, curves, objects.csv (eval: + metrics.json, ROC)",
    OTHER: "everything outside the marked stages",
}
# What `vadgpu score` / `vadgpu eval` / live scoring import before they work (the start-up's import time)
SCORING_MODULES = ("vadgpu.cli.main", "vadgpu.cli.evaluate", "vadgpu.evaluation.runner", "vadgpu.evaluation.calibrate",
                   "vadgpu.evaluation.report", "vadgpu.scoring.calibration", "vadgpu.objects.default_boxes",
                   "vadgpu.objects.boxes", "vadgpu.objects.detectors", "vadgpu.data.prepare", "vadgpu.pipelines.choose",
                   "vadgpu.detector", "vadgpu.live.scoring", "vadgpu.live.objects")
LOADER_MODULES = {"dali": "vadgpu.pipelines.dali_pipelines", "torch": "vadgpu.pipelines.baseline"}
DEFAULT_CHECKPOINT = "ped2-ddl"


@dataclass
class ScoreBenchSettings:
    checkpoint: str | None = None  # a weights file or shipped weights by name (default: DEFAULT_CHECKPOINT)
    model_file: str | None = None  # instead of checkpoint: an exported ONNX file, run by onnxruntime (score, live)
    dataset: str | None = None  # with root: its labelled test split (eval) and the videos of score and live
    root: str | None = None
    variant: str | None = None
    videos: tuple[str, ...] = ()  # test videos by name (default: all)
    inputs: tuple[str, ...] = ()  # video files and frame folders (score and live)
    modes: tuple[str, ...] = MODES
    device: str = "auto"
    loader: str = "auto"
    batch_size: int = 16
    repeats: int = 1  # timed runs of each mode
    warmup: bool = True  # one untimed run of each mode on the first video first
    score_boxes: str = "detect"  # score mode: detect in every run, or read the warm-up run's cache
    eval_boxes: str | None = None  # eval mode: a box cache (default: the dataset's background-subtraction cache)
    precision: str = DEFAULT_PRECISION  # the networks' arithmetic in every mode (vadgpu/precision.py)


@dataclass
class BenchVideo:
    name: str
    path: Path  # a video file or frame folder
    dataset: bool  # one of the dataset's test videos (eval takes those)


@dataclass
class Mode:
    """One mode's timed runs, summed: seconds per stage (start-up stages apart), frames, and the runs."""

    name: str
    runs: list[dict] = field(default_factory=list)
    first_run: dict | None = None

    def add(self, run: dict) -> None:
        self.runs.append(run)

    def summary(self, repeats: int) -> dict:
        frames = sum(r["frames"] for r in self.runs) / repeats
        seconds: dict[str, float] = {}
        calls: dict[str, int] = {}
        for run in self.runs:
            for name, value in run["stages"].items():
                seconds[name] = seconds.get(name, 0.0) + value / repeats
            for name, value in run["calls"].items():
                calls[name] = calls.get(name, 0) + value
        startup = sum(seconds.pop(name, 0.0) for name in STARTUP_STAGES)
        wall = sum(r["wall_s"] for r in self.runs) / repeats
        total = sum(seconds.values())
        return {"frames": int(round(frames)), "seconds": round(total, 4), "wall_s": round(wall, 4),
                "startup_s": round(startup, 4), "frames_per_s": round(frames / max(total, 1e-9), 2),
                "stages": stage_table(seconds, calls, frames, total), "runs": self.runs, "first_run": self.first_run}


def stage_table(seconds: dict[str, float], calls: dict[str, int], frames: float, total: float) -> dict:
    """{stage: seconds, share of `total`, frames/s if it alone ran, entries}, in STAGES' order (stages not
    listed there before "other"); a row with parts (appearance) holds its own time and its parts'."""
    names = [n for n in STAGES if n != OTHER] + sorted(set(seconds) - set(STAGES)) + [OTHER]
    table = {}
    for name in names:
        parts = [n for n in seconds if n.startswith(name + ".")]
        value = seconds.get(name, 0.0) + sum(seconds[n] for n in parts)
        if value == 0.0 and name not in seconds and not parts:
            continue
        table[name] = {"seconds": round(value, 4), "share": round(value / max(total, 1e-9), 4),
                       "frames_per_s": round(frames / value, 1) if value > 0 else None,
                       "calls": calls.get(name, 0)}
    return table


@contextlib.contextmanager
def _environment(**values: str):
    """Set environment variables for the block (the prepare cache of the score runs), then restore them."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet_log():
    """The `vadgpu` logger's progress lines off during the runs (warnings stay)."""
    log = logging.getLogger("vadgpu")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def import_seconds(modules: tuple[str, ...]) -> dict:
    """Seconds a fresh interpreter takes to import `modules` (and the whole process, the interpreter's start
    included)."""
    code = ("import time; t = time.perf_counter()\n"
            f"for m in {list(modules)!r}: __import__(m)\n"
            "print(time.perf_counter() - t)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[2]),
                                                                   os.environ.get("PYTHONPATH", "")] if p)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    process = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"importing the scoring path failed in a fresh interpreter: {tail}"}
    return {"imports_s": round(float(done.stdout.strip().splitlines()[-1]), 3), "process_s": round(process, 3),
            "modules": list(modules)}


class ScoreBench:
    def __init__(self, settings: ScoreBenchSettings, echo: Callable[[str], None] = lambda line: None):
        from vadgpu.checkpoint import checkpoint_file, load_checkpoint
        from vadgpu.device import is_cuda, resolve_device
        from vadgpu.models.registry import model_config_from_dict
        from vadgpu.pipelines.choose import resolve_loader

        if settings.checkpoint is not None and settings.model_file is not None:
            raise VadgpuError("give one of --checkpoint FILE and --model FILE.onnx, not both")
        if settings.checkpoint is None and settings.model_file is None:
            settings = replace(settings, checkpoint=DEFAULT_CHECKPOINT)
        self.s, self.echo = settings, echo
        unknown = [m for m in settings.modes if m not in MODES]
        if unknown or not settings.modes:
            raise VadgpuError(f"--modes {','.join(settings.modes)}: choose from {', '.join(MODES)}")
        if settings.score_boxes not in SCORE_BOXES:
            raise VadgpuError(f"--score-boxes {settings.score_boxes}: choose from {', '.join(SCORE_BOXES)}")
        if settings.repeats < 1 or settings.batch_size < 1:
            raise VadgpuError(f"--repeats {settings.repeats} and --batch-size {settings.batch_size} must be >= 1")
        if settings.model_file is not None and "eval" in settings.modes:
            raise VadgpuError("--modes eval takes a weights file (--checkpoint); with --model FILE.onnx choose from "
                              "score, live")
        self.device = resolve_device(settings.device)
        check_precision(settings.precision, self.device, onnx=settings.model_file is not None)
        self.loader, _ = resolve_loader(settings.loader)
        self.sync = (lambda: torch.cuda.synchronize(self.device)) if is_cuda(self.device) else None
        if settings.model_file is None:  # self.checkpoint: the weights file, or the ONNX file
            self.checkpoint = checkpoint_file(settings.checkpoint)
            ckpt = load_checkpoint(self.checkpoint, map_location="cpu")
            self.model_config = model_config_from_dict(ckpt["model_config"], ckpt.get("model_name"))
            self.calibration = ckpt.get("calibration")
        else:
            from vadgpu.evaluation.runner import open_onnx_model

            self.checkpoint = Path(settings.model_file)
            onnx = open_onnx_model(self.checkpoint)
            self.model_config, self.calibration = onnx.config, onnx.metadata.get("calibration")
        self.dataset = self._open_dataset()
        self.videos = self._videos()
        if "eval" in settings.modes and self.dataset is None:
            raise VadgpuError("--modes eval scores a dataset's labelled test videos: give --dataset and --root")
        self.memory = PeakMemory(self.device)

    # ----------------------------------------------------------------------------------------------- inputs

    def _open_dataset(self):
        s = self.s
        if (s.dataset is None) != (s.root is None):
            raise VadgpuError("give --dataset and --root together")
        if s.dataset is None:
            if s.videos:
                raise VadgpuError("--videos names test videos of a dataset: give --dataset and --root")
            return None
        from vadgpu.data.catalog import open_dataset

        return open_dataset(s.dataset, s.root, variant=s.variant)

    def _videos(self) -> list[BenchVideo]:
        out = []
        if self.dataset is not None:
            test = {v.name: v for v in self.dataset.test}
            missing = [n for n in self.s.videos if n not in test]
            if missing:
                raise VadgpuError(f"--videos: dataset {self.dataset.name} at {self.dataset.root} has no test video "
                                  f"{', '.join(missing)} (it has {', '.join(test)})")
            names = list(self.s.videos) or list(test)
            out += [BenchVideo(n, test[n].path, True) for n in names]
        for item in self.s.inputs:
            path = Path(item).expanduser()
            if not path.exists():
                raise VadgpuError(f"input {item}: no such video file or frame folder")
            out.append(BenchVideo(path.stem or path.name, path.resolve(), False))
        if not out:
            raise VadgpuError("nothing to score: give --dataset and --root, or video files / frame folders")
        return out

    # ---------------------------------------------------------------------------------------------- running

    def timed(self, label: str, run: Callable[[], int]) -> dict:
        """Run `run` (returns the frames it scored) under a fresh StageClock; the run's record."""
        clock = StageClock(self.sync)
        started = time.perf_counter()
        with clock:
            frames = run()
        wall = time.perf_counter() - started
        startup = sum(clock.seconds.get(n, 0.0) for n in STARTUP_STAGES)
        seconds = wall - startup
        rate = f"{frames} frames in {seconds:.2f} s ({frames / max(seconds, 1e-9):.1f} frames/s), " if frames else ""
        self.echo(f"  {label}: {rate}start-up {startup:.2f} s")
        return {"label": label, "frames": frames, "wall_s": round(wall, 4), "startup_s": round(startup, 4),
                "seconds": round(seconds, 4), "frames_per_s": round(frames / max(seconds, 1e-9), 2),
                "stages": {k: round(v, 5) for k, v in clock.seconds.items()}, "calls": dict(clock.calls)}

    def run(self) -> dict:
        from vadgpu import __version__

        system = describe_system(self.device)
        system["source"] = source_commit()
        if self.s.model_file is not None:
            import onnxruntime

            system["versions"]["onnxruntime"] = onnxruntime.__version__
        with tempfile.TemporaryDirectory(prefix="vadgpu-bench-score-") as scratch, _quiet_log():
            self.scratch = Path(scratch)
            modes = {}
            for mode in self.s.modes:
                self.echo(f"{mode}:")
                self.memory.start_stage()
                summary = getattr(self, "_mode_" + mode)()
                summary["memory"] = self.memory.read()
                modes[mode] = summary
            decode = self._decode_limits()
        for mode, summary in modes.items():
            limit = decode["frame reader" if mode == "live" else "clip loader"]
            summary["decode_limit_frames_per_s"] = limit["frames_per_s"]
        startup = import_seconds(SCORING_MODULES + (LOADER_MODULES[self.loader],))
        startup["model_load_s"] = {m: s["startup_s"] for m, s in modes.items()}
        if hasattr(os, "getloadavg"):
            system["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        return {"vadgpu_version": __version__, "system": system, "settings": self.settings_dict(),
                "startup": startup, "decode_limit": decode, "modes": modes,
                "stages": {m: s["stages"] for m, s in modes.items()}}

    def settings_dict(self) -> dict:
        from vadgpu.checkpoint import shipped_name

        out = asdict(self.s)  # paths as given: a record holds no more of the machine's folders than asked
        cfg = self.model_config
        appearance = (self.calibration or {}).get("appearance")
        out.update(shipped=self.s.checkpoint and shipped_name(self.s.checkpoint), device=str(self.device),
                   loader=self.loader, runtime="torch" if self.s.model_file is None else "onnxruntime",
                   videos=[v.name for v in self.videos],
                   model={"architecture": cfg.architecture, "clips": cfg.clips, "temporal": cfg.temporal,
                          "size": list(cfg.size), "channels": cfg.channels, "window": getattr(cfg, "window", None),
                          "calibration": self.calibration is not None, "appearance": appearance is not None})
        return out

    def _first(self, videos: list[BenchVideo]) -> list[BenchVideo]:
        return videos[:1] if self.s.warmup else []

    # ------------------------------------------------------------------------------------------------ modes

    def _mode_score(self) -> dict:
        mode = Mode("score")
        shared = self.scratch / "score-cache"  # score_boxes == "cache": every run reads the warm-up run's boxes
        for video in self._first(self.videos):
            mode.first_run = self.timed(f"first run, {video.name}", lambda v=video: self._score_one(v, shared))
        for _ in range(self.s.repeats):
            for video in self.videos:
                cache = shared if self.s.score_boxes == "cache" else None
                mode.add(self.timed(f"{video.name}", lambda v=video, c=cache: self._score_one(v, c)))
        return mode.summary(self.s.repeats)

    def _score_one(self, video: BenchVideo, cache: Path | None) -> int:
        from vadgpu.evaluation.runner import score_input
        from vadgpu.scoring.protocol import Protocol

        cache = cache or Path(tempfile.mkdtemp(prefix="cache-", dir=self.scratch))
        out = Path(tempfile.mkdtemp(prefix="score-", dir=self.scratch))
        with _environment(VADGPU_CACHE=str(cache)):
            onnx = self.s.model_file is not None
            result = score_input(video.path, None if onnx else self.checkpoint,
                                 model_file=self.checkpoint if onnx else None, out=out, protocol=Protocol(score=None),
                                 batch_size=self.s.batch_size, device=self.device, progress=False,
                                 loader=self.loader, precision=self.s.precision)
        return int(result.video.num_frames)

    def _mode_eval(self) -> dict:
        videos = [v for v in self.videos if v.dataset]
        boxes = self._eval_boxes()
        mode = Mode("eval")
        first = self._first(videos)
        if first:
            mode.first_run = self.timed(f"first run, {first[0].name}", lambda: self._eval(first, boxes))
        for _ in range(self.s.repeats):
            mode.add(self.timed(f"{len(videos)} video(s)", lambda: self._eval(videos, boxes)))
        out = mode.summary(self.s.repeats)
        out["boxes"] = str(boxes)
        return out

    def _eval_boxes(self) -> Path:
        """The box cache eval reads: --eval-boxes, else the dataset's background-subtraction cache (made here,
        before timing, when missing)."""
        if self.s.eval_boxes is not None:
            return Path(self.s.eval_boxes)
        from vadgpu.data.prepare import load_prepared
        from vadgpu.objects.default_boxes import ensure_box_cache

        prepared = load_prepared(self.dataset, self.device, progress=False, loader=self.loader)
        return ensure_box_cache(self.dataset, {"train": list(prepared.train), "test": list(prepared.test)},
                                progress=False, echo=lambda line: self.echo(f"  {line}"))

    def _eval(self, videos: list[BenchVideo], boxes: Path) -> int:
        from vadgpu.evaluation.runner import evaluate
        from vadgpu.scoring.protocol import Protocol

        out = Path(tempfile.mkdtemp(prefix="eval-", dir=self.scratch))
        result = evaluate(self.checkpoint, dataset=self.dataset.name, root=self.dataset.root,
                          variant=self.s.variant, protocol=Protocol(score=None), batch_size=self.s.batch_size,
                          device=self.device, out=out, progress=False, boxes=boxes, loader=self.loader,
                          videos=[v.name for v in videos], precision=self.s.precision)
        return int(result.record["totals"]["frames"])

    def _mode_live(self) -> dict:
        from vadgpu.detector import Detector

        mode = Mode("live")
        holder: dict = {}

        def load() -> int:
            holder["detector"] = Detector.load(self.checkpoint, device=str(self.device), precision=self.s.precision)
            return 0

        loading = self.timed("Detector.load", load)
        detector = holder["detector"]
        for video in self._first(self.videos):
            mode.first_run = self.timed(f"first run, {video.name}", lambda v=video: self._live_one(detector, v))
        for _ in range(self.s.repeats):
            for video in self.videos:
                mode.add(self.timed(f"{video.name}", lambda v=video: self._live_one(detector, v)))
        out = mode.summary(self.s.repeats)
        out["startup_s"] = round(out["startup_s"] + loading["startup_s"], 4)  # Detector.load + each stream's record
        out["detector_load_s"] = loading["wall_s"]
        return out

    @staticmethod
    def _live_one(detector, video: BenchVideo) -> int:
        frames = 0
        for _ in detector.stream(str(video.path), keep_images=False):
            frames += 1
        return frames

    # ----------------------------------------------------------------------------------------- decode limit

    def _decode_limits(self) -> dict:
        """Frames/s of each reader alone over the bench's videos: the clip loader (score, eval; hand-over, and
        with the float clips made) one loader per video as score opens them, and the live frame reader."""
        out = {}
        modes = set(self.s.modes)
        if modes & {"score", "eval"}:
            handed = clips = frames = 0.0
            for video in self.videos:
                prepared = self._prepared(video)
                self._loader_pass(prepared, materialise=True)  # warm: pipeline build, page cache
                seconds, count = self._loader_pass(prepared, materialise=False)
                handed += seconds
                frames += count
                clips += self._loader_pass(prepared, materialise=True)[0]
            out["clip loader"] = {"loader": self.loader, "frames": int(frames),
                                  "frames_per_s": round(frames / max(clips, 1e-9), 1),
                                  "hand_over_frames_per_s": round(frames / max(handed, 1e-9), 1),
                                  "what": "one test-order loader per video, each batch's float clips made"}
        if "live" in modes:
            from vadgpu.detector import open_frames
            from vadgpu.live.stream import Frame

            seconds = frames = 0.0
            for video in self.videos:
                for timed in (False, True):
                    started, count = time.perf_counter(), 0
                    reader = open_frames(str(video.path))
                    try:
                        count = sum(1 for item in reader if isinstance(item, Frame))
                    finally:
                        reader.close()
                    if timed:
                        seconds += time.perf_counter() - started
                        frames += count
            out["frame reader"] = {"frames": int(frames), "frames_per_s": round(frames / max(seconds, 1e-9), 1),
                                   "what": "live's reader alone: OpenCV imread per file of a frame folder, PyAV for "
                                           "a video file"}
        return out

    def _prepared(self, video: BenchVideo):
        from vadgpu.evaluation.runner import prepare_input

        with _environment(VADGPU_CACHE=str(self.scratch / "decode-cache")):
            return prepare_input(video.path, self.device, progress=False, loader=self.loader)

    def _loader_pass(self, prepared, materialise: bool) -> tuple[float, int]:
        from vadgpu.objects.tubes import native_frame_size
        from vadgpu.pipelines.choose import open_loader
        from vadgpu.pipelines.clip_index import ClipSpec

        frame_size = native_frame_size([prepared]) if self.model_config.clips == "objects" else None
        spec = ClipSpec.for_model(self.model_config, skip_window=False, frame_size=frame_size)
        started = time.perf_counter()
        loader = open_loader(self.loader, [prepared], spec, batch_size=self.s.batch_size, device=self.device,
                             train=False)
        frames = 0
        for batch in loader:
            if materialise:
                batch.clips
            frames += len(batch)
        if self.sync is not None:
            self.sync()
        return time.perf_counter() - started, frames


def run_score_bench(settings: ScoreBenchSettings, echo: Callable[[str], None] = lambda line: None) -> dict:
    """Measure the scoring path as `settings` says; the result dict (system, settings, startup, decode_limit,
    modes{score, eval, live: frames/s, stages, runs, memory}, stages)."""
    return ScoreBench(settings, echo).run()
