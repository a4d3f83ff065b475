"""Engine.transcribe(audio, request) -> Transcript, on the model loaded once at start-up.

Two modes, chosen by the request's batch_size:
- 1: faster-whisper's sequential long-form decoding (WhisperModel.transcribe), with temperature
  fallback and conditioning on previous text. Concurrent sequential jobs share the model; CTranslate2
  queues their calls.
- >1: faster-whisper's batched pipeline, except that each job's model calls go through the shared
  BatchScheduler, which batches windows across all jobs in flight. One pipeline object per job,
  since the pipeline keeps per-job state (last speech timestamp).

Everything faster-whisper does before and after the model calls is its own code, unchanged, so the
text equals what faster-whisper returns directly for the same options (tests check this).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, List, Optional

import ctranslate2
import numpy as np
from faster_whisper import BatchedInferencePipeline
from faster_whisper.transcribe import get_ctranslate2_storage

from .audio import SAMPLE_RATE
from .config import Settings
from .errors import RequestError, ResourceExhausted, WorkerError
from .models import LoadedModel
from .request import TranscriptionRequest
from .scheduler import BatchScheduler, Cancelled, is_out_of_memory
from .transcript import Segment, Timings, Transcript, Word

log = logging.getLogger(__name__)

SegmentCallback = Callable[[Segment, float], None]  # (segment, share of audio done 0..1)

_vad_clock = threading.local()


def _install_vad_clock() -> None:
    """Time faster-whisper's VAD per thread: it runs inside transcribe(), between other steps."""
    import faster_whisper.transcribe as fw_transcribe

    original = fw_transcribe.get_speech_timestamps
    if getattr(original, "_timed", False):
        return

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _vad_clock.seconds = getattr(_vad_clock, "seconds", 0.0) + time.perf_counter() - started

    timed._timed = True
    fw_transcribe.get_speech_timestamps = timed


class Engine:
    def __init__(self, model: LoadedModel, settings: Settings):
        _install_vad_clock()
        self.model = model
        self.settings = settings
        whisper = model.whisper
        self._device_pipeline = BatchedInferencePipeline(whisper)
        self._host_pipeline = BatchedInferencePipeline(_EncoderOnHost(whisper))
        self.scheduler = BatchScheduler(self._run_windows, settings.max_batch_size, settings.max_batch_wait_ms / 1000.0)

    def close(self) -> None:
        self.scheduler.close()

    def check(self, request: TranscriptionRequest) -> None:
        """Refuse what this model cannot do instead of letting faster-whisper quietly change it."""
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
        audio: np.ndarray,
        request: TranscriptionRequest,
        job_id: str = "local",
        on_segment: Optional[SegmentCallback] = None,
        cancelled: Optional[threading.Event] = None,
    ) -> Transcript:
        self.check(request)
        cancelled = cancelled or threading.Event()
        timings = Timings()
        options = request.decoding_options()
        _vad_clock.seconds = 0.0
        started = time.perf_counter()
        try:
            if request.is_batched:
                if not request.vad_filter:
                    options["clip_timestamps"] = fixed_windows(audio.size / SAMPLE_RATE)
                pipeline = _ScheduledPipeline(self, job_id, cancelled, timings)
                segments, info = pipeline.transcribe(audio, **options)
            else:
                segments, info = self.model.whisper.transcribe(audio, **options)
            prepared = time.perf_counter()
            collected = _collect(segments, info.duration, on_segment, cancelled)
        except (Cancelled, WorkerError):
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise ResourceExhausted("out of memory during decoding") from exc
            raise
        finished = time.perf_counter()
        timings.vad = _vad_clock.seconds
        if not request.is_batched:
            timings.inference = finished - prepared
        timings.total = finished - started
        return Transcript(
            language=info.language,
            language_probability=float(info.language_probability),
            duration=float(info.duration),
            duration_after_vad=float(info.duration_after_vad),
            segments=collected,
            timings=timings,
        )

    # -- the scheduler's backend: one encode + generate for windows of many jobs -----------
    def _run_windows(self, features: np.ndarray, context) -> List[tuple]:
        tokenizer, options = context
        pipeline = self._host_pipeline if options.word_timestamps else self._device_pipeline
        encoder_output, outputs = BatchedInferencePipeline.generate_segment_batched(pipeline, features, tokenizer, options)
        if not options.word_timestamps:
            return [(output, None) for output in outputs]
        rows = np.array(encoder_output)  # host memory: split it so each job aligns its own rows
        return [(output, rows[i]) for i, output in enumerate(outputs)]


def fixed_windows(duration: float, length: float = 30.0) -> List[dict]:
    """Consecutive 30 s clips: what batched decoding needs when VAD is off (faster-whisper refuses
    audio over 30 s without VAD or clip timestamps)."""
    starts = np.arange(0.0, duration, length)
    return [{"start": float(start), "end": float(min(start + length, duration))} for start in starts]


def _collect(segments, duration: float, on_segment: Optional[SegmentCallback], cancelled: threading.Event) -> List[Segment]:
    collected = []
    for fw_segment in segments:  # a lazy generator: the decoding happens here
        if cancelled.is_set():
            raise Cancelled("job cancelled")
        segment = _convert(fw_segment, len(collected))
        collected.append(segment)
        if on_segment is not None:
            on_segment(segment, min(1.0, segment.end / duration) if duration else 1.0)
    return collected


def _convert(fw_segment, index: int) -> Segment:
    words = None
    if fw_segment.words is not None:
        words = [Word(start=float(w.start), end=float(w.end), word=w.word, probability=float(w.probability)) for w in fw_segment.words]
    return Segment(
        id=index,
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


class _EncoderOnHost:
    """The WhisperModel, except that encode() leaves its output in host memory (to split rows)."""

    def __init__(self, whisper):
        self._whisper = whisper

    def __getattr__(self, name):
        return getattr(self._whisper, name)

    def encode(self, features: np.ndarray):
        return self._whisper.model.encode(get_ctranslate2_storage(features), to_cpu=True)


def _generation_key(tokenizer, options) -> tuple:
    """Windows with equal keys can share one generate() call and get the same rows back."""
    return (
        tuple(tokenizer.sot_sequence), options.initial_prompt, options.without_timestamps,
        options.hotwords, options.multilingual, options.beam_size, options.patience,
        options.length_penalty, options.suppress_blank, tuple(options.suppress_tokens or ()),
        options.temperatures[0], options.repetition_penalty, options.no_repeat_ngram_size,
        options.max_new_tokens, options.word_timestamps,
    )


class _ScheduledPipeline(BatchedInferencePipeline):
    """faster-whisper's batched pipeline for one job, whose model calls go to the scheduler."""

    def __init__(self, engine: Engine, job_id: str, cancelled: threading.Event, timings: Timings):
        super().__init__(engine.model.whisper)
        self._engine = engine
        self._job_id = job_id
        self._cancelled = cancelled
        self._timings = timings

    def generate_segment_batched(self, features, tokenizer, options):
        request = self._engine.scheduler.run(
            _generation_key(tokenizer, options), features, (tokenizer, options), self._job_id, self._cancelled
        )
        self._timings.queue += (request.started_at or request.enqueued_at) - request.enqueued_at
        self._timings.inference += request.inference_seconds
        outputs = [output for output, _ in request.results]
        encoder_output = None
        if options.word_timestamps:
            # from_array copies nothing and keeps the array alive for as long as the view lives.
            encoder_output = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack([row for _, row in request.results])))
        return encoder_output, outputs
