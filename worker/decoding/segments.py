"""The rules that turn what Whisper decoded into segments the worker can stand behind: which windows
are kept, which are decoded again (at the next temperature, or their tail), where each segment
starts and ends. Kept apart from the job that schedules the decoding, so that they can be read,
and tested, as rules.

- Every text token becomes part of a segment: text after the last timestamp ends at the window's
  end (faster-whisper's BatchedInferencePipeline throws it away: whole sentences at the end of
  most 30 s chunks). Times are clamped into the window and never go backwards.
- A window the model itself calls silent (no-speech probability over no_speech_threshold and
  average log-probability under log_prob_threshold, as sequential decoding judges) gives nothing.
- So does a repetition loop over audio the model calls non-speech, without falling back to
  sampling: over noise, sampling finds the loop's short cousins ("You", "Thank you.") by chance.
- When the model stops before speech that is there (it leaves out an utterance cut by the
  window's end), the audio after its last timestamp is decoded again: its tail.
- A segment never starts before its speech (start_at_speech, in both decoding modes): Whisper
  often puts a segment's opening timestamp early, over the non-speech before it, as far back as
  its window's start (without VAD, a sentence after 20 s of faint noise was stamped 0.0 s). With
  word timing, a segment starts no earlier than its first word; a start that lies over what
  Silero calls non-speech moves forward to where Silero hears speech (less START_MARGIN_S), never
  past the first word's end (with words) or the segment's end.
"""

from __future__ import annotations

import zlib
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

from worker.audio.decode import SAMPLE_RATE
from worker.decoding.whisper.device import WindowOutput, add_word_timestamps
from worker.decoding.whisper.features import HOP
from worker.decoding.whisper.vad import SpeechOnsets
from worker.decoding.windows import MIN_TAIL_S, Span, Window
from worker.stages import timed
from worker.transcript import Segment, Word

TIME_PRECISION = 0.02  # seconds per timestamp token
TAIL_SPEECH_S = 0.3  # a tail is decoded again only over at least this much speech (with VAD)
START_MARGIN_S = 0.2  # a start moved to speech lands this long before Silero's first speech window
MOVE_WHOLE_S = 0.5  # a segment with no speech in its span moves whole to speech further than this (and before the next segment)


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


def is_hallucination(output: WindowOutput, text: str, compression_ratio_threshold: Optional[float],
                     no_speech_threshold: Optional[float]) -> bool:
    """A repetition loop over audio the model calls non-speech (music, noise, hum): Whisper's
    classic hallucination, with nothing to keep. Not retried at higher temperatures when the
    model calls the audio non-speech: sampling over noise gives a short, confident "You" on
    some draws and not on others (a transcript that changes from run to run)."""
    if compression_ratio_threshold is None or compression_ratio(text) <= compression_ratio_threshold:
        return False
    return no_speech_threshold is None or output.no_speech_prob > no_speech_threshold


