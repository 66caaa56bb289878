"""`vadgpu bench throughput`: the data path's stages side by side on the same files, in one run.

    decode            every frame of the training split decoded once (decode.py): 1 process and all cores; the
                      limit is the faster of the two
    baseline          the torch DataLoader reference (pipelines/baseline.py), num_workers = cores: clips/s
    pipeline          the DALI clip loader (pipelines/loader.py): clips/s and frames decoded per clip, as it
                      delivers them (the decoded frames and each clip's rows in them; the baseline delivers
                      materialised uint8 clips)
    baseline+clips    the same two, each batch's float32 clips (and skip window) then materialised: what a model
    pipeline+clips    reads, so the like-for-like comparison of the two loaders
    baseline+kernels  the same two, each batch then turned into pseudo-anomalies by the preset's policy
    pipeline+kernels
    train             full training steps (engine.train.train_step: kernels, forward, backward, optimiser) fed by
                      the --loader (DALI, or the torch loader = the baseline); plus the step alone on cached
                      batches and the kernels' share of it

An object preset (`ddl-objects-cpu`, ...) is measured as it trains: the loaders deliver frames at the videos' own
size, each batch becomes `tubes_per_clip` tubes per clip around the box cache's tracks (--boxes, else the dataset's
background-subtraction cache, as `vadgpu train` makes it; the window resolved from it as training resolves
`auto`) and the kernels act on the tubes; the train stage also times the tube cutting alone.

Where DALI is not installed the pipeline stages are skipped, and where PyAV is not the decode limit of video
files is; the result lists each skipped stage with the reason (`skipped`).

All loaders see the same clip spec (from the preset, with the command's overrides), the same seed and so the
same clips in the same order; the first batches of baseline and pipeline are compared and the difference
recorded. Every stage warms up, then runs `repeats` timed windows (timing.py). Results are a JSON-able dict.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from vadgpu.bench import decode
from vadgpu.bench.system import PeakMemory, describe_system, usable_cores
from vadgpu.bench.timing import Rate, measure_rate
from vadgpu.device import is_cuda, resolve_device
from vadgpu.errors import VadgpuError
from vadgpu.optional import available

STAGES = ("decode", "baseline", "pipeline", "baseline+clips", "pipeline+clips", "baseline+kernels",
          "pipeline+kernels", "train")
# The throughput targets (for a 2-core CPU): pipeline/baseline by clip length, and the two below
SPEEDUP_TARGETS = {3: 1.5, 16: 3.0}
DECODE_LIMIT_TARGET = 0.7  # pipeline clips/s >= 0.7 x decode-limit frames/s (all cores)
DECODED_FRAMES_TARGET = 0.5  # frames the pipeline decodes into clips per second >= 0.5 x the decode limit
KERNEL_SHARE_TARGET = 0.05  # kernels <= 5% of a training step
STEP_BATCHES = 3  # cached batches the step-only and kernel-only timings cycle through


@dataclass
class ThroughputSettings:
    """What `vadgpu bench throughput` measures; None fields take the preset's value (or the core count)."""

    dataset: str
    root: str
    variant: str | None = None
    cache: str | None = None
    device: str = "auto"
    preset: str = "ddl-ped2-cpu"
    temporal: int | None = None
    size: tuple[int, int] | None = None  # (H, W)
    channels: int | None = None
    max_skip: int | None = None  # None: the preset's (a skip window is decoded when > 1)
    batch_size: int = 16
    seconds: float = 5.0  # per timed window
    repeats: int = 3
    warmup: float = 2.0  # seconds of untimed work before each stage's windows
    workers: int | None = None  # DataLoader workers, DALI threads and decode processes; None: usable cores
    boxes: str | None = None  # object-box cache; None: random boxes (kernel cost does not depend on the source),
    #                           for an object preset the dataset's background-subtraction cache
    tubes_per_clip: int | None = None  # object presets: None = the preset's training setting
    stages: tuple[str, ...] = STAGES
    loader: str = "auto"  # what feeds the train stage: dali, torch or auto (pipelines/choose.py)
    seed: int = 0
    progress: bool = True

    def check(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise VadgpuError(f"--stages {','.join(self.stages)}: choose from {','.join(STAGES)}")
        if self.batch_size < 1:
            raise VadgpuError(f"--batch-size {self.batch_size} must be >= 1")
        if self.workers is not None and self.workers < 1:
            raise VadgpuError(f"--workers {self.workers} must be >= 1")
        if self.seconds <= 0 or self.repeats < 1 or self.warmup < 0:
            raise VadgpuError(f"--seconds {self.seconds} must be > 0 and --repeats {self.repeats} >= 1")
        if self.tubes_per_clip is not None and self.tubes_per_clip < 1:
            raise VadgpuError(f"--tubes-per-clip {self.tubes_per_clip} must be >= 1")


class RandomBoxes:
    """Stand-in for ObjectBoxes: one drifting box per clip, 3 in 4 clips valid, drawn on the device.

    The kernels' cost depends on the box sizes, not on where boxes come from, so a benchmark needs no detector.
    """

    def __init__(self, temporal: int):
        self.temporal = temporal

    def sample(self, video: torch.Tensor, frame: torch.Tensor, generator: torch.Generator):
        n, device = video.shape[0], video.device
        corner = 0.1 + 0.5 * torch.rand(n, 1, 2, generator=generator, device=device)  # (N, 1, 2)
        side = 0.1 + 0.2 * torch.rand(n, 1, 2, generator=generator, device=device)  # (N, 1, 2)
        drift = torch.linspace(0.0, 0.05, self.temporal, device=device)[None, :, None]  # (1, T, 1)
        boxes = torch.cat([corner + drift, corner + side + drift], dim=2).clamp(0, 1)  # (N, T, 4)
        valid = torch.rand(n, generator=generator, device=device) < 0.75  # (N,)
        return boxes, valid


class LoaderStream:
    """Clips per batch, epoch after epoch (set_epoch each time, as training does); `per_batch` runs on each batch.

    Counts frames decoded and clips emitted over every epoch it ran, so `frames_decoded_per_clip` covers the whole
    measurement, not only the last (partial) epoch.
    """

    def __init__(self, loader, per_batch: Callable | None = None):
        self.loader, self.per_batch = loader, per_batch
        self.frames_decoded = self.clips_emitted = 0
        self._batches = self._run()

    def __iter__(self) -> "LoaderStream":
        return self

    def __next__(self) -> int:
        return next(self._batches)

    def close(self) -> None:
        self._batches.close()

    @property
    def frames_decoded_per_clip(self) -> float:
        return self.frames_decoded / max(self.clips_emitted, 1)

    def _run(self) -> Iterator[int]:
        for epoch in itertools.count():
            self.loader.set_epoch(epoch)
            try:
                for batch in self.loader:
                    if self.per_batch is not None:
                        self.per_batch(batch)
                    yield len(batch)
            finally:  # also when closed mid-epoch: the loader's counters cover the part it ran
                self.frames_decoded += self.loader.frames_decoded
                self.clips_emitted += self.loader.clips_emitted


def materialise(batch) -> None:
    """What a model's first layer reads: the float32 clips, and the skip window where there is one."""
    _ = batch.clips, batch.window  # ClipBatch gathers and converts on access


def cycle_stream(batches: list, call: Callable) -> Iterator[int]:
    """`call(batch)` over cached batches, forever: a step or the kernels without any loading."""
    for batch in itertools.cycle(batches):
        call(batch)
        yield len(batch)


class ThroughputBench:
    """Builds the loaders, model and kernels once and measures the requested stages (see the module doc)."""

    def __init__(self, settings: ThroughputSettings):
        from vadgpu.data.catalog import open_dataset
        from vadgpu.data.prepare import load_prepared
        from vadgpu.models.registry import clip_overrides, preset_config
        from vadgpu.pipelines.choose import resolve_loader
        from vadgpu.pipelines.clip_index import ClipSpec

        settings.check()
        self.s = settings
        self.device = resolve_device(settings.device)
        self.train_loader = resolve_loader(settings.loader)[0]
        self.dali = available("nvidia.dali")
        self.workers = settings.workers or usable_cores()
        overrides = clip_overrides(settings)
        if settings.max_skip is not None:
            overrides["max_skip"] = settings.max_skip
            if settings.max_skip < 2 and "skip" in preset_config(settings.preset).pseudo_kinds:
                # no window -> no skip clips: drop the kind rather than fail the model config's check
                kinds = tuple(k for k in preset_config(settings.preset).pseudo_kinds if k != "skip")
                overrides["pseudo_kinds"], overrides["pseudo_weights"] = kinds, None
        self.model_config = preset_config(settings.preset, **overrides)
        self.dataset = open_dataset(settings.dataset, settings.root, variant=settings.variant)
        # Files DALI decodes where it is used (the baseline reads those too), else the torch loader's
        prepared = load_prepared(self.dataset, self.device, cache=settings.cache, progress=settings.progress,
                                 loader="dali" if self.dali else "torch")
        self.videos = list(prepared.train)
        if not self.videos:
            raise VadgpuError(f"--root {settings.root}: dataset {settings.dataset} has no training videos")
        self.objects = self.model_config.clips == "objects"
        self.box_cache, frame_size = settings.boxes, None
        if self.objects:
            frame_size = self.object_setup(prepared)
        self.spec = ClipSpec.for_model(self.model_config, frame_size=frame_size)
        self.memory = PeakMemory(self.device)
        self.sync = (lambda: torch.cuda.synchronize(self.device)) if is_cuda(self.device) else (lambda: None)

    def object_setup(self, prepared) -> tuple[int, int]:
        """An object preset as `vadgpu train` sets it up: the box cache (--boxes, else the dataset's background-
        subtraction cache), the window resolved from it, tubes per clip; returns the frames' (H, W)."""
        from dataclasses import fields

        from vadgpu.engine.config import TrainConfig
        from vadgpu.models.base import WINDOW_AUTO
        from vadgpu.models.presets import PRESET_TRAINING
        from vadgpu.objects.default_boxes import ensure_box_cache
        from vadgpu.objects.tubes import native_frame_size
        from vadgpu.objects.window import auto_window

        frame_size = native_frame_size(self.videos)
        if self.box_cache is None:
            splits = {"train": list(prepared.train), "test": list(prepared.test)}
            self.box_cache = str(ensure_box_cache(self.dataset, splits, progress=self.s.progress,
                                                  echo=lambda _: None))
        if self.model_config.window == WINDOW_AUTO:
            choice = auto_window(self.box_cache, self.videos, frame_size, self.s.dataset)
            self.model_config = self.model_config.replace(window=choice.window)
        default = next(f.default for f in fields(TrainConfig) if f.name == "tubes_per_clip")
        training = PRESET_TRAINING.get(self.s.preset, {})
        self.tubes_per_clip = self.s.tubes_per_clip or training.get("tubes_per_clip", default)
        return frame_size

    # ------------------------------------------------------------------------------------------- builders

    def loader(self, kind: str):
        from vadgpu.pipelines.baseline import make_baseline_loader
        from vadgpu.pipelines.loader import make_loader

        common = dict(batch_size=self.s.batch_size, device=self.device, train=True, seed=self.s.seed)
        if kind == "baseline":
            return make_baseline_loader(self.videos, self.spec, num_workers=self.workers, **common)
        return make_loader(self.videos, self.spec, num_threads=self.workers, **common)

    def kernel_step(self) -> Callable:
        """batch -> pseudo-anomalies, as the training objective makes them (a fixed DDL logit: no model here); an
        object preset's batch becomes its tubes first."""
        from vadgpu.engine.objective import build_policy, load_patches, make_pseudo_anomalies

        mc = self.model_config
        patches = load_patches(mc, None, self.device, self.s.seed)
        policy, boxes = build_policy(mc), self.boxes()
        generator = torch.Generator(device=self.device).manual_seed(self.s.seed + 1)
        logit = torch.zeros((), device=self.device) if "ddl" in mc.pseudo_kinds else None
        if not self.objects:
            return lambda batch: make_pseudo_anomalies(batch, policy, boxes, patches, generator, logit)
        sampler = self.tube_sampler(boxes)

        def on_tubes(batch):
            tubes = sampler(batch, generator)
            return policy(tubes, tubes.boxes, tubes.valid, patches, generator, logit=logit)

        return on_tubes

    def boxes(self):
        if self.box_cache is None:
            return RandomBoxes(self.spec.temporal)
        from vadgpu.objects.boxes import ObjectBoxes

        return ObjectBoxes.load(self.box_cache, self.videos, self.device, self.spec.temporal)

    def tube_sampler(self, boxes):
        from vadgpu.objects.tubes import TubeSampler

        return TubeSampler(boxes, self.model_config.window, self.model_config.size[0], self.tubes_per_clip)

    def training_parts(self, loader):
        from vadgpu.engine.components import assemble
        from vadgpu.engine.config import TrainConfig
        from vadgpu.engine.distributed import DistContext
        from vadgpu.models.registry import model_from_config

        torch.manual_seed(self.s.seed)
        model = model_from_config(self.model_config)
        config = TrainConfig(dataset=self.s.dataset, root=str(self.s.root), model=self.model_config.architecture,
                             preset=self.s.preset, batch_size=self.s.batch_size, device=str(self.device),
                             seed=self.s.seed, amp=is_cuda(self.device), progress=False)
        ctx = DistContext(0, 1, 0, self.device)
        if self.objects:  # the tubes carry their own object's boxes
            return assemble(model, config, ctx, loader, tubes=self.tube_sampler(self.boxes()))
        return assemble(model, config, ctx, loader, boxes=self.boxes())

    # ----------------------------------------------------------------------------------------- measuring

    def rate(self, stream: Iterator[int]) -> Rate:
        with contextlib.closing(stream):  # stops DataLoader workers, DALI pipelines, decode pools
            return measure_rate(stream, self.s.seconds, self.s.repeats, self.s.warmup, self.sync)

    def run(self) -> dict:
        """Measure every requested stage; return the result dict (system, settings, stages, ratios, targets)."""
        system = describe_system(self.device)
        stages: dict[str, dict] = {}
        skipped = {name: why for name in self.s.stages if (why := self.skip_reason(name))}
        bar = tqdm([s for s in self.s.stages if s not in skipped], desc="bench throughput", unit="stage",
                   disable=not self.s.progress or not os.isatty(2))
        for name in bar:
            bar.set_postfix_str(name)
            self.memory.start_stage()
            stages[name] = getattr(self, "_stage_" + name.replace("+", "_"))()
            stages[name]["memory"] = self.memory.read()
        if "pipeline" in stages:  # after the stage's memory was read: two float batches are not the pipeline's
            stages["pipeline"]["same_as_baseline"] = compare_first_batches(self.loader("baseline"),
                                                                           self.loader("pipeline"))
        if hasattr(os, "getloadavg"):
            system["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        result = {"system": system, "settings": self.settings_dict(), "stages": stages, "skipped": skipped}
        result["ratios"], result["targets"] = ratios_and_targets(stages, self.spec.temporal)
        return result

    def skip_reason(self, stage: str) -> str | None:
        """Why `stage` cannot run here (a package it needs is missing), or None."""
        if stage.startswith("pipeline") and not self.dali:
            return "NVIDIA DALI is not installed"
        if stage == "decode" and not self.videos[0].video.is_folder and not available("av"):
            return "PyAV is not installed (it decodes the video files for the decode limit)"
        return None

    def settings_dict(self) -> dict:
        out = asdict(self.s)
        out.update(workers=self.workers, spec=asdict(self.spec), loader=self.train_loader,
                   kinds=list(self.model_config.pseudo_kinds), videos=len(self.videos),
                   frames=int(sum(v.num_frames for v in self.videos)),
                   format=self.videos[0].codec, frame_size=[self.videos[0].height, self.videos[0].width],
                   boxes=self.box_cache or "random (RandomBoxes)", clips=self.model_config.clips)
        if self.objects:
            out.update(window=self.model_config.window, tube_size=list(self.model_config.size),
                       tubes_per_clip=self.tubes_per_clip)
        out["stages"] = list(self.s.stages)
        return out

    def _stage_decode(self) -> dict:
        jobs, is_folder = decode.decode_jobs(self.videos)
        channels = self.spec.channels
        one = self.rate(decode.serial_stream(jobs, is_folder, channels))
        pool = self.rate(decode.pool_stream(jobs, is_folder, channels, self.workers))
        # The limit is the faster of the two: on a shared machine the pool can lose to one process
        best = max((pool, one), key=lambda r: r.median)
        return {"unit": "frames/s", "rate": best.to_dict(), "one_process": one.to_dict(), "pool": pool.to_dict(),
                "limit_from": "pool" if best is pool else "one process",
                "decoder": "cv2.imdecode" if is_folder else "PyAV (1 thread)", "processes": self.workers}

    def _loader_stage(self, kind: str, kernels: bool = False, clips: bool = False) -> dict:
        loader = self.loader(kind)
        step = self.kernel_step() if kernels else materialise if clips else None
        stream = LoaderStream(loader, step)
        rate = self.rate(stream)
        return {"unit": "clips/s", "rate": rate.to_dict(), "batches_per_epoch": len(loader),
                "frames_decoded_per_clip": round(stream.frames_decoded_per_clip, 3)}

    def _stage_baseline(self) -> dict:
        return self._loader_stage("baseline")

    def _stage_pipeline(self) -> dict:
        return self._loader_stage("pipeline")

    def _stage_baseline_clips(self) -> dict:
        return self._loader_stage("baseline", clips=True)

    def _stage_pipeline_clips(self) -> dict:
        return self._loader_stage("pipeline", clips=True)

    def _stage_baseline_kernels(self) -> dict:
        return self._loader_stage("baseline", kernels=True)

    def _stage_pipeline_kernels(self) -> dict:
        return self._loader_stage("pipeline", kernels=True)

    def _stage_train(self) -> dict:
        from vadgpu.engine.train import train_step

        loader = self.loader("pipeline" if self.train_loader == "dali" else "baseline")
        parts = self.training_parts(loader)
        with_loading = self.rate(LoaderStream(loader, lambda batch: train_step(parts, batch)))
        batches = list(itertools.islice(iter(loader), STEP_BATCHES))
        step_only = self.rate(cycle_stream(batches, lambda batch: train_step(parts, batch)))
        # what the objective makes before the model: tubes (object presets), model input space, pseudo-anomalies
        kernels_only = self.rate(cycle_stream(batches, lambda batch: parts.objective.model_inputs(
            batch, parts.generator)))
        share = step_only.median / max(kernels_only.median, 1e-9)  # (1 / kernel rate) / (1 / step rate)
        out = {"unit": "clips/s", "rate": with_loading.to_dict(), "step_only": step_only.to_dict(),
               "kernels_only": kernels_only.to_dict(), "kernels_share_of_step": round(share, 4),
               "preset": self.s.preset, "model": self.model_config.architecture, "loader": self.train_loader,
               "parameters": sum(p.numel() for p in parts.params)}
        if self.objects:
            tubes_only = self.rate(cycle_stream(batches, lambda batch: parts.objective.tubes(batch, parts.generator)))
            out.update(tubes_only=tubes_only.to_dict(),
                       tubes_share_of_step=round(step_only.median / max(tubes_only.median, 1e-9), 4))
        return out


def compare_first_batches(baseline, pipeline) -> dict:
    """Same clips, same tensors? The first batch of each loader: clip ids equal, max and mean |difference| of the
    pixels, and beside them the control `shifted_*`: the same batches one frame apart (frame t + 1 of one against
    frame t of the other), what a loader one frame off would show. Decoders differ by a grey level or two; a wrong
    frame differs by the scene's motion, which the largest difference shows (the mean hides it in a still
    background)."""
    first = [next(iter(loader)) for loader in (baseline, pipeline)]
    a, b = first
    same_clips = bool(torch.equal(a.video.cpu(), b.video.cpu()) and torch.equal(a.frame.cpu(), b.frame.cpu()))
    same, shifted = [], []
    for x, y in zip(a.clips, b.clips):  # clip by clip (C, T, H, W): bounded memory
        x, y = x.cpu().float(), y.cpu().float()
        same.append((x - y).abs())
        shifted.append((x[:, 1:] - y[:, :-1]).abs())
    return {"same_clips": same_clips, "shape": list(a.clips.shape),
            "max_abs_diff": round(max(float(d.max()) for d in same), 4),
            "mean_abs_diff": round(sum(float(d.sum()) for d in same) / a.clips.numel(), 5),
            "shifted_max_abs_diff": round(max((float(d.max()) for d in shifted if d.numel()), default=0.0), 4),
            "shifted_mean_abs_diff": round(sum(float(d.sum()) for d in shifted)
                                           / max(1, sum(d.numel() for d in shifted)), 5)}


def ratios_and_targets(stages: dict, temporal: int) -> tuple[dict, dict]:
    """The ratios between the stages, and each throughput goal with its value and whether it is met."""
    def median(name: str) -> float | None:
        return stages[name]["rate"]["median"] if name in stages else None

    ratios, targets = {}, {}
    for plain in ("", "+clips", "+kernels"):
        p, b = median("pipeline" + plain), median("baseline" + plain)
        if p is not None and b:
            ratios[f"pipeline{plain}/baseline{plain}"] = round(p / b, 3)
    p, d = median("pipeline"), median("decode")
    if p is not None and d:
        ratios["pipeline clips/s / decode-limit frames/s"] = round(p / d, 3)
        # the frames the pipeline decodes and makes into clips, per second, against what the decoder alone does
        decoded = p * stages["pipeline"].get("frames_decoded_per_clip", 1.0)
        ratios["pipeline decoded frames/s / decode-limit frames/s"] = round(decoded / d, 3)
    if "pipeline/baseline" in ratios and temporal in SPEEDUP_TARGETS:
        value, want = ratios["pipeline/baseline"], SPEEDUP_TARGETS[temporal]
        targets[f"pipeline/baseline >= {want} at T={temporal}"] = {"value": value, "met": value >= want}
    if "pipeline clips/s / decode-limit frames/s" in ratios:
        value = ratios["pipeline clips/s / decode-limit frames/s"]
        targets[f"pipeline/decode limit >= {DECODE_LIMIT_TARGET}"] = {"value": value,
                                                                      "met": value >= DECODE_LIMIT_TARGET}
        value = ratios["pipeline decoded frames/s / decode-limit frames/s"]
        targets[f"pipeline decoded frames/decode limit >= {DECODED_FRAMES_TARGET}"] = {
            "value": value, "met": value >= DECODED_FRAMES_TARGET}
    if "train" in stages:
        value = stages["train"]["kernels_share_of_step"]
        targets[f"kernels share of a step <= {KERNEL_SHARE_TARGET}"] = {"value": value,
                                                                       "met": value <= KERNEL_SHARE_TARGET}
    return ratios, targets


def run_throughput(settings: ThroughputSettings) -> dict:
    """Measure throughput as `settings` says; return the result dict (see ThroughputBench.run)."""
    return ThroughputBench(settings).run()
