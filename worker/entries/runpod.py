"""The RunPod entry points: `handler(job)` (async) and `stream_handler(job)` (async generator),
over the one Service (worker/service.py): a RunPod job dict in, the job's output dict out.

Importing this module starts nothing: the JobRunner (a Service + RunPod's progress sink) is built
on first use from the environment, or injected with `set_runner()` by `python -m worker` and by
tests. The job runs on one of the service's job threads, so the event loop keeps serving other
jobs; caller mistakes become `{"error": ...}`; bugs raise so the SDK reports them with a trace,
and the next job is served either way. Progress updates and streamed segments are RunPod's and
live here only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, AsyncIterator, Callable, Optional

from worker.config import Settings
from worker.errors import WorkerError
from worker.formats.legacy import legacy_output
from worker.formats.openai import job_metrics, openai_output
from worker.service import Outcome, Service
from worker.stages import timed
from worker.transcript import Segment, word_dict

log = logging.getLogger("worker.jobs")

ProgressSink = Callable[[dict, dict], None]  # (job, progress payload); may block while it posts
PROGRESS_EVERY_SECONDS = 5.0
PROGRESS_FLUSH_SECONDS = 5.0  # at most this long a finished job waits for its last update to be posted


class JobRunner:
    """RunPod jobs on a Service: parse the job's input, transcribe, render the output (the
    official worker's shape or OpenAI's) with the job's metrics; progress updates to `progress`."""

    def __init__(self, service: Service, progress: Optional[ProgressSink] = None):
        self.service = service
        self.progress = progress

    @classmethod
    def from_settings(cls, settings: Settings, progress: Optional[ProgressSink] = None) -> "JobRunner":
        return cls(Service.from_settings(settings), progress)

    @property
    def settings(self) -> Settings:
        return self.service.settings

    @property
    def engine(self):
        return self.service.engine

    # -- async entry points ---------------------------------------------------------------
    async def run(self, job: dict) -> dict:
        cancelled = threading.Event()
        try:
            return await self.service.submit(lambda: self.process(job, None, cancelled))
        except asyncio.CancelledError:
            cancelled.set()  # the thread stops at its next window; queued windows are dropped
            raise

    async def stream(self, job: dict) -> AsyncIterator[dict]:
        """Yield {"type": "segment", ...} as segments are decoded (when the request sets
        `stream`), then the full result."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def on_segment(segment: Segment, done: float) -> None:
            loop.call_soon_threadsafe(events.put_nowait, {"type": "segment", "progress": round(done, 4), "segment": _segment_event(segment)})

        task = self.service.submit(lambda: self.process(job, on_segment, cancelled))
        try:
            while not (task.done() and events.empty()):
                getter = asyncio.ensure_future(events.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            yield task.result()
        finally:
            if not task.done():
                cancelled.set()

    # -- the job itself (runs in a job thread) --------------------------------------------
    def process(self, job: dict, on_segment=None, cancelled: Optional[threading.Event] = None) -> dict:
        """One job, start to end: its output dict, or {"error": ...} for a caller's mistake. With
        `on_segment`, a request that sets `stream` has each segment handed to it as it is decoded,
        and its output is marked as the stream's last item ({"type": "result", ...})."""
        job_id = str(job.get("id", "local")) if isinstance(job, dict) else "local"
        progress = ProgressSender(self.progress, job) if self.progress is not None else None
        try:
            request = self.service.parse(job.get("input") if isinstance(job, dict) else None, job_id)
            streamed = request.stream and on_segment is not None
            report = _progress_reporter(progress, on_segment if streamed else None)
            outcome = self.service.transcribe(request, job_id, None, report, cancelled)
            output = self._output(outcome)
        except WorkerError as exc:
            return exc.to_response()
        finally:
            if progress is not None:
                progress.close(PROGRESS_FLUSH_SECONDS)  # no update arrives after the result
        output["metrics"] = job_metrics(request, outcome.transcript, outcome.timings, self.engine.model, self.settings.image_revision)
        return {"type": "result", **output} if streamed else output

    @timed("format")
    def _output(self, outcome: Outcome) -> dict:
        request, transcript, model = outcome.request, outcome.transcript, self.engine.model
        if request.legacy:
            return legacy_output(
                transcript, request.legacy.transcription, outcome.translation, request.legacy.translation,
                request.word_timestamps, model.device, model.name, request.subtitle_layout,
            )
        return openai_output(transcript, request.response_format, request.task, request.word_timestamps, request.subtitle_layout)


class ProgressSender:
    """One job's progress updates, handed to the sink one at a time in the order they were made,
    from a thread of the job's own: a slow post neither holds up the decoding nor is overtaken by
    a later update (RunPod shows the last update it received). While one is being posted only the
    latest waiting update is kept. `close` lets the last waiting update go and waits for the
    posts to end, for at most `timeout` seconds."""

    def __init__(self, sink: ProgressSink, job: dict):
        self._sink, self._job = sink, job
        self._changed = threading.Condition()
        self._waiting: Optional[dict] = None
        self._closed = False
        self._thread: Optional[threading.Thread] = None

    def send(self, payload: dict) -> None:
        with self._changed:
            if self._closed:
                return
            self._waiting = payload  # replaces one not yet posted
            if self._thread is None:
                self._thread = threading.Thread(target=self._post_in_order, name="whisper-progress", daemon=True)
                self._thread.start()
            self._changed.notify()

    def close(self, timeout: float) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _post_in_order(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting is not None or self._closed)
                if self._waiting is None:
                    return
                payload, self._waiting = self._waiting, None
            try:
                self._sink(self._job, payload)
            except Exception:  # noqa: BLE001 - a lost update must not end the job or the later ones
                log.warning("job=%s progress update not sent", self._job.get("id"), exc_info=True)


def _progress_reporter(progress: Optional[ProgressSender], on_segment):
    """The engine's segment callback: streaming events, and a progress update every
    PROGRESS_EVERY_SECONDS or 10 % of the audio."""
    if progress is None:
        return on_segment
    last = {"at": 0.0, "done": 0.0}

    def report(segment: Segment, done: float) -> None:
        if on_segment is not None:
            on_segment(segment, done)
        now = time.monotonic()
        if now - last["at"] >= PROGRESS_EVERY_SECONDS or done - last["done"] >= 0.1:
            last.update(at=now, done=done)
            progress.send({"progress": round(done, 3), "segments": segment.id + 1})

    return report


def _segment_event(segment: Segment) -> dict:
    event = {"id": segment.id, "start": segment.start, "end": segment.end, "text": segment.text}
    if segment.words is not None:
        event["words"] = [word_dict(word) for word in segment.words]
    return event


# -- module-level entry points for the RunPod SDK ------------------------------------------
_runner: Optional[JobRunner] = None
_runner_lock = threading.Lock()


def set_runner(runner: Optional[JobRunner]) -> None:
    global _runner
    _runner = runner


def get_runner() -> JobRunner:
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = JobRunner.from_settings(Settings.from_env())
        return _runner


async def handler(job: dict) -> dict:
    return await get_runner().run(job)


async def stream_handler(job: dict) -> AsyncIterator[dict]:
    async for item in get_runner().stream(job):
        yield item


def concurrency_modifier(current: Any) -> int:
    return get_runner().settings.concurrency
