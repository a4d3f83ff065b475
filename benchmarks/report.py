"""Result writers: JSON (the record), Markdown (for people), PNG (RTFx and peak memory per setting).

They take the plain results dict built by a command (`machine`, `versions`, `settings`, `results`
...), so other commands (e.g. a load generator) can reuse them with their own rows.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, List, Optional, Sequence

ENGINE_COLOURS = {"faster-whisper": "#1f77b4", "transformers": "#ff7f0e"}


def write_json(path: str, data: dict) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    return path


def _fmt(value, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_lines(machine: dict, versions: dict) -> List[str]:
    gpus = machine.get("gpus") or []
    gpu = "; ".join(f"{g['name']} ({g['memory_gb']} GB, driver {g['driver']})" for g in gpus) or "none"
    return [
        f"- **CPU**: {machine.get('cpu')} — {machine.get('cpu_logical_cores')} logical cores"
        f" ({machine.get('cpu_physical_cores')} physical, {machine.get('cpu_affinity')} usable by this process)",
        f"- **RAM**: {machine.get('ram_gb')} GiB",
        f"- **GPU**: {gpu}",
        f"- **OS**: {machine.get('os')}",
        f"- **Load average** (1/5/15 min): {_load_text(machine)}",
        "- **Versions**: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]


def _load_text(machine: dict) -> str:
    if machine.get("load_average_at_start") is None:
        return str(machine.get("load_average"))
    return f"{machine['load_average_at_start']} at start, {machine.get('load_average')} at end"


def compare_markdown(data: dict) -> str:
    """The human summary of a `compare` run: where, with what, and one row per engine setting."""
    settings = data["settings"]
    lines = [f"# Whisper engine comparison — {data['created']}", ""]
    lines += ["## Machine", ""] + machine_lines(data["machine"], data["versions"]) + [""]
    lines += ["## Settings", ""]
    lines += [f"- **{k}**: {_fmt(v, 1)}" for k, v in settings.items() if k != "command"]
    lines += [f"- **command**: `{settings['command']}`", ""]
    on_gpu = settings.get("device") == "cuda"
    memory_header = "Peak GPU mem Δ (MiB)" if on_gpu else "Peak RSS Δ (MiB)"
    headers = ["Engine", "Mode", "Precision", "Batch", "Load (s)", "Latency median / min (s)", "RTFx", "CPU (s)", memory_header, "WER", "CER"]
    rows = []
    for r in data["results"]:
        if r["status"] != "ok":
            rows.append([r["engine"], r["mode"], r["precision"], r["batch_size"], "–", f"{r['status']}: {_first_line(r.get('error'))}", "–", "–", "–", "–", "–"])
            continue
        memory = r["memory"]["gpu_increase_mb"] if on_gpu else r["memory"]["rss_increase_mb"]
        rows.append([
            r["engine"], r["mode"], r["precision"], r["batch_size"], _fmt(r["load_seconds"]),
            f"{_fmt(r['latency_total_median'])} / {_fmt(r['latency_total_min'])}", _fmt(r["rtfx"], 1),
            _fmt(r.get("cpu_seconds"), 1), _fmt(memory, 0), _fmt(_pct(r.get("wer"))), _fmt(_pct(r.get("cer"))),
        ])
    lines += ["## Results", "", markdown_table(headers, rows), ""]
    lines += [
        f"Latency is the sum over the {settings['files']} files of each file's median (and minimum) over"
        f" {settings['repeats']} repeat(s), after one warm-up transcription that is not counted."
        " RTFx = audio seconds / latency seconds (median). CPU = user + system CPU seconds the setting's"
        " process used over the timed runs (all threads): less sensitive than wall time to other load.",
        "Memory is the peak increase over a baseline taken after the engine's libraries were imported and"
        " before the model was loaded, sampled every 10 ms in a thread: process RSS on CPU; device-wide"
        " NVML used memory on GPU, CUDA context included (torch counters do not see CTranslate2's allocator)."
        " Each setting runs in its own process.",
        "WER/CER in percent, corpus-level over the files with a reference, after Whisper's text normaliser"
        " (English normaliser for English, basic normaliser otherwise).",
    ]
    if data.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f"{s['label']} ({s['reason']})" for s in data["skipped"])]
    if data.get("notes"):
        lines += [""] + [f"- {n}" for n in data["notes"]]
    return "\n".join(lines) + "\n"


def _pct(value: Optional[float]) -> Optional[float]:
    return None if value is None else 100.0 * value


def _first_line(text: Optional[str]) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:120].replace("|", "/")


def write_results(out: str, data: dict, text: str, draw_chart) -> None:
    """A command's results.json, results.md and chart.png in `out`; the Markdown is printed."""
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "results.json"), data)
    write_markdown(os.path.join(out, "results.md"), text)
    draw_chart(os.path.join(out, "chart.png"), data)
    print(text)
    print(f"\nwrote {out}/results.json, results.md, chart.png")


def write_markdown(path: str, text: str) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def write_chart(path: str, rows: List[dict], title: str, memory_label: str) -> str:
    """Two horizontal bar panels sharing setting labels: RTFx (higher is better), peak memory (lower is better).

    rows: dicts with label, engine, rtfx, memory_mb (memory may be None).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["label"] for r in rows]
    colours = [ENGINE_COLOURS.get(r["engine"], "#7f7f7f") for r in rows]
    height = max(2.5, 0.45 * len(rows) + 1.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    positions = list(range(len(rows)))[::-1]
    for axis, key, xlabel in ((left, "rtfx", "RTFx (audio s / wall s) — higher is better"),
                              (right, "memory_mb", f"{memory_label} — lower is better")):
        values = [r.get(key) or 0.0 for r in rows]
        bars = axis.barh(positions, values, color=colours)
        for bar, value, row in zip(bars, values, rows):
            text = "n/a" if row.get(key) is None else f"{value:.1f}" if key == "rtfx" else f"{value:.0f}"
            axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + text, va="center", fontsize=9)
        axis.set_xlabel(xlabel)
        axis.set_xlim(0, (max(values) if values and max(values) > 0 else 1.0) * 1.18)
        axis.grid(axis="x", alpha=0.3)
    left.set_yticks(positions)
    left.set_yticklabels(labels)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ENGINE_COLOURS.values()]
    fig.legend(handles, list(ENGINE_COLOURS), loc="upper right", ncol=2, frameon=False)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def compare_chart(path: str, data: dict) -> str:
    on_gpu = data["settings"].get("device") == "cuda"
    rows = []
    for r in data["results"]:
        if r["status"] != "ok":
            continue
        memory = r["memory"]["gpu_increase_mb"] if on_gpu else r["memory"]["rss_increase_mb"]
        rows.append({"label": r["label"], "engine": r["engine"], "rtfx": r["rtfx"], "memory_mb": memory})
    machine = data["machine"]
    where = (machine["gpus"][0]["name"] if on_gpu and machine.get("gpus") else f"{machine['cpu']} ({machine['cpu_affinity']} cores)")
    title = f"{data['settings']['model']} on {where} — {data['settings']['files']} files, {data['settings']['audio_seconds']:.0f} s audio"
    memory_label = "Peak GPU memory increase (MiB)" if on_gpu else "Peak RSS increase (MiB)"
    return write_chart(path, rows, title, memory_label)
