"""Conversations built from real voices in tests/data, with every speaker turn known exactly.

Each clip is trimmed to its speech (leading and trailing silence cut at -40 dB of the clip's
loudest 10 ms), and a pause (under -30 dB) of 0.3 s or more (the NIST RT convention) inside a clip ends a reference turn, so the
reference is where a voice sounds; clips are joined with pauses of 0.3-0.7 s (fixed per
conversation). Voices: the two Harvard speakers, the LJ Speech reader and J. F.
Kennedy, which are four distinct people. Also the real AMI meeting excerpts with their human
RTTM turns (overlapping speech, far-field microphones).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from worker.audio import SAMPLE_RATE

from .dataset import BUNDLED_DATA

Turn = Tuple[float, float, str]  # (start, end, speaker)


@dataclass
class Conversation:
    name: str
    audio: np.ndarray  # mono float32, or (2, samples) for a stereo call
    turns: List[Turn]  # the reference, in time order

    @property
    def duration(self) -> float:
        return self.audio.shape[-1] / SAMPLE_RATE

    @property
    def speakers(self) -> List[str]:
        return sorted({speaker for _, _, speaker in self.turns})


def _clip(relative: str) -> np.ndarray:
    from worker.audio import decode_audio

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
    from worker.audio import decode_audio

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
