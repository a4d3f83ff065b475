"""Conversations built from real voices in tests/data, with every speaker turn known exactly.

Each clip is trimmed to its speech (leading and trailing silence cut at -40 dB of the clip's
loudest 10 ms), and a pause (under -30 dB) of 0.3 s or more (the NIST RT convention) inside a clip ends a reference turn, so the
reference is where a voice sounds; clips are joined with pauses of 0.3-0.7 s (fixed per
conversation). Voices: the two Harvard speakers, the LJ Speech reader and J. F.
Kennedy, which are four distinct people. Those differ by microphone and room as much as by voice,
so they are easy; `tuning()` and `held_out()` are voices recorded alike (see `alike`). Also the
real AMI meeting excerpts with their human RTTM turns (overlapping speech, far-field microphones).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from worker.audio.decode import SAMPLE_RATE

from .dataset import BUNDLED_DATA

Turn = Tuple[float, float, str]  # (start, end, speaker)


@dataclass
class Conversation:
    name: str
    audio: np.ndarray  # mono float32, or (2, samples) for a stereo call
    turns: List[Turn]  # the reference, in time order
    set: str = ""  # the benchmark set it belongs to (benchmarks/diarization.py)

    @property
    def duration(self) -> float:
        return self.audio.shape[-1] / SAMPLE_RATE

    @property
    def speakers(self) -> List[str]:
        return sorted({speaker for _, _, speaker in self.turns})


def _clip(relative: str) -> np.ndarray:
    from worker.audio.decode import decode_audio

    return _trim(decode_audio(os.path.join(BUNDLED_DATA, relative), 600))


FRAME = SAMPLE_RATE // 100  # 10 ms
TRIM_DB = -40.0  # clip edges quieter than this (against the clip's loudest 10 ms) are cut
PAUSE_DB = -30.0  # inside a clip, quieter than this is a pause (JFK's pauses hold crowd noise at -32 dB)
PAUSE_S = 0.3  # a pause this long inside a clip ends a turn (NIST RT: shorter pauses are bridged)


def _loud_frames(audio: np.ndarray, floor_db: float) -> np.ndarray:
    energy = np.sqrt(np.mean(audio[: audio.size // FRAME * FRAME].reshape(-1, FRAME) ** 2, axis=1) + 1e-12)
    return np.flatnonzero(20 * np.log10(energy / energy.max()) > floor_db)


def _trim(audio: np.ndarray) -> np.ndarray:
    loud = _loud_frames(audio, TRIM_DB)
    return audio[loud[0] * FRAME:(loud[-1] + 1) * FRAME]


def _speech_runs(audio: np.ndarray) -> List[Tuple[int, int]]:
    """(first, last) sample of each stretch of a trimmed clip between pauses of PAUSE_S or more."""
    loud = _loud_frames(audio, PAUSE_DB)
    breaks = np.flatnonzero(np.diff(loud) * FRAME >= PAUSE_S * SAMPLE_RATE)
    starts = np.concatenate([[loud[0]], loud[breaks + 1]])
    ends = np.concatenate([loud[breaks], [loud[-1]]]) + 1
    return [(int(a) * FRAME, min(audio.size, int(b) * FRAME)) for a, b in zip(starts, ends)]


def _halves(audio: np.ndarray) -> List[np.ndarray]:
    """Split a clip at its quietest 100 ms in the middle third (a pause between phrases)."""
    step = SAMPLE_RATE // 10
    third = audio.size // 3
    starts = range(third, 2 * third - step, step // 4)
    cut = min(starts, key=lambda s: float(np.sum(audio[s:s + step] ** 2))) + step // 2
    return [_trim(audio[:cut]), _trim(audio[cut:])]


def _join(name: str, clips: List[Tuple[str, np.ndarray]], seed: int) -> Conversation:
    rng = np.random.default_rng(seed)
    parts, turns, position = [], [], 0
    for index, (speaker, audio) in enumerate(clips):
        if index:
            pause = np.zeros(int(rng.uniform(0.3, 0.7) * SAMPLE_RATE), dtype=np.float32)
            parts.append(pause)
            position += pause.size
        parts.append(audio)
        for first, last in _speech_runs(audio):
            turns.append(((position + first) / SAMPLE_RATE, (position + last) / SAMPLE_RATE, speaker))
        position += audio.size
    return Conversation(name, np.concatenate(parts).astype(np.float32), turns)


def _voices() -> Dict[str, List[np.ndarray]]:
    lj = [_clip(f"ljspeech/LJ001-{n:04d}.wav") for n in (1, 3, 5, 7, 10, 14)]
    return {
        "harvard1": [_clip(f"harvard/spk1_snt{n}.wav") for n in range(1, 6)],
        "harvard2": [_clip(f"harvard/spk2_snt{n}.wav") for n in range(1, 6)],
        "ljspeech": lj,
        "jfk": _halves(_clip("jfk.flac")),
    }


def constructed() -> List[Conversation]:
    """Two to four speakers, long turns and short (2 s) ones; and a stereo call."""
    v = _voices()
    h1, h2, lj, jfk = v["harvard1"], v["harvard2"], v["ljspeech"], v["jfk"]
    two = _join("two-speakers", [(("harvard1", "harvard2")[i % 2], (h1, h2)[i % 2][i // 2]) for i in range(10)], seed=1)
    long_short = _join("long-and-short-turns", [
        ("ljspeech", lj[0]), ("harvard2", h2[0]), ("ljspeech", lj[1]), ("harvard2", h2[1]), ("ljspeech", lj[2]),
        ("harvard2", h2[2]), ("ljspeech", lj[3]), ("harvard2", h2[3]),
    ], seed=2)
    three = _join("three-speakers", [
        ("ljspeech", lj[0]), ("harvard1", h1[0]), ("jfk", jfk[0]), ("harvard1", h1[1]), ("ljspeech", lj[1]),
        ("jfk", jfk[1]), ("harvard1", h1[2]), ("ljspeech", lj[2]), ("harvard1", h1[3]),
    ], seed=3)
    four = _join("four-speakers", [
        ("ljspeech", lj[0]), ("harvard1", h1[0]), ("harvard2", h2[0]), ("jfk", jfk[0]), ("ljspeech", lj[1]),
        ("harvard2", h2[1]), ("harvard1", h1[1]), ("jfk", jfk[1]), ("harvard2", h2[2]), ("ljspeech", lj[2]),
        ("harvard1", h1[2]), ("harvard2", h2[3]), ("ljspeech", lj[3]), ("harvard1", h1[3]),
    ], seed=4)
    return [two, long_short, three, four, stereo_call(two)]


def stereo_call(mono: Conversation) -> Conversation:
    """A call-centre recording: each speaker alone on a channel (the other channel silent but for
    a -60 dBFS noise floor, as a phone line has)."""
    speakers = mono.speakers
    rng = np.random.default_rng(7)
    stereo = (rng.standard_normal((2, mono.audio.size)) * 1e-3).astype(np.float32)
    for start, end, speaker in mono.turns:
        a, b = int(round(start * SAMPLE_RATE)), int(round(end * SAMPLE_RATE))
        stereo[speakers.index(speaker), a:b] = mono.audio[a:b]
    return Conversation("stereo-call", stereo, list(mono.turns))


def ami(folder: Optional[str] = None) -> List[Conversation]:
    """The AMI excerpts with their human turns (reference.rttm)."""
    from worker.audio.decode import decode_audio

    folder = folder or os.path.join(BUNDLED_DATA, "ami")
    turns: Dict[str, List[Turn]] = {}
    with open(os.path.join(folder, "reference.rttm"), encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) >= 8 and fields[0] == "SPEAKER":
                start, duration = float(fields[3]), float(fields[4])
                turns.setdefault(fields[1], []).append((start, start + duration, fields[7]))
    return [Conversation(f"ami-{name}", decode_audio(os.path.join(folder, f"{name}.flac"), 600), sorted(turns[name]))
            for name in sorted(turns)]


# -- voices recorded alike ------------------------------------------------------------------------
"""Conversations of voices that one setup recorded, so that only the voice tells them apart: the
four VCTK speakers of tests/data/voices (one microphone, one room: p225 and p228 female, p226 and
p227 male) and single-speaker stretches of the AMI excerpts (stretches of at least 1 s where
reference.rttm has exactly one speaker; speakers with at least 5 s of them).

