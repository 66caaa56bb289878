"""`vadgpu presets`: the model presets `vadgpu train --preset` accepts, with size, geometry and purpose."""

from __future__ import annotations

import click


def format_presets(rows: list[dict]) -> str:
    """The rows of `registry.preset_table()` as an aligned plain-text table."""
    header = ("preset", "model", "input C x T x H x W", "unit", "params", "for")
    table = [header] + [(r["preset"], r["model"], r["input"],
                         f"object tubes, window {r['window']}" if r["clips"] == "objects" else "frames",
                         f"{r['params'] / 1e6:.2f} M", r["for"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


@click.command("presets")
def presets() -> None:
    """List the model presets: architecture, input geometry, tube window, parameter count and what each is for.

    Without --preset, `vadgpu train --model ddl|dualpath` trains the CPU preset on a machine without CUDA and
    the paper preset on CUDA (vadgpu/models/presets.py, DEFAULT_PRESETS).
    """
    from vadgpu.models.presets import DEFAULT_PRESETS, OBJECT_STEPS
    from vadgpu.models.registry import preset_table
    from vadgpu.objects.window import WINDOW_PER_HEIGHT, window_for_height

    click.echo(format_presets(preset_table()))
    click.echo(f"\nobject tubes: window auto = {WINDOW_PER_HEIGHT:g} x the training boxes' median height, in pixels "
               f"({window_for_height(31.0, (240, 360))} on UCSD Ped2, whose people are about 31 px tall), set by "
               f"`vadgpu train`; object models train {OBJECT_STEPS} optimiser steps unless --epochs or --steps says "
               "otherwise")
    defaults = "; ".join(f"--model {arch}: {d['cpu']} (CPU), {d['cuda']} (CUDA)" for arch, d in DEFAULT_PRESETS.items())
    click.echo(f"\ndefaults without --preset: {defaults}")
