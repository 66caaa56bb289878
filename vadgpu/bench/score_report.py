"""The `vadgpu bench score` result as text (terminal) and Markdown (docs/results/throughput.md): summary lines,
then one table of the stages with a column group per mode (seconds, share, frames/s if that stage alone ran)."""

from __future__ import annotations

from vadgpu.bench.report import aligned_table, markdown_table
from vadgpu.bench.score import STAGES
from vadgpu.precision import DEFAULT_PRECISION


def _rows(result: dict) -> tuple[list[str], list[list[str]]]:
    modes = result["modes"]
    header = ["stage"]
    for mode in modes:
        header += [f"{mode} s", f"{mode} share", f"{mode} frames/s alone"]
    names: list[str] = []
    for summary in modes.values():
        names += [n for n in summary["stages"] if n not in names]
    order = {name: i for i, name in enumerate(STAGES)}
    names.sort(key=lambda n: order.get(n, len(order) - 1.5))  # unlisted stages just before "other"
    rows = []
    for name in names:
        part = "." in name
        row = [("  - " + name.split(".", 1)[1]) if part else name]
        for summary in modes.values():
            cell = summary["stages"].get(name)
            if cell is None:
                row += ["", "", ""]
                continue
            fps = cell["frames_per_s"]
            row += [f"{cell['seconds']:.3f}", f"({cell['share']:.1%})" if part else f"{cell['share']:.1%}",
                    "" if fps is None else f"{fps:,.0f}"]
        rows.append(row)
        if name == "decode":  # beside it, what the same loader does alone
            rows.append(["  decode limit (the loader alone)"]
                        + [c for s in modes.values() for c in ("", "", f"{s['decode_limit_frames_per_s']:,.0f}")])
    total = ["total (start-up apart)"]
    for summary in modes.values():
        total += [f"{summary['seconds']:.3f}", "100.0%", f"{summary['frames_per_s']:,.1f}"]
    rows.append(total)
    return header, rows


def summary_lines(result: dict) -> list[str]:
    system, settings, startup = result["system"], result["settings"], result["startup"]
    source = system.get("source") or {}
    commit = (source.get("commit", "")[:10] + (" (uncommitted changes)" if source.get("dirty") else "")
              if source else "not a git checkout")
    model = settings["model"]
    onnx = settings.get("runtime") == "onnxruntime"  # records before --model: torch
    arithmetic = (f"onnxruntime {system['versions'].get('onnxruntime')}, float32" if onnx
                  else settings.get("precision", DEFAULT_PRECISION))
    load = f"load avg {system.get('load_average_start')} -> {system.get('load_average_end')}"
    lines = [
        f"{system['date']}  {system['device']}  CPU: {system['cpu']} ({system['cores']} cores)  {load}",
        f"torch {system['versions']['torch']}, dali {system['versions'].get('dali')}, vadgpu "
        f"{result['vadgpu_version']}, commit {commit}",
        f"model {settings['model_file'] if onnx else settings['checkpoint']}: "
        f"{model['architecture']} {model['clips']}, T={model['temporal']} "
        f"{model['size'][0]}x{model['size'][1]} C={model['channels']}"
        + (f", tube window {model['window']}" if model["clips"] == "objects" else "")
        + (", appearance term" if model["appearance"] else "")
        + f"; {arithmetic}, loader {settings['loader']}, "
        f"batch {settings['batch_size']}, {settings['repeats']} timed run(s)",
    ]
    if "error" in startup:
        lines.append(f"start-up: {startup['error']}")
    else:
        lines.append(f"start-up: imports {startup['imports_s']:.2f} s (a fresh interpreter: {startup['process_s']:.2f}"
                     " s with its own start), model load "
                     + ", ".join(f"{m} {s:.2f} s" for m, s in startup["model_load_s"].items()))
    for name, summary in result["modes"].items():
        first = summary.get("first_run")
        per_video = ", ".join(f"{r['label']} {r['frames_per_s']:.1f}" for r in summary["runs"][:12])
        line = (f"{name}: {summary['frames']} frames in {summary['seconds']:.2f} s = {summary['frames_per_s']:.1f} "
                f"frames/s end to end; decode limit {summary['decode_limit_frames_per_s']:,.0f} frames/s; peak RSS "
                f"{summary['memory']['host_rss_peak_mib']:.0f} MiB")
        if "gpu_torch_peak_mib" in summary["memory"]:
            line += f", GPU {summary['memory']['gpu_torch_peak_mib']:.0f} MiB"
        lines.append(line)
        if name != "eval":
            lines.append(f"  per video (frames/s): {per_video}")
        if first is not None:
            lines.append(f"  first run ({first['label'].removeprefix('first run, ')}, not counted): "
                         f"{first['seconds']:.2f} s, {first['frames_per_s']:.1f} frames/s")
    for name, limit in result["decode_limit"].items():
        extra = (f" ({limit['hand_over_frames_per_s']:,.0f} handed over without float clips)"
                 if "hand_over_frames_per_s" in limit else "")
        lines.append(f"decode limit, {name}: {limit['frames_per_s']:,.0f} frames/s{extra}: {limit['what']}")
    return lines


