"""Live transcription over a real WebSocket: the server mode's app under uvicorn on loopback, the
real model (tiny.en; multilingual base where accuracy is the point), real speech streamed as
24 kHz PCM16 in 40-100 ms appends, at real-time pace and faster, by a plain `websockets` client
sending exactly OpenAI's documented events, and by the official `openai` client's realtime
connection. Bad events, oversized appends and messages, an abrupt disconnect, the session cap,
the idle timeout, a client that does not read, and the refusals before the upgrade."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

import av
import openai
import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import worker.entries.realtime as realtime
from helpers import DATA, loopback_server, references, wait_until, wer
from worker.entries.http import Readiness, create_app
from worker.service import Service

RATE = 24000
BYTES_PER_SECOND = RATE * 2
LATENCIES: List[float] = []  # speech_stopped -> completed, seconds, of the turns streamed at real-time pace


@contextlib.contextmanager
def running(app):
    """The app under uvicorn on 127.0.0.1, a free port picked by the OS."""
    with loopback_server(app) as port:
        yield f"ws://127.0.0.1:{port}"


class Server:
    def __init__(self, url: str, app, service: Optional[Service]):
        self.url, self.state, self.service = url, app.state.realtime, service

    def idle(self) -> bool:
        return not self.state.sessions and self.state.decodes == 0


@contextlib.contextmanager
def serving(runner, **overrides):
    service = Service(dataclasses.replace(runner.settings, **overrides), runner.engine) if runner is not None else None
    app = create_app(Readiness(service))
    with running(app) as url:
        yield Server(url, app, service)


@pytest.fixture(scope="module")
def tiny_live(tiny_service):
    with serving(tiny_service, realtime_sessions=2, realtime_max_buffer_seconds=10.0) as server:
        yield server


@pytest.fixture(scope="module")
def base_live(base_service):
    with serving(base_service) as server:
        yield server


def pcm(name: str) -> bytes:
    """The clip as OpenAI's clients send audio: 24 kHz 16-bit little-endian mono PCM."""
    chunks = []
    with av.open(str(DATA / name)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        for frame in container.decode(audio=0):
            chunks.extend(out.to_ndarray().tobytes() for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().tobytes() for out in resampler.resample(None))
    return b"".join(chunks)


def silence(seconds: float) -> bytes:
    return b"\0\0" * int(seconds * RATE)


class Live:
    """A plain WebSocket client: OpenAI's documented client events out, the server's events
    collected by a reader thread with their arrival times."""

    def __init__(self, url: str, query: str = "?intent=transcription", **options):
        self.ws = connect(f"{url}/v1/realtime{query}", max_size=None, open_timeout=10, **options)
        self.events: List[dict] = []
        self.arrived: List[float] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            for message in self.ws:
                event = json.loads(message)
                self.arrived.append(time.monotonic())
                self.events.append(event)

    def send(self, event) -> None:
        self.ws.send(event if isinstance(event, (str, bytes)) else json.dumps(event))

    def update(self, **audio_input) -> None:
        self.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}})

    def stream(self, data: bytes, piece_ms: int = 40, pace: Optional[float] = 1.0) -> None:
        """Appends of `piece_ms` each, at `pace` x real time (None: as fast as they go)."""
        step = BYTES_PER_SECOND * piece_ms // 1000
        start = time.monotonic()
        for first in range(0, len(data), step):
            self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(data[first:first + step]).decode()})
            if pace:
                time.sleep(max(0.0, start + (first + step) / BYTES_PER_SECOND / pace - time.monotonic()))

    def of(self, kind: str) -> List[dict]:
        return [event for event in list(self.events) if event["type"] == kind]

    def wait(self, kind: str, count: int = 1, timeout: float = 30) -> List[dict]:
        assert wait_until(lambda: len(self.of(kind)) >= count, timeout), f"no {count} x {kind}: {[e['type'] for e in self.events]}"
        return self.of(kind)

    def closed(self, timeout: float = 10):
        """(close code, reason) once the server has closed the connection."""
        self.reader.join(timeout)
        assert not self.reader.is_alive(), "the connection is still open"
        return self.ws.close_code, self.ws.close_reason

    def close(self) -> None:
        self.ws.close()
        self.reader.join(10)


def words(text: str) -> List[str]:
    return re.sub(r"[^\w\s']", " ", text.casefold()).split()


