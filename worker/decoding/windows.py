"""Where the batched job's 30 s windows fall, decided from the speech alone (before any decoding),
so that every window is contiguous audio (model timestamps plus its start are file times) and its
cuts fall between sentences, or at least between words.

Speech spans are merged while the window stays within 30 s and no pause inside it is longer than
MAX_PAUSE_S; a window that cannot take the next span ends at its longest pause past MIN_WINDOW_S;
a span longer than 30 s is cut at its quietest 100 ms near the 30 s mark. On audio still being
decoded, WindowPlanner gives out each window as soon as nothing later can change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from worker.audio.decode import SAMPLE_RATE
from worker.decoding.whisper.vad import SILERO_WINDOW, StreamingSpeech

MAX_WINDOW_S = 30.0
MAX_PAUSE_S = 2.0  # a longer pause between speech spans starts a new window
MIN_WINDOW_S = 10.0  # a full window is cut at its longest pause after this many seconds
MIN_TAIL_S = 1.0  # the least audio decoded on its own: a cut leaves no less behind it, a tail is decoded again if this long
CUT_SEARCH_S = 8.0  # a span over 30 s is cut at its quietest point in its last 8 s before 30 s
ENERGY_FRAME = 320  # 20 ms frames, smoothed over 5 (100 ms), to find where to cut

Span = Tuple[int, int]  # (first sample, end sample) of speech


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


def quietest_point(audio: np.ndarray, low: int, high: int) -> int:
    """The sample index in [low, high) at the centre of the quietest 100 ms."""
    low = max(low, 0)
    frames = (high - low) // ENERGY_FRAME
    if frames < 5:
        return high
    region = audio[low:low + frames * ENERGY_FRAME].reshape(frames, ENERGY_FRAME).astype(np.float64)
    energy = np.convolve((region ** 2).mean(axis=1), np.ones(5) / 5, mode="same")
    return low + int(np.argmin(energy)) * ENERGY_FRAME + ENERGY_FRAME // 2


def plan_windows(audio: np.ndarray, spans: Sequence[Span], max_window_s: float = MAX_WINDOW_S,
                 max_pause_s: float = MAX_PAUSE_S) -> List[Window]:
    """Contiguous windows of at most max_window_s covering every span. A window that cannot take
    the next span ends at its longest pause past MIN_WINDOW_S, so cuts fall between sentences."""
    longest = int(max_window_s * SAMPLE_RATE)
    search = min(int(CUT_SEARCH_S * SAMPLE_RATE), longest // 3)
    pieces: List[Span] = []
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
    current: List[Span] = []
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


def _longest_pause(pieces: List[Span]) -> int:
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


class WindowPlanner:
    """The windows of audio still being decoded, each given out once it can no longer change: VAD
    on the samples as they arrive (or, without VAD, the whole file once it is there), and
    plan_windows on the speech spans that are final. The windows equal plan_windows' on the whole
    file's spans. `audio`: read as DecodingAudio is (wait_for, view, finished)."""

    def __init__(self, audio, vad_parameters: Optional[dict], max_window_s: float = MAX_WINDOW_S):
        self.audio = audio
        self.speech = StreamingSpeech(vad_parameters) if vad_parameters is not None else None
        self.longest = max_window_s
        self.spans: Optional[List[Span]] = [] if self.speech is not None else None  # None: no VAD
        self.windows: List[Window] = []
        self.planned_all = False
        self._spans_planned = 0
        self._restart = (0, 0)  # (span index, windows before it): where planning may start afresh

    def plan_more(self) -> None:
        """Read what was decoded since; add the windows that can no longer change."""
        audio = self.audio
        if self.speech is None:
            length = audio.wait_for(1 << 62)
            spans, self.planned_all = [(0, length)], True
        else:
            self.speech.feed(audio)
            if audio.finished and self.speech.fed + SILERO_WINDOW > audio.wait_for(0):
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

    def plan_first(self) -> None:
        """Until the first window is planned, or all of them (there may be none)."""
        self.plan_more()
        while not self.windows and not self.planned_all:
            self.plan_more()

    @property
    def speech_seconds(self) -> float:
        spans = self.spans if self.spans is not None else [(0, self.audio.wait_for(1 << 62))]
        return sum(end - start for start, end in spans) / SAMPLE_RATE

    @property
    def vad_seconds(self) -> float:
        return self.speech.seconds if self.speech is not None else 0.0
