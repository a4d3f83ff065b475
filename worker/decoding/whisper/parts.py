"""The one module that touches faster-whisper's non-public code; a faster-whisper upgrade means
re-checking this file (and its tests) only.

What the worker takes from faster-whisper (1.2.x), and why each touchpoint is here:
- `tokenizer._LANGUAGE_CODES`: the language codes a request may name.
- `TranscriptionOptions` and `get_suppressed_tokens`: the options object the library's own
  decoding functions read; the batching key is derived from all of its fields.
- `WhisperModel.get_prompt` / `find_alignment` / `add_word_timestamps`: prompt layout and word
  timing, used by the worker's own batched long-form loop (worker/decoding/batched.py).
- `WhisperModel.transcribe`, run for sequential decoding with a feature extractor that works in
  bounded pieces (the library computes the STFT of the whole file at once: gigabytes for hours).
- `faster_whisper.vad.get_vad_model`: replaced by a Silero runner that streams the audio in blocks
  (the library builds a second, 1.125x copy of the whole file first) and times itself per thread.
  The same Silero session also finds where speech starts in a segment (SpeechOnsets).
- onnxruntime (imported by faster-whisper's VAD): its telemetry is switched off before it loads
  (ORT_DISABLE_TELEMETRY). Release 1.32's Linux wheel otherwise writes `$TMPDIR/.ses` and
  `~/.cache/Microsoft/DeveloperTools/.onnxruntime/` (a device id, a database) at import, and
  posts an event: files the worker's job cleanup never sees, left behind in its temp directory.

Everything else (segment rules, windows, no-speech filtering) is the worker's own code.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from dataclasses import dataclass
from typing import Hashable, Iterable, List, Optional, Sequence, Tuple

# before anything imports onnxruntime (faster-whisper does, when the VAD model is first made);
# an operator's own value is kept
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import faster_whisper.transcribe as fw_transcribe  # noqa: E402
import faster_whisper.vad as fw_vad  # noqa: E402
from faster_whisper import WhisperModel  # noqa: E402
from faster_whisper.tokenizer import _LANGUAGE_CODES, Tokenizer  # noqa: E402
from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens  # noqa: E402
from faster_whisper.vad import VadOptions  # noqa: E402

from worker.stages import timed
from worker.audio.decode import SAMPLE_RATE  # noqa: E402
from worker.errors import RequestError  # noqa: E402

HOP = 160  # samples per feature frame
N_FFT = 400
WINDOW_FRAMES = 3000  # the 30 s every Whisper window is padded to
TIMESTAMP_TOKENS = 1501  # <|0.00|> .. <|30.00|>: the last ids of every Whisper vocabulary
FEATURE_BLOCK_FRAMES = 6000  # sequential features are computed 60 s at a time
SILERO_WINDOW = 512  # samples Silero gives one speech probability for
VAD_BLOCK_WINDOWS = 10000  # Silero windows per ONNX call, as faster-whisper uses
LANGUAGE_CODES = frozenset(_LANGUAGE_CODES)  # what the tokenizer has a language token for
ONSET_WARMUP = 16 * SILERO_WINDOW  # samples (0.5 s) Silero runs before a stretch whose speech onset is sought
ONSET_BLOCK = 32 * SILERO_WINDOW  # the first block it reads (1 s), doubled each block after, up to ONSET_BLOCK_MAX
ONSET_BLOCK_MAX = 30 * SAMPLE_RATE // SILERO_WINDOW * SILERO_WINDOW


@dataclass(frozen=True)
class WindowInput:
    """One window of one job for the device: padded features and how many frames are audio."""

    features: np.ndarray  # (n_mels, 3000) float32
    content_frames: int


@dataclass
class WindowOutput:
    """What the device returns for one window."""

    tokens: List[int]  # generated ids, timestamps included, prompt and end-of-text excluded
    avg_logprob: float
    no_speech_prob: float
    alignment: Optional[List[dict]] = None  # faster-whisper's word alignment, with word timestamps
    temperature: float = 0.0


# -- options, tokenizer, prompt ---------------------------------------------------------

def tokenizer_for(whisper: WhisperModel, task: str, language: str) -> Tokenizer:
    return Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task=task, language=language)


@functools.lru_cache(maxsize=4)
def vocabulary_size(whisper: WhisperModel) -> int:
    """Ids the model can take: text and special tokens, then the timestamp tokens last (a fact of
    the loaded model: computed once, not on every job's check)."""
    tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task="transcribe",
                          language="en" if whisper.model.is_multilingual else None)
    return tokenizer.timestamp_begin + TIMESTAMP_TOKENS


