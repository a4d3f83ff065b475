"""Server VAD for live audio: where a speaker's turn starts and stops in a stream of 16 kHz
samples, with the meaning of OpenAI's `turn_detection: {"type": "server_vad", "threshold",
"prefix_padding_ms", "silence_duration_ms"}`, so a live session knows when to emit
`speech_started` / `speech_stopped` and which audio a turn is.

The probabilities are Silero's, streamed (`SileroStream`, the same values a whole-file run gives),
one per 512-sample window (32 ms); the rules are Silero's own hysteresis: a turn starts at the
first window whose probability reaches `threshold`; inside a turn a window is silence only under
`threshold - 0.15` (at least 0.01), and a silence run ends only at a window back over `threshold`;
the turn stops once `silence_duration_ms` of silence has followed its last speech. An event's
`sample` is where the speech starts or ends (to a window, 32 ms); it comes out `min_speech_ms`
("started") or `silence_duration_ms` ("stopped") later, plus at most a window and whatever the
client's pieces add. On three LJ Speech utterances 1.5 s apart (tests/live/test_turns.py), fed in
20 ms pieces: starts within 18 ms of the speech's first sound, "started" out 190-226 ms after it;
stops 38-44 ms after its last sound, "stopped" out 550-570 ms after it (silence 500 ms). Over all
26 Harvard and LJ clips: start sample median +14 ms (p90 +153, a breath or a soft onset), stop
sample median +53 ms (p90 +186: Silero holds on while the voice fades). Silero costs about 5 ms of
CPU per second of audio in 20 ms pieces, 3 ms in 100 ms pieces.

`min_speech_ms` (192, six windows): a turn is announced ("started", still at its true start) only
once its speech has lasted that long (from its first window to the current one, Silero's
hysteresis included); a shorter blip followed by the silence wait is no turn. Measured with these
rules (speech lasts whole windows, so 180 and 192 ms act alike; tests/live/test_turns.py holds the
digits and the 40-60 ms blips):

| min_speech_ms | spoken digits kept (tests/data/digits: 300, 8 kHz, 0.14-1.15 s) | short words kept (229 of <= 450 ms cut from Harvard / VCTK sentences) | vocal blips that start a turn, of 400 cut from LJ / Harvard speech: 40 ms | 60 ms | 80 ms | 100 ms |
|---|---|---|---|---|---|---|
| 128 | 300 | 227 | 3 | 113 | 236 | 306 |
| 160 | 299 | 226 | 0 | 4 | 95 | 214 |
| **192** | **299** | **222** | **0** | **0** | **5** | 56 |
| 224 | 297 | 212 | 0 | 0 | 1 | 16 |
| 256 (250: Silero's offline default) | 285 | 193 | 0 | 0 | 0 | 0 |

250 ms would drop one short word in six ("the", "go", "bring", "big"...) and one digit in twenty;
192 ms keeps 97-99 % of them while no lip-smack-sized sound (up to 60 ms, and 99 % of 80 ms ones)
starts a turn. Clicks, knocks, beeps and noise bursts (white, or shaped like a cough or a breath,
50-400 ms, up to -6 dBFS) never reach Silero's threshold (0.28 at most), whatever
`min_speech_ms`. A voiced cough or an "mm" of 200 ms and more cannot be told from "yes" by its
length: it starts a turn (whose text may be empty).

Positions are samples since the detector was made (`position`: all samples fed): `reset()` (the
client cleared its buffer) forgets the audio and the turn but does not rewind them, so they stay
the session's clock (`audio_start_ms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from worker.audio.decode import SAMPLE_RATE
from worker.decoding.whisper.vad import SILERO_WINDOW, SileroStream

MIN_SPEECH_MS = 192  # six Silero windows; see the module docstring for the measurement behind it
OFF_MARGIN = 0.15  # Silero's rule: silence inside speech is under threshold - 0.15
OFF_FLOOR = 0.01


@dataclass(frozen=True)
class TurnEvent:
    """"started" at the turn's first speech sample, or "stopped" at the end of its last speech."""

    kind: str
    sample: int


