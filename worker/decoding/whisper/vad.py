"""Silero VAD over audio of any length in bounded memory: faster-whisper's model and span rules,
run block by block (the library copies the whole file first), on audio still being decoded, and
timed per thread; also where speech starts within a stretch, for segment starts.

onnxruntime (imported by faster-whisper's VAD when its model is first made) has its telemetry
switched off before it loads (ORT_DISABLE_TELEMETRY; an operator's own value is kept). Release
1.32's Linux wheel otherwise writes `$TMPDIR/.ses` and `~/.cache/Microsoft/DeveloperTools/
.onnxruntime/` (a device id, a database) at import, and posts an event: files the worker's job
cleanup never sees, left behind in its temp directory.
"""

from __future__ import annotations

import os
import threading
import time
from typing import List, Optional, Sequence, Tuple

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before anything imports onnxruntime

import numpy as np  # noqa: E402
import faster_whisper.vad as fw_vad  # noqa: E402
from faster_whisper.vad import VadOptions  # noqa: E402

from worker.audio.decode import SAMPLE_RATE  # noqa: E402
from worker.stages import timed  # noqa: E402

SILERO_WINDOW = 512  # samples Silero gives one speech probability for
VAD_BLOCK_WINDOWS = 10000  # Silero windows per ONNX call, as faster-whisper uses
ONSET_WARMUP = 16 * SILERO_WINDOW  # samples (0.5 s) Silero runs before a stretch whose speech onset is sought
ONSET_BLOCK = 32 * SILERO_WINDOW  # the first block it reads (1 s), doubled each block after, up to ONSET_BLOCK_MAX
ONSET_BLOCK_MAX = 30 * SAMPLE_RATE // SILERO_WINDOW * SILERO_WINDOW


_vad_clock = threading.local()


def vad_seconds() -> float:
    return getattr(_vad_clock, "seconds", 0.0)


def reset_vad_clock() -> None:
    _vad_clock.seconds = 0.0


class StreamingSilero:
    """faster-whisper's Silero model, run block by block with its state carried over: the same
    probabilities without the library's whole-file (n/512, 576) copy of the audio."""

    def __init__(self, model):
        self._model = model

    @timed("vad")
    def __call__(self, audio: np.ndarray, num_samples: int = 512, context_size_samples: int = 64):
        started = time.perf_counter()
        try:
            return self._probabilities(audio, num_samples, context_size_samples)
        finally:
            _vad_clock.seconds = vad_seconds() + time.perf_counter() - started

    def _probabilities(self, audio, num_samples, context_size_samples):
        windows = audio.reshape(-1, num_samples)
        h = np.zeros((1, 1, 128), dtype="float32")
        c = np.zeros((1, 1, 128), dtype="float32")
        outputs = []
        for first in range(0, windows.shape[0], VAD_BLOCK_WINDOWS):
            block = windows[first:first + VAD_BLOCK_WINDOWS]
            context = np.zeros((block.shape[0], context_size_samples), dtype="float32")
            context[1:] = block[:-1, -context_size_samples:]
            if first:
                context[0] = windows[first - 1, -context_size_samples:]
            output, h, c = self._model.session.run(None, {"input": np.concatenate([context, block], 1), "h": h, "c": c})
            outputs.append(output)
        return np.concatenate(outputs, axis=0)


_vad_lock = threading.Lock()


def install_streaming_vad() -> None:
    """Make faster-whisper's get_speech_timestamps use the streaming runner (idempotent)."""
    with _vad_lock:
        if getattr(fw_vad.get_vad_model, "_streaming", False):
            return
        original = fw_vad.get_vad_model

        def streaming():
            return StreamingSilero(original())

        streaming._streaming = True
        fw_vad.get_vad_model = streaming


def speech_spans(audio: np.ndarray, parameters: Optional[dict]) -> List[Tuple[int, int]]:
    """Silero VAD speech spans as (start, end) sample indices."""
    install_streaming_vad()
    options = VadOptions(**parameters) if parameters else VadOptions()
    return [(int(span["start"]), int(span["end"])) for span in fw_vad.get_speech_timestamps(audio, options)]