def format_table(result: dict) -> str:
    """Summary lines and the aligned stage table."""
    return "\n".join(summary_lines(result) + [""] + aligned_table(*_rows(result)))


def format_markdown(result: dict) -> str:
    """The stage table in Markdown."""
    return markdown_table(*_rows(result))


def _label(result: dict, mode: str) -> str:
    videos = result["settings"]["videos"]
    precision = result["settings"].get("precision", DEFAULT_PRECISION)  # records before --precision: fp32
    label = f"{mode}, {', '.join(videos)}" if len(videos) <= 3 else f"{mode}, {len(videos)} videos"
    if result["settings"].get("runtime") == "onnxruntime":
        return f"{label}, onnxruntime"
    return label if precision == DEFAULT_PRECISION else f"{label}, {precision}"


def format_summary(results: list[dict]) -> str:
    """Several results side by side in Markdown (docs/results/throughput.md): a column per result and mode, each
    stage as seconds (share, frames/s if it alone ran), the decode limit, the end-to-end rate, start-up and load."""
    columns = [(r, mode) for r in results for mode in r["modes"]]
    order = {name: i for i, name in enumerate(STAGES)}
    names: list[str] = []
    for r, mode in columns:
        names += [n for n in r["modes"][mode]["stages"] if n not in names]
    names.sort(key=lambda n: order.get(n, len(order) - 1.5))
    rows = []
    for name in names:
        row = [f"&nbsp;&nbsp;{name.split('.', 1)[1]}" if "." in name else name]
        for r, mode in columns:
            cell = r["modes"][mode]["stages"].get(name)
            row.append("" if cell is None else f"{cell['seconds']:.2f} s ({cell['share']:.0%}, "
                       + ("-" if cell["frames_per_s"] is None else f"{cell['frames_per_s']:,.0f}/s") + ")")
        rows.append(row)
        if name == "decode":
            rows.append(["decode limit (the loader alone)"]
                        + [f"{r['modes'][m]['decode_limit_frames_per_s']:,.0f}/s" for r, m in columns])
    rows.append(["**end to end** (start-up apart)"]
                + [f"**{r['modes'][m]['seconds']:.2f} s, {r['modes'][m]['frames_per_s']:.1f} frames/s**"
                   for r, m in columns])
    rows.append(["first run (not counted)"] + ["" if r["modes"][m].get("first_run") is None else
                                               f"{r['modes'][m]['first_run']['seconds']:.2f} s"
                                               for r, m in columns])
    rows.append(["start-up: imports + model load"]
                + [f"{r['startup'].get('imports_s', float('nan')):.1f} s + {r['modes'][m]['startup_s']:.2f} s"
                   for r, m in columns])
    rows.append(["peak RSS"] + [f"{r['modes'][m]['memory']['host_rss_peak_mib']:,.0f} MiB" for r, m in columns])
    rows.append(["load average (1 min, start -> end)"]
                + [f"{r['system']['load_average_start'][0]} -> {r['system']['load_average_end'][0]}"
                   for r, m in columns])
    return markdown_table(["stage: seconds (share, frames/s alone)"] + [_label(r, m) for r, m in columns], rows)
