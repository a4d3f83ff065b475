"""Batched long-form decoding: the worker's own loop, built from faster-whisper's parts.

    audio -> speech spans (Silero VAD, or the whole file) -> windows of at most 30 s of contiguous
    audio -> features -> the shared scheduler (encode + generate + align, many jobs per batch)
    -> segments by the rules below -> word timings -> Segment objects in time order

Why not faster-whisper's BatchedInferencePipeline: it throws away the text after a window's last
timestamp token (whole sentences at the end of most 30 s chunks), concatenates speech from
different places into one window and maps times back approximately (times out of order), and
has no no-speech threshold. The rules here:
- A window is contiguous audio: model timestamps plus the window's start are file times.
  Speech spans are merged while the window stays within 30 s and no pause inside it is longer
  than MAX_PAUSE_S; a span longer than 30 s is cut at its quietest 100 ms near the 30 s mark, so
  a cut falls between words where there is any pause at all.
- Every text token becomes part of a segment: text after the last timestamp ends at the window's
  end. Times are clamped into the window and never go backwards.
- A window the model itself calls silent (no-speech probability over no_speech_threshold and
  average log-probability under log_prob_threshold, as sequential decoding judges) gives nothing.
- So does a repetition loop over audio the model calls non-speech, without falling back to
  sampling: over noise, sampling finds the loop's short cousins ("You", "Thank you.") by chance.
"""

from __future__ import annotations

import threading
import zlib
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from worker.stages import timed
from worker.decoding.whisper import parts
from worker.audio.decode import SAMPLE_RATE, DecodedAudio
from worker.errors import Cancelled
from worker.stopping import AnyEvent
from worker.transcript import Segment, Word

MAX_WINDOW_S = 30.0
MAX_PAUSE_S = 2.0  # a longer pause between speech spans starts a new window
MIN_WINDOW_S = 10.0  # a full window is cut at its longest pause after this many seconds
MIN_TAIL_S = 1.0  # speech left after a window's last timestamp is decoded again if this long
TAIL_ROUNDS = 2  # how many times a tail's own tail is decoded again
CUT_SEARCH_S = 8.0  # a span over 30 s is cut at its quietest point in its last 8 s before 30 s
ENERGY_FRAME = 320  # 20 ms frames, smoothed over 5 (100 ms), to find where to cut
TIME_PRECISION = 0.02  # seconds per timestamp token
FEED_CHUNK = 4  # windows sent to the device together by the feeder (their features computed in parallel)
# Batched decoding's VAD defaults (faster-whisper's own for its batched mode): short pauses split
# speech so windows can be packed up to 30 s.
BATCHED_VAD_DEFAULTS = {"min_silence_duration_ms": 160}

# run(key, windows, context) -> one WindowOutput per window, in order (the scheduler, or a test)
RunWindows = Callable[[object, List[parts.WindowInput], object], List[parts.WindowOutput]]