def in_order(part: List[str], whole: List[str]) -> bool:
    """Whether `part`'s words appear in `whole`, in order (a subsequence)."""
    rest = iter(whole)
    return all(word in rest for word in part)


def check_turns(live: Live, timed: bool = False) -> List[dict]:
    """Every turn's events in order with one item_id (speech_started, speech_stopped, committed,
    its deltas, completed), the items chained by previous_item_id; the completed events."""
    completed = live.of("conversation.item.input_audio_transcription.completed")
    committed = live.of("input_audio_buffer.committed")
    items = [event["item_id"] for event in committed]
    assert len(set(items)) == len(items) == len(completed)
    assert [event["previous_item_id"] for event in committed] == [None] + items[:-1]
    for item in items:
        mine = [(index, event["type"].rsplit(".", 1)[-1]) for index, event in enumerate(live.events) if event.get("item_id") == item]
        kinds = [kind for _, kind in mine if kind != "delta"]
        assert kinds == ["speech_started", "speech_stopped", "committed", "completed"], kinds
        assert max(index for index, kind in mine if kind == "delta" or kind == "committed") < mine[-1][0]  # deltas before completed
        stopped = live.events.index(next(e for e in live.events if e.get("item_id") == item and e["type"].endswith("speech_stopped")))
        done = live.events.index(next(e for e in completed if e["item_id"] == item))
        if timed:
            LATENCIES.append(live.arrived[done] - live.arrived[stopped])
    return completed


def test_a_session_at_real_time_pace_gives_partial_text_while_speaking_then_the_turn(tiny_live):
    live = Live(tiny_live.url)
    created = live.wait("session.created")[0]
    assert live.events[0] is created and created["event_id"].startswith("event_")
    session = created["session"]
    assert session["id"].startswith("sess_") and session["object"] == "realtime.session" and session["type"] == "transcription"
    assert session["audio"]["input"]["transcription"] == {"model": tiny_live.service.settings.served_model_name, "language": None, "prompt": ""}
    live.update(transcription={"language": "en"})
    updated = live.wait("session.updated")[0]["session"]
    assert updated["audio"]["input"]["transcription"]["language"] == "en" and updated["id"] == session["id"]
    assert updated["audio"]["input"]["turn_detection"] == session["audio"]["input"]["turn_detection"]
    name = "ljspeech/LJ001-0004.wav"  # 5.1 s, one sentence
    live.stream(silence(0.5) + pcm(name) + silence(1.0), piece_ms=40, pace=1.0)
    completed = live.wait("conversation.item.input_audio_transcription.completed", timeout=20)
    assert wait_until(lambda: len(live.of("conversation.item.input_audio_transcription.completed"))
                      == len(live.of("input_audio_buffer.speech_started")), 10)
    completed = check_turns(live, timed=True)
    longest = max(completed, key=lambda event: event["usage"]["seconds"])
    assert longest["usage"]["seconds"] >= 3.0 and longest["usage"]["type"] == "duration"
    item = longest["item_id"]
    deltas = [e for e in live.events if e["type"].endswith("transcription.delta") and e["item_id"] == item]
    stopped = next(e for e in live.events if e["type"] == "input_audio_buffer.speech_stopped" and e["item_id"] == item)
    assert deltas and live.events.index(deltas[0]) < live.events.index(stopped), "no partial text while the turn was spoken"
    for event in completed:  # what was sent as deltas is never taken back: its words are the transcript's, in order
        sent = "".join(e["delta"] for e in live.events if e["type"].endswith("transcription.delta") and e["item_id"] == event["item_id"])
        assert in_order(words(sent), words(event["transcript"])), (sent, event["transcript"])
    text = " ".join(event["transcript"] for event in completed)
    assert wer(references(DATA / "ljspeech")[Path(name).name], text) < 0.2, text
    live.close()
    assert wait_until(tiny_live.idle, 10)


CLIPS = ["harvard/spk1_snt1.wav", "harvard/spk2_snt2.wav", "ljspeech/LJ001-0002.wav", "ljspeech/LJ001-0013.wav"]
LONG = ["ljspeech/LJ001-0001.wav", "ljspeech/LJ001-0003.wav", "ljspeech/LJ001-0005.wav"]  # 7-10 s sentences with pauses at commas


