"""What users see while training: a tqdm bar, `log.jsonl`, `training.png` (engine/training_plot.py), TensorBoard events
(when tensorboard is installed), and notices through the `vadgpu` logger (vadgpu/log.py).

The training loop hands this module plain floats, once every `log_every` steps; nothing here touches tensors, so
the hot path's only host sync stays in one place (`train.py`, at log time). Only rank 0 makes a `RunLogger`;
other ranks get `NullLogger`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vadgpu.engine.training_plot import REFRESH_SECONDS, TRAINING_PLOT, plot_training
from vadgpu.log import logger

LOG_NAME = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_MISSING = ("TensorBoard events are off: tensorboard is not installed (`pip install tensorboard`, or "
                       "vadgpu[tensorboard]); log.jsonl holds the same numbers")
_told: set[str] = set()  # notices given once per process


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra: `pip install vadgpu[tensorboard]`
        if TENSORBOARD_MISSING not in _told:
            _told.add(TENSORBOARD_MISSING)
            logger.info(TENSORBOARD_MISSING)
        return None
    return SummaryWriter(log_dir=str(folder))


def truncate_log(path: Path, last_step: int) -> None:
    """Drop log lines after `last_step`: a resumed run redoes those steps and logs them again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                kept.append(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


class RunLogger:
    """Rank 0's view of training: bar per epoch, JSONL record and TensorBoard scalars per log step."""

    def __init__(self, run_dir: Path, show_progress: bool = True):
        self.run_dir = Path(run_dir)
        self.show_progress = show_progress
        self.log_path = self.run_dir / LOG_NAME
        self._log = open(self.log_path, "a", encoding="utf-8")
        self._tb = _tensorboard_writer(self.run_dir / TENSORBOARD_DIR)
        self._bar: tqdm | None = None
        self._unplotted = False  # records logged since training.png was last drawn
        self._plotted_at = time.monotonic()

    def start_epoch(self, epoch: int, epochs: int, total: int, initial: int = 0) -> None:
        # disable=None: tqdm turns itself off when stderr is not a terminal (CI logs, nohup)
        self._bar = tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", unit="step",
                         dynamic_ncols=True, leave=True, disable=None if self.show_progress else True)

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def log(self, record: dict[str, Any]) -> None:
        """One log step: JSONL line (flushed, so a kill loses nothing logged), bar postfix, TensorBoard."""
        self._log.write(json.dumps(record) + "\n")
        self._log.flush()
        self._unplotted = True
        if self._bar is not None:
            short = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in record.items()
                     if k not in ("epoch", "step", "time")}
            self._bar.set_postfix(short, refresh=False)
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, float) and key not in ("time",):
                    self._tb.add_scalar(f"train/{key}", value, record["step"])

    def end_epoch(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.flush()
        if self._unplotted and time.monotonic() - self._plotted_at >= REFRESH_SECONDS:
            self._write_plot()

    def _write_plot(self) -> None:
        """Redraw training.png from log.jsonl; a failure is a warning (the figure must never stop training or hide
        the error that ended it)."""
        self._unplotted, self._plotted_at = False, time.monotonic()
        try:
            plot_training(self.log_path, self.run_dir / TRAINING_PLOT)
        except Exception as exc:  # matplotlib, the disk: whatever it is, training goes on
            logger.warning(f"could not draw {self.run_dir / TRAINING_PLOT}: {exc}")

    def message(self, text: str) -> None:
        """A line for the user (the `vadgpu` logger; the CLI writes it without breaking the bar)."""
        logger.info(text)

    def close(self) -> None:
        self.end_epoch()
        self._log.close()
        if self._unplotted:
            self._write_plot()
        if self._tb is not None:
            self._tb.close()


class NullLogger:
    """What ranks other than 0 use: the same calls, no output."""

    def start_epoch(self, *args, **kwargs) -> None: ...

    def advance(self, steps: int = 1) -> None: ...

    def log(self, record: dict[str, Any]) -> None: ...

    def end_epoch(self) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...
