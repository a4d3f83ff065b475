"""Host CPU per stage of the job path, for the benchmarks: the function doing each stage's work is
marked `@timed("vad")`, and a job's first window reaching the scheduler calls `note("queued",
job_id)`. Nothing is measured until a `StageMeter` is installed; until then each marked call costs
one global read. Declared here, in the worker, so that a benchmark never patches names that a
refactoring could move (a stage no job reported shows as missing, not as zero)."""

from __future__ import annotations

import functools
import threading
import time
from typing import Callable, Dict, Optional, Tuple

STAGES = ("fetch", "decode", "vad", "features", "segments", "words", "format")
EVENTS = ("queued",)


class StageMeter:
    """Thread CPU seconds per stage (a stage called from inside another is counted once, in the
    outer one), and the first time each (event, key) was noted."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}
        self.first: Dict[Tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def clear(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.first.clear()

    def run(self, stage: str, function: Callable, args, kwargs):
        if getattr(self._local, "inside", False):
            return function(*args, **kwargs)
        self._local.inside = True
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            self._local.inside = False
            self.add(stage, time.thread_time() - started)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def note(self, event: str, key: str) -> None:
        with self._lock:
            self.first.setdefault((event, key), time.monotonic())


_meter: Optional[StageMeter] = None


def install(meter: Optional[StageMeter]) -> None:
    """Start (or, with None, stop) measuring into `meter`."""
    global _meter
    _meter = meter


def timed(stage: str) -> Callable[[Callable], Callable]:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")

    def mark(function: Callable) -> Callable:
        @functools.wraps(function)
        def call(*args, **kwargs):
            meter = _meter
            if meter is None:
                return function(*args, **kwargs)
            return meter.run(stage, function, args, kwargs)

        call.stage = stage
        return call

    return mark


def note(event: str, key: str) -> None:
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; expected one of {EVENTS}")
    meter = _meter
    if meter is not None:
        meter.note(event, key)