def turns_of(url: str, names: List[str], timeout: float) -> Tuple[Live, List[dict]]:
    """The clips streamed as fast as they go, 1.5 s apart: one completed turn each."""
    live = Live(url)
    live.stream(b"".join(silence(1.0 if index == 0 else 1.5) + pcm(name) for index, name in enumerate(names)) + silence(1.5),
                piece_ms=100, pace=None)
    live.wait("conversation.item.input_audio_transcription.completed", len(names), timeout=timeout)
    completed = check_turns(live)
    assert len(completed) == len(names)
    return live, completed


def beside_the_file_endpoint(service: Service, names: List[str], completed: List[dict]) -> List[Tuple[float, float, str, str]]:
    """Per clip: the WER of its turn's text and of a Service job on its file (the same default
    request), and both texts."""
    rows = []
    for name, event in zip(names, completed):
        reference = references(DATA / Path(name).parent)[Path(name).name]
        file_text = service.transcribe(service.parse({"audio": str(DATA / name)}, "file"), "file").transcript.text
        print(f"\n{name}: live {event['transcript']!r} file {file_text!r}")
        rows.append((wer(reference, event["transcript"]), wer(reference, file_text), event["transcript"], file_text))
    return rows


def test_turns_streamed_faster_than_real_time_read_as_the_file_endpoint_reads_the_clips(base_live):
    """One turn per clip (1.5 s pauses between them), chained; each turn's text as accurate as
    the file endpoint's."""
    live, completed = turns_of(base_live.url, CLIPS, timeout=60)
    rows = beside_the_file_endpoint(base_live.service, CLIPS, completed)
    for name, (live_error, file_error, live_text, file_text) in zip(CLIPS, rows):
        assert live_text == file_text or live_error <= file_error + 0.01, (name, live_text, file_text)
    assert sum(row[0] for row in rows) <= sum(row[1] for row in rows) + 0.01
    live.close()


def test_long_turns_are_decoded_in_pieces_at_their_pauses_and_read_as_the_file_endpoint_reads_them(base_live, monkeypatch):
    """A long turn is sealed at its inner pauses while spoken; the rest is decoded conditioned on
    the pieces' text, and the turn's text is as accurate as the file endpoint's on the clip."""
    decodes: List[tuple] = []
    transcribe = realtime.ServiceTranscriber.transcribe

    async def recorded(self, samples, language, prompt, cancelled, partial, context=""):
        decodes.append((partial, samples.size, context))
        return await transcribe(self, samples, language, prompt, cancelled, partial, context)

    monkeypatch.setattr(realtime.ServiceTranscriber, "transcribe", recorded)
    live, completed = turns_of(base_live.url, LONG, timeout=120)
    conditioned = [context for partial, _, context in decodes if not partial and context]
    assert conditioned, "no turn was decoded in pieces"
    assert all(context in " ".join(event["transcript"] for event in completed) for context in conditioned)  # the pieces' text, kept
    rows = beside_the_file_endpoint(base_live.service, LONG, completed)
    assert sum(row[0] for row in rows) <= sum(row[1] for row in rows) + 0.03, rows
    live.close()


def test_the_context_a_piece_is_conditioned_on_is_cut_to_the_prompt_room(tiny_live):
    transcriber = realtime.ServiceTranscriber(tiny_live.service, realtime.RealtimeState(), "test")
    context = " ".join(f"word{number}" for number in range(3000))
    request = transcriber._conditioned("en", "Kennedy", context, False)
    assert request.initial_prompt.startswith("Kennedy word") and request.initial_prompt.endswith(" word2999")
    assert len(request.initial_prompt) <= len("Kennedy ") + realtime.CONTEXT_CHARS
    tiny_live.service.engine.check(request)  # fits the decoder's prompt room
    long_prompt = "name " * 200  # about 200 tokens of the 223: little room left for the context
    request = transcriber._conditioned("en", long_prompt.strip(), context, True)
    assert request.initial_prompt.startswith(long_prompt.strip()) and request.temperature == transcriber._request("en", "", True).temperature
    tiny_live.service.engine.check(request)
    assert transcriber._conditioned("en", "", "short context", False).initial_prompt == "short context"