def batched_options(tokenizer: Tokenizer, decoding: dict) -> TranscriptionOptions:
    """faster-whisper's options object for one batched job (the fields its helpers read)."""
    suppress = decoding.get("suppress_tokens", [-1])
    return TranscriptionOptions(
        beam_size=decoding.get("beam_size", 5),
        best_of=decoding.get("best_of", 5),
        patience=decoding.get("patience", 1.0),
        length_penalty=decoding.get("length_penalty", 1.0),
        repetition_penalty=decoding.get("repetition_penalty", 1.0),
        no_repeat_ngram_size=decoding.get("no_repeat_ngram_size", 0),
        log_prob_threshold=decoding.get("log_prob_threshold", -1.0),
        no_speech_threshold=decoding.get("no_speech_threshold", 0.6),
        compression_ratio_threshold=decoding.get("compression_ratio_threshold", 2.4),
        condition_on_previous_text=False,
        prompt_reset_on_temperature=0.5,
        temperatures=[float(t) for t in (decoding.get("temperature", 0.0) if isinstance(decoding.get("temperature"), list) else [decoding.get("temperature", 0.0)])],
        initial_prompt=decoding.get("initial_prompt"),
        prefix=None,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, suppress) if suppress else suppress,
        without_timestamps=decoding.get("without_timestamps", False),
        max_initial_timestamp=0.0,
        word_timestamps=decoding.get("word_timestamps", False),
        prepend_punctuations="\"'“¿([{-",
        append_punctuations="\"'.。,，!！?？:：”)]}、",
        multilingual=decoding.get("multilingual", False),
        max_new_tokens=None,
        clip_timestamps="0",
        hallucination_silence_threshold=None,
        hotwords=decoding.get("hotwords"),
    )


def at_temperature(options: TranscriptionOptions, temperature: float) -> TranscriptionOptions:
    """The options of one decoding pass (the first temperature of the list is the one used)."""
    return dataclasses.replace(options, temperatures=[temperature])


def batching_key(tokenizer: Tokenizer, options: TranscriptionOptions) -> Hashable:
    """Windows with equal keys may share one generate() call. Every field of the options object is
    part of it, so an option added to faster-whisper can never let different requests mix."""
    values = []
    for item in dataclasses.fields(options):
        value = getattr(options, item.name)
        values.append((item.name, tuple(value) if isinstance(value, list) else value))
    return (tuple(tokenizer.sot_sequence), tokenizer.task, tuple(values))


def prompt_for(whisper: WhisperModel, tokenizer: Tokenizer, options: TranscriptionOptions) -> List[int]:
    previous = tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else []
    return whisper.get_prompt(tokenizer, previous, without_timestamps=options.without_timestamps, hotwords=options.hotwords)


def check_prompt_length(whisper: WhisperModel, tokenizer: Tokenizer, initial_prompt: Optional[str], hotwords: Optional[str]) -> None:
    """The decoder holds 448 positions; prompt and hotwords together may take at most half (as
    Whisper itself allows), so the text has room. faster-whisper would truncate each to 223
    tokens, overflow with both, and fail inside CTranslate2."""
    limit = whisper.max_length // 2 - 1
    used = 0
    for field, text in (("hotwords", hotwords), ("initial_prompt", initial_prompt)):
        if text:
            used += len(tokenizer.encode(" " + text.strip()))
            if used > limit:
                raise RequestError(f"too long: initial_prompt and hotwords together are {used}+ tokens; at most {limit} fit the decoder", field=field)


def check_token_ids(whisper: WhisperModel, ids: Iterable[int], field: str) -> None:
    """CTranslate2 indexes with these ids unchecked: out of range is out-of-bounds memory."""
    size = vocabulary_size(whisper)
    for token in ids:
        if token != -1 and not 0 <= token < size:
            raise RequestError(f"token id {token} is outside this model's vocabulary (0..{size - 1}, or -1 for the default set)", field=field)


