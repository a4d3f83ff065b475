"""`python -m benchmarks realtime`: live transcription sessions against the worker's server mode
(`GET /v1/realtime?intent=transcription`, OpenAI's Realtime transcription-session events), fed
real speech at real-time pace: how fast a turn's text comes once the speaker stops, how early
partial text comes, whether partial text is ever taken back, how accurate the turns are beside
the file endpoint on the same clips, and how many sessions one machine holds at real-time pace.

Server: the server mode's app (`worker.entries.http.create_app(Readiness(service))`, the same app
`python -m worker` serves with WHISPER_MODE=openai) under uvicorn on 127.0.0.1 (a free port), in
this process, on a Service built from --model / --device / --compute-type / --cpu-threads (the
worker's defaults otherwise; WHISPER_REALTIME_SESSIONS raised to the most sessions asked for).

Audio: for session i, conversation i: --clips utterances of real read speech with human
references (tests/data: the Harvard sentences, the LJ Speech clips, jfk.flac; picked without
replacement by a generator seeded with (--seed, i)), decoded at 16 kHz as the worker decodes
files, joined by pauses drawn from 1.5-2.0 s, after 0.5 s of lead and before 2.5 s of trailing
pause (so the last turn ends: server VAD needs 500 ms of silence). The pauses are white noise at
-70 dBFS (a quiet room), not digital zero. Session i holds conversation i in every run, so a run
of N sessions holds conversations 0..N-1. The conversation is resampled to --rate (24 kHz by
default, as OpenAI's clients send; scipy's polyphase filter, `resample_poly`, ratio 3/2) or sent
at 16 kHz (`session.update` then says rate 16000), as PCM16 LE mono.

A session (a plain `websockets` asyncio client per session, all in one event loop, no
compression): connect, `session.update` (type transcription, audio/pcm at the rate, language
en, server VAD threshold 0.5, prefix 300 ms, silence 500 ms), wait for `session.updated`, then
`input_audio_buffer.append` every --append-ms (40 ms) of audio, each sent when the audio it holds
has ended in real time (x --pace), and wait until every turn that started has completed (or
--timeout). Session i>0 starts after a seeded delay of 0-2 s, so turns do not all line up.
Every server event is stamped on arrival (perf_counter). One short session, not measured, warms
the server up first.

Per turn (an item_id):
- latency: `speech_stopped` arrival -> `completed` arrival (the issue's figure; p50 / p95 / max);
- first delta: `speech_started` arrival -> the first `delta` arrival (p50 / p95), and how many
  deltas the turn had; the share of the completed words that had been sent as deltas before
  `speech_stopped` arrived (partial text while the person speaks);
- contradicted: the turn's deltas joined, as words (case-folded, punctuation dropped but
  apostrophes), are not the first words of its completed transcript, in order (share of the
  completed turns; "out of order" also counts those whose words are not even a subsequence);
- lag (falling behind): `speech_stopped` arrival minus the moment the client sent the audio that
  let the server know the speech had stopped (audio_end_ms + silence_duration_ms); the same for
  `completed` (stopped lag + latency); and how late the client sent its appends against their
  schedule (the client shares the machine: a late append is the machine not keeping up too).

Accuracy (WER, jiwer, corpus-level, after Whisper's English normaliser: benchmarks/metrics.py,
as the other benchmarks): each turn is given to the utterance whose stretch holds the middle of
its audio_start_ms..audio_end_ms (stretches meet in the middle of the pauses, so every turn has
one); an utterance's hypothesis is its turns' transcripts joined in order, "" if it got none. So
an utterance split into several turns is scored on all of them, and a turn that merged two
utterances scores its words against the one holding its middle while the other counts as
deleted (both counted and reported: missed, split, merged). Beside it, the file endpoint: the
Service's normal job (`Service.parse({"audio": path, "language": "en"})` then
`Service.transcribe`, as the HTTP file endpoint runs it) on each utterance's clip alone, scored
on the same utterances (so the same words weigh the same), and on each whole conversation
(a 16 kHz WAV), against the "joined" live figure: all of a session's completed transcripts joined
against its references joined (insensitive to where turns were cut).

Keeping up, per N: every turn that started completed, no `error` event, p95 latency <= --bound
(2 s), every `speech_stopped` at most --bound after its audio was sent, every append at most
--bound late. Capacity = the largest N of --sessions (ascending) that kept up, every smaller one
having kept up too; the runs stop at the first N that does not (--keep-going runs them all).
Targets printed beside the figures (informative, the exit code is 0 whatever they say): p95
speech_stopped -> completed <= 1.0 s with one session; completed turns' WER within 1 point of the
file endpoint's on the same clips. Writes results.json (every turn and event time) and results.md
to --out; the machine (CPU model, cores, load average at start and end) is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import math
import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import facts, report
from .audio_files import DATA, ROOT, read_transcripts, write_audio
from .command import Command, add_shared
from .metrics import error_rates

SAMPLE_RATE = 16000  # the worker's rate (worker.audio.decode.SAMPLE_RATE)
CORPORA = ("harvard", "ljspeech")  # folders of tests/data with transcripts; jfk.flac is added from tests/data/transcripts.txt
LEAD_S, PAUSE_S, TAIL_S = 0.5, (1.5, 2.0), 2.5
NOISE_DBFS = -70.0
STAGGER_S = 2.0  # session i > 0 starts after a seeded delay in [0, STAGGER_S)
LANGUAGE = "en"
TURN_DETECTION = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}
TARGET_P95_S = 1.0  # issue #31: p95 speech_stopped -> completed with one session
TARGET_WER_POINTS = 1.0  # issue #31: completed turns' WER within this many points of the file endpoint's
DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"
FAILED = "conversation.item.input_audio_transcription.failed"


# -- the audio: conversations of real utterances with references -------------------------------

@dataclass(frozen=True, eq=False)
class Clip:
    name: str  # relative to tests/data, e.g. harvard/spk1_snt1.wav
    path: str
    reference: str
    samples: np.ndarray  # 16 kHz float32, as the worker decodes the file


@dataclass(frozen=True)
class Utterance:
    clip: Clip
    start: int  # its first sample in the conversation
    end: int  # one past its last


@dataclass(eq=False)
class Conversation:
    index: int
    samples: np.ndarray  # 16 kHz float32
    utterances: List[Utterance]

    @property
    def seconds(self) -> float:
        return self.samples.size / SAMPLE_RATE

    @property
    def reference(self) -> str:
        return " ".join(u.clip.reference for u in self.utterances)

    def owner(self, start_ms: float, end_ms: float) -> int:
        """The utterance whose stretch holds the middle of [start_ms, end_ms] (stretches meet in
        the middle of the pauses)."""
        middle = (start_ms + end_ms) / 2 * SAMPLE_RATE / 1000
        bounds = [(a.end + b.start) / 2 for a, b in zip(self.utterances, self.utterances[1:])]
        return sum(middle >= bound for bound in bounds)

    def overlapped(self, start_ms: float, end_ms: float) -> List[int]:
        """The utterances whose clips [start, end) the span overlaps."""
        start, end = start_ms * SAMPLE_RATE / 1000, end_ms * SAMPLE_RATE / 1000
        return [k for k, u in enumerate(self.utterances) if start < u.end and end > u.start]

    def json(self) -> dict:
        return {"index": self.index, "seconds": round(self.seconds, 3),
                "utterances": [{"clip": u.clip.name, "start_s": round(u.start / SAMPLE_RATE, 3), "end_s": round(u.end / SAMPLE_RATE, 3)}
                               for u in self.utterances]}


def clip_pool(data: Path = DATA) -> List[Clip]:
    """Every clip with a reference: the Harvard sentences, the LJ Speech clips, jfk.flac."""
    from worker.audio.decode import decode_audio

    named = [(f"{corpus}/{name}", text) for corpus in CORPORA for name, text in read_transcripts(data / corpus).items() if text]
    named += [(name, text) for name, text in read_transcripts(data).items() if text]
    return [Clip(name, str(data / name), text, decode_audio(str(data / name), 600)) for name, text in named]


def build_conversation(pool: Sequence[Clip], index: int, clips: int, seed: int, picks: Optional[Sequence[int]] = None) -> Conversation:
    """Conversation `index`: `clips` utterances (or those `picks` names) joined by 1.5-2 s pauses."""
    rng = np.random.default_rng([seed, index])
    if picks is None:
        picks = rng.choice(len(pool), size=clips, replace=clips > len(pool)).tolist()
    noise = 10 ** (NOISE_DBFS / 20)
    parts: List[np.ndarray] = []
    utterances: List[Utterance] = []
    at = 0

    def pause(seconds: float) -> None:
        nonlocal at
        parts.append((rng.standard_normal(int(seconds * SAMPLE_RATE)) * noise).astype(np.float32))
        at += parts[-1].size

    pause(LEAD_S)
    for number, pick in enumerate(picks):
        if number:
            pause(rng.uniform(*PAUSE_S))
        clip = pool[pick]
        parts.append(clip.samples)
        utterances.append(Utterance(clip, at, at + clip.samples.size))
        at += clip.samples.size
    pause(TAIL_S)
    return Conversation(index, np.concatenate(parts).astype(np.float32), utterances)


def to_pcm(samples: np.ndarray, rate: int) -> bytes:
    """16 kHz float samples as PCM16 LE mono at `rate` (polyphase resampling where it differs)."""
    if rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        common = math.gcd(rate, SAMPLE_RATE)
        samples = resample_poly(np.asarray(samples, dtype=np.float64), rate // common, SAMPLE_RATE // common)
    return (np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2").tobytes()


# -- one session: the client and what it saw -----------------------------------------------------

@dataclass(frozen=True)
class StreamOptions:
    rate: int = 24000
    append_ms: int = 40
    pace: Optional[float] = 1.0  # None: as fast as the appends go
    timeout: float = 60.0  # after the last append, for every turn to complete


@dataclass(eq=False)
class SessionRecord:
    """What a session's client sent (each append's due and actual time) and received (each event
    with its arrival time), and how it ended."""

    conversation: Conversation
    append_ms: int
    events: List[Tuple[float, dict]] = field(default_factory=list)
    due: List[float] = field(default_factory=list)
    sent: List[float] = field(default_factory=list)
    failure: Optional[str] = None
    close_code: Optional[int] = None

    def of(self, kind: str) -> List[Tuple[float, dict]]:
        return [(t, e) for t, e in list(self.events) if e.get("type") == kind]

    def sent_at(self, position_ms: float) -> Optional[float]:
        """When the append holding the audio at `position_ms` of the stream went out."""
        if not self.sent:
            return None
        return self.sent[min(max(int(position_ms // self.append_ms), 0), len(self.sent) - 1)]

    def settled(self) -> bool:
        """Every turn that started is committed, and every committed turn completed or failed."""
        started = len(self.of("input_audio_buffer.speech_started"))
        committed = len(self.of("input_audio_buffer.committed"))
        return committed >= started and len(self.of(COMPLETED)) + len(self.of(FAILED)) >= committed


def session_update(rate: int) -> dict:
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": rate}, "transcription": {"language": LANGUAGE}, "turn_detection": dict(TURN_DETECTION)}}}}


async def _until(condition: Callable[[], object], timeout: float, what: str) -> None:
    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError(f"{what} within {timeout:g} s")
        await asyncio.sleep(0.02)


async def _read(websocket, record: SessionRecord) -> None:
    from websockets.exceptions import ConnectionClosed

    with contextlib.suppress(ConnectionClosed):
        async for message in websocket:
            record.events.append((time.perf_counter(), json.loads(message)))


async def hold_session(url: str, conversation: Conversation, options: StreamOptions, delay: float = 0.0) -> SessionRecord:
    """One live session over its conversation, start to end; a failure is recorded, not raised."""
    from websockets.asyncio.client import connect

    record = SessionRecord(conversation, options.append_ms)
    data = to_pcm(conversation.samples, options.rate)
    step = options.rate * 2 * options.append_ms // 1000
    messages = [json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(data[first:first + step]).decode()})
                for first in range(0, len(data), step)]
    await asyncio.sleep(delay)
    try:
        async with connect(url, max_size=None, compression=None, ping_interval=None, open_timeout=30) as websocket:
            reader = asyncio.ensure_future(_read(websocket, record))
            try:
                await websocket.send(json.dumps(session_update(options.rate)))
                await _until(lambda: record.of("session.updated") or record.of("error"), 30, "no session.updated")
                start = time.perf_counter()
                for number, message in enumerate(messages):
                    due = start + (number + 1) * options.append_ms / 1000 / options.pace if options.pace else time.perf_counter()
                    if due > time.perf_counter():
                        await asyncio.sleep(due - time.perf_counter())
                    await websocket.send(message)
                    record.due.append(due)
                    record.sent.append(time.perf_counter())
                await _until(record.settled, options.timeout, "not every turn completed")
            finally:
                await websocket.close()
                await reader
                record.close_code = websocket.close_code
    except Exception as exc:  # noqa: BLE001 - the run reports it (a session that failed did not keep up)
        record.failure = f"{type(exc).__name__}: {exc}"
    return record


async def hold_sessions(url: str, conversations: Sequence[Conversation], options: StreamOptions, seed: int) -> List[SessionRecord]:
    """One session per conversation, all at once; session i > 0 after a seeded delay."""
    rng = np.random.default_rng([seed, len(conversations), 7])
    delays = [0.0] + rng.uniform(0, STAGGER_S, max(len(conversations) - 1, 0)).tolist()
    return list(await asyncio.gather(*(hold_session(url, c, options, d) for c, d in zip(conversations, delays))))


# -- what the events add up to --------------------------------------------------------------------

def words(text: str) -> List[str]:
    """Words for the delta check: case-folded, punctuation (but apostrophes) dropped."""
    return re.sub(r"[^\w\s']", " ", text.casefold()).split()


def in_order(part: List[str], whole: List[str]) -> bool:
    rest = iter(whole)
    return all(word in rest for word in part)


def turn_rows(record: SessionRecord, session: int, silence_ms: int) -> List[dict]:
    """One row per turn (item_id, in the order the turns started or were committed)."""
    items: Dict[str, dict] = {}
    for arrived, event in record.events:
        item = event.get("item_id")
        if not item:
            continue
        row = items.setdefault(item, {"session": session, "item_id": item, "deltas": []})
        kind = event["type"]
        if kind == "input_audio_buffer.speech_started":
            row.update(started_t=arrived, audio_start_ms=event.get("audio_start_ms"))
        elif kind == "input_audio_buffer.speech_stopped":
            row.update(stopped_t=arrived, audio_end_ms=event.get("audio_end_ms"))
        elif kind == "input_audio_buffer.committed":
            row["committed_t"] = arrived
        elif kind == DELTA:
            row["deltas"].append((arrived, event.get("delta", "")))
        elif kind == COMPLETED:
            row.update(completed_t=arrived, transcript=event.get("transcript", ""))
        elif kind == FAILED:
            row.update(failed=event.get("error"))
    return [_turn(row, record, silence_ms) for row in items.values()]


def _turn(row: dict, record: SessionRecord, silence_ms: int) -> dict:
    started, stopped, completed = row.get("started_t"), row.get("stopped_t"), row.get("completed_t")
    deltas = row.pop("deltas")
    start_ms, end_ms = row.get("audio_start_ms"), row.get("audio_end_ms")
    heard = record.sent_at(end_ms + silence_ms) if end_ms is not None else None  # when the stop could be known
    sent_text = "".join(d for _, d in deltas)
    final = words(row.get("transcript", ""))
    before_stop = words("".join(d for t, d in deltas if stopped is not None and t < stopped))
    conversation = record.conversation
    span = (start_ms, end_ms) if start_ms is not None and end_ms is not None else None
    return {
        **{k: v for k, v in row.items() if not k.endswith("_t")},
        "completed": completed is not None,
        "latency_s": completed - stopped if completed is not None and stopped is not None else None,
        "first_delta_s": deltas[0][0] - started if deltas and started is not None else None,
        "deltas": len(deltas),
        "sent": sent_text,
        "contradicted": completed is not None and final[:len(words(sent_text))] != words(sent_text),
        "out_of_order": completed is not None and not in_order(words(sent_text), final),
        "words": len(final),
        "words_before_stop": len(before_stop) if final[:len(before_stop)] == before_stop else 0,
        "stopped_lag_s": stopped - heard if stopped is not None and heard is not None else None,
        "completed_lag_s": completed - heard if completed is not None and heard is not None else None,
        "utterance": conversation.owner(*span) if span else None,
        "overlapped": conversation.overlapped(*span) if span else [],
    }


class FileEndpoint:
    """The file endpoint's transcripts of the same audio: the Service's normal job (parse, then
    transcribe, as the HTTP entry runs it) on each utterance's clip alone and on each whole
    conversation (written as a 16 kHz WAV); computed once each, never while sessions run."""

    def __init__(self, service, folder: str):
        self.service, self.folder = service, folder
        self.alone: Dict[str, str] = {}
        self.whole: Dict[int, str] = {}
        self.clip_seconds: Dict[str, float] = {}  # each clip's job, wall seconds (a turn's decode alone, for scale)
        self.audio_seconds = self.wall_seconds = 0.0

    def _job(self, path: str, seconds: float, job_id: str) -> Tuple[str, float]:
        started = time.perf_counter()
        text = self.service.transcribe(self.service.parse({"audio": path, "language": LANGUAGE}, job_id), job_id).transcript.text
        took = time.perf_counter() - started
        self.wall_seconds += took
        self.audio_seconds += seconds
        return text, took

    def cover(self, conversations: Sequence[Conversation]) -> None:
        for conversation in conversations:
            for utterance in conversation.utterances:
                clip = utterance.clip
                if clip.name not in self.alone:
                    self.alone[clip.name], self.clip_seconds[clip.name] = self._job(clip.path, clip.samples.size / SAMPLE_RATE, f"file-{clip.name}")
            if conversation.index not in self.whole:
                path = os.path.join(self.folder, f"conversation-{conversation.index}.wav")
                write_audio(path, conversation.samples, SAMPLE_RATE)
                self.whole[conversation.index] = self._job(path, conversation.seconds, f"file-conversation-{conversation.index}")[0]


def accuracy(records: Sequence[SessionRecord], rows: Sequence[dict], files: FileEndpoint) -> dict:
    """WER of the completed turns (matched to utterances) and of the sessions joined, beside the
    file endpoint's on the same clips; how turns and utterances matched."""
    references, live, alone = [], [], []
    joined_references, joined_live, whole = [], [], []
    missed = split = 0
    for session, record in enumerate(records):
        conversation = record.conversation
        mine = [r for r in rows if r["session"] == session and r["completed"] and r["utterance"] is not None]
        heard: List[List[str]] = [[] for _ in conversation.utterances]
        for row in mine:
            heard[row["utterance"]].append(row["transcript"])
        missed += sum(not texts for texts in heard)
        split += sum(len(texts) > 1 for texts in heard)
        for utterance, texts in zip(conversation.utterances, heard):
            references.append(utterance.clip.reference)
            live.append(" ".join(texts))
            alone.append(files.alone[utterance.clip.name])
        joined_references.append(conversation.reference)
        joined_live.append(" ".join(r["transcript"] for r in mine))
        whole.append(files.whole[conversation.index])
    return {
        "utterances": len(references), "utterances_missed": missed, "utterances_split": split,
        "turns_merged": sum(len(r["overlapped"]) > 1 for r in rows),
        "wer_turns": error_rates(references, live, LANGUAGE)["wer"],
        "wer_file_clips": error_rates(references, alone, LANGUAGE)["wer"],
        "wer_joined": error_rates(joined_references, joined_live, LANGUAGE)["wer"],
        "wer_file_conversations": error_rates(joined_references, whole, LANGUAGE)["wer"],
    }