def test_the_official_openai_client_holds_a_transcription_session(tiny_live):
    from openai.types.realtime import (ConversationItemInputAudioTranscriptionCompletedEvent, InputAudioBufferCommittedEvent,
                                       SessionCreatedEvent, SessionUpdatedEvent)

    client = openai.OpenAI(base_url=tiny_live.url.replace("ws://", "http://") + "/v1", api_key="unused", max_retries=0)
    name = "harvard/spk1_snt1.wav"
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        created = connection.recv()
        assert isinstance(created, SessionCreatedEvent) and created.session.type == "transcription"
        connection.session.update(session={"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None,
            "transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": "Harvard sentences"}}}})
        updated = connection.recv()
        assert isinstance(updated, SessionUpdatedEvent)
        transcription = updated.session.audio.input.transcription
        assert (transcription.model, transcription.language, transcription.prompt) == ("gpt-4o-transcribe", "en", "Harvard sentences")
        assert updated.session.audio.input.turn_detection is None
        data = pcm(name)
        for first in range(0, len(data), BYTES_PER_SECOND // 10):
            connection.input_audio_buffer.append(audio=base64.b64encode(data[first:first + BYTES_PER_SECOND // 10]).decode())
        connection.input_audio_buffer.commit()
        events = []
        for event in connection:
            events.append(event)
            if event.type == "conversation.item.input_audio_transcription.completed":
                break
    committed = next(e for e in events if isinstance(e, InputAudioBufferCommittedEvent))
    done = events[-1]
    assert isinstance(done, ConversationItemInputAudioTranscriptionCompletedEvent) and done.item_id == committed.item_id
    assert done.usage.type == "duration" and abs(done.usage.seconds - len(data) / BYTES_PER_SECOND) < 0.01
    assert wer(references(DATA / "harvard")["spk1_snt1.wav"], done.transcript) < 0.2, done.transcript
    assert wait_until(tiny_live.idle, 10)


def test_manual_commits_and_clear(tiny_live, monkeypatch):
    scheduler = tiny_live.service.engine.scheduler
    submitted = []  # (job id, urgent) of every group of windows sent to the shared scheduler
    submit = scheduler.submit
    monkeypatch.setattr(scheduler, "submit", lambda key, windows, context, job_id, cancelled, urgent=False:
                        submitted.append((job_id, urgent)) or submit(key, windows, context, job_id, cancelled, urgent))
    live = Live(tiny_live.url, query="")  # no intent: a transcription session all the same
    live.wait("session.created")
    live.update(turn_detection=None)
    live.send({"type": "input_audio_buffer.commit", "event_id": "c1"})
    error = live.wait("error")[0]["error"]
    assert (error["code"], error["event_id"]) == ("input_audio_buffer_commit_empty", "c1")
    for number, name in enumerate(["harvard/spk2_snt1.wav", "harvard/spk2_snt3.wav"], start=1):
        live.stream(pcm(name), piece_ms=100, pace=None)
        live.send({"type": "input_audio_buffer.commit"})
        done = live.wait("conversation.item.input_audio_transcription.completed", number)[-1]
        assert wer(references(DATA / "harvard")[Path(name).name], done["transcript"]) < 0.4, done["transcript"]  # tiny.en
    committed = live.of("input_audio_buffer.committed")
    assert [e["previous_item_id"] for e in committed] == [None, committed[0]["item_id"]]
    assert not live.of("input_audio_buffer.speech_started") and not live.of("input_audio_buffer.speech_stopped")
    assert submitted and all(job_id.startswith("live-") and urgent for job_id, urgent in submitted)  # live turns go first
    live.stream(pcm("harvard/spk2_snt4.wav"), piece_ms=100, pace=None)
    live.send({"type": "input_audio_buffer.clear"})
    live.wait("input_audio_buffer.cleared")
    live.send({"type": "input_audio_buffer.commit"})
    assert live.wait("error", 2)[-1]["error"]["code"] == "input_audio_buffer_commit_empty"
    live.close()
    assert wait_until(tiny_live.idle, 10)


def test_bad_events_are_error_events_and_the_session_goes_on(tiny_live):
    live = Live(tiny_live.url)
    live.wait("session.created")
    bad = [
        ("this is not JSON", "invalid_json", None),
        ({"type": "conversation.item.create", "event_id": "e2"}, "invalid_value", "type"),
        ({"type": "input_audio_buffer.append", "audio": "%%%", "event_id": "e3"}, "invalid_value", "audio"),
        ({"type": "session.update", "event_id": "e4", "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}}},
         "invalid_value", "session.audio.input.format.rate"),
        ({"type": "session.update", "event_id": "e5", "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcma"}}}}},
         "invalid_value", "session.audio.input.format.type"),
        ({"type": "session.update", "event_id": "e6", "session": {"type": "transcription", "audio": {"input": {"transcription": {"language": "klingon"}}}}},
         "invalid_value", "session.audio.input.transcription.language"),
        ({"type": "session.update", "event_id": "e7", "session": {"type": "transcription", "audio": {"input": {"transcription": {"language": "de"}}}}},
         "invalid_value", "session.audio.input.transcription.language"),  # tiny.en is English-only
        ({"type": "transcription_session.update", "event_id": "e8", "session": {"input_audio_format": "g711_ulaw"}},
         "invalid_value", "session.input_audio_format"),
        (b"\x00\x01binary", "invalid_frame", None),
    ]
    for number, (event, code, param) in enumerate(bad, start=1):
        live.send(event)
        error = live.wait("error", number)[-1]["error"]
        assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param), error
        assert error["event_id"] == (f"e{number}" if isinstance(event, dict) else None)
    live.update(format={"type": "audio/pcm", "rate": 16000}, turn_detection=None)
    session = live.wait("session.updated")[0]["session"]
    assert session["audio"]["input"]["format"]["rate"] == 16000 and session["audio"]["input"]["turn_detection"] is None
    live.send({"type": "transcription_session.update", "session": {"input_audio_format": "pcm16"}})
    assert live.wait("transcription_session.updated")[0]["session"]["input_audio_format"] == "pcm16"
    live.stream(pcm("harvard/spk1_snt3.wav"), piece_ms=100, pace=None)
    live.send({"type": "input_audio_buffer.commit"})
    done = live.wait("conversation.item.input_audio_transcription.completed")[0]
    assert wer(references(DATA / "harvard")["spk1_snt3.wav"], done["transcript"]) < 0.3
    assert len(live.of("error")) == len(bad)
    live.close()