class SileroStream:
    """Silero speech probabilities of audio fed in pieces (whole 512-sample windows), with the
    model's state and context carried over: the values the whole-file call gives."""

    def __init__(self):
        install_streaming_vad()
        self._session = fw_vad.get_vad_model()._model.session
        self._h = np.zeros((1, 1, 128), dtype="float32")
        self._c = np.zeros((1, 1, 128), dtype="float32")
        self._context = np.zeros(64, dtype="float32")

    @timed("vad")
    def __call__(self, audio: np.ndarray) -> np.ndarray:
        windows = audio.reshape(-1, SILERO_WINDOW)
        outputs = []
        for first in range(0, windows.shape[0], VAD_BLOCK_WINDOWS):
            block = windows[first:first + VAD_BLOCK_WINDOWS]
            context = np.empty((block.shape[0], 64), dtype="float32")
            context[0] = self._context
            context[1:] = block[:-1, -64:]
            output, self._h, self._c = self._session.run(None, {"input": np.concatenate([context, block], 1), "h": self._h, "c": self._c})
            self._context = block[-1, -64:].copy()
            outputs.append(output)
        return np.concatenate(outputs, axis=0).reshape(-1) if outputs else np.zeros(0, dtype="float32")


class SpanTracker:
    """faster-whisper's get_speech_timestamps rules (1.2.x), run as probabilities arrive: each
    span is given out once nothing later can change it, and the spans in the end equal the
    library's on the whole file (tests hold them equal on real audio and random inputs)."""

    WINDOW = SILERO_WINDOW

    def __init__(self, options: VadOptions):
        rate = SAMPLE_RATE
        self.threshold = options.threshold
        self.negative = options.neg_threshold if options.neg_threshold is not None else max(options.threshold - 0.15, 0.01)
        self.min_speech = rate * options.min_speech_duration_ms / 1000
        self.pad = rate * options.speech_pad_ms / 1000
        self.max_speech = rate * options.max_speech_duration_s - self.WINDOW - 2 * self.pad
        self.min_silence = rate * options.min_silence_duration_ms / 1000
        self.min_silence_at_max = rate * 98 / 1000
        self.index = 0  # windows seen
        self.triggered = False
        self.start: Optional[int] = None
        self.temp_end = self.prev_end = self.next_start = 0
        self.raw: List[Tuple[int, int]] = []
        self.spans: List[Tuple[int, int]] = []  # final, padded

    def feed(self, probabilities: Sequence[float]) -> None:
        for probability in probabilities:
            self._step(float(probability), self.WINDOW * self.index)
            self.index += 1
        while len(self.spans) < len(self.raw) - 1:
            self.spans.append(self._padded(len(self.spans), None))

    def finish(self, length: int) -> List[Tuple[int, int]]:
        """All the spans, once the audio (`length` samples) has ended."""
        if self.start is not None and length - self.start > self.min_speech:
            self.raw.append((self.start, length))
            self.start = None
        while len(self.spans) < len(self.raw):
            self.spans.append(self._padded(len(self.spans), length))
        return self.spans

    def _step(self, probability: float, position: int) -> None:
        if probability >= self.threshold and self.temp_end:
            self.temp_end = 0
            if self.next_start < self.prev_end:
                self.next_start = position
        if probability >= self.threshold and not self.triggered:
            self.triggered, self.start = True, position
            return
        if self.triggered and position - self.start > self.max_speech:
            if self.prev_end:
                self.raw.append((self.start, self.prev_end))
                if self.next_start < self.prev_end:
                    self.triggered, self.start = False, None
                else:
                    self.start = self.next_start
                self.prev_end = self.next_start = self.temp_end = 0
            else:
                self.raw.append((self.start, position))
                self.prev_end = self.next_start = self.temp_end = 0
                self.triggered, self.start = False, None
                return
        if probability < self.negative and self.triggered:
            if not self.temp_end:
                self.temp_end = position
            if position - self.temp_end > self.min_silence_at_max:
                self.prev_end = self.temp_end
            if position - self.temp_end < self.min_silence:
                return
            if self.temp_end - self.start > self.min_speech:
                self.raw.append((self.start, self.temp_end))
            self.start = None
            self.prev_end = self.next_start = self.temp_end = 0
            self.triggered = False

    def _padded(self, k: int, length: Optional[int]) -> Tuple[int, int]:
        """Span k with the library's padding; `length` only for the last span of the file."""
        start, end = self.raw[k]
        if k == 0:
            start = int(max(0, start - self.pad))
        else:
            silence = start - self.raw[k - 1][1]
            start = int(max(0, start - silence // 2)) if silence < 2 * self.pad else int(max(0, start - self.pad))
        if k == len(self.raw) - 1 and length is not None:
            return start, int(min(length, end + self.pad))
        silence = self.raw[k + 1][0] - end
        return start, (end + int(silence // 2)) if silence < 2 * self.pad else int(end + self.pad)


class SpeechOnsets:
    """Where speech starts within a stretch of a file, by Silero: run from a fresh state, from
    ONSET_WARMUP before the stretch (the state settles there), in blocks that grow from 1 s, up to
    the first window whose speech probability reaches `threshold`. A segment starting on speech
    costs a second or two of Silero; only starts over non-speech make it read further. `seconds`:
    the time spent in Silero."""

    def __init__(self, view, threshold: Optional[float] = None):
        self._view = view  # view(start, end) -> samples [start, end) of the file, all decoded
        self.threshold = VadOptions().threshold if threshold is None else float(threshold)
        self.seconds = 0.0

    def find(self, start: int, end: int) -> Optional[int]:
        """The first sample in [start, end) in a window Silero calls speech (`start` itself when
        the window holding it is speech); None when there is none."""
        if end <= start:
            return None
        started = time.perf_counter()
        try:
            silero = SileroStream()
            position = max(0, start - ONSET_WARMUP)
            block = ONSET_BLOCK
            while position < end:
                stop = min(end, position + block)
                samples = self._view(position, stop)
                whole = -(-samples.shape[0] // SILERO_WINDOW) * SILERO_WINDOW
                if whole != samples.shape[0]:  # the last window of the stretch, zero-padded
                    samples = np.pad(samples, (0, whole - samples.shape[0]))
                for index, probability in enumerate(silero(np.ascontiguousarray(samples, dtype=np.float32))):
                    first = position + index * SILERO_WINDOW
                    if first + SILERO_WINDOW > start and probability >= self.threshold:
                        return max(start, first)
                position = stop
                block = min(2 * block, ONSET_BLOCK_MAX)
            return None
        finally:
            self.seconds += time.perf_counter() - started


class StreamingSpeech:
    """Speech spans of audio still being decoded: Silero on each new stretch, the library's span
    rules on the probabilities; `seconds` is the time spent in VAD."""

    def __init__(self, parameters: Optional[dict]):
        self.probabilities = SileroStream()
        self.tracker = SpanTracker(VadOptions(**parameters) if parameters else VadOptions())
        self.fed = 0  # samples given to Silero
        self.seconds = 0.0

    def feed(self, audio) -> List[Tuple[int, int]]:
        """Feed what `audio` (a DecodingAudio) has decoded so far; the final spans so far."""
        available = audio.wait_for(self.fed + SAMPLE_RATE)  # waits for at least a second more, or the end
        whole = (available - self.fed) // 512 * 512
        if whole:
            started = time.perf_counter()
            self.tracker.feed(self.probabilities(audio.view(self.fed, self.fed + whole)))
            self.fed += whole
            self.seconds += time.perf_counter() - started
        return self.tracker.spans

    def finish(self, audio) -> List[Tuple[int, int]]:
        """After decoding ended: the last samples, zero-padded as the library pads the file."""
        length = audio.wait_for(1 << 62)
        self.feed(audio)
        started = time.perf_counter()
        tail = np.zeros(512, dtype=np.float32)
        rest = audio.view(self.fed, length)
        tail[:rest.shape[0]] = rest
        self.tracker.feed(self.probabilities(tail))
        self.seconds += time.perf_counter() - started
        return self.tracker.finish(length)
