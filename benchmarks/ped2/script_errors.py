"""What the benchmark scripts share: a missing dataset or a bad file is one clear line, not a traceback; AUCs
written as percentages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable


def open_catalog(parser: argparse.ArgumentParser, name: str, root: str):
    """The catalog dataset `name` at `root` (UCSD Ped2 by default in these scripts), or the parser's usage error
    naming --root and what is wrong."""
    from vadgpu.data.catalog import open_dataset
    from vadgpu.errors import VadgpuError

    if not Path(root).is_dir():
        parser.error(f"--root {root}: no such folder; pass --root PATH, the {name} dataset folder (its layouts: "
                     "docs/datasets.md)")
    try:
        return open_dataset(name, root)
    except VadgpuError as exc:
        parser.error(exc.format_message())


def run(main: Callable[[], None]) -> None:
    """Call `main`; a VadgpuError (a damaged file, a bad option) ends the script with its message and status 1."""
    from vadgpu.errors import VadgpuError

    try:
        main()
    except VadgpuError as exc:
        sys.exit(f"error: {exc.format_message()}")


def percent_aucs(metrics) -> dict:
    """micro, macro and per-video AUC of a FrameMetrics in percent, two decimals (None where a video has one
    class)."""
    return {"micro_auc": round(100 * metrics.micro_auc, 2), "macro_auc": round(100 * metrics.macro_auc, 2),
            "per_video_auc": {name: None if auc is None else round(100 * auc, 2)
                              for name, auc in metrics.per_video_auc.items()}}
