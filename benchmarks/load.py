"""`python -m benchmarks load`: N jobs at concurrency C against the worker's HTTP API.

Targets: a local API server it starts itself (`--serve MODEL`, the real `python -m worker
--rp_serve_api` in a child process), a running local server (`--url`), or a RunPod endpoint
(`--endpoint-id` with RUNPOD_API_KEY). Audio travels as base64, so the same jobs work everywhere.

`--compare-serial` first serves the same jobs one at a time, then at concurrency C, and reports
the aggregate-throughput ratio and whether every transcript equals its serial twin.
`--invalid-every K` mixes in a malformed job every K jobs (they must fail cleanly, the valid ones
must not); with `--serve`, the server's open files, temp files and RSS are sampled as it runs.

This module holds the flags and the run; load_jobs.py the targets and jobs, load_stats.py what
the answers add up to, load_report.py the Markdown and chart.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

from . import dataset, facts, report
from .command import Command, add_shared
from .load_jobs import make_jobs, open_target, reference_texts, run_jobs
from .load_report import load_chart, load_markdown
from .load_stats import comparison, differing_from

ROOT = Path(__file__).resolve().parent.parent


def configure(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--serve", metavar="MODEL", help="start `python -m worker --rp_serve_api` with this model (dir, alias, or bundled:tiny.en / bundled:base)")
    target.add_argument("--url", help="base URL of a running local API server, e.g. http://127.0.0.1:8000")
    target.add_argument("--endpoint-id", help="RunPod endpoint id (API key from RUNPOD_API_KEY)")
    parser.add_argument("inputs", nargs="*", help="audio folders/manifests/files [bundled Harvard + LJ Speech clips]")
    parser.add_argument("--jobs", type=int, default=32, help="number of jobs [%(default)s]")
    add_shared(parser, "concurrency", "batch_size")
    parser.add_argument("--max-batch-wait-ms", type=float, default=None, help="with --serve: WHISPER_MAX_BATCH_WAIT_MS")
    add_shared(parser, "max_batch_size", notes={"max_batch_size": "with --serve"})
    parser.add_argument("--extra", default="{}", help="JSON object merged into every job's input")
    parser.add_argument("--compare-serial", action="store_true", help="also serve the same jobs at concurrency 1 first and compare")
    parser.add_argument("--invalid-every", type=int, default=0, help="make every K-th job malformed (0 = none)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-job HTTP timeout in seconds")
    parser.add_argument("--duration-limit", type=float, default=None, help="stop sending new jobs after this many seconds")
    add_shared(parser, "cpu_threads", "out", "quiet", notes={"cpu_threads": "with --serve: WHISPER_CPU_THREADS", "out": "default benchmarks/results/load-<timestamp>"})


# -- the command ------------------------------------------------------------------------------

def run(args) -> int:
    files = dataset.load(dataset.collect(args.inputs or [os.path.join(dataset.BUNDLED_DATA, "harvard")]))
    if not files:
        raise SystemExit("no audio files found")
    jobs = make_jobs(files, args.jobs, args.batch_size, json.loads(args.extra), args.invalid_every)
    target, where, worker = open_target(args)
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
            run["transcripts_differing_from_reference"] = differing_from(reference, jobs, run)
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
        data["comparison"] = comparison(*runs)
    out = args.out or str(ROOT / "benchmarks" / "results" / f"load-{dt.datetime.now():%Y%m%d-%H%M%S}")
    report.write_results(out, data, load_markdown(data), load_chart)
    failed = sum(run["valid_failed"] + run["transcripts_differing_from_reference"] for run in runs)
    return 1 if failed else 0


COMMAND = Command("load", "N jobs at concurrency C against the worker's HTTP API: latency percentiles, throughput, errors, leaks", configure, run)
