"""Cross-job batching: validate -> queue -> batcher -> backend, in one background thread.

Every batched job (batch_size > 1) hands its 30-second windows here instead of calling the model
itself. The batcher thread takes windows from all queued jobs that share decoding settings,
round-robin one window per job per turn (so a long file cannot starve short ones), until
`max_batch_size` windows are gathered or `max_wait` has passed since the oldest window arrived,
then runs one encode + generate for all of them and hands each job its own rows back.

Rows are independent in CTranslate2's batched Whisper decoding (every window is padded to 30 s
and every prompt in a group is the same), so a job's result does not depend on its neighbours;
the tests check this against the same jobs run alone. A job's post-processing (segment
splitting, word timing with its running last-speech timestamp) stays in the job's own thread.

Cancelled jobs leave the queue: their windows that have not started are never computed.
Out-of-memory in a batch is retried by halves; a single window that still fails is reported to
the jobs it belongs to as ResourceExhausted.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin on Python 3.10
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence

from worker.stages import note
from worker.errors import Cancelled, ResourceExhausted  # noqa: F401 - Cancelled is part of this module's API

log = logging.getLogger(__name__)


@dataclass(eq=False)  # identity, not field-wise (numpy) comparison: requests are queue entries
class WindowRequest:
    """A job's group of windows waiting for the model."""

    key: Hashable
    windows: Sequence[Any]  # the job's windows (worker.decoding.whisper.features.WindowInput), one result each
    context: Any  # what the backend needs besides the windows (tokenizer, options)
    job_id: str
    cancelled: threading.Event
    future: Future = field(default_factory=Future)
    next_row: int = 0
    results: List[Any] = field(default_factory=list)
    enqueued_at: float = field(default_factory=time.monotonic)
    started_at: Optional[float] = None
    batches: Dict[int, float] = field(default_factory=dict)  # batch number -> its seconds

    @property
    def inference_seconds(self) -> float:
        """Seconds of the batches that held this request's windows."""
        return sum(self.batches.values())

    @property
    def size(self) -> int:
        return len(self.windows)

    @property
    def pending(self) -> int:
        return self.size - self.next_row


# backend(windows, context) -> one result per window, in order
Backend = Callable[[List[Any], Any], List[Any]]


def is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "cudaerrormemoryallocation" in text


