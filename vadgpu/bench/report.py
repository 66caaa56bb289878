"""The throughput result as a text table (terminal) and as Markdown tables (docs/results/throughput.md)."""

from __future__ import annotations

LABELS = {
    "decode": "decode limit (each frame once, best of the two below)",
    "baseline": "baseline torch DataLoader",
    "pipeline": "vadgpu DALI pipeline (frames + clip rows)",
    "baseline+clips": "baseline, float clips materialised",
    "pipeline+clips": "vadgpu pipeline, float clips materialised",
    "baseline+kernels": "baseline + pseudo-anomaly kernels",
    "pipeline+kernels": "vadgpu pipeline + kernels",
    "train": "training steps (loader + kernels + fwd/bwd/opt)",
}


def aligned_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A plain-text table: the first column left-aligned, the others right-aligned, a dashed rule under the
    header."""
    table = [header] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
            for r in table]
    text.insert(1, "  ".join("-" * w for w in widths))
    return text


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of string cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


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
            for key, label in (("one_process", "decode, 1 process"),
                               ("pool", f"decode, {stage['processes']}-process pool")):
                r = stage[key]
                rows.append([label, f"{r['median']:.1f}", f"{r['min']:.1f}-{r['max']:.1f}", "frames/s", "1.00", ""])
        if name == "train":
            for key, label in (("step_only", "training step alone (cached batches)"),
                               ("kernels_only", "kernels alone (cached batches)"),
                               ("tubes_only", "tube cutting alone (cached batches)")):
                if key in stage:
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
    if s.get("clips") == "objects":
        lines.append(f"object tubes: {s['tubes_per_clip']} per clip, {s['window']}-pixel window resized to "
                     f"{s['tube_size'][1]}x{s['tube_size'][0]}, boxes {s['boxes']}")
    if "train" in result["stages"]:
        train = result["stages"]["train"]
        lines.append(f"kernels' share of a training step: {train['kernels_share_of_step']:.1%}"
                     + (" (tubes included)" if "tubes_only" in train else ""))
        if "tubes_only" in train:
            lines.append(f"tube cutting's share of a training step: {train['tubes_share_of_step']:.1%}")
    same = result["stages"].get("pipeline", {}).get("same_as_baseline")
    if same:
        lines.append(f"first batch, pipeline vs baseline: same clips {same['same_clips']}, max |diff| "
                     f"{same['max_abs_diff']}, mean |diff| {same['mean_abs_diff']}")
    for stage, why in result.get("skipped", {}).items():
        lines.append(f"skipped {stage}: {why}")
    if "train" in result["stages"]:
        lines.append(f"training steps fed by the {result['stages']['train']['loader']} loader")
    return lines


def format_table(result: dict) -> str:
    """Aligned plain-text table plus the run's summary lines."""
    return "\n".join(_summary_lines(result) + [""] + aligned_table(HEADER, _rows(result)))


def format_markdown(result: dict) -> str:
    """The same table in Markdown."""
    return markdown_table(HEADER, _rows(result))


def is_objects(result: dict) -> bool:
    """A result of an object preset (tubes cut from the frames), which format_object_summary tabulates."""
    return result["settings"].get("clips") == "objects"


def format_object_summary(results: list[dict]) -> str:
    """One Markdown row per object-preset result: training clips/s, the step alone, the tube cutting alone and
    its share, the peak RSS of the training stage."""
    header = ["config", "preset", "tubes", "train clips/s (step alone)", "tube cutting alone clips/s",
              "tube cutting's share of step", "tubes + kernels' share of step", "train peak RSS MiB", "load avg"]
    rows = []
    for r in results:
        s, train = r["settings"], r["stages"]["train"]
        load = r["system"].get("load_average_start", ["?"])[0], r["system"].get("load_average_end", ["?"])[0]
        rows.append([
            r.get("config", s["dataset"]), s["preset"],
            f"{s['tubes_per_clip']} per clip, {s['window']} px -> {s['tube_size'][0]}x{s['tube_size'][1]}, "
            f"T={s['spec']['temporal']}, batch {s['batch_size']}",
            f"{train['rate']['median']:.1f} ({train['step_only']['median']:.1f})",
            f"{train['tubes_only']['median']:.0f}", f"{train['tubes_share_of_step']:.1%}",
            f"{train['kernels_share_of_step']:.1%}", f"{train['memory']['host_rss_peak_mib']:.0f}",
            f"{load[0]} -> {load[1]}",
        ])
    return markdown_table(header, rows)


def format_summary(results: list[dict]) -> str:
    """One Markdown row per result (configuration): the side-by-side table of docs/results/throughput.md."""
    header = ["config", "clips", "decode limit frames/s (1 process / pool)", "baseline clips/s",
              "pipeline clips/s", "frames decoded/clip (baseline / pipeline)", "pipeline / baseline",
              "pipeline decoded frames/s / decode limit",
              "float clips: baseline / pipeline clips/s (ratio)",
              "+kernels: baseline / pipeline clips/s", "train clips/s (step alone)",
              "kernels' share of step", "pipeline peak RSS MiB", "load avg"]
    rows = []
    for r in results:
        st, spec, ratios = r["stages"], r["settings"]["spec"], r["ratios"]
        med = {name: stage["rate"]["median"] for name, stage in st.items()}
        peak = st.get("pipeline", {}).get("memory", {}).get("host_rss_peak_mib")
        load = r["system"].get("load_average_start", ["?"])[0], r["system"].get("load_average_end", ["?"])[0]
        rows.append([
            r.get("config", r["settings"]["dataset"]),
            f"T={spec['temporal']} {spec['size'][0]}x{spec['size'][1]} C={spec['channels']}",
            f"{st['decode']['one_process']['median']:.0f} / {st['decode']['pool']['median']:.0f}"
            if "decode" in st else "",
            f"{med.get('baseline', 0):.0f}", f"{med.get('pipeline', 0):.0f}",
            f"{st.get('baseline', {}).get('frames_decoded_per_clip', '')} / "
            f"{st.get('pipeline', {}).get('frames_decoded_per_clip', '')}",
            f"{ratios.get('pipeline/baseline', 0):.2f}x",
            f"{ratios.get('pipeline decoded frames/s / decode-limit frames/s', 0):.2f}",
            f"{med.get('baseline+clips', 0):.0f} / {med.get('pipeline+clips', 0):.0f} "
            f"({ratios.get('pipeline+clips/baseline+clips', 0):.2f}x)" if "pipeline+clips" in st else "",
            f"{med.get('baseline+kernels', 0):.0f} / {med.get('pipeline+kernels', 0):.0f}",
            f"{med['train']:.1f} ({st['train']['step_only']['median']:.1f})" if "train" in st else "",
            f"{st['train']['kernels_share_of_step']:.1%}" if "train" in st else "",
            "" if peak is None else f"{peak:.0f}", f"{load[0]} -> {load[1]}",
        ])
    return markdown_table(header, rows)
