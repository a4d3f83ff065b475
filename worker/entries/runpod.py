"""The RunPod entry points: `handler(job)` (async) and `stream_handler(job)` (async generator).

Importing this module starts nothing: the Service (settings + loaded engine) is built on first
use from the environment, or injected with `set_service()` by `python -m worker` and by tests.

One job: validate the request -> fetch the audio into a per-job temporary directory -> decode ->
transcribe (in a worker thread, so the event loop keeps serving other jobs) -> format. The
temporary directory is removed whatever happens. Caller mistakes become `{"error": ...}`; bugs
raise so the SDK reports them with a trace, and the next job is served either way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, List, Optional, Tuple

import numpy as np

from worker.stages import timed
from worker.speakers import attribution as speakers
from worker.audio.decode import SAMPLE_RATE
from worker.config import Settings
from worker.speakers.conversation import DEFAULT_MAX_SPEAKERS, SpeakerCount
from worker.errors import Cancelled, WorkerError
from worker.formats.openai import job_metrics, openai_output
from worker.request.legacy import legacy_output
from worker.request.schema import MAX_CHANNELS_TRANSCRIBED, TranscriptionRequest, parse_request
from worker.audio.sources import AudioSources, describe
from worker.stopping import AnyEvent
from worker.transcript import Segment, Timings, Transcript, word_dict

log = logging.getLogger("worker.jobs")

ProgressSink = Callable[[dict, dict], None]  # (job, progress payload); may block while it posts
PROGRESS_EVERY_SECONDS = 5.0
PROGRESS_FLUSH_SECONDS = 5.0  # at most this long a finished job waits for its last update to be posted


class Service:
    """Everything a job needs, built once: settings, the engine (model loaded), progress sink."""

    def __init__(self, settings: Settings, engine, progress: Optional[ProgressSink] = None):
        self.settings = settings
        self.engine = engine
        self.progress = progress
        # One thread per job in flight (asyncio's default pool has only cores + 4 threads).
        self._threads = ThreadPoolExecutor(max_workers=settings.concurrency + 1, thread_name_prefix="whisper-job")
        self.sources = AudioSources(settings)
        self._speakers: Optional[speakers.Speakers] = None
        self._speakers_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, progress: Optional[ProgressSink] = None) -> "Service":
        from worker.decoding.engine import Engine
        from worker.decoding.models import load_model

        return cls(settings, Engine(load_model(settings), settings), progress)

    # -- async entry points ---------------------------------------------------------------
    async def run(self, job: dict) -> dict:
        cancelled = threading.Event()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, self.process, job, None, cancelled)
        except asyncio.CancelledError:
            cancelled.set()  # the thread stops at its next window; queued windows are dropped
            raise

    async def stream(self, job: dict) -> AsyncIterator[dict]:
        """Yield {"type": "segment", ...} as segments are decoded, then the full result."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def on_segment(segment: Segment, done: float) -> None:
            loop.call_soon_threadsafe(events.put_nowait, {"type": "segment", "progress": round(done, 4), "segment": _segment_event(segment)})

        wants_stream = isinstance(job.get("input"), dict) and job["input"].get("stream") is True
        task = loop.run_in_executor(self._threads, self.process, job, on_segment if wants_stream else None, cancelled)
        try:
            while not (task.done() and events.empty()):
                getter = asyncio.ensure_future(events.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            result = task.result()
            yield {"type": "result", **result} if wants_stream and "error" not in result else result
        finally:
            if not task.done():
                cancelled.set()

    # -- the job itself (runs in a worker thread) -----------------------------------------
    def process(self, job: dict, on_segment=None, cancelled: Optional[threading.Event] = None, upload: Optional[str] = None) -> dict:
        """One job, start to end. `upload`: the path of an uploaded file holding the audio (the
        OpenAI server mode); otherwise the input names it. One Timings goes through the job: the
        sources fill download and decode, the engine vad, queue and inference, diarization its
        own; the total is taken once, at the end, for both the log line and the metrics."""
        job_id = str(job.get("id", "local")) if isinstance(job, dict) else "local"
        started = time.perf_counter()
        timings = Timings()
        audio_seconds = 0.0
        source = "-"
        audio = None
        streaming = False
        outcome = "crashed"  # stays so only if a bug escapes
        progress = ProgressSender(self.progress, job) if self.progress is not None else None
        try:
            request = parse_request(job.get("input") if isinstance(job, dict) else None, self.settings, uploaded=upload is not None)
            source = "upload" if upload is not None else describe(request)
            self.engine.check(request)
            if request.diarize:
                speakers.require_backend(request.diarization_model or "conversation", self.settings.diarization_models)
            # known voices' clips first: small (WHISPER_MAX_REFERENCE_SECONDS), and a bad one
            # refuses the job before the main audio is fetched or any transcription starts
            references = self._load_references(request, cancelled)
            channels = MAX_CHANNELS_TRANSCRIBED if request.multichannel else None
            # a batched job that only transcribes starts on the first decoded seconds
            streaming = request.is_batched and not (request.multichannel or request.diarize or (request.legacy and request.legacy.translate))
            if upload is not None:
                audio = self.sources.decode(upload, timings, cancelled, channels, streaming)
            else:
                audio = self.sources.load(request, timings, cancelled, channels, streaming)
            report = _progress_reporter(progress, on_segment)
            if request.multichannel:
                transcript = self._by_channel(audio, request, job_id, cancelled, timings)
            elif request.diarize:
                transcript = self._diarized(audio, request, job_id, report, cancelled, timings, references)
            else:
                transcript = self.engine.transcribe(audio, request, job_id, report, cancelled, timings)
            if streaming:
                timings.decode = audio.seconds
                audio = audio.result()
                streaming = False
            audio_seconds = audio.shape[-1] / SAMPLE_RATE
            translation = None
            if request.legacy and request.legacy.translate:  # a second pass, not in the job's stages
                translation = self.engine.transcribe(audio, request.model_copy(update={"task": "translate"}), job_id, None, cancelled)
            output = self._output(request, transcript, translation)
            outcome = "ok"
        except WorkerError as exc:
            output = exc.to_response()
            outcome = exc.code
        finally:
            if streaming and audio is not None:
                audio.close()  # the job failed while its audio was still decoding
            if progress is not None:
                progress.close(PROGRESS_FLUSH_SECONDS)  # no update arrives after the result
            timings.total = time.perf_counter() - started
            log.info(
                "job=%s outcome=%s source=%s audio_s=%.2f download_s=%.3f decode_s=%.3f vad_s=%.3f queue_s=%.3f inference_s=%.3f total_s=%.3f",
                job_id, outcome, source, audio_seconds, timings.download, timings.decode,
                timings.vad, timings.queue, timings.inference, timings.total,
            )
        if outcome == "ok":
            output["metrics"] = job_metrics(request, transcript, timings, self.engine.model, self.settings.image_revision)
        return output

    def _by_channel(self, audio: np.ndarray, request: TranscriptionRequest, job_id: str, cancelled, timings: Timings) -> Transcript:
        """Each channel transcribed on its own, at once (batched jobs share device batches), each
        timed apart; the job's engine stages are those of the channel the merge takes as the main
        one (the one with the most speech). The decoded audio is held once: each channel is a row
        of it, already contiguous (decode_audio decodes planar), handed over as a view."""
        with ThreadPoolExecutor(max_workers=len(audio), thread_name_prefix="whisper-channel") as pool:
            futures = [pool.submit(self.engine.transcribe, channel, request, f"{job_id}/{number}", None, cancelled)
                       for number, channel in enumerate(audio, start=1)]
            transcripts = [future.result() for future in futures]
        merged = speakers.by_channel(transcripts, audio)
        timings.vad, timings.queue, timings.inference = merged.timings.vad, merged.timings.queue, merged.timings.inference
        return merged

    def _diarized(self, audio: np.ndarray, request: TranscriptionRequest, job_id: str, report, cancelled, timings: Timings,
                  references: List[Tuple[str, np.ndarray]]) -> Transcript:
        """Diarization runs beside the transcription; words are timed (whether or not the
        output shows them) so that a segment can be split where the speaker changes. A
        diarization that fails (a known speaker's clip with no speech) stops the transcription:
        its error is the job's answer, without waiting for the rest of the file."""
        low = request.min_speakers or 1
        count = SpeakerCount(request.num_speakers, low, request.max_speakers or max(low, DEFAULT_MAX_SPEAKERS))
        failed = threading.Event()
        diarization = self.diarization().start(audio, count, references, cancelled, request.diarization_model or "conversation")
        diarization.add_done_callback(lambda done: done.cancelled() or done.exception() is None or failed.set())
        try:
            transcript = self.engine.transcribe(audio, request.model_copy(update={"word_timestamps": True}), job_id, report,
                                                AnyEvent(cancelled, failed), timings)
        except BaseException as exc:
            diarization.cancel()  # drops it if still queued; a started one finishes or sees `cancelled`
            if isinstance(exc, Cancelled) and failed.is_set():
                diarization.result()  # raises the diarization's error, which stopped the transcription
            raise
        turns, names, seconds = diarization.result()  # may still be queued behind another job's: wait
        timings.diarize = seconds
        transcript = speakers.attribute(transcript, turns, names)
        if not request.word_timestamps:
            for segment in transcript.segments:
                segment.words = None
        return transcript

    def diarization(self) -> speakers.Speakers:
        """Diarization for the jobs that ask for it, built by the first such job."""
        with self._speakers_lock:
            if self._speakers is None:
                self._speakers = speakers.Speakers(self.engine.model.device, self.settings.diarization_models)
            return self._speakers

    def _load_references(self, request: TranscriptionRequest, cancelled) -> List[Tuple[str, np.ndarray]]:
        """Known speakers' clips as (name, samples), each fetched and decoded under the main
        audio's guards and WHISPER_MAX_REFERENCE_SECONDS, before the transcription starts;
        errors name the clip (`known_speakers[1].audio`)."""
        clips = []
        for index, known in enumerate(request.known_speakers or []):
            if cancelled is not None and cancelled.is_set():
                raise Cancelled("job cancelled while fetching the known speakers' clips")
            try:
                clips.append((known.name, self.sources.load(known, Timings(), cancelled, max_seconds=self.settings.max_reference_seconds)))
            except Cancelled:
                raise
            except WorkerError as exc:
                raise type(exc)(exc.message, field=f"known_speakers[{index}].audio") from None
        return clips

    @timed("format")
    def _output(self, request: TranscriptionRequest, transcript: Transcript, translation: Optional[Transcript]) -> dict:
        model = self.engine.model
        if request.legacy:
            return legacy_output(
                transcript, request.legacy.transcription, translation, request.legacy.translation,
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
_service: Optional[Service] = None
_service_lock = threading.Lock()


def set_service(service: Optional[Service]) -> None:
    global _service
    _service = service


def get_service() -> Service:
    global _service
    with _service_lock:
        if _service is None:
            _service = Service.from_settings(Settings.from_env())
        return _service


async def handler(job: dict) -> dict:
    return await get_service().run(job)


async def stream_handler(job: dict) -> AsyncIterator[dict]:
    async for item in get_service().stream(job):
        yield item


def concurrency_modifier(current: Any) -> int:
    return get_service().settings.concurrency
