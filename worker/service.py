"""The one job path every entry calls: a typed request in, an Outcome (transcript, translation,
stage timings) out. It knows nothing of RunPod or HTTP: the entries (worker/entries/) turn their
inputs into a TranscriptionRequest with `parse`, run `transcribe` on one of the service's job
threads with `submit`, and render the Outcome themselves (worker/formats/).

One job: fetch the audio (known speakers' clips first) -> decode -> transcribe, by channel or
with diarization beside it when asked -> the optional translation pass. Caller mistakes raise a
WorkerError (the entry answers with it); bugs raise as they are. Every job, refused or done,
leaves one log line on `worker.jobs`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple, TypeVar

import numpy as np

from worker.audio.decode import SAMPLE_RATE
from worker.audio.sources import AudioSources, describe
from worker.config import Settings
from worker.errors import Cancelled, WorkerError
from worker.request.schema import MAX_CHANNELS_TRANSCRIBED, TranscriptionRequest, parse_request
from worker.speakers import attribution
from worker.speakers.backends import Speakers, require_backend
from worker.speakers.conversation import DEFAULT_MAX_SPEAKERS, SpeakerCount
from worker.stopping import AnyEvent
from worker.transcript import Segment, Timings, Transcript

log = logging.getLogger("worker.jobs")

SegmentCallback = Callable[[Segment, float], None]  # (segment, share of the audio done)
T = TypeVar("T")


@dataclass
class Outcome:
    """What one job made: the transcript (with speakers when asked), the translation pass of
    the official worker's shape, and the seconds each stage took."""

    request: TranscriptionRequest
    transcript: Transcript
    translation: Optional[Transcript]
    timings: Timings