@dataclass(frozen=True)
class Window:
    start: int  # sample index in the file
    end: int

    @property
    def duration(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


@dataclass
class Plan:
    """What the job decodes: its windows, the speech they hold, the language and options."""

    windows: List[Window]
    speech_seconds: float
    language: str
    language_probability: float


# -- windows ------------------------------------------------------------------------------

def quietest_point(audio: np.ndarray, low: int, high: int) -> int:
    """The sample index in [low, high) at the centre of the quietest 100 ms."""
    low = max(low, 0)
    frames = (high - low) // ENERGY_FRAME
    if frames < 5:
        return high
    region = audio[low:low + frames * ENERGY_FRAME].reshape(frames, ENERGY_FRAME).astype(np.float64)
    energy = np.convolve((region ** 2).mean(axis=1), np.ones(5) / 5, mode="same")
    return low + int(np.argmin(energy)) * ENERGY_FRAME + ENERGY_FRAME // 2


def plan_windows(audio: np.ndarray, spans: Sequence[Tuple[int, int]], max_window_s: float = MAX_WINDOW_S,
                 max_pause_s: float = MAX_PAUSE_S) -> List[Window]:
    """Contiguous windows of at most max_window_s covering every span. A window that cannot take
    the next span ends at its longest pause past MIN_WINDOW_S, so cuts fall between sentences."""
    longest = int(max_window_s * SAMPLE_RATE)
    search = min(int(CUT_SEARCH_S * SAMPLE_RATE), longest // 3)
    pieces: List[Tuple[int, int]] = []
    for start, end in spans:
        while end - start > longest:
            # never leave a sliver behind the cut: it would be a window of its own
            high = max(start + longest - search + 1, min(start + longest, end - int(MIN_TAIL_S * SAMPLE_RATE)))
            cut = quietest_point(audio, start + longest - search, high)
            pieces.append((start, cut))
            start = cut
        if end > start:
            pieces.append((start, end))
    windows: List[Window] = []
    current: List[Tuple[int, int]] = []
    for piece in pieces:
        if current and piece[0] - current[-1][1] > max_pause_s * SAMPLE_RATE:
            windows.append(Window(current[0][0], current[-1][1]))
            current = []
        current.append(piece)
        while current[-1][1] - current[0][0] > longest:
            split = _longest_pause(current[:-1])
            windows.append(Window(current[0][0], current[split][1]))
            current = current[split + 1:]
    if current:
        windows.append(Window(current[0][0], current[-1][1]))
    return windows


def _longest_pause(pieces: List[Tuple[int, int]]) -> int:
    """Index of the piece after which the window should end: the one followed by the longest
    pause, among pieces ending past MIN_WINDOW_S; the first of equal pauses (spans that touch
    give pauses of 0); the last piece when none ends past MIN_WINDOW_S."""
    earliest = pieces[0][0] + int(MIN_WINDOW_S * SAMPLE_RATE)
    best, best_pause = len(pieces) - 1, -1
    for index in range(len(pieces) - 1):
        pause = pieces[index + 1][0] - pieces[index][1]
        if pieces[index][1] >= earliest and pause > best_pause:
            best, best_pause = index, pause
    return best


# -- segments -----------------------------------------------------------------------------

@timed("segments")
def split_window(tokens: Sequence[int], timestamp_begin: int, eot: int, offset: float, duration: float) -> List[dict]:
    """The window's tokens as segment dicts (start, end in file seconds; tokens with their
    timestamps). No text token is dropped: text after the last timestamp ends at the window end."""
    pieces: List[dict] = []
    start = 0.0
    body: List[int] = []  # the current segment's tokens, its opening timestamp included
    has_text = False

    def close(end: float) -> None:
        nonlocal body, has_text
        begin = max(start, pieces[-1]["end"] - offset if pieces else 0.0)
        pieces.append({"start": offset + begin, "end": offset + max(end, begin), "tokens": body})
        body, has_text = [], False

    for token in tokens:
        if token >= timestamp_begin:
            time = min((token - timestamp_begin) * TIME_PRECISION, duration)
            if has_text:
                body.append(token)
                close(time)
            else:
                body = [token]
            start = time
        elif token < eot:
            body.append(token)
            has_text = True
    if has_text:
        close(duration)
    return pieces


def is_hallucination(output: parts.WindowOutput, text: str, compression_ratio_threshold: Optional[float],
                     no_speech_threshold: Optional[float]) -> bool:
    """A repetition loop over audio the model calls non-speech (music, noise, hum): Whisper's
    classic hallucination, with nothing to keep. Not retried at higher temperatures when the
    model calls the audio non-speech: sampling over noise gives a short, confident "You" on
    some draws and not on others (a transcript that changes from run to run)."""
    if compression_ratio_threshold is None or compression_ratio(text) <= compression_ratio_threshold:
        return False
    return no_speech_threshold is None or output.no_speech_prob > no_speech_threshold


def is_silent(output: parts.WindowOutput, no_speech_threshold: Optional[float], log_prob_threshold: Optional[float]) -> bool:
    """Sequential decoding's rule for skipping a window."""
    if no_speech_threshold is None or output.no_speech_prob <= no_speech_threshold:
        return False
    return log_prob_threshold is None or output.avg_logprob < log_prob_threshold


# -- the job ------------------------------------------------------------------------------

class _Now:
    """A blocking run(key, windows, context) function used as a device (tests, tools)."""

    def __init__(self, run: RunWindows):
        self._run = run

    def submit(self, key, windows, context, urgent: bool = False):
        return self._run(key, windows, context)

    def wait(self, handle):
        return handle

    def done(self, handle) -> bool:
        return True

    def when_done(self, handle, callback: Callable[[], None]) -> None:
        callback()

    def cancel(self, handle) -> None:
        pass


class _Inbox:
    """What the job thread waits for: chunks the feeder sent (windows, inputs, device handle),
    then None (no more) or the feeder's exception; and a poke whenever a device request ends."""

    def __init__(self):
        self._items: deque = deque()
        self._cond = threading.Condition()
        self._poked = False

    def put(self, item) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def poke(self) -> None:
        with self._cond:
            self._poked = True
            self._cond.notify()

    def wait(self, timeout: float) -> None:
        """Until an item or a poke came since the last take (or `timeout` seconds)."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._poked, timeout)

    def take_all(self) -> list:
        with self._cond:
            items, self._items, self._poked = list(self._items), deque(), False
        return items


@dataclass(eq=False)
class _Decoding:
    """One window on its way through the device: decoded at each temperature in turn until a
    result passes (sequential decoding's fallback); then, if the model stopped before speech
    that is there, its tail is a decoding of its own (`depth` + 1)."""

    window: Window
    inputs: parts.WindowInput
    owner: int  # the planned window whose transcript it is part of
    depth: int = 0  # 0: a planned window; k: a tail k levels down
    tried: List[parts.WindowOutput] = field(default_factory=list)


class BatchedJob:
    """One job's batched decoding, as a pipeline that keeps the device fed:

        decode thread (DecodingAudio) -> feeder thread: VAD as samples arrive, windows planned as
        soon as they are final, their features on the host pool, sent to the device at once
        -> this job's thread (segments()): each result as it ends, its fallback or tail sent
        at once, segments in window order with word timing, while the device works on the
        windows sent after.

    At most `in_flight` planned windows are sent and not yet given out (memory stays bounded;
    the feeder waits). The transcript equals the one made window after window: every window is
    decoded alone (rows are independent), given out in time order, with its tails after it.
    `device`: submit(key, windows, context, urgent) -> handle, done(handle), when_done(handle,
    callback), wait(handle) -> outputs, cancel(handle); or a blocking run(key, windows, context)."""

    def __init__(self, whisper, audio, decoding: dict, device, cancelled: Optional[threading.Event],
                 host: Optional[Executor] = None, in_flight: Optional[int] = None, max_window_s: float = MAX_WINDOW_S):
        self.whisper = whisper
        self.audio = audio if hasattr(audio, "wait_for") else DecodedAudio(audio)
        self.decoding = decoding
        self.device = device if hasattr(device, "submit") else _Now(device)
        self.cancelled = cancelled or threading.Event()
        self.finished = threading.Event()  # done, failed or abandoned
        self.stop = AnyEvent(self.finished, self.cancelled)  # what the feeder checks
        self.host = host
        self.batch_size = int(decoding.get("batch_size") or 8)
        self.window_limit = in_flight or 2 * max(self.batch_size, FEED_CHUNK)
        self.in_flight = threading.Semaphore(self.window_limit)
        self.vad_parameters = None
        if decoding.get("vad_filter", True):
            self.vad_parameters = dict(BATCHED_VAD_DEFAULTS)
            self.vad_parameters.update(decoding.get("vad_parameters") or {})
        self.speech = parts.StreamingSpeech(self.vad_parameters) if self.vad_parameters is not None else None
        # Windows are up to 30 s whatever the request's max_speech_duration_s: that option only
        # splits the VAD's speech spans, which windows merge again (Whisper decodes 1 s windows
        # badly). `max_window_s` is for tests and tools that want many short windows.
        self.longest = min(MAX_WINDOW_S, float(max_window_s))
        self.spans: Optional[List[Tuple[int, int]]] = [] if self.speech is not None else None
        self.windows: List[Window] = []
        self.planned_all = False
        self._spans_planned = 0
        self._restart = (0, 0)  # (span index, windows before it): where planning may start afresh
        self._plan_more()
        while not self.windows and not self.planned_all:
            self._plan_more()
        self.plan = Plan(windows=self.windows, speech_seconds=0.0, language="en", language_probability=1.0)
        self.plan.language, self.plan.language_probability = self._language()
        self.tokenizer = parts.tokenizer_for(whisper, decoding.get("task", "transcribe"), self.plan.language)
        self.options = parts.batched_options(self.tokenizer, decoding)
        self._inbox = _Inbox()

    # -- planning (the feeder thread, and the first window in the caller's) -----------------
    def _plan_more(self) -> None:
        """Read what was decoded since; add the windows that can no longer change."""
        audio = self.audio
        if self.speech is None:
            length = audio.wait_for(1 << 62)
            spans, self.planned_all = [(0, length)], True
        else:
            self.speech.feed(audio)
            if audio.finished and self.speech.fed + 512 > audio.wait_for(0):
                spans, self.planned_all = self.speech.finish(audio), True
            else:
                spans = self.speech.tracker.spans
            self.spans = spans
        if not spans or (len(spans) == self._spans_planned and not self.planned_all):
            return
        self._spans_planned = len(spans)
        first_span, known = self._restart
        end = spans[-1][1]
        audio.wait_for(end)
        windows = plan_windows(audio.view(0, end), spans[first_span:], max_window_s=self.longest)
        if not self.planned_all:
            windows = windows[:-1]  # the last window may still grow
        assert windows[:len(self.windows) - known] == self.windows[known:], "a window changed after it was planned"
        self.windows.extend(windows[len(self.windows) - known:])
        # Planning starts afresh after a pause longer than MAX_PAUSE_S (a window always ends
        # there), so the next call plans from the last such pause instead of from the start.
        for index in range(len(spans) - 1, first_span, -1):
            if spans[index][0] - spans[index - 1][1] > MAX_PAUSE_S * SAMPLE_RATE:
                self._restart = (index, sum(1 for w in self.windows if w.start < spans[index][0]))
                break

    def _language(self) -> Tuple[str, float]:
        language = self.decoding.get("language")
        if language is not None:
            return language, 1.0
        if not self.whisper.model.is_multilingual:
            return "en", 1.0
        if not self.windows:
            return "en", 0.0
        first = self.windows[0]
        return parts.detect_language(self.whisper, parts.window_features(self.whisper, self.audio.view(first.start, first.end)))

    @property
    def speech_seconds(self) -> float:
        spans = self.spans if self.spans is not None else [(0, self.audio.wait_for(1 << 62))]
        return sum(end - start for start, end in spans) / SAMPLE_RATE

    @property
    def vad_seconds(self) -> float:
        return self.speech.seconds if self.speech is not None else 0.0

    def _feed(self) -> None:
        """The feeder thread: windows to the device as soon as they are final."""
        try:
            sent = 0
            while True:
                while sent < len(self.windows):
                    # a chunk never needs more slots than there are (a limit under FEED_CHUNK would wait forever)
                    chunk = self.windows[sent:sent + min(FEED_CHUNK, self.window_limit)]
                    for _ in chunk:
                        while not self.in_flight.acquire(timeout=0.1):
                            if self.stop.is_set():
                                return
                    if self.stop.is_set():  # the job ended while there were free slots: send nothing more
                        return
                    inputs = self._features(chunk)
                    options = parts.at_temperature(self.options, self.options.temperatures[0])
                    handle = self.device.submit(parts.batching_key(self.tokenizer, options), inputs, (self.tokenizer, options))
                    self._inbox.put((chunk, inputs, handle))
                    sent += len(chunk)
                if self.planned_all or self.stop.is_set():
                    break
                self._plan_more()
            self._inbox.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the job's thread
            self._inbox.put(exc)

    def _features(self, windows: List[Window]) -> List[parts.WindowInput]:
        compute = lambda w: parts.window_features(self.whisper, self.audio.view(w.start, w.end))  # noqa: E731
        if self.host is None or len(windows) == 1:
            return [compute(w) for w in windows]
        return list(self.host.map(compute, windows))

    # -- consuming (the job's thread) -------------------------------------------------------
    def segments(self) -> Iterator[Segment]:
        """Segments in time order. The job's thread never waits on one request: whenever any
        of its requests ends, it sends what follows (the next temperature for a window that
        failed, the tail the model left out), so the follow-ups of many windows gather in the
        device queue and share batches; a planned window's segments are given out once it and
        its tails are final. Each window's result is its own (rows are independent), so this
        equals decoding window after window."""
        feeder = threading.Thread(target=self._feed, name="whisper-feed", daemon=True)
        feeder.start()
        last_speech = 0.0
        final: List[List[Tuple[int, Window, parts.WindowOutput]]] = []  # per planned window sent: (depth, window, output)
        unresolved: List[int] = []  # per planned window: its decodings not final yet
        waiting: dict = {}  # id(handle) -> (handle, decodings)
        given = 0  # planned windows whose segments were given out
        fed_all = False
        try:
            while True:
                for item in self._inbox.take_all():
                    if isinstance(item, BaseException):
                        raise item
                    if item is None:
                        fed_all = True
                        continue
                    chunk, inputs, handle = item
                    decodings = []
                    for window, window_inputs in zip(chunk, inputs):
                        decodings.append(_Decoding(window, window_inputs, owner=len(final)))
                        final.append([])
                        unresolved.append(1)
                    self._watch(waiting, handle, decodings)
                follow: dict = {}  # temperature index -> decodings to send
                for key in [key for key, (handle, _) in waiting.items() if self.device.done(handle)]:
                    handle, decodings = waiting.pop(key)
                    for decoding, output in zip(decodings, self.device.wait(handle)):
                        output.temperature = self.options.temperatures[len(decoding.tried)]
                        decoding.tried.append(output)
                        self._advance(decoding, follow, final, unresolved)
                self._send(follow, waiting)
                while given < len(final) and unresolved[given] == 0:
                    own = sorted(final[given], key=lambda item: (item[1].start, item[0]))
                    last_speech, segments = self._window_segments([(w, o) for _, w, o in own], last_speech)
                    final[given] = []
                    given += 1
                    self.in_flight.release()
                    yield from segments
                if fed_all and given == len(final):
                    break
                self._inbox.wait(0.1)
                if self.cancelled.is_set():
                    raise Cancelled("job cancelled")
        finally:
            self.finished.set()  # done, failed or abandoned: the feeder stops, queued windows are dropped
            feeder.join(timeout=5)
            for item in self._inbox.take_all():
                if isinstance(item, tuple):
                    self.device.cancel(item[2])
            for handle, _ in waiting.values():
                self.device.cancel(handle)

    def _watch(self, waiting: dict, handle, decodings: List[_Decoding]) -> None:
        waiting[id(handle)] = (handle, decodings)
        self.device.when_done(handle, self._inbox.poke)

    def _advance(self, decoding: _Decoding, follow: dict, final: list, unresolved: list) -> None:
        """After a decoding's latest result: the next temperature, or final (and its tail sent)."""
        if len(decoding.tried) < len(self.options.temperatures) and self._needs_fallback(decoding.tried[-1]):
            follow.setdefault(len(decoding.tried), []).append(decoding)
            return
        output = self._best(decoding.tried)
        final[decoding.owner].append((decoding.depth, decoding.window, output))
        unresolved[decoding.owner] -= 1
        tail = self._tail(decoding.window, output) if decoding.depth < TAIL_ROUNDS else None
        if tail is not None:
            unresolved[decoding.owner] += 1
            follow.setdefault(0, []).append(_Decoding(tail, None, owner=decoding.owner, depth=decoding.depth + 1))

    def _send(self, follow: dict, waiting: dict) -> None:
        """One request per temperature. Tails (the first temperature) go ahead of the job's
        other windows, whose batches they share; fallbacks queue behind, so that those of later
        windows join them before their turn and a fallback round costs one batch, not one per
        window."""
        for index, decodings in sorted(follow.items()):
            fresh = [d for d in decodings if d.inputs is None]
            for decoding, inputs in zip(fresh, self._features([d.window for d in fresh])):
                decoding.inputs = inputs
            options = parts.at_temperature(self.options, self.options.temperatures[index])
            handle = self.device.submit(parts.batching_key(self.tokenizer, options), [d.inputs for d in decodings],
                                        (self.tokenizer, options), urgent=index == 0)
            self._watch(waiting, handle, decodings)

    def _window_segments(self, decoded, last_speech: float) -> Tuple[float, List[Segment]]:
        per_window, alignments = [], []
        for window, output in decoded:
            pieces = self._pieces(window, output)
            if pieces:
                per_window.append(pieces)
                alignments.append(output.alignment or [])
        if self.options.word_timestamps:
            last_speech = parts.add_word_timestamps(self.whisper, per_window, alignments, self.tokenizer, self.options, last_speech)
        segments = [segment for pieces in per_window for piece in pieces if (segment := self._segment(piece)) is not None]
        return last_speech, segments

    def _text(self, output: parts.WindowOutput) -> str:
        return self.tokenizer.decode([t for t in output.tokens if t < self.tokenizer.eot])

    def _loops(self, output: parts.WindowOutput) -> bool:
        threshold = self.options.compression_ratio_threshold
        return threshold is not None and compression_ratio(self._text(output)) > threshold

    def _needs_fallback(self, output: parts.WindowOutput) -> bool:
        """Sequential decoding's rule (a loop, or a low log-probability, unless silent), except
        that a loop over what the model calls non-speech is final: see is_hallucination."""
        options = self.options
        if is_silent(output, options.no_speech_threshold, options.log_prob_threshold):
            return False
        if self._loops(output):
            return options.no_speech_threshold is None or output.no_speech_prob <= options.no_speech_threshold
        return options.log_prob_threshold is not None and output.avg_logprob < options.log_prob_threshold

    def _best(self, outputs: List[parts.WindowOutput]) -> parts.WindowOutput:
        if not self._needs_fallback(outputs[-1]):
            return outputs[-1]
        candidates = [o for o in outputs if not self._loops(o)] or outputs
        return max(candidates, key=lambda o: o.avg_logprob)

    def _pieces(self, window: Window, output: parts.WindowOutput) -> List[dict]:
        """The window's segment dicts, each ending where the next window's text starts."""
        if self._rejected(output):
            return []
        end = window.duration
        if self._tail(window, output) is not None:
            end = self._last_timestamp(output)  # its tail is a window of its own
        pieces = split_window(output.tokens, self.tokenizer.timestamp_begin, self.tokenizer.eot, window.start / SAMPLE_RATE, end)
        seek = int(round(window.start / parts.HOP))
        for piece in pieces:
            piece.update(seek=seek, output=output)
        return pieces

    def _rejected(self, output: parts.WindowOutput) -> bool:
        """Nothing of this window is kept: silence, or a loop over non-speech."""
        options = self.options
        if is_silent(output, options.no_speech_threshold, options.log_prob_threshold):
            return True
        return is_hallucination(output, self._text(output), options.compression_ratio_threshold, options.no_speech_threshold)

    def _ends_in_text(self, output: parts.WindowOutput) -> bool:
        begin, eot = self.tokenizer.timestamp_begin, self.tokenizer.eot
        for token in reversed(output.tokens):
            if token >= begin:
                return False
            if token < eot:
                return True
        return False

    def _last_timestamp(self, output: parts.WindowOutput) -> Optional[float]:
        stamps = [t for t in output.tokens if t >= self.tokenizer.timestamp_begin]
        return (stamps[-1] - self.tokenizer.timestamp_begin) * TIME_PRECISION if stamps else None

    def _tail(self, window: Window, output: parts.WindowOutput) -> Optional[Window]:
        """The audio after the window's last timestamp, when the model stopped before speech that
        is there (Whisper leaves out an utterance cut by the window's end; sequential decoding
        goes back for it, and so does this)."""
        if self._rejected(output):
            return None
        last = self._last_timestamp(output)
        if last is None or window.duration - last < MIN_TAIL_S or self._ends_in_text(output):
            return None  # no timestamps, nothing left, or text runs on to the window's end
        start = window.start + int(last * SAMPLE_RATE)
        if not self._has_speech(start, window.end):
            return None
        return Window(start, window.end)

    def _has_speech(self, start: int, end: int) -> bool:
        if self.spans is None:
            return True
        needed = int(0.3 * SAMPLE_RATE)
        return any(min(end, b) - max(start, a) >= needed for a, b in self.spans)

    def _segment(self, piece: dict) -> Optional[Segment]:
        text = self.tokenizer.decode([t for t in piece["tokens"] if t < self.tokenizer.eot])
        words = None
        if self.options.word_timestamps:
            # faster-whisper may start a first word before its segment (when it prefers the
            # segment's own start); a word never leaves its segment here
            low, high = float(piece["start"]), float(piece["end"])
            words = [Word(start=min(max(float(w["start"]), low), high), end=min(max(float(w["end"]), low), high),
                          word=w["word"], probability=float(w["probability"])) for w in piece.get("words", [])]
        if not any(character.isalnum() for character in text):
            return None  # nothing but spaces or punctuation (". . ." over a pause)
        output: parts.WindowOutput = piece["output"]
        return Segment(
            id=0, seek=piece["seek"], start=round(float(piece["start"]), 3), end=round(float(piece["end"]), 3),
            text=text, tokens=list(piece["tokens"]), temperature=output.temperature,
            avg_logprob=float(output.avg_logprob), compression_ratio=compression_ratio(text),
            no_speech_prob=float(output.no_speech_prob), words=words,
        )


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0
