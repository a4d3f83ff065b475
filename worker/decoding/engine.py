"""Engine.transcribe(audio, request) -> Transcript, on the model loaded once at start-up: the one
entry to the decoding stage, so that its callers never pick a decoding mode or a model call.

Two modes, chosen by the request's batch_size:
- 1: faster-whisper's sequential long-form decoding (WhisperModel.transcribe), with temperature
  fallback and conditioning on previous text, with memory bounded (worker.decoding.whisper.sequential).
  Concurrent sequential jobs share the model; CTranslate2 queues their calls.
- >1: the worker's own batched long-form loop (worker.decoding.batched), whose device calls go through
  the shared BatchScheduler, which batches windows across all jobs in flight.

In both, a segment never starts before its speech (worker.decoding.segments.start_at_speech),
and, with word timing, word edges at pauses are moved onto the audio's (worker.decoding.edges).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Tuple

import numpy as np

from worker.audio.decode import SAMPLE_RATE
from worker.config import Settings
from worker.decoding.batched import BatchedJob, audio_source
from worker.decoding.edges import EdgeRefiner
from worker.decoding.models import LoadedModel
from worker.decoding.scheduler import Backend, BatchScheduler, is_out_of_memory
from worker.decoding.segments import start_at_speech, with_next_start
from worker.decoding.whisper import device, glimpse, vad
from worker.decoding.whisper.features import WindowInput
from worker.decoding.whisper.options import batching_key, check_prompt_length, check_token_ids, tokenizer_for
from worker.decoding.whisper.sequential import transcribe_sequential
from worker.errors import Cancelled, DeviceFailure, RequestError, ResourceExhausted, WorkerError, is_device_failure
from worker.request.schema import TranscriptionRequest
from worker.transcript import Segment, Timings, Transcript

SegmentCallback = Callable[[Segment, float], None]  # (segment, share of audio done 0..1)


def model_backend(whisper) -> Backend:
    """The scheduler's default backend: one encode + generate (+ align) on the model for windows of
    many jobs that share tokenizer and options (the scheduler's context)."""

    def run(windows: List[WindowInput], context) -> List[device.WindowOutput]:
        tokenizer, options = context
        return device.run_windows(whisper, windows, tokenizer, options)

    return run


class Engine:
    """`backend(windows, context) -> outputs`: the device call of batched jobs, in place of the
    model's own (model_backend), for benchmarks and tests that time, record or replace it."""

    def __init__(self, model: LoadedModel, settings: Settings, backend: Optional[Backend] = None):
        vad.install_streaming_vad()
        self.model = model
        self.settings = settings
        backend = backend if backend is not None else model_backend(model.whisper)
        self.scheduler = BatchScheduler(backend, settings.max_batch_size, settings.max_batch_wait_ms / 1000.0)
        # host work of batched jobs (window features) on every core the process may use
        self.host = ThreadPoolExecutor(max_workers=settings.host_workers, thread_name_prefix="whisper-host")
        self.in_flight = 4 * settings.max_batch_size  # windows one job keeps sent ahead of its post-processing

    def close(self) -> None:
        self.scheduler.close()
        self.host.shutdown(wait=False)

    def speech_spans(self, audio: np.ndarray, vad_parameters: Optional[dict] = None) -> List[Tuple[int, int]]:
        """Silero VAD's speech spans of the samples, as (start, end) sample indices (faster-whisper's
        VAD parameters; None: its defaults)."""
        return vad.speech_spans(audio, vad_parameters)

    def check(self, request: TranscriptionRequest) -> None:
        """Refuse what this model cannot do instead of letting faster-whisper quietly change it."""
        whisper = self.model.whisper
        check_token_ids(whisper, request.suppress_tokens, "suppress_tokens")
        tokenizer = tokenizer_for(whisper, request.task, "en" if self.model.is_multilingual else None)
        check_prompt_length(whisper, tokenizer, request.initial_prompt, request.hotwords)
        if self.model.is_multilingual:
            return
        if request.language not in (None, "en"):
            raise RequestError(f"model {self.model.name!r} is English-only; it cannot transcribe {request.language!r}", field="language")
        if request.task == "translate" or (request.legacy and request.legacy.translate):
            raise RequestError(f"model {self.model.name!r} is English-only; it cannot translate", field="task")
        if request.multilingual:
            raise RequestError(f"model {self.model.name!r} is English-only", field="multilingual")

    def transcribe(
        self,
        audio,
        request: TranscriptionRequest,
        job_id: str = "local",
        on_segment: Optional[SegmentCallback] = None,
        cancelled: Optional[threading.Event] = None,
        timings: Optional[Timings] = None,
        urgent: bool = False,
    ) -> Transcript:
        """`audio`: samples, or a DecodingAudio still being decoded (a batched job starts on
        its first seconds; a sequential one waits for all of it). `timings`: the job's, whose
        vad, queue and inference stages this fills (a new one if none); the transcript carries it.
        `urgent`: every window of a batched job goes to the front of the scheduler's queue (a
        live turn someone is waiting for: short, high-priority work beside file jobs)."""
        self.check(request)
        cancelled = cancelled or threading.Event()
        timings = timings if timings is not None else Timings()
        options = request.decoding_options()
        source = audio_source(audio)
        duration = lambda: source.wait_for(0) / SAMPLE_RATE  # noqa: E731 - decoded so far (all of it, once decoding ended)
        job = None
        try:
            if options.is_batched:
                scheduled = _ScheduledDevice(self.scheduler, job_id, cancelled, urgent)
                job = BatchedJob(self.model.whisper, source, options, scheduled, cancelled, self.host, self.in_flight)
                segments = job.segments()
                view = source.view  # a segment's audio is decoded before the segment is made
            else:
                samples = source.result()
                vad.reset_vad_clock()  # the library's VAD runs on this thread, timed there
                segments, info = transcribe_sequential(self.model.whisper, samples, options)
                view = lambda start, end: samples[start:end]  # noqa: E731
            threshold = (options.vad_parameters or {}).get("threshold") if options.vad_filter else None
            onsets = vad.SpeechOnsets(view, threshold)
            refine = EdgeRefiner(_reader(source)) if options.word_timestamps else lambda segment, _following: segment
            segments = (refine(start_at_speech(segment, onsets, following), following)
                        for segment, following in with_next_start(segments, duration))
            prepared = time.perf_counter()
            collected = _collect(segments, duration, on_segment, cancelled)
            seconds = duration()
        except WorkerError:  # Cancelled among them
            raise
        except Exception as exc:
            _raise_device_error(exc)
            raise
        finished = time.perf_counter()
        if job is not None:
            language, probability, speech = job.plan.language, job.plan.language_probability, job.speech_seconds
            timings.vad = job.vad_seconds + onsets.seconds
            timings.queue, timings.inference = scheduled.queue_seconds, scheduled.inference_seconds
        else:
            language, probability, speech = info.language, info.language_probability, info.duration_after_vad
            timings.vad = vad.vad_seconds() + onsets.seconds
            timings.inference = finished - prepared - onsets.seconds
        return Transcript(
            language=language,
            language_probability=float(probability),
            duration=float(seconds),
            duration_after_vad=float(speech),
            segments=collected,
            timings=timings,
        )

    def glimpse(self, samples: np.ndarray, request: TranscriptionRequest, job_id: str = "glimpse",
                cancelled: Optional[threading.Event] = None) -> str:
        """Quick, rough text of at most 30 s of samples (the last 30 s of more), for a live turn's
        partial text: one greedy pass on a shortened encoder input (worker.decoding.whisper.glimpse), no
        VAD, no timestamps; through the scheduler as urgent work, in batches of glimpses of like
        length."""
        self.check(request)
        whisper = self.model.whisper
        window = glimpse.glimpse_window(whisper, samples)
        tokenizer, options = glimpse.glimpse_options(whisper, request.decoding_options(), window.features.shape[-1])
        key = ("glimpse", window.features.shape[-1], batching_key(tokenizer, options))
        try:
            handle = self.scheduler.submit(key, [window], (tokenizer, options), job_id, cancelled or threading.Event(), urgent=True)
            output = self.scheduler.wait(handle).results[0]
        except WorkerError:
            raise
        except Exception as exc:
            _raise_device_error(exc)
            raise
        return glimpse.glimpse_text(tokenizer, output.tokens)


def _raise_device_error(exc: Exception) -> None:
    """Raise the worker's error for a device's out-of-memory or fault; return for anything else."""
    if is_out_of_memory(exc):
        raise ResourceExhausted("out of memory during decoding") from exc
    if is_device_failure(exc):
        raise DeviceFailure(f"the GPU reported a fault: {str(exc)[:200]}") from exc


class _ScheduledDevice:
    """A batched job's device: the shared scheduler, with the job's queue time (its first
    window's wait) and inference time (the batches that held its windows) kept. An urgent job's
    windows all go to the front of the queue."""

    def __init__(self, scheduler: BatchScheduler, job_id: str, cancelled: threading.Event, urgent: bool = False):
        self.scheduler = scheduler
        self.job_id = job_id
        self.cancelled = cancelled
        self.urgent = urgent
        self.queue_seconds = 0.0
        self._batches: dict = {}
        self._first = True

    def submit(self, key, windows, context, urgent: bool = False):
        return self.scheduler.submit(key, windows, context, self.job_id, self.cancelled, urgent or self.urgent)

    def wait(self, request):
        request = self.scheduler.wait(request)
        if self._first and request.started_at is not None:
            self.queue_seconds, self._first = request.started_at - request.enqueued_at, False
        self._batches.update(request.batches)
        return request.results

    def cancel(self, request) -> None:
        self.scheduler.drop(request)

    def done(self, request) -> bool:
        return request.future.done()

    def when_done(self, request, callback) -> None:
        """Call `callback()` once the request has ended (at once if it has)."""
        request.future.add_done_callback(lambda _future: callback())

    @property
    def inference_seconds(self) -> float:
        return sum(self._batches.values())


def _reader(source):
    """read(start, end) -> samples [start, end) of the audio, waiting for them to be decoded
    (fewer at the end of the audio)."""

    def read(start: int, end: int) -> np.ndarray:
        available = source.wait_for(end)
        return source.view(max(0, start), min(end, available))

    return read


def _collect(segments, duration: Callable[[], float], on_segment: Optional[SegmentCallback], cancelled: threading.Event) -> List[Segment]:
    collected = []
    for segment in segments:  # a lazy generator: the decoding happens here
        if cancelled.is_set():
            raise Cancelled("job cancelled")
        segment.id = len(collected)
        collected.append(segment)
        if on_segment is not None:
            seconds = duration()
            on_segment(segment, min(1.0, segment.end / seconds) if seconds else 1.0)
    return collected
