"""Sustained mixed load on the real HTTP API, short form (the README quotes the 500-job run).

`python -m benchmarks load --serve ...` starts the worker as users run it, sends valid and
malformed jobs at concurrency 4, and samples the server's RSS, open files and temp files.
"""

import json
import subprocess
import sys

from helpers import ROOT

RSS_GROWTH_BOUND_MB = 150  # after warm-up; the 500-job run stays well inside it (README)


def test_mixed_load_loses_nothing_and_leaks_nothing(tmp_path):
    out = tmp_path / "load"
    command = [sys.executable, "-m", "benchmarks", "load", "--serve", "bundled:tiny.en", "--jobs", "40", "--concurrency", "4",
               "--invalid-every", "5", "--batch-size", "4", "--cpu-threads", "2", "--quiet", "--out", str(out), "tests/data/harvard"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=540)  # inside the suite's 600 s per-test limit, so its own message shows
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    run = data["runs"][-1]
    assert run["jobs_sent"] == 40 and run["valid_jobs"] == 32 and run["invalid_jobs"] == 8
    assert run["valid_failed"] == 0, run["failures"]
    assert run["invalid_refused_cleanly"] == 8
    assert run["transcripts_differing_from_reference"] == 0
    samples = run["samples"]
    assert samples[-1]["temp_files"] == 0
    assert samples[-1]["open_fds"] <= samples[0]["open_fds"] + 4
    warm = samples[len(samples) // 10]["rss_mb"]
    assert samples[-1]["rss_mb"] - warm < RSS_GROWTH_BOUND_MB
    assert (out / "chart.png").stat().st_size > 0 and "| concurrency |" in (out / "results.md").read_text()
    assert 0 < run["latency_p50"] <= run["latency_p95"] <= run["latency_p99"]
