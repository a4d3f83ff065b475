"""Measurements: wall-clock timing, peak memory samplers (RSS, NVML) and WER/CER.

Peak memory is sampled in a thread because neither engine reports it: torch's CUDA counters do
not see CTranslate2's allocator, so GPU memory is read device-wide from NVML and reported as the
increase over an idle baseline taken before the model loads. On CPU the process RSS is sampled
the same way (increase over the RSS before loading, after imports).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

MB = 1024 * 1024


class PeakSampler:
    """Sample a reading function every `interval` seconds in a daemon thread; keep the maximum."""

    def __init__(self, read, interval: float = 0.01):
        self._read = read
        self._interval = interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.baseline = read()
        self.peak = self.baseline

    def __enter__(self) -> "PeakSampler":
        self._thread = threading.Thread(target=self._loop, name="peak-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.sample()

    def sample(self) -> None:
        value = self._read()
        if value > self.peak:
            self.peak = value

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    @property
    def increase(self) -> int:
        return self.peak - self.baseline


def rss_reader():
    """Resident set size of this process in bytes (psutil)."""
    import psutil

    process = psutil.Process()
    return lambda: process.memory_info().rss


def nvml_reader(device_index: int = 0):
    """Device-wide used GPU memory in bytes via NVML, or None when there is no NVML/GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        pynvml.nvmlDeviceGetMemoryInfo(handle)
    except Exception:  # no driver, no device, no package: GPU memory is simply not reported
        return None
    return lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used


def process_cpu_seconds() -> float:
    """User + system CPU time of this process (all threads). Unlike wall time it barely changes when
    other processes compete for the cores, so it shows how much work a setting needed."""
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


class MemoryMonitor:
    """RSS always, GPU memory when NVML works; baselines are taken at construction."""

    def __init__(self, device: str, device_index: int = 0, interval: float = 0.01):
        self.rss = PeakSampler(rss_reader(), interval)
        gpu = nvml_reader(device_index) if device == "cuda" else None
        self.gpu = PeakSampler(gpu, interval) if gpu else None

    def __enter__(self) -> "MemoryMonitor":
        self.rss.__enter__()
        if self.gpu:
            self.gpu.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.rss.__exit__(*exc)
        if self.gpu:
            self.gpu.__exit__(*exc)

    def summary(self) -> Dict[str, Optional[float]]:
        return {
            "rss_baseline_mb": self.rss.baseline / MB,
            "rss_peak_mb": self.rss.peak / MB,
            "rss_increase_mb": self.rss.increase / MB,
            "gpu_baseline_mb": self.gpu.baseline / MB if self.gpu else None,
            "gpu_peak_mb": self.gpu.peak / MB if self.gpu else None,
            "gpu_increase_mb": self.gpu.increase / MB if self.gpu else None,
        }


class Stopwatch:
    """`with Stopwatch() as t: ...` then t.seconds (perf_counter wall clock)."""

    def __enter__(self) -> "Stopwatch":
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start


@dataclass
class LatencyStats:
    runs: List[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def min(self) -> float:
        return min(self.runs)


def normalizer(language: Optional[str]):
    """Whisper's English normaliser for English, its basic one otherwise (whisper_normalizer)."""
    from whisper_normalizer.basic import BasicTextNormalizer
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer() if language == "en" else BasicTextNormalizer()


def error_rates(references: List[str], hypotheses: List[str], language: Optional[str]) -> Dict[str, float]:
    """Corpus-level WER and CER (errors summed over all files) after normalisation."""
    import jiwer

    norm = normalizer(language)
    pairs = [(norm(r).strip(), norm(h).strip()) for r, h in zip(references, hypotheses)]
    pairs = [(r, h) for r, h in pairs if r]  # a reference that normalises to nothing has no words to err on
    if not pairs:
        return {"wer": None, "cer": None, "scored_files": 0}
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    return {
        "wer": float(jiwer.wer(refs, hyps)),
        "cer": float(jiwer.cer(refs, hyps)),
        "scored_files": len(pairs),
    }
