"""`python -m benchmarks load`: N jobs at concurrency C against the worker's HTTP API.

Targets: a local API server it starts itself (`--serve MODEL`, the real `python -m worker
--rp_serve_api` in a child process), a running local server (`--url`), or a RunPod endpoint
(`--endpoint-id` with RUNPOD_API_KEY). Audio travels as base64, so the same jobs work everywhere.

`--compare-serial` first serves the same jobs one at a time, then at concurrency C, and reports
the aggregate-throughput ratio and whether every transcript equals its serial twin.
`--invalid-every K` mixes in a malformed job every K jobs (they must fail cleanly, the valid ones
must not); with `--serve`, the server's open files, temp files and RSS are sampled as it runs.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional

import requests

from . import dataset, facts, report
from .local_worker import LocalWorker
from .progress import progress_bar

ROOT = Path(__file__).resolve().parent.parent
RUNPOD_API = "https://api.runpod.ai/v2"
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Malformed and hostile jobs (the second hardening round's classes): each must be refused with
# the worker's own error while the valid jobs around it are served.
INVALID_JOBS = [
    {"audio_base64": "%%% not base64 %%%"},
    {"audio_base64": _b64(b"not audio at all" * 64)},
    {"audio": "ftp://example.com/a.wav"},
    {"audio_base64": "AAAA", "beam_size": "wide"},
    {"audio_base64": "AAAA", "unknown_field": 1},
    {"audio_base64": "AAAA", "suppress_tokens": [2**31, 51865]},
    {"audio_base64": _b64(b"#EXTM3U\n#EXT-X-TARGETDURATION:11\n#EXTINF:11,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")},
    {"audio_base64": _b64(b"ffconcat version 1.0\nfile '/etc/hostname'\n")},
    {"audio_base64": _b64(b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n")},
    {"audio": "http://example.com:70000/a.wav?sig=SECRET"},
    {"audio": "http://[fec0::1]/a.wav"},
    {"audio": "http://[2002:c0a8:101::1]/a.wav"},
    {"audio_base64": "AAAA", "initial_prompt": " shuttle" * 300, "hotwords": " shuttle" * 300},
    {"audio_base64": "AAAA", "patience": 1e-9},
]


def configure_load(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--serve", metavar="MODEL", help="start `python -m worker --rp_serve_api` with this model (dir, alias, or bundled:tiny.en / bundled:base)")
    target.add_argument("--url", help="base URL of a running local API server, e.g. http://127.0.0.1:8000")
    target.add_argument("--endpoint-id", help="RunPod endpoint id (API key from RUNPOD_API_KEY)")
    parser.add_argument("inputs", nargs="*", help="audio folders/manifests/files [bundled Harvard + LJ Speech clips]")
    parser.add_argument("--jobs", type=int, default=32, help="number of jobs [%(default)s]")
    parser.add_argument("--concurrency", type=int, default=4, help="jobs in flight at once [%(default)s]")
    parser.add_argument("--batch-size", type=int, default=8, help="each job's batch_size (1 = sequential) [%(default)s]")
    parser.add_argument("--max-batch-wait-ms", type=float, default=None, help="with --serve: WHISPER_MAX_BATCH_WAIT_MS")
    parser.add_argument("--max-batch-size", type=int, default=None, help="with --serve: WHISPER_MAX_BATCH_SIZE")
    parser.add_argument("--extra", default="{}", help="JSON object merged into every job's input")
    parser.add_argument("--compare-serial", action="store_true", help="also serve the same jobs at concurrency 1 first and compare")
    parser.add_argument("--invalid-every", type=int, default=0, help="make every K-th job malformed (0 = none)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-job HTTP timeout in seconds")
    parser.add_argument("--duration-limit", type=float, default=None, help="stop sending new jobs after this many seconds")
    parser.add_argument("--cpu-threads", type=int, default=0, help="with --serve: WHISPER_CPU_THREADS")
    parser.add_argument("--out", default=None, help="output directory [benchmarks/results/load-<timestamp>]")
    parser.add_argument("--quiet", action="store_true")


# -- targets -----------------------------------------------------------------------------------

class Target:
    """Where jobs go: `submit(input) -> (output or None, error or None)`."""

    def __init__(self, url: str, headers: Optional[dict] = None):
        self.url = url.rstrip("/")
        self.headers = headers or {}
        self.session = requests.Session()
        self.session.trust_env = False

    def submit(self, job_input: dict, timeout: float):
        response = self.session.post(f"{self.url}/runsync", json={"input": job_input}, headers=self.headers, timeout=timeout)
        if response.status_code != 200:
            return None, f"HTTP {response.status_code}"
        body = response.json()
        output = body.get("output")
        if isinstance(output, list):  # generator handler with aggregation: the last item is the result
            output = output[-1] if output else None
        error = body.get("error") or (output.get("error") if isinstance(output, dict) else None)
        if body.get("status") not in (None, "COMPLETED") and not error:
            error = f"status {body.get('status')}"
        return output, error


# -- one run ---------------------------------------------------------------------------------

def make_jobs(files: List[dataset.LoadedAudio], count: int, batch_size: int, extra: dict, invalid_every: int) -> List[dict]:
    encoded = {item.file.path: base64.b64encode(Path(item.file.path).read_bytes()).decode() for item in files}
    jobs = []
    for i in range(count):
        if invalid_every and (i + 1) % invalid_every == 0:
            jobs.append({"valid": False, "input": INVALID_JOBS[i % len(INVALID_JOBS)], "audio_seconds": 0.0, "file": None})
            continue
        item = files[i % len(files)]
        jobs.append({"valid": True, "file": item.file.name, "audio_seconds": item.duration,
                     "input": {"audio_base64": encoded[item.file.path], "batch_size": batch_size, **extra}})
    return jobs


def run_jobs(target: Target, jobs: List[dict], concurrency: int, timeout: float, duration_limit: Optional[float],
             show_progress: bool, label: str, sampler=None) -> dict:
    results: List[Optional[dict]] = [None] * len(jobs)
    samples: List[dict] = []
    started = time.perf_counter()
    stop_sampling = threading.Event()

    def sample_loop():
        while not stop_sampling.wait(1.0):
            samples.append({"t": round(time.perf_counter() - started, 2), **sampler()})

    def one(index: int) -> None:
        if duration_limit and time.perf_counter() - started > duration_limit:
            return
        job = jobs[index]
        t0 = time.perf_counter()
        try:
            output, error = target.submit(job["input"], timeout)
        except requests.RequestException as exc:
            output, error = None, f"transport: {type(exc).__name__}"
        results[index] = {"latency": time.perf_counter() - t0, "output": output, "error": error}

    if sampler:
        samples.append({"t": 0.0, **sampler()})
        threading.Thread(target=sample_loop, daemon=True).start()
    with progress_bar(len(jobs), label, enabled=show_progress) as bar, ThreadPoolExecutor(concurrency) as pool:
        for _ in pool.map(lambda i: (one(i), bar.update(1)), range(len(jobs))):
            pass
    wall = time.perf_counter() - started
    stop_sampling.set()
    if sampler:
        samples.append({"t": round(wall, 2), **sampler()})
    return summarise(jobs, results, wall, concurrency, samples)


def summarise(jobs: List[dict], results: List[Optional[dict]], wall: float, concurrency: int, samples: List[dict]) -> dict:
    done = [(job, res) for job, res in zip(jobs, results) if res is not None]
    valid = [(job, res) for job, res in done if job["valid"]]
    invalid = [(job, res) for job, res in done if not job["valid"]]
    ok = [(job, res) for job, res in valid if not res["error"]]
    latencies = sorted(res["latency"] for _, res in ok)
    audio = sum(job["audio_seconds"] for job, _ in ok)

    def pct(p: float) -> Optional[float]:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(round(p / 100 * (len(latencies) - 1))))]

    def server_metric(name: str) -> Optional[float]:
        values = [res["output"]["metrics"][name] for _, res in ok if isinstance(res["output"], dict) and "metrics" in res["output"]]
        return statistics.median(values) if values else None

    return {
        "concurrency": concurrency,
        "jobs_sent": len(done),
        "valid_jobs": len(valid),
        "valid_failed": len(valid) - len(ok),
        "invalid_jobs": len(invalid),
        "invalid_refused_cleanly": sum(1 for _, res in invalid if res["error"] and not str(res["error"]).startswith(("HTTP", "transport"))),
        "failures": sorted({str(res["error"])[:120] for _, res in valid if res["error"]}),
        "wall_seconds": wall,
        "jobs_per_second": len(ok) / wall if wall else None,
        "audio_seconds_per_second": audio / wall if wall else None,
        "latency_p50": pct(50), "latency_p95": pct(95), "latency_p99": pct(99),
        "server_queue_p50": server_metric("queue_seconds"),
        "server_inference_p50": server_metric("inference_seconds"),
        "transcripts": [_text(job, res) for job, res in zip(jobs, results)],
        "samples": samples,
    }


def _text(job: dict, res: Optional[dict]) -> Optional[str]:
    if not job["valid"] or res is None or res["error"] or not isinstance(res["output"], dict):
        return None
    return res["output"].get("text")


def reference_texts(target: Target, jobs: List[dict], timeout: float) -> Dict[str, Optional[str]]:
    """Each distinct file transcribed once, alone: what every job with that file must return."""
    reference: Dict[str, Optional[str]] = {}
    for job in jobs:
        if job["valid"] and job["file"] not in reference:
            output, error = target.submit(job["input"], timeout)
            reference[job["file"]] = None if error else output.get("text")
    return reference


def equal_transcripts(a: dict, b: dict) -> Optional[bool]:
    pairs = [(x, y) for x, y in zip(a["transcripts"], b["transcripts"]) if x is not None and y is not None]
    return all(x == y for x, y in pairs) if pairs else None


# -- the command ------------------------------------------------------------------------------

def run_load(args) -> int:
    from .weights import resolve_ct2

    files = dataset.load(dataset.collect(args.inputs or [os.path.join(dataset.BUNDLED_DATA, "harvard")]))
    if not files:
        raise SystemExit("no audio files found")
    jobs = make_jobs(files, args.jobs, args.batch_size, json.loads(args.extra), args.invalid_every)
    worker = None
    if args.serve:
        env_extra = {"WHISPER_CPU_THREADS": str(args.cpu_threads)}
        if args.max_batch_wait_ms is not None:
            env_extra["WHISPER_MAX_BATCH_WAIT_MS"] = str(args.max_batch_wait_ms)
        if args.max_batch_size is not None:
            env_extra["WHISPER_MAX_BATCH_SIZE"] = str(args.max_batch_size)
        model_dir = resolve_ct2(args.serve, os.path.join(ROOT, ".cache", "benchmarks"))
        try:
            worker = LocalWorker(model_dir, max(args.concurrency, 1), env_extra)
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
        target = Target(worker.url)
        where = f"local worker ({args.serve})"
    elif args.url:
        target, where = Target(args.url), args.url
    else:
        key = os.environ.get("RUNPOD_API_KEY")
        if not key:
            raise SystemExit("RUNPOD_API_KEY is not set")
        target, where = Target(f"{RUNPOD_API}/{args.endpoint_id}", {"Authorization": f"Bearer {key}"}), f"RunPod endpoint {args.endpoint_id}"
    try:
        runs = []
        sampler = worker.sample if worker else None
        # Warm-up: one job so model/kernels are hot for both runs.
        target.submit(jobs[0]["input"] if jobs[0]["valid"] else make_jobs(files, 1, args.batch_size, {}, 0)[0]["input"], args.timeout)
        reference = reference_texts(target, jobs, args.timeout)
        if args.compare_serial:
            runs.append(run_jobs(target, jobs, 1, args.timeout, args.duration_limit, not args.quiet, "serial", sampler))
        runs.append(run_jobs(target, jobs, args.concurrency, args.timeout, args.duration_limit, not args.quiet, f"concurrency {args.concurrency}", sampler))
        for run in runs:
            run["transcripts_differing_from_reference"] = sum(
                1 for job, text in zip(jobs, run["transcripts"]) if text is not None and text != reference.get(job["file"]))
    finally:
        if worker:
            worker.close()
    data = {
        "command": "load",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "target": where,
        "machine": facts.machine(),
        "versions": facts.versions(),
        "settings": {"jobs": args.jobs, "concurrency": args.concurrency, "batch_size": args.batch_size,
                     "invalid_every": args.invalid_every, "files": [f.file.name for f in files],
                     "max_batch_wait_ms": args.max_batch_wait_ms, "max_batch_size": args.max_batch_size},
        "runs": runs,
    }
    if args.compare_serial:
        serial, concurrent = runs
        data["comparison"] = {
            "throughput_ratio": (concurrent["audio_seconds_per_second"] / serial["audio_seconds_per_second"])
            if serial["audio_seconds_per_second"] else None,
            "transcripts_equal": equal_transcripts(serial, concurrent),
        }
    out = args.out or str(ROOT / "benchmarks" / "results" / f"load-{dt.datetime.now():%Y%m%d-%H%M%S}")
    report.write_results(out, data, load_markdown(data), load_chart)
    failed = sum(run["valid_failed"] + run["transcripts_differing_from_reference"] for run in runs)
    return 1 if failed else 0


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
