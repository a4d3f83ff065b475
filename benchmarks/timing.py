"""`python -m benchmarks timing`: how exact word timestamps are, on audio whose speech edges are
known to the sample by construction.

(a) Speech edges (part `edges`): real read utterances (the VCTK, Harvard and LJ Speech clips,
English; the FLEURS clips, de / en / es / fr / pt) trimmed to their speech by the rule below and
joined with pauses of known, varied lengths (0.3-2.5 s, fixed seeds). The reference is the sample
where each utterance's speech starts and ends; scored: the start of the first word given to each
utterance against its speech start, the end of its last word against its speech end. A word is
given to the utterance whose stretch holds its middle (stretches meet in the middle of pauses).

(b) Every word boundary (part `words`): real recordings of isolated spoken digits (the Free Spoken
Digit Dataset, tests/data/digits/SOURCE.md) trimmed by the same rule and joined into strings of
8-12 digits of one speaker with 0-0.4 s between digits; every digit's start and end is known.
Transcribed words are matched to the digits they say (`align`: same digit, in order, middles
within 1 s); a digit with a word of its own is scored at both edges, a word that says several
digits ("409") at its outer edges only.

(c) Each sequence runs through the worker's real job path (`JobRunner.process`: a base64 WAV in,
`words` out) batched and sequential, with and without VAD, and through faster-whisper untouched,
on the same samples (the WAV decoded as the worker decodes it) with the same loaded model:
`WhisperModel.transcribe(word_timestamps=True)` for sequential and
`BatchedInferencePipeline.transcribe(word_timestamps=True)` for batched (without VAD it is given
consecutive 30 s clips: it refuses audio over 30 s otherwise); library defaults for the rest.
Every job names the sequence's language.

(d) `pocketsphinx-align`, a forced aligner given the true text (`benchmarks/forced_align.py`):
pocketsphinx aligns the known text of every clip of an English sequence (Harvard, LJ Speech and
FLEURS-en transcripts; a digit's word), in order, over the whole sequence's samples, and is scored
as above like any system. Sequences in other languages are not timed by it, nor VCTK's (no
transcripts). The transcripts' four words outside its dictionary are given pronunciations made
from dictionary entries (`PRONUNCIATIONS`, listed in the report); any other fails its sequence,
reported. Included by default where pocketsphinx imports.

(e) An independent reference (report section "Against pocketsphinx's alignment"): on every English
sequence with a known text, every word of every other system is matched to pocketsphinx's aligned
words (`match_words`: the same word once normalised, in order, middles within 1 s, the most pairs;
a word that says several, "409" or "25", at its outer edges), and the absolute differences of
starts (and of ends) are reported, split into edges at pauses (the aligned word's start after, or
its end before, 0.1 s or more with no word; the first start and the last end included) and
boundaries inside continuous speech (less than 0.1 s between the words: what the trimmed edges
cannot measure). pocketsphinx is itself an aligner with its own error (10 ms frames of 25.6 ms
windows, three frames at least a phone, an en-us model that hears nothing over 4 kHz in the 8 kHz
digits): this is a reference independent of the trim's level threshold, not ground truth, so its
figures are differences between two estimates, not errors.

Speech edges (`speech_edges`), per clip:
- level: the RMS of a 10 ms window centred on each sample, of the clip high-passed at 100 Hz
  (2nd-order Butterworth, zero phase), in dB;
- speech level S: the 95th percentile of the clip's levels; noise floor F: the 2nd percentile of
  the levels of every clip of its recording group (a corpus's speaker; a FLEURS clip alone);
- threshold T = max(S - 40 dB, F + 10 dB): a sound stands 10 dB over the room and within 40 dB
  of the voice;
- speech is anchored on cores (40 ms or more at S - 20 dB or above: vowels, not clicks or
  breaths): the start is where the level last rose through T before the first core, the end
  where it last fell through T after the last core;
- across a dip under T, a sound that reaches S - 30 dB and lasts 5 ms joins the speech if the dip
  is at most 30 ms before the start (a burst before its vowel) or 150 ms after the end (a final
  stop's closure, then its release or a fricative); breaths, lip clicks and room noise that are
  further away or quieter do not;
- each edge is then put on a sample: the first (last) sample within 10 ms inside it whose
  magnitude, high-passed forwards (backwards: no ringing outside the edge), reaches T.
A clip whose speech comes within 5 ms of its file's start or end is left out (its speech may be
cut; most FSDD takes are), and so are the digits of a speaker with fewer than 20 takes left. Each
clip is scaled so that S is -20 dBFS (gain does not move its edges). Every trimmed clip thus
starts and ends on speech. Ends are the softer edges: "median vs loud edge" scores the same words
against where the level first / last reaches S - 30 dB instead (`rise_ms` / `fall_ms` inside the
edge, per clip in the JSON), so a reader sees how much of an error is convention.

Pauses are of two kinds, alternating by sequence: `room`, the recordings' own non-speech (each
clip keeps its own audio before its start and after its end, up to half of each pause; the rest
is its recording group's room tone: stretches of 50 ms or more under T from the group's leads and
tails, looped, with 2 ms fades where pieces meet), and `silence`, each clip cut exactly at its
edges with white noise at -80 dBFS between.

Sets: the clips of each corpus and speaker are split in name order into a tuning half and a
held-out half (FLEURS: the first clip of each language tunes, the other two are held out;
digits: speakers lucas and nicolas tune, george and yweweler are held out). Changes to
the worker's timing may be chosen on the tuning set only; the issue's targets are judged on the
held-out set. Sequences come from fixed seeds per set and corpus group, whatever else is built.

Scores per set, part, system, edge and group (all; each language, corpus, pause kind): median and
90th-percentile absolute error, the share within 50 / 100 / 200 ms, the signed median (negative:
early), and how many edges were not timed (no word; inside a word). Nothing passes or fails: the
exit code is 0 and the issue's targets are printed beside the figures.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import facts, forced_align, report
from .audio_files import DATA, ROOT, encode_audio, read_transcripts
from .command import Command, add_shared

SAMPLE_RATE = 16000  # the worker's rate (worker.audio.decode.SAMPLE_RATE; not imported: light module)

# -- the trim: where a clip's speech starts and ends -------------------------------------------------
WINDOW = SAMPLE_RATE // 100  # 10 ms
HIGH_PASS_HZ = 100.0
SPEECH_PERCENTILE = 95.0
FLOOR_PERCENTILE = 2.0
EDGE_BELOW_SPEECH_DB = 40.0
EDGE_OVER_FLOOR_DB = 10.0
CORE_BELOW_SPEECH_DB = 20.0
CORE_SECONDS = 0.040
LOUD_BELOW_SPEECH_DB = 30.0
SOUND_SECONDS = 0.005
START_BRIDGE_SECONDS = 0.030
END_BRIDGE_SECONDS = 0.150
REFINE_SECONDS = 0.010
MARGIN_SECONDS = 0.005
SPEECH_LEVEL_DBFS = -20.0
SILENCE_DBFS = -80.0
FADE_SECONDS = 0.002


@dataclass
class Edges:
    start: int  # first sample of speech
    end: int  # one past the last sample of speech
    speech_db: float  # S
    threshold_db: float  # T
    rise: int  # samples from start to where the level first reaches S - 30 dB
    fall: int  # samples from where the level last is at S - 30 dB to end


def high_passed(audio: np.ndarray, direction: int = 0) -> np.ndarray:
    """The clip through a 2nd-order Butterworth high-pass at 100 Hz: forwards and backwards (zero
    phase) by default; forwards only (+1: nothing rings before an onset) or backwards only (-1:
    nothing rings after an end) to place edges on a sample."""
    from scipy.signal import butter, sosfilt, sosfiltfilt

    x = np.asarray(audio, dtype=np.float64)
    sos = butter(2, HIGH_PASS_HZ, "highpass", fs=SAMPLE_RATE, output="sos")
    if direction > 0:
        return sosfilt(sos, x)
    if direction < 0:
        return sosfilt(sos, x[::-1])[::-1]
    return sosfiltfilt(sos, x) if x.size > 12 else x


def levels(audio: np.ndarray, filtered: Optional[np.ndarray] = None) -> np.ndarray:
    """dB level at each sample: RMS of the 10 ms window centred on it, after the high-pass."""
    x = high_passed(audio) if filtered is None else filtered
    power = np.concatenate([[0.0], np.cumsum(x * x)])
    index = np.arange(x.size)
    lo, hi = np.clip(index - WINDOW // 2, 0, x.size), np.clip(index + WINDOW // 2, 0, x.size)
    return 10 * np.log10((power[hi] - power[lo]) / np.maximum(hi - lo, 1) + 1e-14)


def _runs(mask: np.ndarray) -> List[Tuple[int, int]]:
    """[first, last + 1) of each run of True."""
    steps = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(steps == 1).tolist(), np.flatnonzero(steps == -1).tolist()))


def floor_of(clips: Iterable[np.ndarray]) -> float:
    """A recording group's noise floor F: the 2nd percentile of the levels of all its clips."""
    return float(np.percentile(np.concatenate([levels(c) for c in clips]), FLOOR_PERCENTILE))


