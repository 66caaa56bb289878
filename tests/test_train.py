"""vadgpu train: config layers, CLI flags and aliases, run-folder rules, the hot path's host syncs, end to end."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from vadgpu.cli.main import cli
from vadgpu.cli.train import resolve_config
from vadgpu.engine.components import assemble, resolve_model
from vadgpu.engine.config import TrainConfig, load_config_file, write_config
from vadgpu.engine.distributed import DistContext
from vadgpu.engine.run_folder import prepare_run_dir
from vadgpu.engine.train import LossMeter, train_step
from vadgpu.errors import VadgpuError

CPU = DistContext(0, 1, 0, torch.device("cpu"))


# ---------------------------------------------------------------- config and flags


def test_config_layers_defaults_file_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"epochs": 3, "lr": 1e-3, "size": [48, 64], "model": "dualpath"}))
    config = resolve_config({"lr": 5e-4, "dataset": "synthetic", "root": "r", "out": "o"}, str(path), resume=False)
    assert (config.epochs, config.lr, config.size, config.model) == (3, 5e-4, (48, 64), "dualpath")  # flag wins
    assert config.batch_size == TrainConfig().batch_size  # untouched: the dataclass default
    assert resolve_config({"preset": "dualpath-tiny-cpu"}, None, resume=False).model == "dualpath"  # implied
    write_config(config, tmp_path / "out.yaml")
    assert load_config_file(tmp_path / "out.yaml") == config  # YAML round trip


def test_config_file_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nlearning_rate: 0.1\n")
    with pytest.raises(VadgpuError, match=r"bad\.yaml.*learning_rate"):
        load_config_file(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(VadgpuError, match="mapping"):
        load_config_file(bad)
    with pytest.raises(VadgpuError, match="no such file"):
        load_config_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize("change, message", [
    ({"model": "vae"}, "--model"), ({"channels": 2}, "--channels"), ({"batch_size": 0}, "--batch-size"),
    ({"lr": -1.0}, "--lr"), ({"boxes": "/nonexistent/boxes.npz"}, "--boxes"), ({"dataset": ""}, "--dataset"),
])
def test_validate_names_the_option(change, message):
    base = TrainConfig(dataset="synthetic", root="r", out="o")
    with pytest.raises(VadgpuError, match=message):
        base.replace(**change).validate()


def test_help_lists_every_option_with_default():
    result = CliRunner().invoke(cli, ["train", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for flag in ("--dataset_name", "--training_batch_size", "--resize_height", "--resize_width", "--boxes",
                 "--resume", "--overwrite", "--checkpoint-every", "--log-every", "--no-amp", "--compile",
                 "--nproc"):
        assert flag in result.output
    assert f"[default: {TrainConfig().batch_size}]" in result.output


def test_train_options_and_config_fields_match():
    """Every TrainConfig field is a `vadgpu train` option (or YAML-only, by design) and every option a field, with
    the owners' choices: a field added to one and not the other fails here."""
    import click

    from vadgpu.cli.train import train
    from vadgpu.engine.config import AMP_DTYPES, FIELD_NAMES, SCHEDULES
    from vadgpu.models.base import CLIP_MODES
    from vadgpu.pipelines.choose import LOADERS
    from vadgpu.models.registry import ARCHITECTURES

    options = {param.name for param in train.params}
    command_only = {"config_file", "resume", "overwrite", "nproc", "print_config"}  # how to run, not what to train
    size_options = {"resize", "resize_height", "resize_width"}  # all three set `size`
    yaml_only = {"weight_decay", "grad_clip", "extra"}  # --config FILE only
    assert options - command_only - size_options == set(FIELD_NAMES) - {"size"} - yaml_only
    choices = {param.name: tuple(param.type.choices) for param in train.params if isinstance(param.type, click.Choice)}
    assert choices == {"model": tuple(ARCHITECTURES), "schedule": SCHEDULES, "clips": CLIP_MODES,
                       "amp_dtype": AMP_DTYPES, "loader": LOADERS}