def test_oversized_appends_and_messages(tiny_live):
    live = Live(tiny_live.url)
    live.update(turn_detection=None)
    live.wait("session.updated")
    live.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(silence(10.5)).decode(), "event_id": "big"})
    error = live.wait("error")[0]["error"]  # WHISPER_REALTIME_MAX_BUFFER_SECONDS is 10 here
    assert (error["code"], error["param"], error["event_id"]) == ("input_audio_buffer_full", "audio", "big")
    live.send({"type": "input_audio_buffer.commit"})
    assert live.wait("error", 2)[-1]["error"]["code"] == "input_audio_buffer_commit_empty"  # the append was dropped
    live.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * realtime.MAX_MESSAGE_BYTES}))
    assert live.closed()[0] == 1009  # message too big
    assert wait_until(tiny_live.idle, 10)


def test_an_abrupt_disconnect_mid_turn_leaves_no_session_and_no_decode(tiny_live):
    speaking = Live(tiny_live.url)
    speaking.stream(silence(0.3) + pcm("ljspeech/LJ001-0001.wav")[:3 * BYTES_PER_SECOND], piece_ms=40, pace=2.0)
    speaking.wait("input_audio_buffer.speech_started")
    decoding = Live(tiny_live.url)
    decoding.update(turn_detection=None)
    decoding.stream(pcm("ljspeech/LJ001-0001.wav"), piece_ms=100, pace=None)
    decoding.send({"type": "input_audio_buffer.commit"})
    decoding.wait("input_audio_buffer.committed")
    assert wait_until(lambda: tiny_live.state.decodes >= 1, 5)  # the turn is being decoded
    for live in (speaking, decoding):  # no close frame: the TCP connection just ends
        live.ws.socket.shutdown(socket.SHUT_RDWR)
        live.ws.socket.close()
    assert wait_until(tiny_live.idle, 15), (len(tiny_live.state.sessions), tiny_live.state.decodes)
    after = Live(tiny_live.url)  # and the server goes on
    after.wait("session.created")
    after.close()


def test_the_session_cap_refuses_one_more_with_1013(tiny_live):
    first, second = Live(tiny_live.url), Live(tiny_live.url)
    first.wait("session.created")
    second.wait("session.created")
    third = Live(tiny_live.url)
    assert third.closed()[0] == 1013
    assert [e["type"] for e in third.events] == ["error"] and third.events[0]["error"]["code"] == "session_limit"
    first.close()
    assert wait_until(lambda: len(tiny_live.state.sessions) == 1, 5)
    fourth = Live(tiny_live.url)
    fourth.wait("session.created")
    second.close()
    fourth.close()
    assert wait_until(tiny_live.idle, 10)