# -- features -------------------------------------------------------------------------

@timed("features")
def window_features(whisper: WhisperModel, samples: np.ndarray) -> WindowInput:
    """Log-mel features of at most 30 s of audio, padded to a full window (as faster-whisper's
    batched pipeline makes them)."""
    features = whisper.feature_extractor(samples)[..., :-1]
    frames = min(features.shape[-1], WINDOW_FRAMES)
    return WindowInput(features=fw_transcribe.pad_or_trim(features), content_frames=frames)


def log_mel(extractor, waveform: np.ndarray, padding: int = HOP) -> np.ndarray:
    """The same array as `extractor(waveform, padding)`, computed 60 s at a time, so that the peak
    is the output plus one block instead of several whole-file STFT arrays."""
    signal_length = waveform.shape[0] + padding
    frames = signal_length // HOP  # the extractor drops the STFT's last frame
    out = np.empty((extractor.mel_filters.shape[0], frames), dtype=np.float32)
    window = np.hanning(N_FFT + 1)[:-1].astype("float32")
    peak = -np.inf
    for first in range(0, frames, FEATURE_BLOCK_FRAMES):
        last = min(first + FEATURE_BLOCK_FRAMES, frames)
        # frame j covers positions [j*HOP - N_FFT/2, j*HOP + N_FFT/2) of the zero-padded signal,
        # reflected at both ends exactly as a centred STFT of the whole signal does
        positions = np.arange(first * HOP - N_FFT // 2, (last - 1) * HOP + N_FFT // 2)
        positions = np.abs(positions)
        positions = np.where(positions >= signal_length, 2 * (signal_length - 1) - positions, positions)
        block = np.zeros(positions.shape[0], dtype=np.float32)
        inside = positions < waveform.shape[0]
        block[inside] = waveform[positions[inside]]
        stft = extractor.stft(block, N_FFT, HOP, window=window, center=False, return_complex=True).astype("complex64")
        magnitudes = np.abs(stft) ** 2
        mel = np.log10(np.clip(extractor.mel_filters @ magnitudes, a_min=1e-10, a_max=None))
        out[:, first:last] = mel
        peak = max(peak, float(mel.max()))
    np.maximum(out, peak - 8.0, out=out)
    out += 4.0
    out /= 4.0
    return out


class _BlockFeatureExtractor:
    """faster-whisper's extractor, except that whole-file calls are computed in blocks."""

    def __init__(self, extractor):
        self._extractor = extractor

    def __getattr__(self, name):
        return getattr(self._extractor, name)

    def __call__(self, waveform: np.ndarray, padding: int = HOP, chunk_length=None):
        if chunk_length is not None:
            return self._extractor(waveform, padding, chunk_length)
        return log_mel(self._extractor, waveform, padding)


class _SequentialModel:
    """The WhisperModel as faster-whisper's transcribe() sees it, with the block extractor."""

    def __init__(self, whisper: WhisperModel):
        self._whisper = whisper
        self.feature_extractor = _BlockFeatureExtractor(whisper.feature_extractor)

    def __getattr__(self, name):
        return getattr(self._whisper, name)


# -- VAD ------------------------------------------------------------------------------

_vad_clock = threading.local()


def vad_seconds() -> float:
    return getattr(_vad_clock, "seconds", 0.0)


def reset_vad_clock() -> None:
    _vad_clock.seconds = 0.0


class _StreamingSilero:
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
            return _StreamingSilero(original())

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


# -- device calls (the scheduler's backend) ---------------------------------------------

def run_windows(whisper: WhisperModel, windows: Sequence[WindowInput], tokenizer: Tokenizer, options: TranscriptionOptions) -> List[WindowOutput]:
    """One encode + generate (+ align) for windows that share tokenizer and options."""
    features = np.stack([window.features for window in windows])
    prompt = prompt_for(whisper, tokenizer, options)
    encoder_output = whisper.encode(features)
    prompts = [list(prompt) for _ in windows]
    if options.multilingual:
        position = prompt.index(tokenizer.language)
        for row, detected in enumerate(whisper.model.detect_language(encoder_output)):
            prompts[row][position] = tokenizer.tokenizer.token_to_id(detected[0][0])
    temperature = options.temperatures[0]
    # as faster-whisper's fallback decodes: beam search at 0, best_of samples above
    search = {"beam_size": options.beam_size, "patience": options.patience} if temperature == 0 else \
        {"beam_size": 1, "num_hypotheses": options.best_of, "sampling_topk": 0}
    results = whisper.model.generate(
        encoder_output, prompts, length_penalty=options.length_penalty, max_length=whisper.max_length,
        suppress_blank=options.suppress_blank, suppress_tokens=options.suppress_tokens,
        return_scores=True, return_no_speech_prob=True, sampling_temperature=temperature,
        repetition_penalty=options.repetition_penalty, no_repeat_ngram_size=options.no_repeat_ngram_size, **search,
    )
    outputs = []
    for result in results:
        tokens = list(result.sequences_ids[0])
        cumulative = result.scores[0] * (len(tokens) ** options.length_penalty)
        outputs.append(WindowOutput(tokens=tokens, avg_logprob=cumulative / (len(tokens) + 1), no_speech_prob=result.no_speech_prob))
    if options.word_timestamps:
        text = [[t for t in output.tokens if t < tokenizer.eot] for output in outputs]
        frames = [window.content_frames for window in windows]
        for output, alignment in zip(outputs, whisper.find_alignment(tokenizer, text, encoder_output, frames)):
            output.alignment = alignment
    return outputs


class _AlignedModel:
    """What add_word_timestamps reads of the model, with the alignment already computed on the
    device by run_windows (the encoder output never leaves the device)."""

    def __init__(self, whisper: WhisperModel, alignments: List[List[dict]]):
        self.frames_per_second = whisper.frames_per_second
        self._alignments = alignments

    def find_alignment(self, *_args, **_kwargs):
        return self._alignments


@timed("words")
def add_word_timestamps(whisper: WhisperModel, windows: List[List[dict]], alignments: List[List[dict]], tokenizer: Tokenizer,
                        options: TranscriptionOptions, last_speech: float) -> float:
    """Put `words` on every segment dict of each window (each dict: tokens, start, end, seek in
    frames of the window's start), with faster-whisper's timing rules; returns the new last speech
    time."""
    if not windows:
        return last_speech
    proxy = _AlignedModel(whisper, alignments)
    frames = [0] * len(windows)  # read only by find_alignment, which the proxy answers
    result = WhisperModel.add_word_timestamps(proxy, windows, tokenizer, None, frames, options.prepend_punctuations,
                                              options.append_punctuations, last_speech)
    return last_speech if result is None else result


# -- sequential decoding ----------------------------------------------------------------

def transcribe_sequential(whisper: WhisperModel, audio: np.ndarray, decoding: dict):
    """faster-whisper's own sequential long-form decoding, with memory bounded: VAD streams, the
    speech is gathered in one copy, features are computed in blocks. Returns (segments, info)."""
    decoding = dict(decoding)
    vad_filter = decoding.pop("vad_filter", True)
    vad_parameters = decoding.pop("vad_parameters", None)
    duration = audio.shape[0] / SAMPLE_RATE
    spans = None
    speech = audio
    if vad_filter:
        spans = speech_spans(audio, vad_parameters)
        speech = np.concatenate([audio[a:b] for a, b in spans]) if spans else np.zeros(0, dtype=np.float32)
    model = _SequentialModel(whisper)
    segments, info = WhisperModel.transcribe(model, speech, vad_filter=False, **decoding)
    if spans:
        chunks = [{"start": a, "end": b} for a, b in spans]
        segments = fw_transcribe.restore_speech_timestamps(segments, chunks, SAMPLE_RATE)
    info = dataclasses.replace(info, duration=duration, duration_after_vad=speech.shape[0] / SAMPLE_RATE)
    return segments, info


def detect_language(whisper: WhisperModel, window: WindowInput) -> Tuple[str, float]:
    language, probability, _ = whisper.detect_language(features=window.features[:, : max(window.content_frames, 1)])
    return language, float(probability)