def speech_edges(audio: np.ndarray, floor_db: Optional[float] = None) -> Optional[Edges]:
    """The clip's speech edges by the rule in the module docstring; None if it has no core.
    `floor_db` is its recording group's noise floor (default: the clip's own)."""
    level = levels(audio)
    speech = float(np.percentile(level, SPEECH_PERCENTILE))
    floor = float(np.percentile(level, FLOOR_PERCENTILE)) if floor_db is None else floor_db
    threshold = max(speech - EDGE_BELOW_SPEECH_DB, floor + EDGE_OVER_FLOOR_DB)
    core_level = max(speech - CORE_BELOW_SPEECH_DB, threshold)  # a noisy recording: cores stand above T too
    cores = [(a, b) for a, b in _runs(level >= core_level) if b - a >= CORE_SECONDS * SAMPLE_RATE]
    if not cores:
        return None
    loud = speech - LOUD_BELOW_SPEECH_DB
    sounds = [(a, b) for a, b in _runs(level >= threshold)
              if b - a >= SOUND_SECONDS * SAMPLE_RATE and level[a:b].max() >= loud]
    start = next(a for a, b in _runs(level >= threshold) if a <= cores[0][0] < b)
    end = next(b for a, b in _runs(level >= threshold) if a < cores[-1][1] <= b)
    changed = True
    while changed:  # sounds across short dips join the speech
        changed = False
        for a, b in sounds:
            if b <= start and start - b <= START_BRIDGE_SECONDS * SAMPLE_RATE:
                start, changed = a, True
            if a >= end and a - end <= END_BRIDGE_SECONDS * SAMPLE_RATE:
                end, changed = b, True
    amplitude = 10 ** (threshold / 20)
    reach = int(REFINE_SECONDS * SAMPLE_RATE)
    inside = np.flatnonzero(np.abs(high_passed(audio, +1)[start:min(end, start + reach)]) >= amplitude)
    if inside.size:
        start += int(inside[0])
    inside = np.flatnonzero(np.abs(high_passed(audio, -1)[max(start, end - reach):end]) >= amplitude)
    if inside.size:
        end = max(start, end - reach) + int(inside[-1]) + 1
    loud_at = np.flatnonzero(level[start:end] >= loud)
    rise = int(loud_at[0]) if loud_at.size else 0
    fall = int(end - start - loud_at[-1] - 1) if loud_at.size else 0
    return Edges(int(start), int(end), speech, threshold, rise, fall)


# -- the clips ---------------------------------------------------------------------------------------

@dataclass
class Clip:
    name: str
    corpus: str  # vctk, harvard, ljspeech, fleurs, digits
    language: str
    speaker: str  # its recording group
    text: Optional[str]
    audio: np.ndarray  # the whole file at 16 kHz, scaled so that its speech level is -20 dBFS
    start: int
    end: int
    rise: int = 0
    fall: int = 0
    threshold_db: float = SPEECH_LEVEL_DBFS - EDGE_BELOW_SPEECH_DB  # T after scaling

    @property
    def speech(self) -> np.ndarray:
        return self.audio[self.start:self.end]

    @property
    def lead(self) -> np.ndarray:
        return self.audio[:self.start]

    @property
    def tail(self) -> np.ndarray:
        return self.audio[self.end:]


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGITS_TUNING = ("jackson", "lucas", "nicolas")
MIN_DIGIT_TAKES = 20  # of a speaker's 50; jackson and theo have fewer clear of their file's edges
CORPORA = ("vctk", "harvard", "ljspeech", "fleurs", "digits")


def _files(corpus: str, data: Path) -> List[Tuple[str, str, str, str, Optional[str]]]:
    """(path, name, language, recording group, text) of a corpus's files, in name order."""
    out = []
    if corpus == "vctk":
        for folder in sorted((data / "voices").glob("vctk-*")):
            out += [(str(f), f.name, "en", folder.name, None) for f in sorted(folder.glob("*.flac"))]
    elif corpus in ("harvard", "ljspeech"):
        texts = read_transcripts(data / corpus)
        out += [(str(data / corpus / n), n, "en", n.split("_")[0] if corpus == "harvard" else "lj", t) for n, t in texts.items()]
    elif corpus == "fleurs":
        texts = read_transcripts(data / "fleurs")
        out += [(str(data / "fleurs" / n), n, n.split("-")[1], n, t) for n, t in texts.items()]
    elif corpus == "digits":
        for f in sorted((data / "digits").glob("*.flac")):
            digit, speaker, _ = f.stem.split("_")
            out.append((str(f), f.name, "en", speaker, DIGIT_WORDS[int(digit)]))
    else:
        raise ValueError(f"unknown corpus {corpus!r}; expected one of {', '.join(CORPORA)}")
    return out


def load_clips(corpus: str, data: Path = DATA) -> Tuple[List[Clip], List[dict]]:
    """A corpus's clips with their speech edges, and the files left out (with the reason)."""
    from worker.audio.decode import decode_audio

    files = _files(corpus, data)
    audio = {path: decode_audio(path, 600.0) for path, *_ in files}
    floors = {group: floor_of([audio[p] for p, _, _, g, _ in files if g == group]) for group in {f[3] for f in files}}
    clips, left_out = [], []
    margin = int(MARGIN_SECONDS * SAMPLE_RATE)
    for path, name, language, group, text in files:
        samples = audio[path]
        edges = speech_edges(samples, floors[group])
        if edges is None:
            left_out.append({"corpus": corpus, "clip": name, "reason": "no speech core"})
            continue
        if edges.start < margin or samples.size - edges.end < margin:
            left_out.append({"corpus": corpus, "clip": name, "reason": "speech within 5 ms of the file's edge",
                             "lead_ms": round(1000 * edges.start / SAMPLE_RATE, 1), "tail_ms": round(1000 * (samples.size - edges.end) / SAMPLE_RATE, 1)})
            continue
        gain = 10 ** ((SPEECH_LEVEL_DBFS - edges.speech_db) / 20)
        clips.append(Clip(name, corpus, language, group, text, (samples * gain).astype(np.float32), edges.start, edges.end, edges.rise, edges.fall,
                          edges.threshold_db + 20 * np.log10(gain)))
    if corpus == "digits":  # a digit string needs a speaker with takes of many digits
        counts = {s: sum(c.speaker == s for c in clips) for s in {c.speaker for c in clips}}
        left_out += [{"corpus": corpus, "clip": c.name, "reason": f"speaker with fewer than {MIN_DIGIT_TAKES} usable takes"}
                     for c in clips if counts[c.speaker] < MIN_DIGIT_TAKES]
        clips = [c for c in clips if counts[c.speaker] >= MIN_DIGIT_TAKES]
    return clips, left_out


