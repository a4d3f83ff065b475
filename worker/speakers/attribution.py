"""Speakers on a transcript: who said each word, segments that never mix speakers, the names of
known voices, and each speaker's speaking time. Pure functions over worker.transcript types and
the diarizers' turns (worker/speakers/backends.py runs the diarizers)."""

from __future__ import annotations

import bisect
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from worker.audio.decode import SAMPLE_RATE
from worker.transcript import Segment, SpeakerTime, SpeakerTurn, Transcript, Word

ONE_SPEAKER = "SPEAKER_00"
TURN_VAD = {"min_silence_duration_ms": 300, "speech_pad_ms": 0}  # a channel's turns: pauses under 0.3 s bridged
SpeechFinder = Callable[[np.ndarray, dict], List[Tuple[int, int]]]  # (audio, VAD parameters) -> speech spans in samples


def attribute(transcript: Transcript, turns: Sequence, names: Optional[Dict[str, str]] = None) -> Transcript:
    """The transcript with a speaker on every word and segment, segments split at the word where
    the speaker changes, and the speakers list; `names` renames labels (known voices)."""
    names = names or {}
    if not turns and transcript.segments:
        # Whisper heard words where the diarizer found no speech: one voice, not none.
        turns = [SpeakerTurn(s.start, s.end, ONE_SPEAKER) for s in transcript.segments]
    turns = [SpeakerTurn(t.start, t.end, names.get(t.speaker, t.speaker)) for t in turns]  # named once, here
    finder = _TurnFinder(turns)
    pieces = [piece for segment in transcript.segments for piece in _split(segment, finder)]
    return replace(transcript, segments=[replace(piece, id=index) for index, piece in enumerate(pieces)],
                   speakers=speaking_times(turns), speaker_turns=turns)


def by_channel(transcripts: Sequence[Transcript], channels: Sequence[np.ndarray], speech_spans: SpeechFinder) -> Transcript:
    """One transcript per channel (a speaker each, as in call recordings) merged in time order,
    each segment and word labelled CHANNEL_1, CHANNEL_2, ...; turns from each channel's VAD
    (`speech_spans(audio, vad_parameters)`: the decoding stage's, handed in by the service)."""
    labelled = []
    speakers = []
    turns: List[SpeakerTurn] = []
    for number, transcript in enumerate(transcripts, start=1):
        label = f"CHANNEL_{number}"
        for segment in transcript.segments:
            words = [replace(w, speaker=label) for w in segment.words] if segment.words is not None else None
            labelled.append((segment.start, number, replace(segment, speaker=label, words=words)))
        channel_turns = _spoken(channels[number - 1], label, speech_spans)
        turns += channel_turns
        speakers.append(SpeakerTime(label, round(sum(t.end - t.start for t in channel_turns), 3)))
    labelled.sort(key=lambda item: (item[0], item[1]))
    main = max(transcripts, key=lambda t: t.duration_after_vad)
    return replace(main, duration=max(t.duration for t in transcripts),
                   duration_after_vad=sum(t.duration_after_vad for t in transcripts),
                   segments=[replace(segment, id=index) for index, (_, _, segment) in enumerate(labelled)],
                   speakers=speakers, speaker_turns=sorted(turns, key=lambda t: (t.start, t.end)))


def _spoken(audio: np.ndarray, label: str, speech_spans: SpeechFinder) -> List[SpeakerTurn]:
    """When one channel's speaker speaks: VAD without padding, pauses under 0.3 s bridged
    (NIST's convention for speaker turns), independent of what Whisper made of it."""
    spans = speech_spans(audio, TURN_VAD)
    return [SpeakerTurn(round(a / SAMPLE_RATE, 3), round(b / SAMPLE_RATE, 3), label) for a, b in spans if b > a]


def name_voices(voiceprints: Dict[str, np.ndarray], references: Sequence[Tuple[str, np.ndarray]],
                threshold: Optional[float] = None) -> Dict[str, str]:
    """label -> known name, one to one, most similar pairs first; a voice like none of the
    references keeps its label, and a reference like none of the voices names nobody."""
    from worker.speakers.conversation import SAME_VOICE

    threshold = SAME_VOICE if threshold is None else threshold
    labels = list(voiceprints)
    pairs = sorted(((float(voiceprints[label] @ print_), label, name) for label in labels for name, print_ in references), reverse=True)
    named: Dict[str, str] = {}
    for similarity, label, name in pairs:
        if similarity < threshold:
            break
        if label not in named and name not in named.values():
            named[label] = name
    return named


def speaking_times(turns: Sequence) -> List[SpeakerTime]:
    """Seconds each speaker speaks, in order of first appearance."""
    totals: Dict[str, float] = {}
    for turn in turns:
        totals[turn.speaker] = totals.get(turn.speaker, 0.0) + max(0.0, turn.end - turn.start)
    return [SpeakerTime(label, round(seconds, 3)) for label, seconds in totals.items()]


def _split(segment: Segment, finder: "_TurnFinder") -> List[Segment]:
    words = segment.words or []
    if not words:
        return [replace(segment, speaker=finder.speaker(segment.start, segment.end))]
    runs: List[List[Word]] = []
    for word in words:
        word = replace(word, speaker=finder.speaker(word.start, word.end))
        if runs and runs[-1][-1].speaker == word.speaker:
            runs[-1].append(word)
        else:
            runs.append([word])
    if len(runs) == 1:
        return [replace(segment, speaker=runs[0][0].speaker, words=runs[0])]
    pieces = []
    for index, run in enumerate(runs):
        start = segment.start if index == 0 else run[0].start
        end = segment.end if index == len(runs) - 1 else run[-1].end
        # tokens cannot be split at a word without the tokenizer: a split piece carries none
        pieces.append(replace(segment, start=start, end=max(start, end), text="".join(w.word for w in run),
                              tokens=[], speaker=run[0].speaker, words=run))
    return pieces


class _TurnFinder:
    """The speaker of a time span: the one whose turns overlap it most, else the nearest turn."""

    def __init__(self, turns: Sequence):
        self.turns = sorted(turns, key=lambda t: (t.start, t.end))
        self.starts = [t.start for t in self.turns]
        self.latest_end = np.maximum.accumulate([t.end for t in self.turns]).tolist() if self.turns else []

    def speaker(self, start: float, end: float) -> Optional[str]:
        if not self.turns:
            return None
        first = bisect.bisect_right(self.latest_end, start)  # turns before this one end before `start`
        last = bisect.bisect_left(self.starts, max(end, start + 1e-6))  # turns from here start after `end`
        overlap: Dict[str, float] = {}
        for turn in self.turns[first:last]:
            shared = min(end, turn.end) - max(start, turn.start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
        if overlap:
            return max(overlap.items(), key=lambda item: item[1])[0]
        middle = (start + end) / 2
        nearby = self.turns[max(0, first - 1):min(len(self.turns), last + 1)]
        return min(nearby, key=lambda t: max(t.start - middle, middle - t.end, 0.0)).speaker