def test_seed_repository_aliases_and_resume_guard(tmp_path, monkeypatch):
    seen = {}

    def fake_fit(config, resume=False, overwrite=False):  # stop at the engine's door: this tests flag parsing
        seen.update(config=config, resume=resume)
        raise VadgpuError("stop here")

    monkeypatch.setattr("vadgpu.engine.train.fit", fake_fit)
    args = ["train", "--dataset_name", "synthetic", "--root", str(tmp_path), "--out", str(tmp_path / "run"),
            "--training_batch_size", "3", "--resize_height", "40", "--resize_width", "48", "--channels", "rgb",
            "--temporal", "5", "--epochs", "2", "--lr", "0.001", "--device", "cpu"]
    result = CliRunner().invoke(cli, args)
    assert "stop here" in result.output
    c = seen["config"]
    assert (c.dataset, c.batch_size, c.size, c.channels, c.temporal, c.epochs, c.lr) == (
        "synthetic", 3, (40, 48), 3, 5, 2, 1e-3)
    # --resume keeps the saved run's config; changing what was trained is refused, extending epochs is not
    (tmp_path / "run").mkdir()
    write_config(c, tmp_path / "run" / "config.yaml")
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "run"), "--resume", "--lr", "0.1"])
    assert result.exit_code == 1 and "lr" in result.output and "cannot change" in result.output
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "run"), "--resume", "--epochs", "5"])
    assert seen["resume"] and seen["config"].epochs == 5 and seen["config"].batch_size == 3


def test_run_folder_is_not_overwritten_without_consent(tmp_path):
    run = tmp_path / "run"
    prepare_run_dir(run, resume=False, overwrite=False)  # fresh: fine
    write_config(TrainConfig(dataset="synthetic", root="r", out=str(run), epochs=1), run / "config.yaml")  # a run's
    (run / "notes.txt").write_text("mine")
    with pytest.raises(VadgpuError, match="already holds a training run"):
        prepare_run_dir(run, resume=False, overwrite=False)
    with pytest.raises(VadgpuError, match="checkpoints/last.pt"):
        prepare_run_dir(run, resume=True, overwrite=False)
    prepare_run_dir(run, resume=False, overwrite=True)
    assert not (run / "config.yaml").exists() and (run / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- hot path


@dataclass
class _Batch:  # the ClipBatch fields the objective reads
    clips: torch.Tensor
    video: torch.Tensor
    frame: torch.Tensor
    window: torch.Tensor | None = None


class _FixedBoxes:
    """ObjectBoxes' sample() contract with one box through every clip: lets the DDL blend run on real tensors."""

    def __init__(self, temporal: int, device: torch.device = torch.device("cpu")):
        self.box = torch.tensor([0.25, 0.25, 0.75, 0.75], device=device).expand(1, temporal, 4)  # (1, T, 4)

    def sample(self, video, frame, generator=None):
        n = video.shape[0]
        return self.box.expand(n, -1, -1).clone(), torch.ones_like(video, dtype=torch.bool)  # (N, T, 4), (N,)


def _batch(model, n=2, seed=0, device=torch.device("cpu")):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    window = None
    if cfg.max_skip > 1:  # skip clips are gathered from a wider window around the centre
        window = torch.rand(n, cfg.channels, cfg.max_skip * (cfg.temporal - 1) + 1, *cfg.size, generator=g)
        centre = cfg.max_skip * (cfg.temporal // 2)
        clips = window[:, :, centre - cfg.temporal // 2: centre - cfg.temporal // 2 + cfg.temporal]
    else:
        clips = torch.rand(n, cfg.channels, cfg.temporal, *cfg.size, generator=g)
    batch = _Batch(clips.contiguous(), torch.zeros(n, dtype=torch.long), torch.full((n,), 5), window)
    return _Batch(*(None if t is None else t.to(device) for t in (batch.clips, batch.video, batch.frame, batch.window)))


# Host reads that exist only on the CPU path, by design of their module: kernels.skip_frames range-checks the skips
# under `if skips.device.type == "cpu"` (on CUDA it clamps instead), so on CUDA this read never happens.
CPU_ONLY_READS = {("kernels/ops.py", "skip_frames")}


def _cpu_only_caller() -> bool:
    frame = sys._getframe(2)
    path = frame.f_code.co_filename.replace("\\", "/")
    return any(path.endswith(f"vadgpu/{file}") and frame.f_code.co_name == func for file, func in CPU_ONLY_READS)


@contextlib.contextmanager
def _host_copies_forbidden(allowed: set[int]):
    """Make every Tensor -> host read raise, except on tensors in `allowed` (ids) and in CPU_ONLY_READS."""
    names = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")
    originals = {name: getattr(torch.Tensor, name) for name in names}

    def guard(name):
        def call(self, *args, **kwargs):
            if id(self) not in allowed and not _cpu_only_caller():
                raise AssertionError(f"Tensor.{name} called on the hot path (shape {tuple(self.shape)})")
            return originals[name](self, *args, **kwargs)
        return call

    for name in names:
        setattr(torch.Tensor, name, guard(name))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)


@pytest.mark.parametrize("preset", ["ddl-tiny-cpu", "dualpath-tiny-cpu"])
def test_train_step_makes_no_host_copy(preset, tmp_path):
    config = TrainConfig(dataset="synthetic", root="r", out=str(tmp_path), model=preset.split("-")[0],
                         preset=preset, device="cpu", batch_size=2, epochs=1)
    model, config, _ = resolve_model(config, CPU)
    parts = assemble(model, config, CPU, loader=[None], boxes=_FixedBoxes(model.config.temporal))
    batches = [_batch(model, seed=i) for i in range(3)]
    train_step(parts, batches[0])  # first step creates the optimiser state (its step counters)
    # torch keeps Adam's step counters on the host by design (also for CUDA params); reading them is no sync
    steps = {id(state["step"]) for state in parts.optimizer.state.values()}
    before = [p.detach().clone() for p in parts.params]
    meter = LossMeter()
    with _host_copies_forbidden(steps):
        for batch in batches[1:]:
            meter.add(train_step(parts, batch))
    values = meter.read({})  # the log step: one host copy, allowed here
    assert set(values) >= {"loss"} and all(torch.isfinite(torch.tensor(v)) for v in values.values())
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, parts.params)), "the optimiser moved nothing"
    if preset.startswith("ddl"):
        assert model.anomaly_logit.grad is not None, "the DDL blend weight must be trained"


