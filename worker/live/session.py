"""One live transcription session, OpenAI's Realtime transcription-session protocol as a state
machine with no WebSocket in it: client events come in as text (`handle_text`), server events go
out through an async `send(event)`, turns are decoded through an injected `Transcriber`. The
entry (worker/entries/realtime.py) carries the events and wires the transcriber to the Service.

Audio: each `input_audio_buffer.append` is PCM16 at the session's rate, turned into 16 kHz float32
(worker/audio/pcm.py) and kept in the uncommitted buffer. With server VAD (worker/live/turns.py)
a turn opens at its first speech (`speech_started`, `audio_start_ms` = that speech's start in the
session's audio), holds `prefix_padding_ms` of audio before it, and is committed once
`silence_duration_ms` of silence has followed its last speech (`speech_stopped`, `audio_end_ms` =
the end of that speech; the committed audio runs on to where the silence was heard), or once it
holds WHISPER_REALTIME_MAX_BUFFER_SECONDS. Outside a turn only the last `prefix_padding_ms` + 1 s
are kept. Without turn detection the client commits (at least 100 ms), and an append that would
take the buffer past the limit is refused and dropped. While MAX_PENDING_TURNS committed turns
wait for their decodes, appends are refused too (an `error` event): a client sending audio faster
than it can be transcribed cannot queue work and memory without bound.

Partial text: about once a second (PARTIAL_INTERVAL_S) the open turn's audio after its sealed
pieces (its last 30 s at most) is decoded again as a glimpse (`partial=True`: one greedy pass on a
shortened encoder input, worker/decoding/whisper/glimpse.py, a third of a full decode's cost, so that a
glimpse in flight delays a turn's final decode little), and `delta` events carry the text the agreement policy
(worker/live/partials.py) confirms; never more than one decode in flight per session for this (a
tick is skipped, not queued); a commit cancels a partial decode still queued. The committed turn
is decoded with the worker's defaults (so its text is the file endpoint's on the same audio); the
last delta then brings the sent text up to it where it can, and `completed` carries the whole
transcript. To answer sooner, a turn's final decode starts early, once EARLY_MS of silence has
followed its speech (on the audio so far: the turn's, and that silence); when the silence lasts
to `speech_stopped`, that decode is the turn's (the committed audio's rest is the same silence).
When speech comes back first, the turn goes on, and that decode is kept as the turn's first piece
when it read at least SEAL_MIN_S of audio (else it is dropped): the audio up to the pause is
sealed, and from then on partial and final decodes read only the audio after it, conditioned on
the sealed pieces' text (as Whisper conditions a window on the text before it); the turn's text is
its pieces' joined. So a long turn spoken with pauses is decoded while it is spoken, and at
`speech_stopped` only its last stretch is left. Partial decodes stop while a final or piece
decode runs. A turn's decodes run one after another, in commit order, so `completed` events come
in the order of their items.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Optional, Protocol

import numpy as np

from worker.audio.decode import SAMPLE_RATE
from worker.audio.pcm import PcmInput, decode_base64
from worker.errors import Cancelled, WorkerError
from worker.live.partials import Agreement, join_text, open_ending, split_words
from worker.live.protocol import (ProtocolError, SessionConfig, apply_beta_update, apply_update, beta_session_object, error_event, new_id,
                                  session_object)
from worker.live.turns import TurnDetector

log = logging.getLogger("worker.live")

PARTIAL_INTERVAL_S = 1.0  # how often the open turn is decoded again for partial text
PARTIAL_WINDOW_S = 30.0  # the most of the open turn a partial decode reads (its end)
MIN_PARTIAL_S = 0.5  # a turn this long at least before its first partial decode
MIN_NEW_AUDIO_S = 0.25  # audio since the last partial decode needed for another
MAX_PENDING_TURNS = 4  # committed turns of one session waiting for their decode: more, and appends are refused
EARLY_MS = 200  # silence after a turn's speech at which its final decode starts (speech_stopped comes at silence_duration_ms)
SEAL_MIN_S = 3.0  # an early decode of at least this much audio is kept as a piece of the turn when speech resumes
MIN_COMMIT_MS = 100  # OpenAI's input_audio_buffer_commit_empty limit
IDLE_KEEP_S = 1.0  # kept before a turn's speech beyond prefix_padding_ms, outside turns
PIECE = SAMPLE_RATE // 10  # appended audio goes through turn detection 100 ms at a time
EVENT_KEYS = {"session.update": ("session",), "transcription_session.update": ("session",), "input_audio_buffer.append": ("audio",),
              "input_audio_buffer.commit": (), "input_audio_buffer.clear": ()}

Send = Callable[[dict], Awaitable[None]]


class Transcriber(Protocol):
    """How a session decodes: `check` refuses a language or prompt the model cannot take (a
    WorkerError naming `language` or `initial_prompt`); `transcribe` decodes 16 kHz samples and
    gives the text (a partial decode: quick and greedy), conditioned on `context` (the turn's text
    before these samples), stopping early once `cancelled` is set."""

    def check(self, language: Optional[str], prompt: str) -> None: ...

    async def transcribe(self, samples: np.ndarray, language: Optional[str], prompt: str, cancelled: threading.Event, partial: bool,
                         context: str = "") -> str: ...


def _rest(agreement: Agreement, final: str) -> str:
    """The final text's words after those sent, as the last delta, when the sent words are its
    first ones (so the deltas joined are the `completed` transcript); else "" (nothing is taken
    back: `completed` carries the text)."""
    if not agreement.consistent:
        return ""
    rest = "".join(split_words(final)[len(split_words(agreement.sent)):])
    if not agreement.sent:
        return rest.lstrip()
    return rest if not rest or rest[0].isspace() or unicodedata.east_asian_width(rest[0]) in "WF" else " " + rest


def _ms(samples: int) -> int:
    return samples * 1000 // SAMPLE_RATE


class SampleBuffer:
    """The uncommitted audio: 16 kHz samples [start, end) of the session's stream, as pieces."""

    def __init__(self):
        self._pieces: deque = deque()
        self.start = self.end = 0

    @property
    def size(self) -> int:
        return self.end - self.start

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._pieces.append(samples)
            self.end += samples.size

    def view(self, start: int, end: int) -> np.ndarray:
        """A copy of samples [start, end), within what is held."""
        start, end = max(start, self.start), min(end, self.end)
        parts, offset = [], self.start
        for piece in self._pieces:
            if offset >= end:
                break
            if offset + piece.size > start:
                parts.append(piece[max(0, start - offset):end - offset])
            offset += piece.size
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def trim_before(self, sample: int) -> None:
        """Forget the samples before `sample`."""
        sample = min(max(sample, self.start), self.end)
        while self._pieces and self.start + self._pieces[0].size <= sample:
            self.start += self._pieces.popleft().size
        if self._pieces and sample > self.start:
            self._pieces[0] = self._pieces[0][sample - self.start:]
        self.start = sample


