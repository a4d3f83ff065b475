"""The load run's Markdown and chart, written with report.py's writers like compare's."""

from __future__ import annotations

import json

from . import report


def load_markdown(data: dict) -> str:
    rows = []
    for run in data["runs"]:
        rows.append([
            run["concurrency"], run["valid_jobs"], run["valid_failed"], f"{run['invalid_refused_cleanly']}/{run['invalid_jobs']}",
            f"{run['wall_seconds']:.1f}", f"{run['jobs_per_second']:.2f}", f"{run['audio_seconds_per_second']:.1f}",
            *(f"{run[k]:.2f}" if run[k] is not None else "–" for k in ("latency_p50", "latency_p95", "latency_p99", "server_queue_p50", "server_inference_p50")),
        ])
    lines = [f"# Load: {data['target']}", "", *report.machine_lines(data["machine"], data["versions"]), "",
             f"Settings: `{json.dumps(data['settings'])}`", "",
             report.markdown_table(["concurrency", "valid jobs", "failed", "invalid refused", "wall s", "jobs/s", "audio s/s",
                                    "p50 s", "p95 s", "p99 s", "queue p50 s", "inference p50 s"], rows)]
    if "comparison" in data:
        comp = data["comparison"]
        lines += ["", f"Aggregate throughput, concurrent / serial: **{comp['throughput_ratio']:.2f}x**; "
                      f"transcripts equal to the serial run: **{comp['transcripts_equal']}**"]
    last = data["runs"][-1]
    if last["samples"]:
        first, end = last["samples"][0], last["samples"][-1]
        peak = max(s["rss_mb"] for s in last["samples"])
        warm = last["samples"][len(last["samples"]) // 10]
        lines += ["", f"Server process: RSS {first['rss_mb']:.0f} MB at start, {warm['rss_mb']:.0f} MB after warm-up (10% of the run), "
                      f"{peak:.0f} MB peak, {end['rss_mb']:.0f} MB at end; "
                      f"open fds {first['open_fds']} -> {end['open_fds']}; temp files at end: {end['temp_files']}"]
    lines += ["", "Valid transcripts differing from the same file served alone: "
              + ", ".join(f"c={run['concurrency']}: {run['transcripts_differing_from_reference']}" for run in data["runs"])]
    lines += ["", f"Command: `python -m benchmarks {' '.join(data['argv'])}`"]
    return "\n".join(lines) + "\n"


def load_chart(path: str, data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["runs"]
    labels = [f"c={run['concurrency']}" for run in runs]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    axes[0].bar(labels, [run["audio_seconds_per_second"] for run in runs], color="#1f77b4")
    axes[0].set_title("throughput (audio s / wall s)")
    width = 0.25
    for offset, key in zip((-width, 0, width), ("latency_p50", "latency_p95", "latency_p99")):
        axes[1].bar([i + offset for i in range(len(runs))], [run[key] or 0 for run in runs], width, label=key.split("_")[1])
    axes[1].set_xticks(range(len(runs)), labels)
    axes[1].set_title("job latency (s)")
    axes[1].legend()
    fig.suptitle(f"Load on {data['machine'].get('cpu', 'this machine')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