@pytest.mark.gpu
@pytest.mark.parametrize("amp_dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("preset", ["ddl-tiny-cpu", "dualpath-tiny-cpu"])
def test_cuda_train_steps_never_sync(preset, amp_dtype, tmp_path):
    """On CUDA a step (kernels, autocast, channels-last weights, fused Adam, GradScaler for fp16) must not sync."""
    ctx = DistContext(0, 1, 0, torch.device("cuda", torch.cuda.current_device()))
    config = TrainConfig(dataset="synthetic", root="r", out=str(tmp_path), model=preset.split("-")[0],
                         preset=preset, device="cuda", batch_size=4, amp=True, amp_dtype=amp_dtype)
    model, config, _ = resolve_model(config, ctx)
    parts = assemble(model, config, ctx, loader=[None], boxes=_FixedBoxes(model.config.temporal, ctx.device))
    batches = [_batch(model, n=4, seed=i, device=ctx.device) for i in range(4)]
    train_step(parts, batches[0])  # warm-up: cuDNN autotuning, CuPy kernel compilation, optimiser state
    torch.cuda.synchronize()
    meter = LossMeter()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches[1:]:
            meter.add(train_step(parts, batch))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(torch.tensor(meter.read({})["loss"]))


@pytest.mark.gpu
@pytest.mark.parametrize("loader", ["torch", "dali"])
def test_cuda_steps_fed_by_the_real_loader_never_sync(loader, synth, tmp_path, monkeypatch):
    """The loader's batches (pinned, non-blocking copies of clips and their indices) and the steps they feed must
    let the host run ahead of the GPU: no synchronisation between one step and the next."""
    from vadgpu.engine.components import build_components

    if loader == "dali":
        pytest.importorskip("nvidia.dali")
    root, boxes, cache = synth
    monkeypatch.setenv("VADGPU_CACHE", str(cache))
    ctx = DistContext(0, 1, 0, torch.device("cuda", torch.cuda.current_device()))
    config = TrainConfig(dataset="synthetic", root=str(root), out=str(tmp_path), model="ddl", preset="ddl-tiny-cpu",
                         device="cuda", batch_size=4, loader=loader, boxes=str(boxes), progress=False).validate()
    parts, config = build_components(config, ctx)
    batches = iter(parts.loader)
    train_step(parts, next(batches))  # warm-up: workers, kernel compilation, optimiser state
    torch.cuda.synchronize()
    meter = LossMeter()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            meter.add(train_step(parts, next(batches)))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(torch.tensor(meter.read({})["loss"]))


@pytest.mark.gpu
def test_cuda_end_to_end_with_compile(synth, tmp_path, monkeypatch):
    """The compiled CUDA step computes the loss the CPU computes: the same weights (seeded), the same clips (the
    torch loader decodes both), no pseudo-anomalies (their random streams differ by device), fp32."""
    root, boxes, cache = synth
    monkeypatch.setenv("VADGPU_CACHE", str(cache))
    config = tmp_path / "no-pseudo.yaml"
    config.write_text(yaml.safe_dump({"extra": {"pseudo_p": 0.0}}))
    logs = {}
    for device, flags in (("cpu", []), ("cuda", ["--compile", "--no-amp"])):
        run = tmp_path / device
        result = CliRunner().invoke(cli, ["train", "--config", str(config), "--dataset", "synthetic", "--root",
                                          str(root), "--model", "ddl", "--preset", "ddl-tiny-cpu", "--out", str(run),
                                          "--max-steps", "4", "--boxes", str(boxes), "--device", device, "--loader",
                                          "torch", "--workers", "1", "--log-every", "1", "--no-progress", *flags])
        assert result.exit_code == 0, result.output
        logs[device] = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert json.loads((tmp_path / "cuda" / "summary.json").read_text())["device"].startswith("cuda")
    assert [r["step"] for r in logs["cuda"]] == [r["step"] for r in logs["cpu"]] == [1, 2, 3, 4]
    for key in ("loss", "recon"):  # step 1: the same weights on the same batch (cuDNN's TF32 convolutions aside)
        assert logs["cuda"][0][key] == pytest.approx(logs["cpu"][0][key], rel=5e-3), key
    assert all(abs(c["loss"] - g["loss"]) <= 2e-2 * abs(c["loss"]) for c, g in zip(logs["cpu"], logs["cuda"]))


def test_channels_last_option_is_gone_with_a_reason(tmp_path):
    """The models store their conv weights channels-last themselves; a config that still names the old option
    is told so (4-D and 5-D weights alike)."""
    model, _, _ = resolve_model(TrainConfig(dataset="synthetic", root="r", out=str(tmp_path), preset="ddl-tiny-cpu",
                                            device="cpu"), CPU)
    convs = [p for p in model.parameters() if p.dim() in (4, 5)]
    assert {p.dim() for p in convs} == {4, 5}  # DDL mixes Conv2d and Conv3d
    assert all(p.is_contiguous(memory_format=torch.channels_last if p.dim() == 4 else torch.channels_last_3d)
               for p in convs)
    path = tmp_path / "old.yaml"
    path.write_text("epochs: 2\nchannels_last: true\n")
    with pytest.raises(VadgpuError, match=r"old\.yaml.*channels_last was removed"):
        load_config_file(path)
    # the off value that every earlier run folder's config.yaml holds is dropped: those runs still resume
    path.write_text("epochs: 2\nchannels_last: false\n")
    assert load_config_file(path).epochs == 2


# ---------------------------------------------------------------- end to end (CLI, in process)


def test_cli_trains_dualpath_and_protects_the_run_folder(synth, tmp_path, monkeypatch):
    root, boxes, cache = synth
    monkeypatch.setenv("VADGPU_CACHE", str(cache))
    run = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--root", str(root), "--model", "dualpath", "--preset",
            "dualpath-tiny-cpu", "--out", str(run), "--batch-size", "4", "--max-steps", "3", "--log-every", "2",
            "--boxes", str(boxes), "--device", "cpu", "--workers", "1", "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"vadgpu eval --run {run}" in result.output and "config.yaml" in result.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["temporal"], saved["size"], saved["preset"]) == (4, [32, 32], "dualpath-tiny-cpu")  # resolved
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 3]
    assert {"loss", "lr", "clips_per_s", "epoch"} <= set(log[0]) and log[0]["clips_per_s"] > 0
    from vadgpu.checkpoint import load_checkpoint
    from vadgpu.models.registry import model_from_checkpoint

    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 3 and model_from_checkpoint(state).config.temporal == 4  # what `vadgpu eval` does
    # the folder now holds a run: a second start is refused, --overwrite starts again
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "already holds a training run" in again.output
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "empty"), "--resume"])
    assert result.exit_code == 1 and "no run to continue" in result.output
    result = CliRunner().invoke(cli, args + ["--overwrite", "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 1


@pytest.mark.shared
def test_cli_trains_on_real_ped2(ped2_root, tmp_path, monkeypatch):
    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--dataset", "ped2", "--root", str(ped2_root), "--model", "ddl",
                                      "--preset", "ddl-tiny-cpu", "--out", str(run), "--batch-size", "4",
                                      "--max-steps", "2", "--device", "cpu", "--workers", "1", "--no-progress",
                                      "--boxes", "none"])
    assert result.exit_code == 0, result.output
    assert "--boxes none: object-based pseudo-anomalies (ddl) are off" in result.output  # the user is told
    state = yaml.safe_load((run / "config.yaml").read_text())
    assert state["dataset"] == "ped2" and Path(state["root"]).is_absolute()
    assert json.loads((run / "summary.json").read_text())["steps"] == 2