def test_an_idle_session_is_closed(tiny_service):
    with serving(tiny_service, realtime_idle_timeout=1.0) as server:
        live = Live(server.url)
        live.wait("session.created")
        started = time.monotonic()
        assert live.closed(5) == (1000, "idle timeout")
        assert 0.9 <= time.monotonic() - started <= 3
        assert live.events[-1]["type"] == "error" and live.events[-1]["error"]["code"] == "idle_timeout"
        assert wait_until(server.idle, 5)


def test_refusals_while_loading_and_for_another_intent_and_health_unchanged(tiny_live):
    with serving(None) as loading:
        live = Live(loading.url)
        assert live.closed() == (1013, "the model is still loading; try again later")
        assert [e["error"]["code"] for e in live.events] == ["loading"]
        assert requests.get(loading.url.replace("ws://", "http://") + "/ping", timeout=5).status_code == 204
    live = Live(tiny_live.url, query="?intent=conversation&model=gpt-realtime")
    assert live.closed()[0] == 1008 and [e["error"]["param"] for e in live.events] == ["intent"]
    assert requests.get(tiny_live.url.replace("ws://", "http://") + "/ping", timeout=5).status_code == 200
    live = Live(tiny_live.url, query="?intent=transcription&model=whatever")  # model= is ignored
    live.wait("session.created")
    live.close()
    assert wait_until(tiny_live.idle, 10)


def never_reading(url: str) -> socket.socket:
    """A WebSocket client that never reads: a bare socket with a small receive buffer, the
    upgrade done by hand (no compression offered), then only ever sending."""
    host, port = url.removeprefix("ws://").split(":")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(60)
    raw.connect((host, int(port)))
    raw.sendall(f"GET /v1/realtime?intent=transcription HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += raw.recv(1)  # byte by byte: nothing after the upgrade's headers is read
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return raw


def text_frame(text: str) -> bytes:
    """One masked text frame, as a client sends it."""
    payload, mask = text.encode(), b"\x01\x02\x03\x04"
    size = len(payload)
    header = bytes([0x81]) + (bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big"))
    return header + mask + bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


def test_a_client_that_does_not_read_is_closed_and_blocks_nobody(tiny_live, monkeypatch):
    """A client that sends and never reads: once the events it does not read fill the socket and
    OUTGOING_EVENTS (16 here) more wait, its session ends; another session is served meanwhile."""
    monkeypatch.setattr(realtime, "OUTGOING_EVENTS", 16)
    raw = never_reading(tiny_live.url)
    other = Live(tiny_live.url)
    other.wait("session.created")
    assert wait_until(lambda: len(tiny_live.state.sessions) == 2, 5)
    update = text_frame(json.dumps({"type": "session.update", "session": {"type": "transcription", "include": []}}))
    sent = [0]

    def flood():
        with contextlib.suppress(OSError):
            while sent[0] < 200_000:
                raw.sendall(update)  # each answered with a session.updated (about 500 bytes) that nobody reads
                sent[0] += 1

    flooding = threading.Thread(target=flood, daemon=True)
    flooding.start()
    started = time.monotonic()
    other.update(turn_detection=None)
    other.stream(pcm("harvard/spk2_snt5.wav"), piece_ms=100, pace=None)
    other.send({"type": "input_audio_buffer.commit"})
    assert other.wait("conversation.item.input_audio_transcription.completed")[0]["transcript"]
    assert wait_until(lambda: len(tiny_live.state.sessions) == 1, 30), f"the client that does not read is still served ({sent[0]} sent)"
    assert other.reader.is_alive()  # the other session is still open
    print(f"\nthe client that did not read was closed after {time.monotonic() - started:.1f} s, {sent[0]} events sent")
    raw.shutdown(socket.SHUT_RDWR)
    raw.close()
    flooding.join(10)
    other.close()
    assert wait_until(tiny_live.idle, 10)


def test_report_the_latencies():
    """speech_stopped -> completed of the turns streamed at real-time pace (tiny.en; printed with -s)."""
    if LATENCIES:
        print(f"\nspeech_stopped -> completed at real-time pace (tiny.en): {', '.join(f'{s:.2f}' for s in LATENCIES)} s")