def _pct(values: Sequence[float], q: float) -> Optional[float]:
    return float(np.percentile(values, q)) if len(values) else None


def _spread(values: Sequence[Optional[float]]) -> dict:
    values = [v for v in values if v is not None]
    return {"n": len(values), "p50": _pct(values, 50), "p95": _pct(values, 95), "max": max(values) if values else None}


def summarise(records: Sequence[SessionRecord], files: FileEndpoint, bound: float) -> dict:
    """One run (N sessions): the figures, whether it kept up (and why not), and every turn."""
    rows = [row for session, record in enumerate(records) for row in turn_rows(record, session, TURN_DETECTION["silence_duration_ms"])]
    done = [r for r in rows if r["completed"]]
    latency = _spread([r["latency_s"] for r in done])
    stopped_lag = _spread([r["stopped_lag_s"] for r in rows])
    late = [s - d for record in records for s, d in zip(record.sent, record.due)]
    errors = [e.get("error") for record in records for _, e in record.of("error")]
    failures = [f"session {i}: {r.failure}" for i, r in enumerate(records) if r.failure]
    why = []
    if len(done) < len(rows) or failures:
        why.append(f"{len(rows) - len(done)} of {len(rows)} turns did not complete" + (f"; {'; '.join(failures)}" if failures else ""))
    if errors:
        why.append(f"{len(errors)} error events")
    if latency["p95"] is None or latency["p95"] > bound:
        why.append(f"p95 latency {latency['p95']:.2f} s > {bound:g} s" if latency["p95"] is not None else "no latency measured")
    if stopped_lag["max"] is not None and stopped_lag["max"] > bound:
        why.append(f"speech_stopped came {stopped_lag['max']:.2f} s after its audio was sent (> {bound:g} s)")
    if late and max(late) > bound:
        why.append(f"an append went out {max(late):.2f} s late (> {bound:g} s)")
    total_words = sum(r["words"] for r in done)
    return {
        "sessions": len(records),
        "audio_seconds": round(sum(r.conversation.seconds for r in records), 1),
        "turns": len(rows), "turns_completed": len(done),
        "latency_s": latency,
        "first_delta_s": _spread([r["first_delta_s"] for r in done]),
        "deltas_per_turn": {"mean": float(np.mean([r["deltas"] for r in done])) if done else None, "max": max((r["deltas"] for r in done), default=None)},
        "turns_with_deltas_before_stop": sum(r["words_before_stop"] > 0 for r in done),
        "words_sent_before_stop": sum(r["words_before_stop"] for r in done) / total_words if total_words else None,
        "contradicted": sum(r["contradicted"] for r in done) / len(done) if done else None,
        "out_of_order": sum(r["out_of_order"] for r in done) / len(done) if done else None,
        "stopped_lag_s": stopped_lag,
        "completed_lag_s": _spread([r["completed_lag_s"] for r in done]),
        "append_late_s": {"p95": _pct(late, 95), "max": max(late) if late else None},
        "error_events": errors, "failures": failures,
        "accuracy": accuracy(records, rows, files),
        "kept_up": not why, "why_not": why,
        "turn_rows": rows,
    }