@dataclass(eq=False)
class Turn:
    """One item: its audio from `start` (samples of the session's stream), its partial text, its
    sealed pieces."""

    item_id: str
    start: int
    agreement: Agreement = field(default_factory=Agreement)
    open: bool = True
    decoded_to: int = 0  # end of the audio the last partial decode read
    cancel: Optional[threading.Event] = None  # the partial decode in flight
    early: Optional["EarlyDecode"] = None  # its final decode, started in the silence after its speech
    pieces: list = field(default_factory=list)  # the sealed pieces' decodes (EarlyDecode), in order

    @property
    def unsealed(self) -> int:
        """Where the audio no piece holds begins (in the session's stream)."""
        return self.pieces[-1].end if self.pieces else self.start

    def context(self) -> Optional[str]:
        """The sealed pieces' text joined; None while one is still being decoded or failed."""
        if any(not piece.task.done() or piece.task.cancelled() or piece.task.exception() is not None for piece in self.pieces):
            return None
        return join_text(*(piece.task.result() for piece in self.pieces))


@dataclass(eq=False)
class EarlyDecode:
    """A decode of a turn's audio up to `end`, started in a pause EARLY_MS after its speech: the
    turn's last piece when the silence that began at `silence_start` lasts to `speech_stopped`, a
    sealed piece of it when speech resumes."""

    silence_start: int  # in the session's stream
    end: int  # the end of the audio it reads, in the session's stream
    task: asyncio.Task
    cancel: threading.Event