class Service:
    """Everything a job needs, built once: settings, the engine (model loaded), audio sources,
    the job threads, and diarization (built by the first job that asks for it)."""

    def __init__(self, settings: Settings, engine):
        self.settings = settings
        self.engine = engine
        self.sources = AudioSources(settings)
        # One thread per job in flight (asyncio's default pool has only cores + 4 threads), two per live session (a turn, a partial).
        self._threads = ThreadPoolExecutor(max_workers=settings.concurrency + 2 * settings.realtime_sessions + 1,
                                           thread_name_prefix="whisper-job")
        self._speakers: Optional[Speakers] = None
        self._speakers_lock = threading.Lock()
        if settings.diarization_preload:  # the model is loaded: the diarizer loads behind it, readiness not waiting for it
            self.diarization().preload()

    @classmethod
    def from_settings(cls, settings: Settings) -> "Service":
        from worker.decoding.engine import Engine
        from worker.decoding.models import load_model

        return cls(settings, Engine(load_model(settings), settings))

    def submit(self, work: Callable[[], T]) -> "asyncio.Future[T]":
        """Run blocking job work on a job thread of its own, as a future of the running event loop.
        Cancelling the future does not stop the thread: the caller sets the job's `cancelled`."""
        return asyncio.get_running_loop().run_in_executor(self._threads, work)

    def close(self) -> None:
        self._threads.shutdown(wait=False)

    def parse(self, job_input: Any, job_id: str = "local", uploaded: bool = False) -> TranscriptionRequest:
        """The typed request, or RequestError naming the field (logged as the job's outcome)."""
        try:
            return parse_request(job_input, self.settings, uploaded=uploaded)
        except WorkerError as exc:
            _log_job(job_id, exc.code, "-", 0.0, Timings())
            raise

    def transcribe(self, request: TranscriptionRequest, job_id: str = "local", upload: Optional[str] = None,
                   on_segment: Optional[SegmentCallback] = None, cancelled: Optional[threading.Event] = None) -> Outcome:
        """One job, start to end, on the calling thread. `upload`: the path of an uploaded file
        holding the audio (the HTTP server); otherwise the request names it. One Timings goes
        through the job: the sources fill download and decode, the engine vad, queue and
        inference, diarization its own; the total is taken once, at the end."""
        started = time.perf_counter()
        timings = Timings()
        audio_seconds = 0.0
        source = "upload" if upload is not None else describe(request)
        audio = None
        streaming = False
        outcome = "crashed"  # stays so only if a bug escapes
        try:
            self.engine.check(request)
            if request.diarize:
                require_backend(request.diarization_model or "conversation", self.settings.diarization_models)
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
            if request.multichannel:
                transcript = self._by_channel(audio, request, job_id, cancelled, timings)
            elif request.diarize:
                transcript = self._diarized(audio, request, job_id, on_segment, cancelled, timings, references)
            else:
                transcript = self.engine.transcribe(audio, request, job_id, on_segment, cancelled, timings)
            if streaming:
                timings.decode = audio.seconds
                audio = audio.result()
                streaming = False
            audio_seconds = audio.shape[-1] / SAMPLE_RATE
            translation = None
            if request.legacy and request.legacy.translate:  # a second pass, not in the job's stages
                translation = self.engine.transcribe(audio, request.model_copy(update={"task": "translate"}), job_id, None, cancelled)
            outcome = "ok"
            return Outcome(request, transcript, translation, timings)
        except WorkerError as exc:
            outcome = exc.code
            raise
        finally:
            if streaming and audio is not None:
                audio.close()  # the job failed while its audio was still decoding
            timings.total = time.perf_counter() - started
            _log_job(job_id, outcome, source, audio_seconds, timings)

    def transcribe_samples(self, samples: np.ndarray, request: TranscriptionRequest, job_id: str = "live",
                           cancelled: Optional[threading.Event] = None, urgent: bool = True) -> Transcript:
        """A live turn: 16 kHz float32 samples in memory, through the file jobs' engine and scheduler on the calling thread (`urgent`:
        ahead of their queued windows); `request` from `parse(..., uploaded=True)`, the file endpoint's defaults."""
        return _timed_turn(job_id, samples.shape[-1] / SAMPLE_RATE,
                           lambda timings: self.engine.transcribe(samples, request, job_id, None, cancelled, timings, urgent=urgent))

    def _by_channel(self, audio: np.ndarray, request: TranscriptionRequest, job_id: str, cancelled, timings: Timings) -> Transcript:
        """Each channel transcribed on its own, at once (batched jobs share device batches), each
        timed apart; the job's engine stages are those of the channel the merge takes as the main
        one (the one with the most speech). The decoded audio is held once: each channel is a row
        of it, already contiguous (decode_audio decodes planar), handed over as a view."""
        with ThreadPoolExecutor(max_workers=len(audio), thread_name_prefix="whisper-channel") as pool:
            futures = [pool.submit(self.engine.transcribe, channel, request, f"{job_id}/{number}", None, cancelled)
                       for number, channel in enumerate(audio, start=1)]
            transcripts = [future.result() for future in futures]
        merged = attribution.by_channel(transcripts, audio, self.engine.speech_spans)
        timings.vad, timings.queue, timings.inference = merged.timings.vad, merged.timings.queue, merged.timings.inference
        return merged

    def _diarized(self, audio: np.ndarray, request: TranscriptionRequest, job_id: str, on_segment, cancelled, timings: Timings,
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
            transcript = self.engine.transcribe(audio, request.model_copy(update={"word_timestamps": True}), job_id, on_segment,
                                                AnyEvent(cancelled, failed), timings)
        except BaseException as exc:
            diarization.cancel()  # drops it if still queued; a started one finishes or sees `cancelled`
            if isinstance(exc, Cancelled) and failed.is_set():
                diarization.result()  # raises the diarization's error, which stopped the transcription
            raise
        turns, names, seconds = diarization.result()  # may still be queued behind another job's: wait
        timings.diarize = seconds
        transcript = attribution.attribute(transcript, turns, names)
        if not request.word_timestamps:
            for segment in transcript.segments:
                segment.words = None
        return transcript

    def diarization(self) -> Speakers:
        """Diarization for the jobs that ask for it, built by the first such job."""
        with self._speakers_lock:
            if self._speakers is None:
                self._speakers = Speakers(self.engine.model.device, self.settings.diarization_models)
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


def _timed_turn(job_id: str, seconds: float, work: Callable[[Timings], Transcript]) -> Transcript:
    """work(timings), with the total time and one log line as for a job (source=live)."""
    started, timings, outcome = time.perf_counter(), Timings(), "crashed"  # stays so only if a bug escapes
    try:
        transcript = work(timings)
        outcome = "ok"
        return transcript
    except WorkerError as exc:
        outcome = exc.code
        raise
    finally:
        timings.total = time.perf_counter() - started
        _log_job(job_id, outcome, "live", seconds, timings)


def _log_job(job_id: str, outcome: str, source: str, audio_seconds: float, timings: Timings) -> None:
    log.info(
        "job=%s outcome=%s source=%s audio_s=%.2f download_s=%.3f decode_s=%.3f vad_s=%.3f queue_s=%.3f inference_s=%.3f total_s=%.3f",
        job_id, outcome, source, audio_seconds, timings.download, timings.decode,
        timings.vad, timings.queue, timings.inference, timings.total,
    )
