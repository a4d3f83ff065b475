"""Engine.transcribe(audio, request) -> Transcript, on the model loaded once at start-up.

Two modes, chosen by the request's batch_size:
- 1: faster-whisper's sequential long-form decoding (WhisperModel.transcribe), with temperature
  fallback and conditioning on previous text, with memory bounded (worker.decoding.whisper.parts).
  Concurrent sequential jobs share the model; CTranslate2 queues their calls.
- >1: the worker's own batched long-form loop (worker.decoding.batched), whose device calls go through
  the shared BatchScheduler, which batches windows across all jobs in flight.

In both, a segment never starts before its speech (start_at_speech): Whisper often puts a
segment's opening timestamp early, over the non-speech before it, as far back as its window's
start (without VAD, a sentence after 20 s of faint noise was stamped 0.0 s). With word timing, a segment
starts no earlier than its first word; a start that lies over what Silero calls non-speech moves
forward to where Silero hears speech (less START_MARGIN_S), never past the first word's end (with
words) or the segment's end.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional


from worker.decoding.whisper import parts
from worker.audio.decode import SAMPLE_RATE
from worker.config import Settings
from worker.errors import Cancelled, DeviceFailure, RequestError, ResourceExhausted, WorkerError, is_device_failure
from worker.decoding.batched import BatchedJob
from worker.decoding.models import LoadedModel
from worker.request.schema import TranscriptionRequest
from worker.decoding.scheduler import BatchScheduler, is_out_of_memory
from worker.transcript import Segment, Timings, Transcript, Word

log = logging.getLogger(__name__)

SegmentCallback = Callable[[Segment, float], None]  # (segment, share of audio done 0..1)
START_MARGIN_S = 0.2  # a start moved to speech lands this long before Silero's first speech window
MOVE_WHOLE_S = 0.5  # a segment with no speech in its span moves whole to speech further than this (and before the next segment)


class Engine:
    def __init__(self, model: LoadedModel, settings: Settings):
        parts.install_streaming_vad()
        self.model = model
        self.settings = settings
        self.scheduler = BatchScheduler(self._run_windows, settings.max_batch_size, settings.max_batch_wait_ms / 1000.0)
        # host work of batched jobs (window features) on every core the process may use
        self.host = ThreadPoolExecutor(max_workers=settings.host_workers, thread_name_prefix="whisper-host")
        self.in_flight = 4 * settings.max_batch_size  # windows one job keeps sent ahead of its post-processing

    def close(self) -> None:
        self.scheduler.close()
        self.host.shutdown(wait=False)

    def check(self, request: TranscriptionRequest) -> None:
        """Refuse what this model cannot do instead of letting faster-whisper quietly change it."""
        whisper = self.model.whisper
        parts.check_token_ids(whisper, request.suppress_tokens, "suppress_tokens")
        tokenizer = parts.tokenizer_for(whisper, request.task, "en" if self.model.is_multilingual else None)
        parts.check_prompt_length(whisper, tokenizer, request.initial_prompt, request.hotwords)
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
    ) -> Transcript:
        """`audio`: samples, or a DecodingAudio still being decoded (a batched job starts on
        its first seconds; a sequential one waits for all of it). `timings`: the job's, whose
        vad, queue and inference stages this fills (a new one if none); the transcript carries it."""
        self.check(request)
        cancelled = cancelled or threading.Event()
        timings = timings if timings is not None else Timings()
        options = request.decoding_options()
        job = None
        try:
            if request.is_batched:
                device = _ScheduledDevice(self.scheduler, job_id, cancelled)
                job = BatchedJob(self.model.whisper, audio, options, device, cancelled, self.host, self.in_flight)
                segments = job.segments()
                view = job.audio.view  # a segment's audio is decoded before the segment is made
            else:
                samples = audio.result() if hasattr(audio, "result") else audio
                parts.reset_vad_clock()  # the library's VAD runs on this thread, timed there
                segments, info = parts.transcribe_sequential(self.model.whisper, samples, options)
                segments = (_convert(segment) for segment in segments)
                view = lambda start, end: samples[start:end]  # noqa: E731
            threshold = (options.get("vad_parameters") or {}).get("threshold") if options.get("vad_filter", True) else None
            onsets = parts.SpeechOnsets(view, threshold)
            segments = (start_at_speech(segment, onsets, following) for segment, following in _with_next_start(segments, lambda: _duration(audio)))
            prepared = time.perf_counter()
            collected = _collect(segments, lambda: _duration(audio), on_segment, cancelled)
            duration = _duration(audio)
        except WorkerError:  # Cancelled among them
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise ResourceExhausted("out of memory during decoding") from exc
            if is_device_failure(exc):
                raise DeviceFailure(f"the GPU reported a fault: {str(exc)[:200]}") from exc
            raise
        finished = time.perf_counter()
        if job is not None:
            language, probability, speech = job.plan.language, job.plan.language_probability, job.speech_seconds
            timings.vad = job.vad_seconds + onsets.seconds
            timings.queue, timings.inference = device.queue_seconds, device.inference_seconds
        else:
            language, probability, speech = info.language, info.language_probability, info.duration_after_vad
            timings.vad = parts.vad_seconds() + onsets.seconds
            timings.inference = finished - prepared - onsets.seconds
        return Transcript(
            language=language,
            language_probability=float(probability),
            duration=float(duration),
            duration_after_vad=float(speech),
            segments=collected,
            timings=timings,
        )

    # -- the scheduler's backend: one encode + generate (+ align) for windows of many jobs ------
    def _run_windows(self, windows: List[parts.WindowInput], context) -> List[parts.WindowOutput]:
        tokenizer, options = context
        return parts.run_windows(self.model.whisper, windows, tokenizer, options)


class _ScheduledDevice:
    """A batched job's device: the shared scheduler, with the job's queue time (its first
    window's wait) and inference time (the batches that held its windows) kept."""

    def __init__(self, scheduler: BatchScheduler, job_id: str, cancelled: threading.Event):
        self.scheduler = scheduler
        self.job_id = job_id
        self.cancelled = cancelled
        self.queue_seconds = 0.0
        self._batches: dict = {}
        self._first = True

    def submit(self, key, windows, context, urgent: bool = False):
        return self.scheduler.submit(key, windows, context, self.job_id, self.cancelled, urgent)

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


def _duration(audio) -> float:
    """Seconds of audio decoded so far (all of it, once decoding has ended)."""
    if hasattr(audio, "wait_for"):
        return audio.wait_for(0) / SAMPLE_RATE
    return audio.shape[-1] / SAMPLE_RATE


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


def start_at_speech(segment: Segment, onsets: "parts.SpeechOnsets", next_start: Optional[float] = None) -> Segment:
    """The segment, its start (and its first word's) moved forward to its speech: see the module
    docstring. Only ever later, never past the segment's end (nor its first word's end), except
    for a segment stamped wholly over non-speech: with `next_start` (where the next segment
    starts, or the audio ends) it moves whole, words included, to speech that starts before it,
    when that is over MOVE_WHOLE_S away (Whisper stamped a sentence at its window's start, 30 s,
    whose words are spoken at 36.8 s)."""
    words = segment.words or []
    begin = max(segment.start, words[0].start) if words else segment.start
    limit = min(words[0].end, segment.end) if words else segment.end
    onset = onsets.find(int(round(begin * SAMPLE_RATE)), int(round(limit * SAMPLE_RATE)))
    if onset is not None:
        begin = max(begin, min(onset / SAMPLE_RATE - START_MARGIN_S, limit))
    elif next_start is not None and next_start - limit > MOVE_WHOLE_S:
        later = onsets.find(int(round(limit * SAMPLE_RATE)), int(round(next_start * SAMPLE_RATE)))
        to = None if later is None else later / SAMPLE_RATE - START_MARGIN_S
        # ... only where its words fit before the next segment (else that speech is the next one's)
        if to is not None and to - begin > MOVE_WHOLE_S and next_start - to >= min(segment.end - segment.start, 1.0):
            return _moved(segment, to - segment.start, next_start)
    segment.start = round(begin, 3)
    for word in words:  # words before the new start begin with it (only the first can)
        if word.start < segment.start:
            word.start = min(segment.start, word.end)
    return segment


def _moved(segment: Segment, shift: float, next_start: float) -> Segment:
    """The segment and its words `shift` seconds later, ending no later than `next_start`."""
    def at(time: float) -> float:
        return round(min(time + shift, next_start), 3)

    for word in segment.words or []:
        word.start, word.end = at(word.start), at(word.end)
    segment.start, segment.end = at(segment.start), at(segment.end)
    return segment


def _with_next_start(segments, end_of_audio: Callable[[], float]):
    """(segment, where the next one starts) pairs: each segment waits for the next (or for the
    end of the audio), so that a segment stamped over non-speech knows how far its speech may be."""
    previous = None
    for segment in segments:
        if previous is not None:
            yield previous, segment.start
        previous = segment
    if previous is not None:
        yield previous, end_of_audio()


def _convert(fw_segment) -> Segment:
    words = None
    if fw_segment.words is not None:
        words = [Word(start=float(w.start), end=float(w.end), word=w.word, probability=float(w.probability)) for w in fw_segment.words]
    return Segment(
        id=0,
        seek=int(fw_segment.seek),
        start=float(fw_segment.start),
        end=float(fw_segment.end),
        text=fw_segment.text,
        tokens=[int(t) for t in fw_segment.tokens],
        temperature=float(fw_segment.temperature or 0.0),
        avg_logprob=float(fw_segment.avg_logprob),
        compression_ratio=float(fw_segment.compression_ratio),
        no_speech_prob=float(fw_segment.no_speech_prob),
        words=words,
    )