def is_silent(output: WindowOutput, no_speech_threshold: Optional[float], log_prob_threshold: Optional[float]) -> bool:
    """Sequential decoding's rule for skipping a window."""
    if no_speech_threshold is None or output.no_speech_prob <= no_speech_threshold:
        return False
    return log_prob_threshold is None or output.avg_logprob < log_prob_threshold


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class SegmentRules:
    """One batched job's rules over its decoded windows: whether an output needs the next
    temperature, which of a window's outputs is kept, its tail, and its segments with word timing.
    `options`: the job's faster-whisper TranscriptionOptions; `spans()`: the speech spans found
    so far (None: no VAD, all of the file is speech)."""

    def __init__(self, whisper, tokenizer, options, spans: Callable[[], Optional[Sequence[Span]]]):
        self.whisper = whisper
        self.tokenizer = tokenizer
        self.options = options
        self._spans = spans

    # -- fallback: the next temperature, or the best of those tried ----------------------------
    def needs_fallback(self, output: WindowOutput) -> bool:
        """Sequential decoding's rule (a loop, or a low log-probability, unless silent), except
        that a loop over what the model calls non-speech is final: see is_hallucination."""
        options = self.options
        if is_silent(output, options.no_speech_threshold, options.log_prob_threshold):
            return False
        if self._loops(output):
            return options.no_speech_threshold is None or output.no_speech_prob <= options.no_speech_threshold
        return options.log_prob_threshold is not None and output.avg_logprob < options.log_prob_threshold

    def best(self, outputs: List[WindowOutput]) -> WindowOutput:
        """The output kept of a window decoded at each temperature in turn: the last, unless it
        still needs a fallback; then the most probable of those that do not loop (of all, if all do)."""
        if not self.needs_fallback(outputs[-1]):
            return outputs[-1]
        candidates = [o for o in outputs if not self._loops(o)] or outputs
        return max(candidates, key=lambda o: o.avg_logprob)

    # -- tails ------------------------------------------------------------------------------------
    def tail(self, window: Window, output: WindowOutput) -> Optional[Window]:
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

    # -- segments ---------------------------------------------------------------------------------
    def window_segments(self, decoded: Iterable[Tuple[Window, WindowOutput]], last_speech: float) -> Tuple[float, List[Segment]]:
        """The segments of one planned window and its tails (in time order), with word timing when
        asked for; `last_speech`: where the job's speech last ended (word timing's running state),
        returned updated."""
        per_window, alignments = [], []
        for window, output in decoded:
            pieces = self._pieces(window, output)
            if pieces:
                per_window.append(pieces)
                alignments.append(output.alignment or [])
        if self.options.word_timestamps:
            last_speech = add_word_timestamps(self.whisper, per_window, alignments, self.tokenizer, self.options, last_speech)
        segments = [segment for pieces in per_window for piece in pieces if (segment := self._segment(piece)) is not None]
        return last_speech, segments

    def _text(self, output: WindowOutput) -> str:
        return self.tokenizer.decode([t for t in output.tokens if t < self.tokenizer.eot])

    def _loops(self, output: WindowOutput) -> bool:
        threshold = self.options.compression_ratio_threshold
        return threshold is not None and compression_ratio(self._text(output)) > threshold

    def _pieces(self, window: Window, output: WindowOutput) -> List[dict]:
        """The window's segment dicts, each ending where the next window's text starts."""
        if self._rejected(output):
            return []
        end = window.duration
        if self.tail(window, output) is not None:
            end = self._last_timestamp(output)  # its tail is a window of its own
        pieces = split_window(output.tokens, self.tokenizer.timestamp_begin, self.tokenizer.eot, window.start / SAMPLE_RATE, end)
        seek = int(round(window.start / HOP))
        for piece in pieces:
            piece.update(seek=seek, output=output)
        return pieces

    def _rejected(self, output: WindowOutput) -> bool:
        """Nothing of this window is kept: silence, or a loop over non-speech."""
        options = self.options
        if is_silent(output, options.no_speech_threshold, options.log_prob_threshold):
            return True
        return is_hallucination(output, self._text(output), options.compression_ratio_threshold, options.no_speech_threshold)

    def _ends_in_text(self, output: WindowOutput) -> bool:
        begin, eot = self.tokenizer.timestamp_begin, self.tokenizer.eot
        for token in reversed(output.tokens):
            if token >= begin:
                return False
            if token < eot:
                return True
        return False

    def _last_timestamp(self, output: WindowOutput) -> Optional[float]:
        stamps = [t for t in output.tokens if t >= self.tokenizer.timestamp_begin]
        return (stamps[-1] - self.tokenizer.timestamp_begin) * TIME_PRECISION if stamps else None

    def _has_speech(self, start: int, end: int) -> bool:
        spans = self._spans()
        if spans is None:
            return True
        needed = int(TAIL_SPEECH_S * SAMPLE_RATE)
        return any(min(end, b) - max(start, a) >= needed for a, b in spans)

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
        output: WindowOutput = piece["output"]
        return Segment(
            id=0, seek=piece["seek"], start=round(float(piece["start"]), 3), end=round(float(piece["end"]), 3),
            text=text, tokens=list(piece["tokens"]), temperature=output.temperature,
            avg_logprob=float(output.avg_logprob), compression_ratio=compression_ratio(text),
            no_speech_prob=float(output.no_speech_prob), words=words,
        )


# -- segment starts (both decoding modes) -----------------------------------------------------------

def start_at_speech(segment: Segment, onsets: SpeechOnsets, next_start: Optional[float] = None) -> Segment:
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


def with_next_start(segments: Iterable[Segment], end_of_audio: Callable[[], float]) -> Iterator[Tuple[Segment, float]]:
    """(segment, where the next one starts) pairs: each segment waits for the next (or for the
    end of the audio), so that a segment stamped over non-speech knows how far its speech may be."""
    previous = None
    for segment in segments:
        if previous is not None:
            yield previous, segment.start
        previous = segment
    if previous is not None:
        yield previous, end_of_audio()