class BatchScheduler:
    def __init__(self, backend: Backend, max_batch_size: int, max_wait_s: float):
        self._backend = backend
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._queue: deque[WindowRequest] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        self.batches_run = 0

    # -- job side -------------------------------------------------------------------------
    def run(self, key: Hashable, windows: Sequence[Any], context: Any, job_id: str, cancelled: threading.Event) -> WindowRequest:
        """Queue the windows, wait for all their rows, return the finished request."""
        return self.wait(self.submit(key, windows, context, job_id, cancelled))

    def submit(self, key: Hashable, windows: Sequence[Any], context: Any, job_id: str, cancelled, urgent: bool = False) -> WindowRequest:
        """Queue the windows and return at once; `wait` gives the results. An urgent request (a
        window its job is blocked on: a tail, a fallback) goes before the job's others."""
        note("queued", job_id.split("/")[0])  # the benchmarks' time to a job's first window
        request = WindowRequest(key=key, windows=windows, context=context, job_id=job_id, cancelled=cancelled)
        if request.size == 0:
            request.future.set_result([])
            return request
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler is closed")
            self._ensure_thread()
            if urgent:
                self._queue.appendleft(request)
            else:
                self._queue.append(request)
            self._cond.notify_all()
        return request

    def wait(self, request: WindowRequest) -> WindowRequest:
        while True:
            try:
                request.future.result(timeout=0.1)
                return request
            except FutureTimeout:
                if request.cancelled.is_set():
                    self.drop(request)
                elif self._thread is not None and not self._thread.is_alive():
                    _fail(request, RuntimeError("the batcher thread stopped; this worker cannot decode"))
            except Cancelled:
                raise

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def drop(self, request: WindowRequest) -> None:
        """Take the request out of the queue (its job no longer wants it)."""
        with self._cond:
            if request in self._queue:
                self._queue.remove(request)
        _fail(request, Cancelled(f"job {request.job_id} cancelled"))

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="whisper-batcher", daemon=True)
            self._thread.start()

    # -- batcher side ---------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._execute(batch)
        except BaseException:  # a bug here: fail every waiting job now, and let the next run() restart the thread
            log.exception("the batcher thread stopped")
            with self._cond:
                waiting = list(self._queue)
                self._queue.clear()
            for request in waiting:
                _fail(request, RuntimeError("the batcher thread stopped; this worker cannot decode"))

    def _next_batch(self) -> Optional[List[tuple]]:
        """Wait for windows, then take up to max_batch_size rows of one key, round-robin by job."""
        with self._cond:
            while True:
                self._purge_cancelled()
                if self._closed and not self._queue:
                    return None
                if not self._queue:
                    self._cond.wait()
                    continue
                head = self._queue[0]
                same_key = [r for r in self._queue if r.key == head.key]
                ready = sum(r.pending for r in same_key)
                waited = time.monotonic() - min(r.enqueued_at for r in same_key)
                if ready >= self.max_batch_size or waited >= self.max_wait_s or self._closed:
                    break
                self._cond.wait(timeout=self.max_wait_s - waited)
            by_job: dict = {}  # job -> its requests in queue order (a job may have several)
            for request in same_key:
                by_job.setdefault(request.job_id, deque()).append(request)
            rows = []
            for requests in itertools.cycle(list(by_job.values())):
                if len(rows) >= self.max_batch_size or not any(requests for requests in by_job.values()):
                    break
                while requests and requests[0].pending == 0:
                    requests.popleft()
                if requests:
                    request = requests[0]
                    rows.append((request, request.next_row))
                    request.next_row += 1
            for request in same_key:
                if request.pending == 0:
                    self._queue.remove(request)
            return rows

    def _purge_cancelled(self) -> None:
        for request in [r for r in self._queue if r.cancelled.is_set()]:
            self._queue.remove(request)
            _fail(request, Cancelled(f"job {request.job_id} cancelled"))

    def _execute(self, rows: List[tuple]) -> None:
        # Rows of one request are contiguous after a stable sort, so results go back in order.
        rows.sort(key=lambda row: (id(row[0]), row[1]))
        started = time.monotonic()
        for request, _ in rows:
            if request.started_at is None:
                request.started_at = started
        try:
            outputs = self._run_with_oom_retry(rows)
        except Exception as exc:  # noqa: BLE001 - delivered to every job in the batch
            for request in {id(r): r for r, _ in rows}.values():
                _fail(request, exc)
            return
        elapsed = time.monotonic() - started
        self.batches_run += 1
        for (request, _), output in zip(rows, outputs):
            request.results.append(output)
        for request in {id(r): r for r, _ in rows}.values():
            request.batches[self.batches_run] = elapsed
            if len(request.results) == request.size:
                _succeed(request)

    def _run_with_oom_retry(self, rows: List[tuple]) -> List[Any]:
        windows = [request.windows[index] for request, index in rows]
        try:
            return self._backend(windows, rows[0][0].context)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if len(rows) == 1:
                raise ResourceExhausted("out of memory decoding a single 30 s window", field=None) from exc
            half = len(rows) // 2
            log.warning("out of memory with %d windows; retrying as %d + %d", len(rows), half, len(rows) - half)
            return self._run_with_oom_retry(rows[:half]) + self._run_with_oom_retry(rows[half:])


# Futures are settled from the batcher thread and from job threads (cancel); a check-then-set
# would race, so each transition is one attempt that loses quietly to an earlier one.
def _fail(request: WindowRequest, exc: BaseException) -> None:
    try:
        request.future.set_exception(exc)
    except InvalidStateError:
        pass


def _succeed(request: WindowRequest) -> None:
    try:
        request.future.set_result(request.results)
    except InvalidStateError:
        pass
