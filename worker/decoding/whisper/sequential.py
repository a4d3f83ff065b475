"""Sequential decoding (batch_size 1) is faster-whisper's own long-form loop, with its temperature
fallback and conditioning on previous text; run here with memory bounded (VAD streams, the speech
is gathered in one copy, features are computed in blocks) and its segments in the worker's types."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Iterator, Tuple

import numpy as np
import faster_whisper.transcribe as fw_transcribe
from faster_whisper import WhisperModel
from faster_whisper.transcribe import TranscriptionInfo

from worker.audio.decode import SAMPLE_RATE
from worker.decoding.whisper.features import BlockFeatureExtractor
from worker.decoding.whisper.vad import speech_spans
from worker.transcript import Segment, Word

if TYPE_CHECKING:
    from worker.request.schema import DecodingOptions

# what the worker does itself before handing the speech to transcribe(): never passed on
OWN_OPTIONS = ("vad_filter", "vad_parameters")


def transcribe_sequential(whisper: WhisperModel, audio: np.ndarray,
                          options: DecodingOptions) -> Tuple[Iterator[Segment], TranscriptionInfo]:
    """faster-whisper's own sequential long-form decoding, with memory bounded: VAD streams, the
    speech is gathered in one copy, features are computed in blocks. Returns (segments, info):
    the segments lazily (decoding happens as they are read), info as faster-whisper gives it, with
    the durations of the whole file and of its speech."""
    arguments = {name: value for name, value in options.arguments().items() if name not in OWN_OPTIONS}
    duration = audio.shape[0] / SAMPLE_RATE
    spans = None
    speech = audio
    if options.vad_filter:
        spans = speech_spans(audio, options.vad_parameters)
        speech = np.concatenate([audio[a:b] for a, b in spans]) if spans else np.zeros(0, dtype=np.float32)
    model = _SequentialModel(whisper)
    segments, info = WhisperModel.transcribe(model, speech, vad_filter=False, **arguments)
    if spans:
        chunks = [{"start": a, "end": b} for a, b in spans]
        segments = fw_transcribe.restore_speech_timestamps(segments, chunks, SAMPLE_RATE)
    info = dataclasses.replace(info, duration=duration, duration_after_vad=speech.shape[0] / SAMPLE_RATE)
    return (as_segment(segment) for segment in segments), info


class _SequentialModel:
    """The WhisperModel as faster-whisper's transcribe() sees it, with the block extractor."""

    def __init__(self, whisper: WhisperModel):
        self._whisper = whisper
        self.feature_extractor = BlockFeatureExtractor(whisper.feature_extractor)

    def __getattr__(self, name):
        return getattr(self._whisper, name)


def as_segment(fw_segment) -> Segment:
    """A faster-whisper Segment in the worker's type."""
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