Each conversation is drawn from a seed: every speaker first takes a turn of its own, then turns
follow at random among the others: backchannels (0.5-1.2 s cut from the start of an utterance at
its quietest 20 ms), single utterances (AMI stretches over 12 s are cut to 3-12 s) and
monologues (utterances of one speaker joined by 0.1-0.25 s pauses until 15-30 s); between turns a
pause of 0.15-1.0 s, or (15 % of turn changes) an overlap of 0.3-2 s where both voices are mixed.
No utterance is used twice in one conversation. The reference is exact by construction: who
speaks is known, and where a VCTK voice speaks inside its utterance is Silero VAD's reading of
that clean single-voice utterance (pauses of 0.3 s or more end a turn; NIST's convention), an
AMI stretch is its human turn; one speaker's turns closer than 0.3 s are bridged. The tuning set
and the held-out set use different seeds and different voice combinations; the held-out set is
never used to choose anything in worker/speakers/conversation.py.
"""

VOICES = os.path.join(BUNDLED_DATA, "voices")
VCTK = {"p225": "F", "p226": "M", "p227": "M", "p228": "F"}
AMI_MIN_STRETCH = 1.0  # seconds of one speaker alone
AMI_MIN_VOICE = 5.0  # seconds of stretches a voice needs to take part
NOISE_DBFS = -60.0  # a noise floor under the whole conversation, so pauses are not digital silence


@dataclass
class Clip:
    audio: np.ndarray
    spans: List[Tuple[int, int]]  # where the voice speaks, samples within `audio`

    @property
    def seconds(self) -> float:
        return self.audio.size / SAMPLE_RATE

    def cut(self, first: int, last: int) -> "Clip":
        spans = [(max(a, first) - first, min(b, last) - first) for a, b in self.spans if min(b, last) > max(a, first)]
        return Clip(self.audio[first:last], spans)


@dataclass
class Voice:
    name: str
    gender: str
    clips: List[Clip]


def vctk_voices(speakers: Sequence[str] = tuple(VCTK)) -> Dict[str, Voice]:
    """VCTK speakers (all four by default): each utterance trimmed to its speech (Silero VAD, 30 ms
    padding)."""
    from worker.audio.decode import decode_audio
    from worker.decoding.whisper.vad import speech_spans

    voices = {}
    for speaker in speakers:
        gender = VCTK[speaker]
        folder = os.path.join(VOICES, f"vctk-{speaker}")
        clips = []
        for file in sorted(os.listdir(folder)):
            audio = decode_audio(os.path.join(folder, file), 60)
            spans = speech_spans(audio, {"min_silence_duration_ms": 300, "speech_pad_ms": 30})
            if spans:
                clips.append(Clip(audio, spans).cut(spans[0][0], spans[-1][1]))
        voices[speaker] = Voice(speaker, gender, clips)
    return voices


def ami_voices(folder: Optional[str] = None) -> Dict[str, Voice]:
    """AMI speakers with at least AMI_MIN_VOICE s of stretches where they alone speak."""
    clips: Dict[str, List[Clip]] = {}
    for meeting in ami(folder):
        points = sorted({p for start, end, _ in meeting.turns for p in (start, end)})
        stretches: List[List] = []
        for a, b in zip(points, points[1:]):
            speaking = {who for start, end, who in meeting.turns if start <= a and end >= b}
            if len(speaking) != 1:
                continue
            who = speaking.pop()
            if stretches and stretches[-1][2] == who and abs(stretches[-1][1] - a) < 1e-6:
                stretches[-1][1] = b
            else:
                stretches.append([a, b, who])
        for a, b, who in stretches:
            if b - a >= AMI_MIN_STRETCH:
                first, last = int(round(a * SAMPLE_RATE)), min(meeting.audio.size, int(round(b * SAMPLE_RATE)))
                clips.setdefault(who, []).append(Clip(meeting.audio[first:last], [(0, last - first)]))
    return {who: Voice(who, who[0], found) for who, found in clips.items()
            if sum(c.seconds for c in found) >= AMI_MIN_VOICE}


def _quiet_cut(clip: Clip, target: int, reach: int = int(0.15 * SAMPLE_RATE)) -> int:
    """The sample nearest `target` (within `reach`) at the middle of the quietest 20 ms."""
    step = SAMPLE_RATE // 50
    lo, hi = max(step, target - reach), min(clip.audio.size - step, target + reach)
    if hi <= lo:
        return int(np.clip(target, 1, clip.audio.size - 1))
    starts = np.arange(lo - step // 2, hi - step // 2, step // 4)
    energy = [float(np.sum(clip.audio[s:s + step] ** 2)) for s in starts]
    return int(starts[int(np.argmin(energy))] + step // 2)


def _turn(rng, kind: str, queue: List[Clip]) -> List[Clip]:
    """The clips of one turn, taken from the front of a voice's queue (what is left of a cut clip
    goes back to the front)."""
    head = queue.pop(0)
    if kind == "backchannel" and head.seconds >= 1.7:
        cut = _quiet_cut(head, int(rng.uniform(0.5, 1.2) * SAMPLE_RATE))
        queue.insert(0, head.cut(cut, head.audio.size))
        return [head.cut(0, cut)]
    if kind == "monologue":
        clips, goal = [head], rng.uniform(15.0, 30.0)
        while queue and sum(c.seconds for c in clips) < goal:
            clips.append(queue.pop(0))
        return clips
    if head.seconds > 12.0:
        cut = _quiet_cut(head, int(rng.uniform(3.0, 12.0) * SAMPLE_RATE))
        queue.insert(0, head.cut(cut, head.audio.size))
        return [head.cut(0, cut)]
    return [head]


def converse(name: str, voices: Sequence[Voice], seed: int, seconds: float = 90.0) -> Conversation:
    """A conversation of `voices` (see the section's docstring), about `seconds` long or as long as
    their utterances allow."""
    rng = np.random.default_rng(seed)
    queues = {v.name: [v.clips[i] for i in rng.permutation(len(v.clips))] for v in voices}
    order = [voices[i].name for i in rng.permutation(len(voices))]  # everyone speaks early on
    placed: List[Tuple[int, str, Clip]] = []  # (first sample, speaker, clip)
    previous, end, length = None, 0, 0.0
    while True:
        ready = [who for who in queues if queues[who] and who != previous]
        if not ready or (not order and length >= seconds):
            break
        if order:
            who, kind = order.pop(0), "utterance"
        else:
            who = ready[int(rng.integers(len(ready)))]
            kind = rng.choice(["backchannel", "utterance", "monologue"], p=[0.2, 0.55, 0.25])
        clips = _turn(rng, kind, queues[who])
        turn = sum(c.audio.size for c in clips)
        if placed and rng.random() < 0.15:  # overlap: both voices at once
            last_turn = end - max(start for start, who_, _ in placed if who_ == previous)
            start = end - int(min(rng.uniform(0.3, 2.0) * SAMPLE_RATE, 0.5 * last_turn, turn))
        else:
            start = end + int(rng.uniform(0.15, 1.0) * SAMPLE_RATE) if placed else int(0.5 * SAMPLE_RATE)
        for index, clip in enumerate(clips):
            if index:
                start += int(rng.uniform(0.1, 0.25) * SAMPLE_RATE)
            placed.append((start, who, clip))
            start += clip.audio.size
        end = max(end, start)
        length += turn / SAMPLE_RATE
        previous = who
    total = end + int(0.5 * SAMPLE_RATE)
    audio = (rng.standard_normal(total) * 10 ** (NOISE_DBFS / 20)).astype(np.float32)
    spans: Dict[str, List[Tuple[int, int]]] = {}
    for start, who, clip in placed:
        audio[start:start + clip.audio.size] += clip.audio
        spans.setdefault(who, []).extend((start + a, start + b) for a, b in clip.spans)
    turns: List[Turn] = []
    for who, found in spans.items():
        bridged: List[List[int]] = []
        for a, b in sorted(found):
            if bridged and a - bridged[-1][1] < PAUSE_S * SAMPLE_RATE:
                bridged[-1][1] = max(bridged[-1][1], b)
            else:
                bridged.append([a, b])
        turns += [(a / SAMPLE_RATE, b / SAMPLE_RATE, who) for a, b in bridged]
    return Conversation(name, np.clip(audio, -1.0, 1.0), sorted(turns))


# (voices, seed) of each set: the held-out set's seeds and, where four voices allow, combinations
# differ from the tuning set's; same-gender pairs in both.
TUNING_VCTK = [(("p225", "p228"), 101), (("p225", "p228"), 102), (("p226", "p228"), 103), (("p226", "p228"), 104),
               (("p225", "p227"), 105), (("p225", "p227"), 106), (("p225", "p226", "p228"), 107), (("p225", "p226", "p228"), 108),
               (("p225", "p227", "p228"), 109), (("p225", "p227", "p228"), 110), (("p225", "p226", "p227", "p228"), 111),
               (("p225", "p226", "p227", "p228"), 112)]
HELD_OUT_VCTK = [(("p226", "p227"), 201), (("p226", "p227"), 202), (("p225", "p226"), 203), (("p225", "p226"), 204),
                 (("p227", "p228"), 205), (("p227", "p228"), 206), (("p226", "p227", "p228"), 207), (("p226", "p227", "p228"), 208),
                 (("p225", "p226", "p227"), 209), (("p225", "p226", "p227"), 210), (("p225", "p226", "p227", "p228"), 211),
                 (("p225", "p226", "p227", "p228"), 212)]
TUNING_AMI = [(("MEE068", "MÉO069"), 121), (("FEE078", "FEE083"), 122), (("MEE068", "FEE078", "MEE075"), 123),
              (("MÉO069", "FEE083", "MEE075", "FEE087"), 124), (("MEE068", "MÉO069", "FEE078", "FEE083", "MEE075"), 125),
              (("MEE068", "MÉO069", "FEE078", "FEE083", "MEE075", "FEE087"), 126)]
HELD_OUT_AMI = [(("MEE068", "MEE075"), 221), (("FEE083", "FEE087"), 222), (("MÉO069", "FEE087", "FEE078"), 223),
                (("MEE068", "FEE078", "FEE083", "MEE075"), 224), (("MÉO069", "FEE078", "FEE083", "MEE075", "FEE087"), 225),
                (("MEE068", "MÉO069", "FEE078", "FEE083", "MEE075", "FEE087"), 226)]


def built(kind: str, names: Sequence[str], seed: int, voices: Dict[str, Voice], prefix: str) -> Conversation:
    """One conversation of a set's plan, named after its kind, voices and seed."""
    import unicodedata

    label = "-".join(unicodedata.normalize("NFKD", n).encode("ascii", "ignore").decode() for n in names)
    return converse(f"{prefix}{kind}-{len(names)}spk-{label}-s{seed}", [voices[n] for n in names], seed)


def _built(kind: str, plan, voices: Dict[str, Voice], prefix: str) -> List[Conversation]:
    return [built(kind, names, seed, voices, prefix) for names, seed in plan]


def tuning() -> List[Conversation]:
    """Voices recorded alike, the set worker/speakers/conversation.py may be tuned on: 12 VCTK, 6 AMI-voice."""
    return _built("vctk", TUNING_VCTK, vctk_voices(), "tune-") + _built("ami", TUNING_AMI, ami_voices(), "tune-")


def held_out() -> List[Conversation]:
    """Voices recorded alike, never used to choose anything: 12 VCTK, 6 AMI-voice."""
    return _built("vctk", HELD_OUT_VCTK, vctk_voices(), "held-") + _built("ami", HELD_OUT_AMI, ami_voices(), "held-")