def test_run_logger_jsonl_tensorboard_and_truncation(tmp_path, monkeypatch):
    scalars = []

    class _Writer:  # SummaryWriter's calls the logger makes
        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

        def flush(self): ...

        def close(self): ...

    from vadgpu.engine import run_log

    monkeypatch.setattr(run_log, "_tensorboard_writer", lambda folder: _Writer())
    logger = run_log.RunLogger(tmp_path, show_progress=False)
    logger.start_epoch(0, 1, total=4)
    for step in (2, 4):
        logger.advance(2)
        logger.log({"epoch": 1, "step": step, "loss": 0.5 / step, "anomaly_weight": 0.5, "lr": 1e-3, "time": 0.0})
    logger.close()
    lines = [json.loads(line) for line in (tmp_path / run_log.LOG_NAME).read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4] and lines[1]["loss"] == 0.125
    assert ("train/loss", 0.25, 2) in scalars and ("train/anomaly_weight", 0.5, 4) in scalars
    assert not any(tag in ("train/time", "train/step") for tag, _, _ in scalars)
    with open(tmp_path / run_log.LOG_NAME, "a") as fh:
        fh.write('{"step": 6, "lo')  # a line cut short by SIGKILL
    run_log.truncate_log(tmp_path / run_log.LOG_NAME, last_step=2)  # resumed from the step-2 checkpoint
    assert [json.loads(x)["step"] for x in (tmp_path / run_log.LOG_NAME).read_text().splitlines()] == [2]


def test_cosine_schedule_state_loads_with_weights_only():
    # The cosine factor once came from numpy: np.float64 learning rates in the optimiser and scheduler state made
    # every cosine run's checkpoint unreadable by `vadgpu eval` (torch.load(weights_only=True)).
    import io

    from vadgpu.engine.components import _lr_lambda

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda("cosine", 10))
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] < 1e-3
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert type(state["scheduler"]["_last_lr"][0]) is float