class LiveSession:
    """The protocol: client events in order, their answers and the turns' events out."""

    def __init__(self, send: Send, transcriber: Transcriber, models, max_buffer_seconds: float,
                 partial_interval: float = PARTIAL_INTERVAL_S):
        self.transcriber = transcriber
        self.models = tuple(models)  # the served model's name first, then the names accepted for it
        self.id = new_id("sess")
        self.config = SessionConfig(model=self.models[0])
        self.partial_interval = partial_interval
        self.closed = False
        self._send = send
        self._numbers = itertools.count(1)
        self.audio = LiveAudio(self, int(max_buffer_seconds * SAMPLE_RATE))
        self._ticker: Optional[asyncio.Task] = None

    async def emit(self, event: dict) -> None:
        """Send a server event with its own event_id (none once the session is closed)."""
        if not self.closed:
            await self._send({"type": event["type"], "event_id": f"event_{next(self._numbers)}", **event})

    async def error(self, error: ProtocolError, client_event_id: Optional[str] = None) -> None:
        await self.emit(error_event(error, client_event_id))

    async def start(self) -> None:
        await self.emit({"type": "session.created", "session": session_object(self.config, self.id)})
        self._ticker = asyncio.ensure_future(self._tick())

    async def close(self) -> None:
        """No more events; the decodes in flight are cancelled and waited for."""
        self.closed = True
        if self._ticker is not None:
            self._ticker.cancel()
        await self.audio.close()

    async def handle_binary(self) -> None:
        await self.error(ProtocolError("binary frames are not events; send JSON text (audio as base64 in input_audio_buffer.append)",
                                       code="invalid_frame"))

    async def handle_text(self, text: str) -> None:
        """One client event; a mistake is answered with an `error` event and the session goes on."""
        client_id = None
        try:
            try:
                event = json.loads(text)
            except (ValueError, RecursionError):
                raise ProtocolError("the message is not valid JSON", code="invalid_json") from None
            if not isinstance(event, dict):
                raise ProtocolError("an event is a JSON object with a `type`", code="invalid_type")
            client_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            kind = event.get("type")
            if kind is None:
                raise ProtocolError("every event needs a `type`", "type", "missing_required_parameter")
            if not isinstance(kind, str) or kind not in EVENT_KEYS:
                raise ProtocolError(f"unknown event type {str(kind)[:80]!r}; a transcription session takes {', '.join(EVENT_KEYS)}", "type")
            for key in event:
                if key not in ("type", "event_id") + EVENT_KEYS[kind]:
                    raise ProtocolError(f"unknown parameter {key!r}", key, "unknown_parameter")
            await self._dispatch(kind, event)
        except ProtocolError as exc:
            await self.error(exc, client_id)

    async def _dispatch(self, kind: str, event: dict) -> None:
        if kind in ("session.update", "transcription_session.update"):
            await self._update(event, beta=kind.startswith("transcription_session"))
        elif kind == "input_audio_buffer.append":
            audio = event.get("audio")
            if not isinstance(audio, str):
                raise ProtocolError("must be base64 PCM16 audio (a string)", "audio", "missing_required_parameter" if audio is None else "invalid_value")
            try:
                data = decode_base64(audio)
            except WorkerError as exc:
                raise ProtocolError(exc.message, "audio") from None
            await self.audio.append(data)
        elif kind == "input_audio_buffer.commit":
            await self.audio.commit()
        else:
            await self.audio.clear()
            await self.emit({"type": "input_audio_buffer.cleared"})

    async def _update(self, event: dict, beta: bool) -> None:
        if "session" not in event:
            raise ProtocolError("is required", "session", "missing_required_parameter")
        new = (apply_beta_update if beta else apply_update)(self.config, event["session"], self.models)
        if (new.language, new.prompt) != (self.config.language, self.config.prompt):
            prefix = "session.input_audio_transcription" if beta else "session.audio.input.transcription"
            try:
                self.transcriber.check(new.language, new.prompt)
            except WorkerError as exc:
                raise ProtocolError(exc.message, f"{prefix}.{'prompt' if exc.field == 'initial_prompt' else 'language'}") from None
        old, self.config = self.config, new
        await self.audio.configure(old, new)
        if beta:
            await self.emit({"type": "transcription_session.updated", "session": beta_session_object(new, self.id)})
        else:
            await self.emit({"type": "session.updated", "session": session_object(new, self.id)})

    async def _tick(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.partial_interval)
            self.audio.partial()