def split(clips: List[Clip]) -> Dict[str, List[Clip]]:
    """Tuning and held-out halves (see the module docstring)."""
    sets: Dict[str, List[Clip]] = {"tuning": [], "held-out": []}
    groups: Dict[Tuple[str, str], List[Clip]] = {}
    for clip in clips:
        key = (clip.corpus, clip.language if clip.corpus == "fleurs" else clip.speaker)
        groups.setdefault(key, []).append(clip)
    for (corpus, _), members in sorted(groups.items()):
        for index, clip in enumerate(sorted(members, key=lambda c: c.name)):
            if corpus == "fleurs":
                tuning = index == 0
            elif corpus == "digits":
                tuning = clip.speaker in DIGITS_TUNING
            else:
                tuning = index % 2 == 0
            sets["tuning" if tuning else "held-out"].append(clip)
    return sets


# -- sequences ---------------------------------------------------------------------------------------

@dataclass
class Placed:
    clip: Clip
    start: int  # speech edges in the sequence (samples)
    end: int
    pause_before: float  # seconds
    pause_after: float


@dataclass
class Joined:
    name: str
    set: str
    part: str  # edges or words
    corpus: str
    language: str
    pause_kind: str  # room or silence
    audio: np.ndarray
    placed: List[Placed] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.audio.size / SAMPLE_RATE


def _fade(piece: np.ndarray, start: Optional[int] = None, end: Optional[int] = None) -> np.ndarray:
    """`piece` faded in over its first `start` and out over its last `end` samples (2 ms, and at
    most half the piece, by default)."""
    piece = piece.astype(np.float32).copy()
    default = min(int(FADE_SECONDS * SAMPLE_RATE), piece.size // 2)
    for n, at_start in ((default if start is None else min(start, default), True), (default if end is None else min(end, default), False)):
        if n > 0:
            ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n + 2)[1:-1])).astype(np.float32)
            if at_start:
                piece[:n] *= ramp
            else:
                piece[-n:] *= ramp[::-1]
    return piece


ROOM_PIECE_SECONDS = 0.05