class TurnDetector:
    """Turns in a stream fed in pieces of any length (whole 512-sample windows go to Silero, the
    rest waits for the next piece); the events do not depend on how the stream was cut. A
    "started" is always followed by its "stopped" before the next "started"."""

    def __init__(self, threshold: float = 0.5, prefix_padding_ms: int = 300, silence_duration_ms: int = 500,
                 min_speech_ms: int = MIN_SPEECH_MS):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within 0 and 1, not {threshold!r}")
        for name, value in (("prefix_padding_ms", prefix_padding_ms), ("silence_duration_ms", silence_duration_ms),
                            ("min_speech_ms", min_speech_ms)):
            if value < 0:
                raise ValueError(f"{name} must be 0 or more, not {value!r}")
        self.threshold = float(threshold)
        self.off_threshold = max(self.threshold - OFF_MARGIN, OFF_FLOOR)
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self.min_speech_ms = min_speech_ms
        self._silence = silence_duration_ms * SAMPLE_RATE // 1000
        self._min_speech = min_speech_ms * SAMPLE_RATE // 1000
        self._position = 0
        self.reset()

    @property
    def position(self) -> int:
        """Samples fed so far (since the detector was made; `reset()` does not rewind it)."""
        return self._position

    @property
    def analyzed(self) -> int:
        """Samples Silero has judged (whole windows): `position` less those waiting for a window."""
        return self._window

    @property
    def prefix_padding(self) -> int:
        """`prefix_padding_ms` in samples: audio before a "started" sample that belongs to the turn."""
        return self.prefix_padding_ms * SAMPLE_RATE // 1000

    @property
    def in_turn(self) -> bool:
        """Whether a "started" was given whose "stopped" has not come yet."""
        return self._announced

    @property
    def silent_since(self) -> Optional[int]:
        """Where the open turn's current silence began (a "stopped" there follows if it lasts
        silence_duration_ms), or None: in speech, or no turn announced."""
        return self._end if self._announced else None

    def reset(self) -> None:
        """Forget the audio and any turn (no "stopped" is given for it); Silero starts afresh at
        the current position."""
        self._silero = SileroStream()
        self._pending = np.zeros(0, dtype=np.float32)
        self._window = self._position  # first sample of the next window Silero reads
        self._start: Optional[int] = None  # a turn's first speech sample (announced or not yet)
        self._end: Optional[int] = None  # where its current silence run began
        self._announced = False

    def feed(self, samples: np.ndarray) -> List[TurnEvent]:
        """The events these samples complete, in order."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._position += samples.size
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        whole = samples.size // SILERO_WINDOW * SILERO_WINDOW
        self._pending = samples[whole:].copy()
        if not whole:
            return []
        events: List[TurnEvent] = []
        for probability in self._silero(np.ascontiguousarray(samples[:whole])):
            self._step(float(probability), events)
            self._window += SILERO_WINDOW
        return events

    def end_turn(self) -> List[TurnEvent]:
        """End the open turn now (the client committed, the stream ended): its "stopped", at the
        end of its last speech (the current position while still in speech), or nothing when no
        turn was announced. Silero's state is kept: the audio goes on."""
        events = []
        if self._announced:
            events.append(TurnEvent("stopped", self._end if self._end is not None else self._position))
        self._start = self._end = None
        self._announced = False
        return events

    def _step(self, probability: float, events: List[TurnEvent]) -> None:
        window = self._window
        if self._start is None:
            if probability < self.threshold:
                return
            self._start, self._end = window, None
        elif probability >= self.threshold:
            self._end = None
        elif probability < self.off_threshold and self._end is None:
            self._end = window
        if self._end is None:
            if not self._announced and window + SILERO_WINDOW - self._start >= self._min_speech:
                self._announced = True
                events.append(TurnEvent("started", self._start))
        elif window + SILERO_WINDOW - self._end >= self._silence:
            if self._announced:
                events.append(TurnEvent("stopped", self._end))
            self._start = self._end = None
            self._announced = False
