"""Word edges refined against the audio: Whisper's cross-attention alignment puts a word's start
and end where its attention moves, which at a pause is well before the voice (on read speech the
first word of an utterance started a median ~160 ms before the speech, the last word ended ~150 ms
before the speech ended: `python -m benchmarks timing`). This module moves those edges onto the
audio's own edges, from a level envelope of the samples near each edge (numpy only; one envelope
per segment, over its words and a second either side, shared by all its edges).

The rule, per segment with word timing (both decoding modes, after start_at_speech):
- level: RMS in 20 ms frames every 10 ms of the samples around the edge (EDGE_CONTEXT_S either
  side), high-passed (less their 10 ms moving average), in dB. Speech level S: the 95th percentile of the levels;
  noise floor F: the 5th. Threshold T = max(S - 40 dB, F + 10 dB). Where S - F < MIN_CONTRAST_DB
  there is no pause to find and nothing moves.
- a word start that follows a pause (the segment's first word, or a word after a gap of at least
  GAP_S): where the start falls inside a sound (a run over T that holds a "core" frame, level >=
  S - 20 dB) that rose less than LATE_BACK_S before it (Whisper was late), that sound's rise;
  else, of the rises through T into a sound within [start - BACK_S, start + FORWARD_S], the one
  nearest start + EXPECTED_LAG_S (Whisper is usually early at pauses); never later than the
  word's end less MIN_WORD_S, never earlier than the previous word's end (or the previous
  segment's end).
- a word end that precedes a pause (the segment's last word, or a word before a gap of at least
  GAP_S): of the falls through T out of a sound within [end - BACK_S, end + FORWARD_S], the one
  nearest end + EXPECTED_LAG_S; a sound reaching S - RELEASE_DB within RELEASE_S after the fall (a
  final stop's release, a fricative) joins it. Never past the next word's start or the next
  segment's start; the word keeps MIN_WORD_S.
- adjacent words (gap under GAP_S): where the level dips under T for MIN_DIP_S or more within the
  same bounds around their boundary (the longest such dip), the first ends where the dip starts
  and the second starts where it ends.
- where the level is over T all through the searched stretch (continuous speech), or S - F is
  under MIN_CONTRAST_DB, an edge does not move.
- the segment's start and end follow its first word's start and last word's end when those move.
Words' text never changes; only start and end values move.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np

from worker.audio.decode import SAMPLE_RATE
from worker.transcript import Segment

HOP_S = 0.01
FRAME_S = 0.02
EDGE_CONTEXT_S = 1.0  # samples read either side of an edge (for the levels)
BACK_S = 0.2  # an edge moves at most this much earlier ...
FORWARD_S = 0.5  # ... or this much later
LATE_BACK_S = 0.6  # a start inside a sound (Whisper late) moves back to its rise, at most this much
MIN_WORD_S = 0.05  # a word never gets shorter than this
GAP_S = 0.1  # a gap between words at least this long is a pause
MIN_CONTRAST_DB = 15.0  # speech level over noise floor needed to find an edge
CORE_DB = 20.0  # a core frame is within this of the speech level
RANGE_DB = 40.0  # T is at most this below the speech level ...
FLOOR_DB = 10.0  # ... and at least this over the noise floor
HIGH_PASS_HZ = 100.0
MIN_DIP_S = 0.05  # a stretch under T between adjacent words at least this long is a pause between them
DIPS = True
RELEASE_S = 0.15  # a sound this soon after an end ...
RELEASE_DB = 30.0
EXPECTED_LAG_S = 0.1  # Whisper's edges at pauses are early (tuning set: ~0.15 s): the audio's edge sought near edge + this  # ... within this of the speech level joins the speech

Read = Callable[[int, int], np.ndarray]  # read(start, end) -> samples [start, end) (fewer at the end of the audio)


class Envelope:
    """Levels (dB) of 10 ms hops of the samples read over [start, end) seconds: computed once per
    segment (its words' edges and EDGE_CONTEXT_S beyond), each edge then reading the levels
    within EDGE_CONTEXT_S of it (`around`), so that overlapping edges share the work."""

    def __init__(self, read: Read, start: float, end: float):
        first = max(0, int(round(start * SAMPLE_RATE)))
        samples = np.asarray(read(first, max(first, int(round(end * SAMPLE_RATE)))), dtype=np.float32)
        self.t0 = first / SAMPLE_RATE
        hop, frame = int(HOP_S * SAMPLE_RATE), int(FRAME_S * SAMPLE_RATE)
        self.offset = (frame - hop) / 2 / SAMPLE_RATE  # frame i covers the hop centred at t0 + offset + (i + 0.5) hop
        if samples.shape[0] < frame + hop:
            self.levels = np.zeros(0)
            return
        # high-passed: less its moving average over 1 / HIGH_PASS_HZ (a short FIR: no ringing far from an edge)
        width = int(SAMPLE_RATE / HIGH_PASS_HZ)
        sums = np.cumsum(np.pad(samples, (width // 2 + 1, width - width // 2), mode="edge"), dtype=np.float64)
        filtered = samples - ((sums[width:width + samples.shape[0]] - sums[:samples.shape[0]]) / width).astype(np.float32)
        # a frame (two hops) every hop: the mean power of each hop, then of each pair of hops
        blocks = filtered[:samples.shape[0] // hop * hop].reshape(-1, hop)
        power = np.einsum("ij,ij->i", blocks, blocks).astype(np.float64) / hop
        mean = (power[:-1] + power[1:]) / 2
        self.levels = 10 * np.log10(mean + 1e-12)

    def time(self, index: int) -> float:
        """The start of hop `index`."""
        return self.t0 + self.offset + index * HOP_S

    def index(self, time: float) -> int:
        return min(max(round((time - self.t0 - self.offset) / HOP_S), 0), len(self.levels))

    def around(self, at: float) -> "Envelope":
        """The levels within EDGE_CONTEXT_S of `at` (a view: nothing is recomputed)."""
        first, end = self.index(at - EDGE_CONTEXT_S), self.index(at + EDGE_CONTEXT_S)
        part = Envelope.__new__(Envelope)
        part.t0, part.offset, part.levels = self.time(first) - self.offset, self.offset, self.levels[first:end]
        return part

    def thresholds(self):
        """(threshold T, core level) or None where there is no clear pause."""
        if len(self.levels) < 10:
            return None
        speech, floor = _percentiles(self.levels, 95.0, 5.0)
        if speech - floor < MIN_CONTRAST_DB:
            return None
        return max(speech - RANGE_DB, floor + FLOOR_DB), speech - CORE_DB


def _percentiles(values: np.ndarray, *qs: float):
    """np.percentile's (linear) percentiles of a short array, without its per-call overhead
    (it was the refinement's largest cost: a few per word)."""
    ordered = np.sort(values)
    last = ordered.shape[0] - 1
    found = []
    for q in qs:
        at = q / 100.0 * last
        below = int(at)
        above = min(below + 1, last)
        found.append(float(ordered[below] + (at - below) * (ordered[above] - ordered[below])))
    return found


def _sounds(levels: np.ndarray, threshold: float, core: float, a: int, b: int):
    """Runs [first, end) of frames over T in levels[a:b + 1] that hold a core frame and have a
    frame under T on both sides within it (a run cut by a or b has no edge there: None)."""
    over = levels[a:b + 1] >= threshold
    padded = np.concatenate(([False], over, [False]))
    changes = np.flatnonzero(np.diff(padded.astype(np.int8)))
    runs = []
    for first, end in zip(changes[::2], changes[1::2]):
        if np.any(levels[a + first:a + end] >= core):
            runs.append((a + int(first) if first > 0 else None, a + int(end) if end < len(over) else None))
    return runs


def _search(levels: Envelope, at: float, low: float, high: float):
    """The envelope around `at` (EDGE_CONTEXT_S either side), its (threshold, core) and the
    frame range [a, b] of [low, high]; None where there is no clear pause to find."""
    envelope = levels.around(at)
    found = envelope.thresholds()
    if found is None:
        return None
    a, b = envelope.index(low), min(envelope.index(high), len(envelope.levels) - 1)
    return envelope, found[0], found[1], a, b


def speech_onset(levels: Envelope, start: float, low: float, high: float, earliest: Optional[float] = None) -> Optional[float]:
    """Where speech starts near `start`, searched in [low, high]: where `start` falls inside a
    sound that rose after `earliest` (Whisper was late), that sound's rise; else, of the rises
    through T before a core (a sound), the one nearest `start` + EXPECTED_LAG_S; None when there
    is none (the level is over T from `low` on: continuous speech)."""
    found = _search(levels, start, low, high)
    if found is None:
        return None
    envelope, threshold, core, a, b = found
    if earliest is not None and earliest < low:
        rise = _rise_of_sound_at(envelope, threshold, core, envelope.index(start), envelope.index(earliest), b)
        if rise is not None:
            return rise
    onsets = [envelope.time(first) for first, _end in _sounds(envelope.levels, threshold, core, a, b) if first is not None]
    if not onsets:
        return None
    return min(onsets, key=lambda onset: abs(onset - start - EXPECTED_LAG_S))


def _rise_of_sound_at(envelope: Envelope, threshold: float, core: float, at: int, earliest: int, b: int) -> Optional[float]:
    """The rise of the sound (a run over T holding a core frame) that frame `at` falls in, if it
    rose after frame `earliest`; None when `at` is under T or the sound runs back past it."""
    levels = envelope.levels
    if not (0 <= at < len(levels)) or levels[at] < threshold:
        return None
    first = at
    while first > earliest and levels[first - 1] >= threshold:
        first -= 1
    if first <= earliest:
        return None
    end = at
    while end < min(b, len(levels) - 1) and levels[end + 1] >= threshold:
        end += 1
    if not np.any(levels[first:end + 1] >= core):
        return None
    return envelope.time(first)


def speech_offset(levels: Envelope, end: float, low: float, high: float) -> Optional[float]:
    """Where speech ends near `end`, searched in [low, high]: of the falls through T after a core
    (a sound; a final release within RELEASE_S that reaches S - RELEASE_DB joins it), the one
    nearest `end` + EXPECTED_LAG_S; None when there is none."""
    found = _search(levels, end, low, high)
    if found is None:
        return None
    envelope, threshold, core, a, b = found
    levels = envelope.levels
    offsets = []
    for _first, offset in _sounds(levels, threshold, core, a, b):
        if offset is None:
            continue
        reach = min(b, offset + int(round(RELEASE_S / HOP_S)))
        loud = np.nonzero(levels[offset:reach + 1] >= core + CORE_DB - RELEASE_DB)[0]
        if loud.size:
            last_loud = offset + int(loud[-1])
            after = np.nonzero(levels[last_loud:b + 1] < threshold)[0]
            if after.size:
                offset = last_loud + int(after[0])
        offsets.append(envelope.time(offset))
    if not offsets:
        return None
    return min(offsets, key=lambda offset: abs(offset - end - EXPECTED_LAG_S))


def speech_dip(levels: Envelope, boundary: float, low: float, high: float) -> Optional[tuple]:
    """The longest stretch of MIN_DIP_S or more under T within [low, high] near `boundary`, as
    (start, end) seconds; None when there is none."""
    found = _search(levels, boundary, low, high)
    if found is None:
        return None
    envelope, threshold, _core, a, b = found
    if b <= a:
        return None
    below = np.concatenate(([False], envelope.levels[a:b + 1] < threshold, [False]))
    changes = np.flatnonzero(np.diff(below.astype(np.int8)))
    runs = list(zip(changes[::2], changes[1::2]))  # [first, end) in frames from a
    if not runs:
        return None
    first, end = max(runs, key=lambda run: run[1] - run[0])
    if (end - first) * HOP_S < MIN_DIP_S:
        return None
    return envelope.time(a + int(first)), envelope.time(a + int(end))


class EdgeRefiner:
    """Refines the word edges of each segment in turn (see the module docstring); remembers the
    previous segment's end, so that no word moves before it."""

    def __init__(self, read: Read):
        self.read = read
        self.previous_end = 0.0
        self.seconds = 0.0  # host time spent here

    def __call__(self, segment: Segment, next_start: Optional[float] = None) -> Segment:
        started = time.perf_counter()
        try:
            return self._refine(segment, next_start)
        finally:
            self.seconds += time.perf_counter() - started

    def _refine(self, segment: Segment, next_start: Optional[float]) -> Segment:
        words = segment.words
        if not words:
            return segment
        limit_after = float("inf") if next_start is None else max(next_start, segment.end)
        first, last = words[0].start, words[-1].end
        levels = Envelope(self.read, min(w.start for w in words) - EDGE_CONTEXT_S, max(w.end for w in words) + EDGE_CONTEXT_S)
        for index, word in enumerate(words):
            before = words[index - 1].end if index else self.previous_end
            if index == 0 or word.start - before >= GAP_S:
                low = max(word.start - BACK_S, before)
                high = min(word.start + FORWARD_S, word.end - MIN_WORD_S)
                earliest = max(word.start - LATE_BACK_S, before)
                if high > low:
                    onset = speech_onset(levels, word.start, low, high, earliest)
                    if onset is not None and min(low, earliest) <= onset <= high:
                        word.start = round(onset, 3)
        for index, word in enumerate(words):
            after = words[index + 1].start if index + 1 < len(words) else limit_after
            if index + 1 == len(words) or after - word.end >= GAP_S:
                low = max(word.end - BACK_S, word.start + MIN_WORD_S)
                high = min(word.end + FORWARD_S, after)
                if high > low:
                    offset = speech_offset(levels, word.end, low, high)
                    if offset is not None and low <= offset <= high:
                        word.end = round(offset, 3)
        if DIPS:
            for index in range(1, len(words)):
                before, word = words[index - 1], words[index]
                if word.start - before.end >= GAP_S:
                    continue
                boundary = (before.end + word.start) / 2
                low = max(before.start + MIN_WORD_S, boundary - BACK_S)
                high = min(word.end - MIN_WORD_S, boundary + FORWARD_S)
                if high <= low:
                    continue
                dip = speech_dip(levels, boundary, low, high)
                if dip is not None:
                    before.end, word.start = round(dip[0], 3), round(dip[1], 3)
        if words[0].start != first:
            segment.start = words[0].start
        if words[-1].end != last:
            segment.end = words[-1].end
        self.previous_end = segment.end
        return segment