def room_tone(clips: Sequence[Clip]) -> np.ndarray:
    """A recording group's room: the stretches of its clips' leads and tails (10 ms clear of the
    speech) that stay under T for 50 ms or more (no breath, click or other sound), each faded in
    and out over 2 ms, joined. Digital silence if there are none."""
    pieces = []
    for clip in clips:
        quiet = levels(clip.audio) < clip.threshold_db
        quiet[max(0, clip.start - WINDOW):clip.end + WINDOW] = False
        pieces += [_fade(clip.audio[a:b]) for a, b in _runs(quiet) if b - a >= ROOM_PIECE_SECONDS * SAMPLE_RATE]
    return np.concatenate(pieces) if pieces else np.zeros(SAMPLE_RATE // 10, dtype=np.float32)


def _filler(tone: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    if length <= 0:
        return np.zeros(0, dtype=np.float32)
    offset = int(rng.integers(tone.size))
    return _fade(np.resize(np.roll(tone, -offset), length))


def join(name: str, set_name: str, part: str, clips: Sequence[Clip], pauses: Sequence[float], kind: str,
         tones: Dict[str, np.ndarray], rng: np.random.Generator) -> Joined:
    """`clips` with `pauses` (seconds; len(clips) + 1: before the first, between, after the last)
    of non-speech of `kind`; the reference edges are where each clip's speech lands."""
    assert len(pauses) == len(clips) + 1
    lengths = [int(round(p * SAMPLE_RATE)) for p in pauses]
    parts: List[np.ndarray] = []
    placed: List[Placed] = []
    position = 0

    def add(piece: np.ndarray) -> None:
        nonlocal position
        parts.append(piece.astype(np.float32))
        position += piece.size

    for index, clip in enumerate(clips):
        before, after = lengths[index], lengths[index + 1]
        if kind == "silence":
            if index == 0:
                add(_noise(before, rng))
            placed.append(Placed(clip, position, position + clip.speech.size, pauses[index], pauses[index + 1]))
            add(clip.speech)
            add(_noise(after, rng))
            continue
        # room: this clip's own non-speech beside its speech, up to half of each pause (all of
        # the first and last pause), the rest of the pause from its group's room tone
        own_before = min(clip.start, before if index == 0 else before - before // 2)
        own_after = min(clip.tail.size, after if index == len(clips) - 1 else after // 2)
        wanted_before = before if index == 0 else before - before // 2
        add(_filler(tones[clip.speaker], wanted_before - own_before, rng))
        segment = clip.audio[clip.start - own_before:clip.end + own_after]
        placed.append(Placed(clip, position + own_before, position + own_before + clip.speech.size, pauses[index], pauses[index + 1]))
        add(_fade(segment, start=own_before, end=own_after))  # fades stay in the non-speech
        wanted_after = after if index == len(clips) - 1 else after // 2
        add(_filler(tones[clip.speaker], wanted_after - own_after, rng))
    audio = np.concatenate(parts)
    first = clips[0]
    return Joined(name, set_name, part, first.corpus, first.language, kind, audio, placed)


def _noise(length: int, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal(max(length, 0)) * 10 ** (SILENCE_DBFS / 20)).astype(np.float32)


# (utterances per sequence, times each clip is used in its set, pause range in seconds)
PLAN = {
    "vctk": ((4, 6), 1, (0.3, 2.5)),
    "harvard": ((2, 3), 1, (0.3, 2.5)),
    "ljspeech": ((3, 5), 1, (0.3, 2.5)),
    "fleurs": ((1, 2), 1, (0.3, 2.5)),
    "digits": ((8, 12), 1, (0.0, 0.4)),
}
EDGE_PAUSES = (0.3, 2.5)  # before the first and after the last utterance, every part
SEEDS = {"tuning": 3000, "held-out": 4000}


def sequences(clips_by_set: Dict[str, List[Clip]], tones: Dict[str, np.ndarray], limit: Optional[int] = None) -> List[Joined]:
    """Every set's sequences: per corpus (FLEURS: per language; digits: per speaker), the clips
    shuffled and cut into sequences of the planned size, each clip used the planned number of
    times; pauses and kinds from fixed seeds. In round-robin order over the sets and groups, so
    that a run cut short has measured a little of everything."""
    queues: List[List[Joined]] = []
    for set_name, clips in clips_by_set.items():
        groups: Dict[Tuple[str, str], List[Clip]] = {}
        for clip in clips:
            key = (clip.corpus, clip.language if clip.corpus == "fleurs" else clip.speaker if clip.corpus == "digits" else "")
            groups.setdefault(key, []).append(clip)
        for (corpus, sub), members in sorted(groups.items()):
            (low, high), uses, (pause_low, pause_high) = PLAN[corpus]
            label = f"{corpus}{'-' + sub if sub else ''}"
            rng = np.random.default_rng([SEEDS[set_name], zlib.crc32(label.encode())])  # the same sequences whatever else is built
            members = sorted(members, key=lambda c: c.name)
            made, out = 0, []
            queues.append(out)
            for _ in range(uses):
                order = [members[i] for i in rng.permutation(len(members))]
                while order and (limit is None or made < limit):
                    size = min(len(order), int(rng.integers(low, high + 1)))
                    chosen, order = order[:size], order[size:]
                    inner = rng.uniform(pause_low, pause_high, size - 1).tolist()
                    pauses = [rng.uniform(*EDGE_PAUSES)] + inner + [rng.uniform(*EDGE_PAUSES)]
                    kind = ("room", "silence")[made % 2]
                    part = "words" if corpus == "digits" else "edges"
                    name = f"{set_name}-{label}-{made:02d}"
                    out.append(join(name, set_name, part, chosen, pauses, kind, tones, rng))
                    made += 1
    return [queue[index] for index in range(max(map(len, queues), default=0)) for queue in queues if index < len(queue)]


def build(corpora: Sequence[str], sets: Sequence[str], languages: Optional[Sequence[str]] = None,
          limit: Optional[int] = None, data: Path = DATA) -> Tuple[List[Joined], List[dict], Dict[str, int]]:
    """The sequences of the named corpora and sets (and languages), the clips left out, and how
    many clips each set drew on."""
    clips, left_out = [], []
    for corpus in corpora:
        found, dropped = load_clips(corpus, data)
        clips += [c for c in found if not languages or c.language in languages]
        left_out += dropped
    tones = {group: room_tone([c for c in clips if c.speaker == group]) for group in {c.speaker for c in clips}}
    by_set = {name: members for name, members in split(clips).items() if name in sets}
    return sequences(by_set, tones, limit), left_out, {name: len(members) for name, members in by_set.items()}


# -- scoring -----------------------------------------------------------------------------------------

Word = Tuple[float, float, str]  # (start, end, text)


def _scored(sequence: Joined, item: Placed, edge: str, hypothesis: Optional[float], word: Optional[str]) -> dict:
    """One reference edge and what a system put there: the error against the edge (ms,
    hypothesis minus reference: negative is early), and against the loud edge (where the level
    first / last reaches S - 30 dB: another convention, `rise` / `fall` ms inside)."""
    reference = (item.start if edge == "start" else item.end) / SAMPLE_RATE
    soft = (item.clip.rise if edge == "start" else -item.clip.fall) / SAMPLE_RATE
    return {
        "sequence": sequence.name, "clip": item.clip.name, "corpus": item.clip.corpus, "language": item.clip.language,
        "edge": edge, "reference_s": round(reference, 4), "hypothesis_s": None if hypothesis is None else round(hypothesis, 3),
        "error_ms": None if hypothesis is None else round(1000 * (hypothesis - reference), 1),
        "error_loud_ms": None if hypothesis is None else round(1000 * (hypothesis - reference - soft), 1),
        "word": word, "pause_s": round(item.pause_before if edge == "start" else item.pause_after, 3),
    }


def edge_errors(sequence: Joined, words: Sequence[Word]) -> List[dict]:
    """Each utterance's speech start against the start of the first word given to it, its end
    against the end of its last word. A word is given to the utterance whose stretch holds the
    word's middle; stretches meet in the middle of each pause."""
    rows = []
    cuts = [0.0] + [(a.end + b.start) / 2 / SAMPLE_RATE for a, b in zip(sequence.placed, sequence.placed[1:])] + [float("inf")]
    for index, item in enumerate(sequence.placed):
        mine = [w for w in words if cuts[index] <= (w[0] + w[1]) / 2 < cuts[index + 1]]
        rows.append(_scored(sequence, item, "start", mine[0][0] if mine else None, mine[0][2] if mine else None))
        rows.append(_scored(sequence, item, "end", mine[-1][1] if mine else None, mine[-1][2] if mine else None))
    return rows


_SAID = {w: i for i, w in enumerate(DIGIT_WORDS)}
_SAID.update({"oh": 0, "o": 0, "won": 1, "to": 2, "too": 2, "for": 4, "ate": 8})


def digits_of(text: str) -> List[int]:
    """The digits a transcribed word says: "7", "seven" -> [7]; "4096" -> [4, 0, 9, 6]; else []."""
    token = re.sub(r"[^\w]", "", text.lower())
    if token.isdigit():
        return [int(c) for c in token]
    return [_SAID[token]] if token in _SAID else []


MATCH_WITHIN_S = 1.0  # a word can say a reference digit only if their middles are this close


def align(reference: Sequence[Tuple[int, float]], tokens: Sequence[Tuple[int, float]]) -> Dict[int, int]:
    """reference index -> token index: the most (digit, middle) pairs that say the same digit
    with middles within MATCH_WITHIN_S, in order on both sides; ties go to the smaller total
    time difference. (By content alone, a hallucinated repeat of the string would match.)"""
    n, m = len(reference), len(tokens)
    best = [[(0, 0.0)] * (m + 1) for _ in range(n + 1)]  # (matches, -total seconds apart)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            options = [best[i - 1][j], best[i][j - 1]]
            apart = abs(reference[i - 1][1] - tokens[j - 1][1])
            if reference[i - 1][0] == tokens[j - 1][0] and apart <= MATCH_WITHIN_S:
                matches, cost = best[i - 1][j - 1]
                options.append((matches + 1, cost - apart))
            best[i][j] = max(options)
    pairs: Dict[int, int] = {}
    i, j = n, m
    while i and j:
        apart = abs(reference[i - 1][1] - tokens[j - 1][1])
        if (reference[i - 1][0] == tokens[j - 1][0] and apart <= MATCH_WITHIN_S
                and best[i][j] == (best[i - 1][j - 1][0] + 1, best[i - 1][j - 1][1] - apart)):
            pairs[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif best[i][j] == best[i - 1][j]:
            i -= 1
        else:
            j -= 1
    return pairs


def word_errors(sequence: Joined, words: Sequence[Word]) -> List[dict]:
    """Every digit's start and end against the word that says it, where the model gave that
    digit a word of its own (`align`: same digit, in order, middles within 1 s). A word that says
    several digits ("409") is scored at its outer edges only, the boundaries inside it are not
    timed; a digit no word says is missed."""
    reference = [(_SAID[p.clip.text], (p.start + p.end) / 2 / SAMPLE_RATE) for p in sequence.placed]
    tokens = [(index, digit) for index, w in enumerate(words) for digit in digits_of(w[2])]
    middles = [(words[index][0] + words[index][1]) / 2 for index, _ in tokens]
    owner = {r: tokens[t][0] for r, t in align(reference, [(d, middles[k]) for k, (_, d) in enumerate(tokens)]).items()}
    rows = []
    for index, item in enumerate(sequence.placed):
        word_index = owner.get(index)
        shared = [i for i, w in owner.items() if w == word_index]
        for edge in ("start", "end"):
            timed = word_index is not None and (min(shared) if edge == "start" else max(shared)) == index
            hypothesis = None if not timed else words[word_index][0 if edge == "start" else 1]
            row = _scored(sequence, item, edge, hypothesis, None if word_index is None else words[word_index][2])
            row["status"] = "timed" if timed else "missed" if word_index is None else "inside a word"
            rows.append(row)
    return rows


def stats(errors_ms: Sequence[Optional[float]], loud_ms: Sequence[Optional[float]] = ()) -> dict:
    """Median / p90 absolute error, share within 50 / 100 / 200 ms (of the scored), signed median,
    how many edges were not timed (no word, or inside a word), and the median absolute error
    against the loud edges."""
    scored = np.array([e for e in errors_ms if e is not None], dtype=float)
    loud = np.array([e for e in loud_ms if e is not None], dtype=float)
    out = {"n": int(scored.size), "missed": int(sum(e is None for e in errors_ms))}
    if not scored.size:
        return {**out, "median_ms": None, "p90_ms": None, "within_50": None, "within_100": None, "within_200": None,
                "signed_median_ms": None, "median_loud_ms": None}
    absolute = np.abs(scored)
    return {**out, "median_ms": round(float(np.median(absolute)), 1), "p90_ms": round(float(np.percentile(absolute, 90)), 1),
            "within_50": round(float(np.mean(absolute <= 50)), 4), "within_100": round(float(np.mean(absolute <= 100)), 4),
            "within_200": round(float(np.mean(absolute <= 200)), 4), "signed_median_ms": round(float(np.median(scored)), 1),
            "median_loud_ms": round(float(np.median(np.abs(loud))), 1) if loud.size else None}


def summarise(rows: List[dict]) -> List[dict]:
    """Per set, part, system, edge (start / end; words: also every boundary) and group (all, each
    language, each corpus, each pause kind)."""
    out = []
    keys: Dict[tuple, List[dict]] = {}
    for r in rows:
        groups = ["all", f"language {r['language']}", f"corpus {r['corpus']}", f"pauses {r['pause_kind']}"]
        edges = [r["edge"]] + (["boundary"] if r["part"] == "words" else [])
        for group in groups:
            for edge in edges:
                keys.setdefault((r["set"], r["part"], r["system"], edge, group), []).append(r)
    for (set_name, part, system, edge, group), mine in keys.items():
        out.append({"set": set_name, "part": part, "system": system, "edge": edge, "group": group,
                    **stats([r["error_ms"] for r in mine], [r["error_loud_ms"] for r in mine])})
    return out


# -- pocketsphinx: a forced aligner given the true text, and an independent reference ------------------

PRONUNCIATIONS = {  # the transcripts' words that pocketsphinx's dictionary lacks, made from its entries
    "splendours": "S P L EH N D ER Z",  # splendor + s
    "woodcutters": "W UH D K AH T ER Z",  # wood + cutters
    "shapeliness": "SH EY P L IY N AH S",  # shapely + the -ness of loveliness
    "sintra": "S IH N T R AH",  # sin + -tra
}
PAUSE_SECONDS = 0.1  # in pocketsphinx's alignment, this much with no word between two words is a pause


@dataclass
class Alignment:
    status: str  # aligned, failed (out of the dictionary, no alignment), not timed (not English, no text, no pocketsphinx)
    words: List[Word] = field(default_factory=list)
    seconds: float = 0.0  # pocketsphinx's time
    detail: Optional[str] = None
    by_hand: List[str] = field(default_factory=list)  # words pronounced from PRONUNCIATIONS

    def json(self) -> dict:
        return {"status": self.status, "detail": self.detail, "seconds": round(self.seconds, 3), "pronounced_by_hand": self.by_hand,
                "words": [[round(a, 3), round(b, 3), t] for a, b, t in self.words]}


def known_words(sequence: Joined) -> Optional[List[str]]:
    """The words the sequence says, normalised for the aligner, in order; None if a clip has no text."""
    if any(p.clip.text is None for p in sequence.placed):
        return None
    return [w for p in sequence.placed for w in forced_align.normalise(p.clip.text)]


def force_align(sequence: Joined, samples: np.ndarray) -> Alignment:
    """pocketsphinx's alignment of the sequence's known text over `samples` (see the module docstring)."""
    if sequence.language != "en":
        return Alignment("not timed", detail=f"language {sequence.language}: pocketsphinx's model is English")
    words = known_words(sequence)
    if words is None:
        return Alignment("not timed", detail=f"{sequence.corpus}: no reference text")
    if not forced_align.available():
        return Alignment("not timed", detail="pocketsphinx is not installed")
    by_hand = sorted({w for w in words if w in PRONUNCIATIONS and forced_align.pronunciation(w) is None})
    started = time.perf_counter()
    try:
        aligned = forced_align.align(samples, words, pronunciations=PRONUNCIATIONS)
    except (forced_align.OutOfDictionary, forced_align.AlignmentFailed) as error:
        return Alignment("failed", seconds=time.perf_counter() - started, detail=str(error), by_hand=by_hand)
    return Alignment("aligned", [(w.start, w.end, w.text) for w in aligned], time.perf_counter() - started, by_hand=by_hand)


def word_tokens(text: str, digits: bool = False) -> List[str]:
    """A transcribed word as the aligner's words (`forced_align.normalise`: "Forty-two," -> forty
    two, "25" -> twenty five); in a digit string, a word that says digits as theirs ("409" -> four
    zero nine, "oh" -> zero)."""
    said = digits_of(text) if digits else []
    return [DIGIT_WORDS[d] for d in said] if said else forced_align.normalise(text)


def match_words(reference: Sequence[Word], hypothesis: Sequence[Word], digits: bool = False) -> Dict[int, Tuple[Optional[int], Optional[int]]]:
    """hypothesis word -> (the reference word its first token matched, the one its last token
    matched; None where that token matched none), for every word with a token matched: tokens
    (`word_tokens`) matched to reference words by `align` (the same word, in order, middles
    within MATCH_WITHIN_S, the most pairs)."""
    tokens = [(index, token) for index, w in enumerate(hypothesis) for token in word_tokens(w[2], digits)]
    middles = [(hypothesis[index][0] + hypothesis[index][1]) / 2 for index, _ in tokens]
    pairs = align([(w[2], (w[0] + w[1]) / 2) for w in reference], [(token, middles[k]) for k, (_, token) in enumerate(tokens)])
    by_token = {t: r for r, t in pairs.items()}
    out: Dict[int, Tuple[Optional[int], Optional[int]]] = {}
    for index in sorted({tokens[t][0] for t in by_token}):
        mine = [k for k, (owner, _) in enumerate(tokens) if owner == index]
        out[index] = (by_token.get(mine[0]), by_token.get(mine[-1]))
    return out


def versus_reference(sequence: Joined, words: Sequence[Word], reference: Sequence[Word], system: str) -> List[dict]:
    """Every start and end of pocketsphinx's aligned words against the matched word of `system`
    (`match_words`; difference ms = system minus pocketsphinx, None where no word matched), with
    where the edge is: at a pause (PAUSE_SECONDS or more with no word before a start / after an
    end; the first start and the last end always) or inside speech."""
    matched = match_words(reference, words, digits=sequence.part == "words")
    at: Dict[Tuple[int, str], Tuple[float, str]] = {}
    for index, (first, last) in matched.items():
        if first is not None:
            at[(first, "start")] = (words[index][0], words[index][2])
        if last is not None:
            at[(last, "end")] = (words[index][1], words[index][2])
    rows = []
    for k, (start, end, text) in enumerate(reference):
        gaps = {"start": round(start - reference[k - 1][1], 3) if k else float("inf"),  # rounded: 10 frames is 0.1 s, not 0.0999...
                "end": round(reference[k + 1][0] - end, 3) if k + 1 < len(reference) else float("inf")}
        for edge, value in (("start", start), ("end", end)):
            hypothesis, word = at.get((k, edge), (None, None))
            rows.append({"system": system, "set": sequence.set, "part": sequence.part, "corpus": sequence.corpus, "sequence": sequence.name,
                         "edge": edge, "where": "pause" if gaps[edge] >= PAUSE_SECONDS else "inside speech",
                         "gap_s": None if gaps[edge] == float("inf") else gaps[edge], "reference_word": text, "word": word,
                         "reference_s": round(value, 3), "hypothesis_s": None if hypothesis is None else round(hypothesis, 3),
                         "difference_ms": None if hypothesis is None else round(1000 * (hypothesis - value), 1)})
    return rows


def reference_summary(rows: List[dict]) -> List[dict]:
    """Per set, system, where (pause, inside speech), edge (start, end) and group (all,
    utterances, digits): `stats` of the differences (missed: no word matched)."""
    keys: Dict[tuple, List[dict]] = {}
    for r in rows:
        for group in ("all", "utterances" if r["part"] == "edges" else "digits"):
            keys.setdefault((r["set"], r["system"], r["where"], r["edge"], group), []).append(r)
    return [{"set": set_name, "system": system, "where": where, "edge": edge, "group": group, **stats([r["difference_ms"] for r in mine])}
            for (set_name, system, where, edge, group), mine in keys.items()]


# -- the systems ---------------------------------------------------------------------------------------

SYSTEMS = {
    "worker-batched-vad": ("worker", "batched", True),
    "worker-batched": ("worker", "batched", False),
    "worker-sequential-vad": ("worker", "sequential", True),
    "worker-sequential": ("worker", "sequential", False),
    "fw-batched-vad": ("faster-whisper", "batched", True),
    "fw-batched": ("faster-whisper", "batched", False),
    "fw-sequential-vad": ("faster-whisper", "sequential", True),
    "fw-sequential": ("faster-whisper", "sequential", False),
    "pocketsphinx-align": ("pocketsphinx", "align", False),  # given the true text; English only
}


def default_systems() -> List[str]:
    """Every system; pocketsphinx's only where it imports."""
    return [s for s in SYSTEMS if SYSTEMS[s][0] != "pocketsphinx" or forced_align.available()]


def label(system: str) -> str:
    who, mode, vad = SYSTEMS[system]
    if who == "pocketsphinx":
        return "pocketsphinx align, known text"
    return f"{who} {mode}{', VAD' if vad else ', no VAD'}"


def transcribe(system: str, runner, samples: np.ndarray, wav_base64: str, language: str, batch_size: int) -> List[Word]:
    """The words `system` gives the sequence: the worker's job output, or faster-whisper's own."""
    who, mode, vad = SYSTEMS[system]
    if who == "worker":
        job = {"audio_base64": wav_base64, "word_timestamps": True, "language": language,
               "batch_size": 1 if mode == "sequential" else batch_size, "vad_filter": vad}
        output = runner.process({"id": system, "input": job})
        if "error" in output:
            raise RuntimeError(f"{system}: {output['error']}")
        return [(w["start"], w["end"], w["word"]) for w in output.get("words", [])]
    whisper = runner.engine.model.whisper
    if mode == "sequential":
        segments, _ = whisper.transcribe(samples, language=language, word_timestamps=True, vad_filter=vad)
    else:
        from faster_whisper import BatchedInferencePipeline

        extra = {}
        if not vad:  # it refuses audio over 30 s without VAD unless given clips: consecutive 30 s ones
            seconds = samples.size / SAMPLE_RATE
            extra["clip_timestamps"] = [{"start": s, "end": min(s + 30.0, seconds)} for s in np.arange(0.0, seconds, 30.0).tolist()]
        segments, _ = BatchedInferencePipeline(whisper).transcribe(samples, language=language, word_timestamps=True, vad_filter=vad,
                                                                   batch_size=batch_size, **extra)
    return [(w.start, w.end, w.word) for segment in segments for w in (segment.words or [])]


def evaluate(runner, items: List[Joined], systems: Sequence[str], batch_size: int, progress=None, log=print,
             done: Optional[Callable[[List[dict], List[dict]], None]] = None,
             reference: Optional[dict] = None) -> Tuple[List[dict], List[dict]]:
    """Every sequence through every system: (errors, runs); `done(errors, runs)` after each sequence.
    With `reference` (a dict), pocketsphinx's alignment of each sequence goes into its
    "alignments" (by sequence) and every other system's words against it into its "rows"."""
    from worker.audio.decode import decode_audio

    rows, runs = [], []
    for sequence in items:
        wav = encode_audio(sequence.audio, SAMPLE_RATE)
        samples = decode_audio(wav, 3600.0)  # what the worker hears from the WAV, for the library too
        encoded = base64.b64encode(wav).decode("ascii")
        aligned = None
        if reference is not None or any(SYSTEMS[s][0] == "pocketsphinx" for s in systems):
            aligned = force_align(sequence, samples)
            if reference is not None:
                reference.setdefault("alignments", {})[sequence.name] = aligned.json()
        for system in systems:
            if progress is not None:
                progress.describe(f"{sequence.name} {system}")
            started = time.perf_counter()
            if SYSTEMS[system][0] == "pocketsphinx":
                if aligned.status == "not timed":  # not English, no text: no rows, the run says why
                    runs.append({"system": system, "sequence": sequence.name, "seconds": 0.0, "audio_seconds": round(sequence.seconds, 2),
                                 "words": [], "not_timed": aligned.detail})
                    if progress is not None:
                        progress.update(sequence.seconds)
                    continue
                words, seconds = aligned.words, aligned.seconds  # failed: no words, every edge missed
            else:
                words = transcribe(system, runner, samples, encoded, sequence.language, batch_size)
                seconds = time.perf_counter() - started
            score = word_errors if sequence.part == "words" else edge_errors
            found = score(sequence, words)
            for r in found:
                r.update({"system": system, "set": sequence.set, "part": sequence.part, "pause_kind": sequence.pause_kind})
            rows += found
            runs.append({"system": system, "sequence": sequence.name, "seconds": round(seconds, 3), "audio_seconds": round(sequence.seconds, 2),
                         "words": [[round(a, 3), round(b, 3), t] for a, b, t in words]}
                        | ({"alignment_failed": aligned.detail} if SYSTEMS[system][0] == "pocketsphinx" and aligned.status == "failed" else {}))
            if reference is not None and aligned.status == "aligned" and SYSTEMS[system][0] != "pocketsphinx":
                reference.setdefault("rows", []).extend(versus_reference(sequence, words, aligned.words, system))
            if progress is not None:
                progress.update(sequence.seconds)
        scored = [r["error_ms"] for r in rows if r["sequence"] == sequence.name and r["error_ms"] is not None]
        log(f"  {sequence.name:32s} {sequence.seconds:5.1f} s {len(sequence.placed):2d} items  median |error| over systems "
            f"{np.median(np.abs(scored)) if scored else float('nan'):.0f} ms")
        if done is not None:
            done(rows, runs)
    return rows, runs


# -- targets and report --------------------------------------------------------------------------------

TARGETS = (  # issue #30, on the held-out set; informative here (nothing fails yet)
    ("edges", "start", "median_ms", "<=", 50.0, "word starts at speech edges: median <= 50 ms"),
    ("edges", "start", "within_100", ">=", 0.90, "word starts at speech edges: >= 90 % within 100 ms"),
    ("edges", "end", "median_ms", "<=", 80.0, "word ends at speech edges: median <= 80 ms"),
    ("words", "boundary", "median_ms", "<=", 60.0, "every word boundary: median <= 60 ms"),
)


def targets(summary: List[dict], systems: Sequence[str]) -> List[dict]:
    out = []
    for part, edge, key, sense, goal, text in TARGETS:
        for system in systems:
            row = next((s for s in summary if s["set"] == "held-out" and s["part"] == part and s["system"] == system
                        and s["edge"] == edge and s["group"] == "all"), None)
            if row is None or row[key] is None:
                continue
            met = row[key] <= goal if sense == "<=" else row[key] >= goal
            out.append({"target": text, "system": system, "value": row[key], "met": bool(met)})
    return out


def _cell(row: Optional[dict]) -> List[str]:
    if row is None or row["median_ms"] is None:
        return ["–"] * 6
    return [f"{row['median_ms']:.0f}", f"{row['p90_ms']:.0f}", f"{100 * row['within_50']:.0f} / {100 * row['within_100']:.0f} / {100 * row['within_200']:.0f}",
            f"{row['signed_median_ms']:+.0f}", f"{row['median_loud_ms']:.0f}", f"{row['n']}" + (f" ({row['missed']} not timed)" if row["missed"] else "")]


def _find(summary, set_name, part, system, edge, group="all"):
    return next((s for s in summary if (s["set"], s["part"], s["system"], s["edge"], s["group"]) == (set_name, part, system, edge, group)), None)


def tables(data: dict) -> List[str]:
    summary, systems = data["summary"], data["settings"]["systems"]
    lines = []
    headers = ["system", "median ms", "p90 ms", "% within 50 / 100 / 200 ms", "signed median ms", "median vs loud edge ms", "n"]
    for part, edges, title in (("edges", ("start", "end"), "Speech edges: first word's start, last word's end"),
                               ("words", ("start", "end", "boundary"), "Every word boundary (spoken digits)")):
        for set_name in data["settings"]["sets"]:
            for edge in edges:
                rows = [[label(s)] + _cell(_find(summary, set_name, part, s, edge)) for s in systems if _find(summary, set_name, part, s, edge)]
                if rows:
                    lines += ["", f"### {title}: {set_name}, {edge}s" if edge != "boundary" else f"### {title}: {set_name}, starts and ends together", ""]
                    lines.append(report.markdown_table(headers, rows))
    groups = sorted({s["group"] for s in summary if s["part"] == "edges" and not s["group"].startswith("pauses")}, key=lambda g: (g != "all", g))
    for set_name in data["settings"]["sets"]:
        rows = []
        for group in groups:
            for s in systems:
                start, end = _find(summary, set_name, "edges", s, "start", group), _find(summary, set_name, "edges", s, "end", group)
                if start is None:
                    continue
                rows.append([group, label(s), *_short(start), *_short(end)])
        if rows:
            lines += ["", f"### Speech edges by language and corpus: {set_name} (median / p90 ms, % within 100 ms, signed median, n)", ""]
            lines.append(report.markdown_table(["group", "system", "starts median / p90", "≤100 ms", "signed", "n", "ends median / p90", "≤100 ms", "signed", "n"], rows))
    return lines


def _short(row: Optional[dict]) -> List[str]:
    if row is None or row["median_ms"] is None:
        return ["–", "–", "–", str(row["n"] if row else 0)]
    return [f"{row['median_ms']:.0f} / {row['p90_ms']:.0f}", f"{100 * row['within_100']:.0f} %", f"{row['signed_median_ms']:+.0f}", str(row["n"])]


def _pair(row: Optional[dict]) -> List[str]:
    if row is None or row["median_ms"] is None:
        return ["–", "–", "–", str(row["n"] if row else 0)]
    return [f"{row['median_ms']:.0f} / {row['p90_ms']:.0f}", f"{100 * row['within_50']:.0f} / {100 * row['within_100']:.0f} / {100 * row['within_200']:.0f}",
            f"{row['signed_median_ms']:+.0f}", f"{row['n']}" + (f" ({row['missed']} unmatched)" if row["missed"] else "")]


WHERE = (("pause", "at pauses"), ("inside speech", "inside continuous speech"))


def _alignment_notes(reference: dict) -> List[str]:
    alignments = reference.get("alignments", {})
    failed = {name: a["detail"] for name, a in alignments.items() if a["status"] == "failed"}
    skipped = sorted({a["detail"] for a in alignments.values() if a["status"] == "not timed"})
    by_hand = sorted({w for a in alignments.values() for w in a["pronounced_by_hand"]})
    aligned = [a for a in alignments.values() if a["status"] == "aligned"]
    lines = [f"- aligned: {len(aligned)} sequences, {sum(len(a['words']) for a in aligned)} words, "
             f"{sum(a['seconds'] for a in aligned):.1f} s of pocketsphinx"]
    lines += [f"- failed: {name}: {detail}" for name, detail in sorted(failed.items())]
    if skipped:
        lines.append(f"- not aligned: {'; '.join(skipped)}")
    if by_hand:
        lines.append("- pronounced by hand (not in its dictionary): " + ", ".join(f"{w} /{reference['pronunciations'][w]}/" for w in by_hand))
    return lines


def reference_lines(data: dict) -> List[str]:
    """The report's section on the independent reference: every system against pocketsphinx's alignment."""
    reference = data.get("reference")
    if not reference:
        return []
    lines = ["", "## Against pocketsphinx's alignment (an independent reference, not ground truth)", "",
             f"{reference['aligner']} aligned the known text of every English sequence with one (not VCTK's: no transcripts) over its audio; "
             "each system's words are matched to its words (the same word normalised, in order, middles within 1 s) and their starts and ends "
             "compared: system minus pocketsphinx, ms. pocketsphinx is itself an aligner with its own error (10 ms frames): these are "
             "differences between two estimates, neither of them the level threshold the trimmed reference and the worker's refinement share. "
             f"At pauses: the aligned word's start after, or end before, {PAUSE_SECONDS:g} s or more with no word; "
             "inside continuous speech: less than that between two words (what the trimmed edges cannot measure).", ""]
    lines += _alignment_notes(reference)
    summary = reference.get("summary", [])
    systems = [x for x in data["settings"]["systems"] if any(r["system"] == x for r in summary)]
    headers = ["system", "edges", "starts median / p90", "% within 50 / 100 / 200", "signed", "n", "ends median / p90", "% within 50 / 100 / 200", "signed", "n"]
    for set_name in data["settings"]["sets"]:
        for group, title in (("all", "all"), ("utterances", "utterances"), ("digits", "digit strings")):
            rows = []
            for system in systems:
                for where, name in WHERE:
                    start, end = (next((r for r in summary if (r["set"], r["system"], r["where"], r["edge"], r["group"]) == (set_name, system, where, e, group)), None)
                                  for e in ("start", "end"))
                    if start or end:
                        rows.append([label(system), name, *_pair(start), *_pair(end)])
            if rows:
                lines += ["", f"### Against pocketsphinx: {set_name}, {title}", ""]
                lines.append(report.markdown_table(headers, rows))
    return lines


def markdown(data: dict) -> str:
    s = data["settings"]
    lines = [f"# Word timing — {data['created']}", "", f"`{data['command']}`", "",
             f"Model `{s['model']}` ({s['compute_type']}, {s['device']}), batch size {s['batch_size']} for the batched modes; "
             f"{data['audio_seconds']:.0f} s of audio in {len(data['sequences'])} sequences, each through {len(s['systems'])} systems; "
             f"{data['wall_seconds']:.0f} s in all." + ("" if data.get("complete", True) else
                                                          f" PARTIAL: {data['sequences_done']} of {len(data['sequences'])} sequences measured so far."), ""]
    lines += report.machine_lines(data["machine"], data["versions"])
    lines += ["", "Errors are hypothesis minus reference (negative: early). The reference is exact by construction: "
              "clips trimmed to their speech (see `benchmarks/timing.py` for the rule) and joined with pauses of known length.",
              "", "## Targets (issue #30, held-out set; informative, nothing fails)", ""]
    lines += [f"- {'met' if t['met'] else 'not met'}: {t['target']} — {label(t['system'])}: {t['value']}" for t in data["targets"]]
    lines += tables(data)
    lines += reference_lines(data)
    lines += ["", "## Construction", ""]
    lines += [f"- {name}: {count} clips" for name, count in data["clips"].items()]
    if data["left_out"]:
        reasons = sorted({x["corpus"] + ": " + x["reason"] for x in data["left_out"]})
        lines.append(f"- left out: {len(data['left_out'])} clips ({', '.join(reasons)})")
    lines.append(f"- trim rule: {data['trim_rule']}")
    return "\n".join(lines) + "\n"


def console(data: dict) -> str:
    """The figures, compact: per set and part, start and end medians of every system."""
    s, summary = data["settings"], data["summary"]
    lines = []
    for part, edges in (("edges", ("start", "end")), ("words", ("start", "end", "boundary"))):
        for set_name in s["sets"]:
            present = [x for x in s["systems"] if _find(summary, set_name, part, x, "start")]
            if not present:
                continue
            lines.append(f"\n{part} — {set_name}: median / p90 ms, % within 50/100/200 ms, signed median ms")
            for system in present:
                cells = []
                for edge in edges:
                    row = _find(summary, set_name, part, system, edge)
                    cells.append(f"{edge} {_cell(row)[0]:>4s} / {_cell(row)[1]:>4s} {_cell(row)[2]:>12s} {_cell(row)[3]:>5s}")
                lines.append(f"  {label(system):34s} " + " | ".join(cells))
    for set_name in s["sets"]:
        languages = sorted({g["group"].split(" ", 1)[1] for g in summary if g["set"] == set_name and g["part"] == "edges" and g["group"].startswith("language ")},
                           key=lambda x: (x != "en", x))
        if len(languages) < 2:
            continue
        lines.append(f"\nspeech edges by language — {set_name}: start / end median ms (edges per language: "
                     + ", ".join(f"{x} {(_find(summary, set_name, 'edges', s['systems'][0], 'start', 'language ' + x) or {}).get('n', 0)}" for x in languages) + ")")
        lines.append(f"  {'':34s} " + "".join(f"{x:>12s}" for x in languages))
        for system in s["systems"]:
            cells = []
            for x in languages:
                start, end = (_find(summary, set_name, "edges", system, e, "language " + x) for e in ("start", "end"))
                cells.append(f"{_cell(start)[0]:>5s} / {_cell(end)[0]:<4s}")
            lines.append(f"  {label(system):34s} " + "".join(f"{c:>12s}" for c in cells))
    lines += reference_console(data)
    lines.append("\ntargets (held-out, informative): starts median <= 50 ms and >= 90 % within 100 ms; ends median <= 80 ms; every boundary median <= 60 ms")
    for t in data["targets"]:
        lines.append(f"  {'met' if t['met'] else 'not met':8s} {t['target']:52s} {label(t['system']):34s} {t['value']}")
    return "\n".join(lines)


def reference_console(data: dict) -> List[str]:
    """Every system against pocketsphinx's alignment, compact: per set, at pauses and inside speech."""
    reference = data.get("reference")
    if not reference:
        return []
    summary = reference.get("summary", [])
    lines = []
    for set_name in data["settings"]["sets"]:
        systems = [x for x in data["settings"]["systems"] if any(r["system"] == x and r["set"] == set_name for r in summary)]
        if not systems:
            continue
        lines.append(f"\nagainst pocketsphinx's alignment (independent, not ground truth) — {set_name}: |system - pocketsphinx| "
                     "median / p90 ms, % within 50/100/200 ms, n")
        for system in systems:
            for where, name in WHERE:
                cells = []
                for edge in ("start", "end"):
                    row = next((r for r in summary if (r["set"], r["system"], r["where"], r["edge"], r["group"]) == (set_name, system, where, edge, "all")), None)
                    cell = _pair(row)
                    cells.append(f"{edge} {cell[0]:>11s} {cell[1]:>12s} n {cell[3]}")
                lines.append(f"  {label(system):34s} {name:25s} " + " | ".join(cells))
    notes = _alignment_notes(reference)
    lines += ["  " + x[2:] for x in notes]
    return lines


TRIM_RULE = (f"level = RMS of a {WINDOW / SAMPLE_RATE * 1000:.0f} ms window centred on each sample after a {HIGH_PASS_HZ:.0f} Hz high-pass; "
             f"S = its {SPEECH_PERCENTILE:.0f}th percentile, F = the {FLOOR_PERCENTILE:.0f}nd percentile over the recording group; "
             f"T = max(S - {EDGE_BELOW_SPEECH_DB:.0f} dB, F + {EDGE_OVER_FLOOR_DB:.0f} dB); speech from the first to the last core "
             f"(>= {CORE_SECONDS * 1000:.0f} ms at S - {CORE_BELOW_SPEECH_DB:.0f} dB) out to where the level crosses T, across dips of at most "
             f"{START_BRIDGE_SECONDS * 1000:.0f} ms before / {END_BRIDGE_SECONDS * 1000:.0f} ms after to sounds reaching S - {LOUD_BELOW_SPEECH_DB:.0f} dB "
             f"for {SOUND_SECONDS * 1000:.0f} ms; edges moved to the first / last sample within {REFINE_SECONDS * 1000:.0f} ms whose magnitude reaches T; "
             f"clips with speech within {MARGIN_SECONDS * 1000:.0f} ms of their file's edge left out; speech level scaled to {SPEECH_LEVEL_DBFS:.0f} dBFS")


def configure(parser: argparse.ArgumentParser) -> None:
    add_shared(parser, "model", "device", "compute_type", "batch_size", notes={"batch_size": "of the batched modes (the worker's and BatchedInferencePipeline's)"})
    parser.add_argument("--systems", default=",".join(default_systems()),
                        help="comma-separated subset of " + ", ".join(SYSTEMS) + " [all; pocketsphinx-align where pocketsphinx imports]")
    parser.add_argument("--sets", default="tuning,held-out", help="tuning, held-out or both [%(default)s]")
    parser.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated subset of " + ", ".join(CORPORA) + " (digits: every word boundary)")
    parser.add_argument("--languages", default=None, help="comma-separated language codes (en, de, es, fr, pt) [all]")
    parser.add_argument("--limit", type=int, default=None, help="at most this many sequences per corpus group and set (a quick look)")
    add_shared(parser, "cpu_threads", "cache_dir", "out", "quiet", notes={"out": "default benchmarks/results/timing-<device>-<date>"})


def _names(text: Optional[str], allowed: Sequence[str], what: str) -> List[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what} {', '.join(unknown)}; expected {', '.join(allowed)}")
    return names


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def run(args) -> int:
    from worker.config import Settings
    from worker.entries.runpod import JobRunner

    from .progress import progress_bar
    from .weights import resolve_ct2

    began = time.perf_counter()
    systems = _names(args.systems, list(SYSTEMS), "system(s)")
    if any(SYSTEMS[x][0] == "pocketsphinx" for x in systems) and not forced_align.available():
        raise SystemExit("pocketsphinx-align needs pocketsphinx: pip install 'pocketsphinx>=5.0,<6' (the bench extra has it)")
    sets = _names(args.sets, list(SEEDS), "set(s)")
    corpora = _names(args.corpora, CORPORA, "corpus (corpora)")
    languages = [x.strip() for x in args.languages.split(",")] if args.languages else None
    cache = args.cache_dir or str(ROOT / ".cache" / "benchmarks")
    settings = Settings(model=resolve_ct2(args.model, cache), device=args.device, compute_type=args.compute_type, cpu_threads=args.cpu_threads,
                        batch_size=args.batch_size, max_batch_size=max(args.batch_size, 1))
    runner = JobRunner.from_settings(settings)
    if not runner.engine.model.is_multilingual:
        if languages and set(languages) - {"en"}:
            print(f"{args.model} is English-only: only English is measured")
        languages = ["en"]
    items, left_out, clip_counts = build(corpora, sets, languages, args.limit)
    print(f"{len(items)} sequences, {sum(x.seconds for x in items):.0f} s of audio; {len(systems)} systems; {len(left_out)} clips left out")
    machine = facts.machine()
    out = args.out or str(ROOT / "benchmarks" / "results" / f"timing-{runner.engine.model.device}-{dt.date.today().isoformat()}")
    reference = None  # every system against pocketsphinx's alignment, where pocketsphinx imports
    if forced_align.available():
        reference = {"aligner": f"pocketsphinx {_version('pocketsphinx')} (en-us model, CMU dictionary, no pruning)", "pause_seconds": PAUSE_SECONDS,
                     "pronunciations": PRONUNCIATIONS, "alignments": {}, "rows": [], "summary": []}
    os.makedirs(out, exist_ok=True)
    data = {
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(getattr(args, "argv", None) or ["timing"]),
        "settings": {"model": args.model, "compute_type": runner.engine.model.compute_type, "device": runner.engine.model.device,
                     "batch_size": args.batch_size, "systems": systems, "sets": sets, "corpora": corpora, "languages": languages, "limit": args.limit},
        "machine": machine, "versions": facts.versions(), "complete": False, "sequences_done": 0,
        "wall_seconds": None, "audio_seconds": round(sum(x.seconds for x in items), 1),
        "trim_rule": TRIM_RULE, "clips": dict(clip_counts), "left_out": left_out, "reference": reference,
        "sequences": [{"name": x.name, "set": x.set, "part": x.part, "corpus": x.corpus, "language": x.language, "pause_kind": x.pause_kind,
                       "seconds": round(x.seconds, 3),
                       "items": [{"clip": p.clip.name, "speaker": p.clip.speaker, "start_s": round(p.start / SAMPLE_RATE, 4), "end_s": round(p.end / SAMPLE_RATE, 4),
                                  "pause_before_s": round(p.pause_before, 3), "pause_after_s": round(p.pause_after, 3),
                                  "rise_ms": round(1000 * p.clip.rise / SAMPLE_RATE, 1), "fall_ms": round(1000 * p.clip.fall / SAMPLE_RATE, 1)}
                                 for p in x.placed]} for x in items],
    }

    def write(rows: List[dict], runs: List[dict], complete: bool = False) -> None:
        """The report so far (after every sequence: a run cut short still leaves its figures)."""
        summary = summarise(rows)
        if reference is not None:
            reference["summary"] = reference_summary(reference["rows"])
        data.update({"complete": complete, "sequences_done": len(runs) // max(len(systems), 1), "wall_seconds": round(time.perf_counter() - began, 1),
                     "summary": summary, "targets": targets(summary, systems), "results": rows, "runs": runs})
        report.write_json(os.path.join(out, "results.json"), data)
        report.write_markdown(os.path.join(out, "results.md"), markdown(data))

    with progress_bar(sum(x.seconds for x in items) * len(systems), "timing", enabled=not args.quiet) as bar:
        rows, runs = evaluate(runner, items, systems, args.batch_size, bar, done=write, reference=reference)
    runner.engine.close()
    machine["load_average_at_start"], machine["load_average"] = machine["load_average"], facts.load_average()
    write(rows, runs, complete=True)
    print(console(data))
    print(f"\nwrote {out}/results.json, results.md ({data['wall_seconds']:.0f} s)")
    return 0


COMMAND = Command("timing", "word-timestamp accuracy on audio with speech edges known by construction: "
                            "utterance edges and every digit boundary, the worker's modes beside faster-whisper's own", configure, run)
