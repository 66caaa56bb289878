"""The throughput result as a text table (terminal) and as a Markdown table (README)."""

from __future__ import annotations

LABELS = {
    "decode": "decode limit (each frame once, all cores)",
    "baseline": "baseline torch DataLoader",
    "pipeline": "vadgpu DALI pipeline",
    "baseline+kernels": "baseline + pseudo-anomaly kernels",
    "pipeline+kernels": "vadgpu pipeline + kernels",
    "train": "training steps (DALI + kernels + fwd/bwd/opt)",
}


def _rows(result: dict) -> list[list[str]]:
    rows = []
    for name, stage in result["stages"].items():
        rate = stage["rate"]
        per_clip = stage.get("frames_decoded_per_clip")
        rows.append([LABELS.get(name, name), f"{rate['median']:.1f}", f"{rate['min']:.1f}-{rate['max']:.1f}",
                     stage["unit"], "" if per_clip is None else f"{per_clip:.2f}",
                     f"{stage['memory']['host_rss_peak_mib']:.0f}"
                     + (f" / GPU {stage['memory']['gpu_torch_peak_mib']:.0f}" if "gpu_torch_peak_mib" in
                        stage["memory"] else "")])
        if name == "decode":
            one = stage["one_process"]
            rows.append(["decode limit, 1 process", f"{one['median']:.1f}", f"{one['min']:.1f}-{one['max']:.1f}",
                         "frames/s", "1.00", ""])
        if name == "train":
            for key, label in (("step_only", "training step alone (cached batches)"),
                               ("kernels_only", "kernels alone (cached batches)")):
                r = stage[key]
                rows.append([label, f"{r['median']:.1f}", f"{r['min']:.1f}-{r['max']:.1f}", "clips/s", "", ""])
    return rows


HEADER = ["stage", "median", "min-max", "unit", "frames decoded/clip", "peak RSS MiB"]


def _summary_lines(result: dict) -> list[str]:
    s, sysinfo = result["settings"], result["system"]
    spec = s["spec"]
    lines = [
        f"{sysinfo['date']}  {sysinfo['device']}  CPU: {sysinfo['cpu']} ({sysinfo['cores']} cores)  "
        f"load avg {sysinfo.get('load_average_start')} -> {sysinfo.get('load_average_end')}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in sysinfo["versions"].items()),
        f"data: {s['dataset']} ({s['videos']} train videos, {s['frames']} frames, {s['format']} "
        f"{s['frame_size'][1]}x{s['frame_size'][0]})  clips: T={spec['temporal']} {spec['size'][0]}x{spec['size'][1]} "
        f"C={spec['channels']} max_skip={spec['max_skip']}  batch {s['batch_size']}  workers {s['workers']}  "
        f"preset {s['preset']} (kinds {','.join(s['kinds'])})  {s['repeats']} x {s['seconds']} s",
    ]
    for key, value in result["ratios"].items():
        lines.append(f"ratio {key}: {value:.2f}")
    if "train" in result["stages"]:
        lines.append(f"kernels' share of a training step: {result['stages']['train']['kernels_share_of_step']:.1%}")
    same = result["stages"].get("pipeline", {}).get("same_as_baseline")
    if same:
        lines.append(f"first batch, pipeline vs baseline: same clips {same['same_clips']}, max |diff| "
                     f"{same['max_abs_diff']}, mean |diff| {same['mean_abs_diff']}")
    for key, target in result["targets"].items():
        lines.append(f"target {key}: {target['value']:.3g} -> {'met' if target['met'] else 'MISSED'}")
    return lines


def format_table(result: dict) -> str:
    """Aligned plain-text table plus the run's summary lines."""
    rows = [HEADER] + _rows(result)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    text = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
            for r in rows]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(_summary_lines(result) + [""] + text)


def format_markdown(result: dict) -> str:
    """The same table in Markdown, for the README."""
    rows = _rows(result)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