class LiveAudio:
    """A session's audio: the buffer, turn detection, commits; decoding is `decoder`'s."""

    def __init__(self, session: LiveSession, max_samples: int):
        self.session = session
        self.max_samples = max_samples
        self.buffer = SampleBuffer()
        self.pcm = PcmInput(session.config.rate)
        self.detector: Optional[TurnDetector] = None
        self.origin = 0  # where in the stream the detector's sample 0 is
        self.turn: Optional[Turn] = None  # the open turn (server VAD)
        self.previous_item: Optional[str] = None
        self.decoder = TurnDecoder(session)
        self._detect(session.config)

    def _detect(self, config: SessionConfig) -> None:
        vad = config.turn_detection
        self.detector = TurnDetector(vad.threshold, vad.prefix_padding_ms, vad.silence_duration_ms) if vad else None
        self.origin = self.buffer.start

    async def configure(self, old: SessionConfig, new: SessionConfig) -> None:
        """A new rate: the resampler's last samples go in first. New turn detection: the open
        turn is committed, and detection starts over on the audio held."""
        if new.rate != old.rate:
            tail, self.pcm = self.pcm.flush(), PcmInput(new.rate)
            await self._ingest(tail)
        if new.turn_detection != old.turn_detection:
            if self.turn is not None:
                await self._commit(self.turn, self.buffer.end)
            self._detect(new)
            await self._ingest(np.zeros(0, dtype=np.float32), self.buffer.view(self.buffer.start, self.buffer.end))

    async def append(self, data: bytes) -> None:
        if self.decoder.pending >= MAX_PENDING_TURNS:  # audio sent faster than it is transcribed: back-pressure, not a queue
            raise ProtocolError(f"{self.decoder.pending} committed turns are still being transcribed; this append was dropped "
                                "(send audio no faster than it is transcribed)", "audio", "transcription_backlog")
        if self.detector is None and self.buffer.size + len(data) // 2 * SAMPLE_RATE // self.session.config.rate > self.max_samples:
            raise ProtocolError(f"the input audio buffer holds at most {self.max_samples / SAMPLE_RATE:g} s; this append was dropped "
                                "(commit or clear the buffer)", "audio", "input_audio_buffer_full")
        # the conversion and Silero run on a thread: a large append (up to 16 MiB, minutes of
        # audio) must not hold the event loop that every other session and request shares
        await self._ingest(await asyncio.to_thread(self.pcm.feed, data))

    async def _ingest(self, samples: np.ndarray, detect: Optional[np.ndarray] = None) -> None:
        """Buffer the samples; with server VAD, run detection on them (or on `detect`, audio
        already held) 100 ms at a time, commit turns, and keep little audio outside them."""
        self.buffer.append(samples)
        if self.detector is None:
            return
        detect = samples if detect is None else detect
        for first in range(0, max(detect.size, 1), PIECE):
            for event in await asyncio.to_thread(self.detector.feed, detect[first:first + PIECE]):
                await self._turn_event(event.kind, self.origin + event.sample)
            self._decode_early()
            if self.turn is not None and self.buffer.end - self.turn.start >= self.max_samples:
                self.detector.end_turn()  # speech goes on: its next window opens the next turn
                await self._commit(self.turn, self.buffer.end)
        if self.turn is None:
            self.buffer.trim_before(self.buffer.end - self.detector.prefix_padding - int(IDLE_KEEP_S * SAMPLE_RATE))

    async def _turn_event(self, kind: str, sample: int) -> None:
        if kind == "started" and self.turn is None:
            self.turn = Turn(new_id("item"), max(self.buffer.start, sample - self.detector.prefix_padding))
            await self.session.emit({"type": "input_audio_buffer.speech_started", "audio_start_ms": _ms(sample), "item_id": self.turn.item_id})
        elif kind == "stopped" and self.turn is not None:
            await self.session.emit({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": _ms(sample), "item_id": self.turn.item_id})
            silence = self.detector.silence_duration_ms * SAMPLE_RATE // 1000
            early = self.turn.early if self.turn.early is not None and self.turn.early.silence_start == sample else None
            await self._commit(self.turn, max(self.turn.start, min(self.buffer.end, sample + silence)), early)

    def _decode_early(self) -> None:
        """Start the open turn's final decode once EARLY_MS of silence follows its speech; drop
        one whose silence was broken by speech."""
        turn = self.turn
        if turn is None or self.detector is None:
            return
        since = self.detector.silent_since
        silence_start = None if since is None else self.origin + since
        if turn.early is not None and turn.early.silence_start != silence_start:  # speech came back
            early, turn.early = turn.early, None
            if early.end - turn.unsealed >= SEAL_MIN_S * SAMPLE_RATE and not (early.task.done() and early.task.exception() is not None):
                turn.pieces.append(early)  # sealed: later decodes read only the audio after it
            else:
                self.decoder.drop(early)
        end = None if silence_start is None else silence_start + EARLY_MS * SAMPLE_RATE // 1000
        # Silero has judged the whole EARLY_MS after the speech silence (not only the samples fed)
        if end is not None and turn.early is None and self.origin + self.detector.analyzed >= end and end > turn.unsealed:
            self.decoder.stop_partial(turn)
            turn.early = self.decoder.early(turn, self.buffer.view(turn.unsealed, end), silence_start, end)

    async def commit(self) -> None:
        """The client's commit: the open turn (server VAD) or the whole buffer."""
        if self.detector is not None and self.turn is not None:
            self.detector.end_turn()
            await self._commit(self.turn, self.buffer.end)
            return
        if self.detector is not None or self.buffer.size < MIN_COMMIT_MS * SAMPLE_RATE // 1000:
            held = "no speech was detected in it" if self.detector is not None else f"it holds {_ms(self.buffer.size)} ms"
            raise ProtocolError(f"buffer too small: expected at least {MIN_COMMIT_MS} ms of audio, but {held}",
                                code="input_audio_buffer_commit_empty")
        await self._commit(Turn(new_id("item"), self.buffer.start), self.buffer.end)

    async def clear(self) -> None:
        """Forget the uncommitted audio, and the open turn with it (its item never completes)."""
        if self.turn is not None:
            self.turn.open = False
            self.decoder.stop_partial(self.turn)
            for decode in self.turn.pieces + [self.turn.early]:
                self.decoder.drop(decode)
        self.turn = None
        self.buffer.trim_before(self.buffer.end)
        if self.detector is not None:
            self.detector.reset()

    async def _commit(self, turn: Turn, end: int, early: Optional[EarlyDecode] = None) -> None:
        """Commit the turn's audio up to `end`; `early`: its final decode, already started."""
        samples = self.buffer.view(turn.start, end)
        self.buffer.trim_before(end)
        turn.open = False
        self.turn = None
        self.decoder.stop_partial(turn)
        if turn.early is not None and turn.early is not early:
            self.decoder.drop(turn.early)
            turn.early = None
        await self.session.emit({"type": "input_audio_buffer.committed", "previous_item_id": self.previous_item, "item_id": turn.item_id})
        self.previous_item = turn.item_id
        self.decoder.final(turn, samples, early)

    def partial(self) -> None:
        """A tick: decode the open turn again (its last PARTIAL_WINDOW_S), if it has grown and no
        decode of this session is in flight."""
        turn, end = self.turn, self.buffer.end
        if turn is None or turn.early is not None or self.decoder.busy:
            return
        start, context = turn.unsealed, turn.context()
        if context is None or end - start < MIN_PARTIAL_S * SAMPLE_RATE or end - turn.decoded_to < MIN_NEW_AUDIO_S * SAMPLE_RATE:
            return  # a piece still decoding (or failed), or too little audio
        turn.decoded_to = end
        self.decoder.partial(turn, self.buffer.view(max(start, end - int(PARTIAL_WINDOW_S * SAMPLE_RATE)), end), context)

    async def close(self) -> None:
        await self.decoder.close()


class TurnDecoder:
    """A session's decodes: committed turns one at a time in commit order (`completed` events
    in the order of their items), at most one partial decode, none of them after `close()`."""

    def __init__(self, session: LiveSession):
        self.session = session
        self.tasks: set = set()  # decodes in flight
        self.cancels: set = set()  # their cancel flags
        self.finals = asyncio.Lock()
        self.pending = 0  # committed turns not yet decoded
        self.partial_task: Optional[asyncio.Task] = None

    @property
    def busy(self) -> bool:
        return bool(self.pending) or (self.partial_task is not None and not self.partial_task.done())

    def final(self, turn: Turn, samples: np.ndarray, early: Optional[EarlyDecode] = None) -> None:
        """The committed turn (all its `samples`) decoded: its pieces' text, and its audio after
        them (`early`'s decode when it is that audio's)."""
        config = self.session.config
        self.pending += 1
        self._spawn(self._final(turn, samples, config.language, config.prompt, early))

    def early(self, turn: Turn, samples: np.ndarray, silence_start: int, end: int) -> EarlyDecode:
        """A decode of the turn's audio after its pieces (`samples`, up to `end`), started now,
        before `speech_stopped` (see the module docstring)."""
        config, cancel = self.session.config, threading.Event()
        task = self._spawn(self._piece(list(turn.pieces), samples, config.language, config.prompt, cancel))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())  # a dropped one's outcome is nobody's
        return EarlyDecode(silence_start, end, task, cancel)

    @staticmethod
    def drop(decode: Optional[EarlyDecode]) -> None:
        if decode is not None:
            decode.cancel.set()

    def partial(self, turn: Turn, samples: np.ndarray, context: str) -> None:
        self.partial_task = self._spawn(self._partial(turn, samples, context))

    async def _piece(self, pieces: list, samples: np.ndarray, language: Optional[str], prompt: str,
                     cancel: Optional[threading.Event] = None) -> str:
        """The text of `samples`, decoded after the pieces before them (conditioned on their text)."""
        context = open_ending(join_text(*[await asyncio.shield(piece.task) for piece in pieces]))
        return await self._decode(samples, language, prompt, False, cancel=cancel, context=context)

    async def _final(self, turn: Turn, samples: np.ndarray, language: Optional[str], prompt: str, early: Optional[EarlyDecode]) -> None:
        emit, base = self.session.emit, {"item_id": turn.item_id, "content_index": 0}
        pieces = list(turn.pieces)
        try:
            async with self.finals:
                texts = [await asyncio.shield(piece.task) for piece in pieces]
                rest = samples[turn.unsealed - turn.start:]
                texts.append(await (early.task if early is not None else self._piece(pieces, rest, language, prompt)))
                text = join_text(*texts)
        except Cancelled:
            return
        except Exception as exc:  # noqa: BLE001 - the turn fails, the session goes on
            if not isinstance(exc, WorkerError):
                log.exception("a live turn's decode failed")
            kind = "invalid_request_error" if isinstance(exc, WorkerError) and exc.http_status < 500 else "server_error"
            code, message = (exc.code, str(exc)) if isinstance(exc, WorkerError) else ("internal_error", "internal error")
            await emit({"type": "conversation.item.input_audio_transcription.failed", **base,
                        "error": {"type": kind, "code": code, "message": message, "param": None}})
            return
        finally:
            self.pending -= 1
        tail = turn.agreement.finish(text) or _rest(turn.agreement, text)
        if tail:
            await emit({"type": "conversation.item.input_audio_transcription.delta", **base, "delta": tail})
        await emit({"type": "conversation.item.input_audio_transcription.completed", **base, "transcript": text,
                    "usage": {"type": "duration", "seconds": round(samples.size / SAMPLE_RATE, 3)}})

    async def _partial(self, turn: Turn, samples: np.ndarray, context: str) -> None:
        config = self.session.config
        try:
            text = join_text(context, await self._decode(samples, config.language, config.prompt, True, turn, context=open_ending(context)))
        except Exception as exc:  # noqa: BLE001 - a partial that fails is skipped; the turn's own decode reports
            if not isinstance(exc, WorkerError):
                log.exception("a live partial decode failed")
            return
        if turn.open:  # else committed meanwhile: its final decode has the text
            delta = turn.agreement.update(text)
            if delta:
                await self.session.emit({"type": "conversation.item.input_audio_transcription.delta", "item_id": turn.item_id,
                                         "content_index": 0, "delta": delta})

    async def _decode(self, samples: np.ndarray, language: Optional[str], prompt: str, partial: bool, turn: Optional[Turn] = None,
                      cancel: Optional[threading.Event] = None, context: str = "") -> str:
        cancel = cancel or threading.Event()
        if cancel.is_set():
            raise Cancelled("the decode was dropped")
        self.cancels.add(cancel)
        if turn is not None:
            turn.cancel = cancel
        try:
            return await self.session.transcriber.transcribe(samples, language, prompt, cancel, partial, context)
        finally:
            self.cancels.discard(cancel)

    def stop_partial(self, turn: Optional[Turn]) -> None:
        """Cancel the turn's partial decode (its windows still queued are dropped)."""
        if turn is not None and turn.cancel is not None:
            turn.cancel.set()

    def _spawn(self, work) -> asyncio.Task:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self) -> None:
        for cancel in list(self.cancels):
            cancel.set()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
