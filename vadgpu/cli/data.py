"""`vadgpu data ...`: dataset utilities (synth, prepare, boxes)."""

from __future__ import annotations

import click


@click.group()
def data() -> None:
    """Make, prepare and annotate datasets."""