# -- the server, in this process ------------------------------------------------------------------

@contextlib.contextmanager
def serving(service) -> Iterator[Tuple[str, object]]:
    """The server mode's app under uvicorn on 127.0.0.1 (a free port): (ws:// URL, realtime state)."""
    import uvicorn

    from worker.entries.http import Readiness, create_app
    from worker.entries.realtime import MAX_MESSAGE_BYTES

    app = create_app(Readiness(service))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws_max_size=MAX_MESSAGE_BYTES))
    thread = threading.Thread(target=server.run, name="realtime-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/v1/realtime?intent=transcription", app.state.realtime
    finally:
        server.should_exit = True
        thread.join(15)


def _idle(state, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while state.sessions or state.decodes:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- the report -------------------------------------------------------------------------------------

def _s(value: Optional[float], digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _p(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def targets(runs: Sequence[dict]) -> List[dict]:
    if not runs:
        return []
    run = min(runs, key=lambda r: r["sessions"])
    who = "one session" if run["sessions"] == 1 else f"{run['sessions']} sessions (no run of one)"
    p95, acc = run["latency_s"]["p95"], run["accuracy"]
    live, file = acc["wer_turns"], acc["wer_file_clips"]
    return [
        {"target": f"p95 speech_stopped -> completed <= {TARGET_P95_S:g} s with {who}", "value": f"{_s(p95)} s",
         "met": p95 is not None and p95 <= TARGET_P95_S},
        {"target": f"WER of completed turns within {TARGET_WER_POINTS:g} point of the file endpoint's on the same clips ({who})",
         "value": f"{_p(live)} vs {_p(file)}", "met": live is not None and file is not None and 100 * (live - file) <= TARGET_WER_POINTS},
    ]


def run_line(run: dict) -> str:
    acc, lat, first = run["accuracy"], run["latency_s"], run["first_delta_s"]
    return (f"{run['sessions']} session(s): stopped->completed p50 {_s(lat['p50'])} s, p95 {_s(lat['p95'])} s, max {_s(lat['max'])} s; "
            f"first delta p50 {_s(first['p50'])} s; turns {run['turns_completed']}/{run['turns']}; contradicted {_p(run['contradicted'])}; "
            f"WER turns {_p(acc['wer_turns'])} vs file {_p(acc['wer_file_clips'])}; stopped lag max {_s(run['stopped_lag_s']['max'])} s; "
            f"append late max {_s(run['append_late_s']['max'], 3)} s; " + ("kept up" if run["kept_up"] else "did NOT keep up: " + "; ".join(run["why_not"])))


def markdown(data: dict) -> str:
    settings = data["settings"]
    lines = [f"# Live transcription sessions (`/v1/realtime`) — {data['created']}", "", f"`{data['command']}`", "",
             "## Machine", ""] + report.machine_lines(data["machine"], data["versions"]) + ["", "## Settings", ""]
    lines += [f"- **{k}**: {v}" for k, v in settings.items()] + [""]
    lines += [f"**Capacity: {data['capacity']} session(s)** held at {settings['pace']}x real-time pace on this machine "
              f"({data['machine']['cpu']}, {data['machine']['cpu_affinity']} usable cores; {settings['model']} {settings['compute_type']} on {settings['device']}): "
              f"the largest N that kept up (p95 latency <= {settings['bound_s']} s, no session behind, every turn completed).", ""]
    headers = ["sessions", "turns done", "stopped→completed p50 / p95 / max (s)", "first delta p50 / p95 (s)", "deltas / turn",
               "words sent before stop", "contradicted (out of order)", "WER turns", "WER file, clips", "WER joined", "WER file, conversations",
               "stopped lag max (s)", "completed lag max (s)", "append late max (s)", "kept up"]
    rows = []
    for run in data["runs"]:
        acc, lat, first = run["accuracy"], run["latency_s"], run["first_delta_s"]
        rows.append([run["sessions"], f"{run['turns_completed']}/{run['turns']}", f"{_s(lat['p50'])} / {_s(lat['p95'])} / {_s(lat['max'])}",
                     f"{_s(first['p50'])} / {_s(first['p95'])}", _s(run["deltas_per_turn"]["mean"], 1), _p(run["words_sent_before_stop"]),
                     f"{_p(run['contradicted'])} ({_p(run['out_of_order'])})", _p(acc["wer_turns"]), _p(acc["wer_file_clips"]), _p(acc["wer_joined"]),
                     _p(acc["wer_file_conversations"]), _s(run["stopped_lag_s"]["max"]), _s(run["completed_lag_s"]["max"]),
                     _s(run["append_late_s"]["max"], 3), "yes" if run["kept_up"] else "no: " + "; ".join(run["why_not"])])
    lines += ["## Runs", "", report.markdown_table(headers, rows), ""]
    lines += ["Turns and utterances: " + "; ".join(
        f"{r['sessions']} session(s): {r['accuracy']['utterances']} utterances, {r['accuracy']['utterances_missed']} missed, "
        f"{r['accuracy']['utterances_split']} split, {r['accuracy']['turns_merged']} merged turns" for r in data["runs"]) + ".", ""]
    lines += ["## Targets (informative)", ""] + [f"- {'met' if t['met'] else 'NOT met'}: {t['target']} — {t['value']}" for t in data["targets"]]
    files = data["file_endpoint"]
    lines += ["", "## How", "",
              "- latency: `speech_stopped` arrival → `completed` arrival at the client; first delta: `speech_started` arrival → first `delta` arrival.",
              "- contradicted: share of completed turns whose deltas joined (words, case-folded, punctuation dropped) are not the first words of the "
              "completed transcript; out of order: not even a subsequence of it.",
              "- words sent before stop: share of the completed words already sent as deltas when `speech_stopped` arrived.",
              "- WER (jiwer, corpus-level, Whisper's English normaliser): a turn is given to the utterance whose stretch holds the middle of "
              "audio_start_ms..audio_end_ms (stretches meet mid-pause); an utterance is scored on its turns joined (\"\" if none: missed). "
              "`WER file, clips`: the Service's normal file job on each clip alone, on the same utterances; `WER joined`: each session's "
              "completed transcripts joined against its references joined; `WER file, conversations`: the file job on each whole conversation.",
              "- lags: `speech_stopped` (or `completed`) arrival minus the moment the client sent the audio that ended the turn "
              "(audio_end_ms + silence_duration_ms); append late: how far behind its schedule an append went out.",
              f"- file endpoint: {len(files['clips'])} clips and {len(files['conversations'])} conversations, {files['audio_seconds']:.0f} s of audio "
              f"in {files['wall_seconds']:.0f} s, run before each run's sessions (never beside them); one clip's job alone took "
              f"p50 {_s(files['clip_job_s']['p50'])} s, max {_s(files['clip_job_s']['max'])} s (a turn's decode with nothing else running, for scale).",
              f"- conversations: {', '.join(str(len(c['utterances'])) + ' utterances / ' + format(c['seconds'], '.0f') + ' s' for c in data['conversations'])}."]
    if data.get("notes"):
        lines += [""] + [f"- {n}" for n in data["notes"]]
    return "\n".join(lines) + "\n"


# -- the command ------------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", default="1,2,4,8", help="concurrent session counts, one run each, ascending [%(default)s]")
    parser.add_argument("--clips", type=int, default=6, help="utterances (turns) per session's conversation [%(default)s]")
    parser.add_argument("--pace", type=float, default=1.0, help="audio sent at this many times real time (>1 faster) [%(default)s]")
    parser.add_argument("--rate", type=int, choices=(24000, 16000), default=24000, help="PCM16 rate sent (session.update says it) [%(default)s]")
    parser.add_argument("--append-ms", type=int, default=40, help="audio per input_audio_buffer.append [%(default)s]")
    parser.add_argument("--bound", type=float, default=2.0, help="seconds: p95 latency and lags at most this to keep up [%(default)s]")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds after a session's last append for its turns to complete [%(default)s]")
    parser.add_argument("--seed", type=int, default=31, help="conversations and start delays [%(default)s]")
    parser.add_argument("--keep-going", action="store_true", help="run every --sessions value, even after one did not keep up")
    add_shared(parser, "model", "device", "compute_type", "cpu_threads", "cache_dir", "out", "quiet",
               notes={"out": "default benchmarks/results/realtime-<device>-<date>", "quiet": "no line per run"})


def run(args) -> int:
    from worker.config import Settings
    from worker.service import Service

    from .weights import resolve_ct2

    counts = sorted({int(x) for x in args.sessions.split(",") if x.strip()})
    if not counts or counts[0] < 1 or args.clips < 1:
        raise SystemExit("--sessions takes positive counts, --clips at least 1")
    began = time.perf_counter()
    cache = args.cache_dir or str(ROOT / ".cache" / "benchmarks")
    settings = Settings(model=resolve_ct2(args.model, cache), device=args.device, compute_type=args.compute_type, cpu_threads=args.cpu_threads,
                        allow_local_files=True, realtime_sessions=max(16, counts[-1]))
    service = Service.from_settings(settings)
    pool = clip_pool()
    conversations = [build_conversation(pool, index, args.clips, args.seed) for index in range(counts[-1])]
    options = StreamOptions(rate=args.rate, append_ms=args.append_ms, pace=args.pace, timeout=args.timeout)
    machine = facts.machine()
    say = (lambda text: None) if args.quiet else (lambda text: print(text, flush=True))
    runs: List[dict] = []
    with tempfile.TemporaryDirectory(prefix="realtime-bench-") as folder, serving(service) as (url, state):
        files = FileEndpoint(service, folder)
        warm = build_conversation(pool, 10**6, 1, args.seed, picks=[0])  # not measured
        asyncio.run(hold_session(url, warm, StreamOptions(rate=args.rate, append_ms=args.append_ms, pace=None, timeout=args.timeout)))
        for count in counts:
            files.cover(conversations[:count])
            _idle(state)
            say(f"{count} session(s), {sum(c.seconds for c in conversations[:count]):.0f} s of audio at {args.pace:g}x ...")
            records = asyncio.run(hold_sessions(url, conversations[:count], options, args.seed))
            idle = _idle(state)
            summary = summarise(records, files, args.bound)
            summary["server_idle_after"] = idle
            runs.append(summary)
            say(run_line(summary))
            if not summary["kept_up"] and not args.keep_going:
                break
    model = service.engine.model
    service.engine.close()
    service.close()
    machine["load_average_at_start"], machine["load_average"] = machine["load_average"], facts.load_average()
    capacity = 0
    for summary in runs:
        if not summary["kept_up"]:
            break
        capacity = summary["sessions"]
    data = {
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(getattr(args, "argv", None) or sys.argv[1:] or ["realtime"]),
        "settings": {"model": args.model, "compute_type": model.compute_type, "device": model.device, "sessions": counts, "clips": args.clips,
                     "pace": args.pace, "rate": args.rate, "append_ms": args.append_ms, "bound_s": args.bound, "seed": args.seed,
                     "turn_detection": TURN_DETECTION, "language": LANGUAGE, "pauses_s": list(PAUSE_S)},
        "machine": machine, "versions": facts.versions(),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "capacity": capacity,
        "targets": targets(runs),
        "runs": runs,
        "file_endpoint": {"clips": files.alone, "conversations": {str(k): v for k, v in files.whole.items()},
                          "clip_job_seconds": files.clip_seconds, "clip_job_s": _spread(list(files.clip_seconds.values())),
                          "audio_seconds": files.audio_seconds, "wall_seconds": files.wall_seconds},
        "conversations": [c.json() for c in conversations[:max(r["sessions"] for r in runs)]] if runs else [],
        "notes": [],
    }
    load = machine["load_average_at_start"]
    if load and load[0] >= 1.5:
        data["notes"].append(f"the machine was busy when the run started (1-minute load average {load[0]}): the figures are pessimistic")
    out = args.out or str(ROOT / "benchmarks" / "results" / f"realtime-{model.device}-{dt.date.today().isoformat()}")
    os.makedirs(out, exist_ok=True)
    report.write_json(os.path.join(out, "results.json"), data)
    report.write_markdown(os.path.join(out, "results.md"), markdown(data))
    print(f"\ncapacity: {capacity} session(s) at {args.pace:g}x real time ({machine['cpu']}, {machine['cpu_affinity']} cores; "
          f"load average {machine['load_average_at_start']} at start, {machine['load_average']} at end)")
    for check in data["targets"]:
        print(f"{'met' if check['met'] else 'NOT met'}: {check['target']} ({check['value']})")
    print(f"wrote {out}/results.json, results.md ({data['wall_seconds']:.0f} s)")
    return 0


COMMAND = Command("realtime", "N live transcription sessions (/v1/realtime) at real-time pace from real speech: latency, "
                              "partial text, WER beside the file endpoint, sessions one machine holds", configure, run)
