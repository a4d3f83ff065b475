"""Load generation for `python -m benchmarks load`: where jobs go (a Target), which jobs
(valid base64 audio and malformed ones), and sending them at a concurrency while the server is
sampled. What the answers add up to is load_stats.py's."""

from __future__ import annotations

import base64
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import requests

from . import dataset
from .load_stats import summarise
from .local_worker import ROOT, LocalWorker
from .progress import progress_bar

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


def open_target(args) -> Tuple["Target", str, Optional[LocalWorker]]:
    """The target the flags name, how to describe it, and with --serve the child server started
    for it (the caller closes it)."""
    from .weights import resolve_ct2

    if args.url:
        return Target(args.url), args.url, None
    if args.endpoint_id:
        key = os.environ.get("RUNPOD_API_KEY")
        if not key:
            raise SystemExit("RUNPOD_API_KEY is not set")
        return Target(f"{RUNPOD_API}/{args.endpoint_id}", {"Authorization": f"Bearer {key}"}), f"RunPod endpoint {args.endpoint_id}", None
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
    return Target(worker.url), f"local worker ({args.serve})", worker


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


def reference_texts(target: Target, jobs: List[dict], timeout: float) -> Dict[str, Optional[str]]:
    """Each distinct file transcribed once, alone: what every job with that file must return."""
    reference: Dict[str, Optional[str]] = {}
    for job in jobs:
        if job["valid"] and job["file"] not in reference:
            output, error = target.submit(job["input"], timeout)
            reference[job["file"]] = None if error else output.get("text")
    return reference
