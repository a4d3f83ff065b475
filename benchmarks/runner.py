"""Measure one engine setting in a fresh child process.

A separate process per setting gives each one a clean memory baseline (RSS and GPU memory never
return to the pre-load level once an allocator has grown) and keeps torch and CTranslate2 thread
pools from competing. The child reports progress and its result through a queue.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import traceback
from typing import Callable, List, Optional

import numpy as np

from .engines import RunSpec, import_engine, load_engine, thread_facts
from .facts import load_average
from .metrics import LatencyStats, MemoryMonitor, Stopwatch, process_cpu_seconds


def measure(spec: RunSpec, names: List[str], audios: List[np.ndarray], repeats: int, report: Callable[[str, str], None]) -> dict:
    """Load, warm up on the first file (excluded), then time every file `repeats` times."""
    report("step", f"{spec.label}: importing")
    import_engine(spec)
    monitor = MemoryMonitor(spec.device)
    with monitor:
        report("step", f"{spec.label}: loading")
        with Stopwatch() as load:
            engine = load_engine(spec)
        report("step", f"{spec.label}: warm-up")
        with Stopwatch() as warmup:
            engine.transcribe(audios[0])
        cpu_before = process_cpu_seconds()
        files = []
        for name, samples in zip(names, audios):
            runs, output = [], None
            for _ in range(repeats):
                with Stopwatch() as clock:
                    output = engine.transcribe(samples)
                runs.append(clock.seconds)
                report("step", f"{spec.label}: {name}")
            stats = LatencyStats(runs)
            files.append({
                "name": name,
                "duration": len(samples) / 16000,
                "latency_median": stats.median,
                "latency_min": stats.min,
                "latencies": runs,
                "text": output.text,
                "language": output.language,
            })
        cpu_seconds = process_cpu_seconds() - cpu_before
        engine.close()
    audio_seconds = sum(f["duration"] for f in files)
    median_total = sum(f["latency_median"] for f in files)
    min_total = sum(f["latency_min"] for f in files)
    return {
        **spec.to_dict(),
        "status": "ok",
        "load_seconds": load.seconds,
        "warmup_seconds": warmup.seconds,
        "audio_seconds": audio_seconds,
        "latency_total_median": median_total,
        "latency_total_min": min_total,
        "rtfx": audio_seconds / median_total,
        "rtfx_best": audio_seconds / min_total,
        "memory": monitor.summary(),
        "cpu_seconds": cpu_seconds,
        "load_average_after": load_average(),
        "threads": thread_facts(spec),
        "files": files,
    }


def _child(spec: RunSpec, names, audios, repeats: int, out) -> None:
    try:
        result = measure(spec, names, audios, repeats, lambda kind, text: out.put((kind, text)))
        out.put(("result", result))
    except BaseException:  # anything, including import errors: report it instead of dying silently
        out.put(("error", traceback.format_exc()))


def run_isolated(spec: RunSpec, names, audios, repeats: int, on_step: Callable[[str], None], timeout: Optional[float] = None) -> dict:
    """Run `measure` in a spawned process; a crash or error becomes a result with status "error"."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=_child, args=(spec, names, audios, repeats, out), daemon=True)
    process.start()
    try:
        while True:
            try:
                kind, payload = out.get(timeout=1.0)
            except queue_module.Empty:
                if not process.is_alive():
                    return _failed(spec, f"child process exited with code {process.exitcode} without a result")
                continue
            if kind == "step":
                on_step(payload)
            elif kind == "result":
                return payload
            else:
                return _failed(spec, payload)
    finally:
        process.join(timeout=timeout or 60)
        if process.is_alive():
            process.terminate()


def _failed(spec: RunSpec, error: str) -> dict:
    return {**spec.to_dict(), "status": "error", "error": error.strip()}
