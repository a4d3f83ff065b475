"""The live session's protocol with a fake transcriber (plumbing only; tests/entries/test_realtime.py
runs the real model over a real WebSocket): OpenAI's transcription-session events in and out,
session configuration merged field by field and refused by name, manual commits and the buffer
limit, server-VAD turns on real speech (real Silero), partial text, one partial decode in flight,
cancellation on close, a failing decode; and, found by mutation testing (mutation/RESULTS.md), the
limits at their exact edges (100 ms commits, the buffer, SEAL_MIN_S, the partials' half and quarter
second), early and partial decodes dropped by commits, clears and pauses, turn detection switched
off and on, the last delta's spacing, the error texts, and the sample buffer's positions."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import threading
from typing import List, Optional

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import DATA
from worker.audio.decode import SAMPLE_RATE, decode_audio
from worker.errors import Cancelled, DeviceFailure, RequestError
from worker.live.partials import Agreement
from worker.live.session import EarlyDecode, LiveSession, Turn
from worker.live import session as session_module

MODELS = ("tiny.en", "/models/tiny.en", "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-live-transcribe")
WORDS = "and so my fellow americans ask not what your country can do for you ask what you can do for your country".split()
DEFAULT_SESSION = {
    "object": "realtime.session", "type": "transcription",
    "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000},
        "noise_reduction": None,
        "transcription": {"model": "tiny.en", "language": None, "prompt": ""},
        "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500},
    }},
    "include": [],
}


class FakeTranscriber:
    """Two words per second of audio, from WORDS (after the context's words): a longer decode of
    the same turn extends the shorter one's text, as a real model's mostly does. Records every call."""

    def __init__(self, delay: float = 0.0, partial_delay: float = 0.0, block: bool = False, fail: Optional[Exception] = None,
                 partial_fail: Optional[Exception] = None):
        self.delay, self.partial_delay, self.block, self.fail, self.partial_fail = delay, partial_delay, block, fail, partial_fail
        self.calls: List[tuple] = []
        self.running = self.most_partials = self.partials_now = 0
        self.cancelled: List[threading.Event] = []
        self.contexts: List[str] = []

    def check(self, language, prompt):
        if language == "de":
            raise RequestError("model 'tiny.en' is English-only; it cannot transcribe 'de'", field="language")
        if len(prompt) > 1000:
            raise RequestError("too long", field="initial_prompt")

    async def transcribe(self, samples, language, prompt, cancelled, partial, context=""):
        self.calls.append((partial, samples.size, language, prompt))
        self.contexts.append(context)
        self.cancelled.append(cancelled)
        self.partials_now += partial
        self.most_partials = max(self.most_partials, self.partials_now)
        try:
            if self.block:
                while not cancelled.is_set():
                    await asyncio.sleep(0.01)
                raise Cancelled("cancelled")
            await asyncio.sleep(self.partial_delay if partial else self.delay)
            if self.fail is not None and not partial:
                raise self.fail
            if self.partial_fail is not None and partial:
                raise self.partial_fail
            before = len(context.split())  # audio after `context`: the words after its words
            return " ".join(WORDS[before:before + int(samples.size / SAMPLE_RATE * 2)])
        finally:
            self.partials_now -= partial


class Client:
    """A session driven as the entry drives it; events collected."""

    def __init__(self, transcriber=None, max_buffer_seconds: float = 60.0, partial_interval: float = 1.0):
        self.events: List[dict] = []
        self.transcriber = transcriber or FakeTranscriber()

        async def send(event):
            self.events.append(event)

        self.session = LiveSession(send, self.transcriber, MODELS, max_buffer_seconds, partial_interval)

    async def send(self, event) -> None:
        await self.session.handle_text(event if isinstance(event, str) else json.dumps(event))

    async def update(self, **audio_input) -> dict:
        await self.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}})
        return self.events[-1]

    async def append(self, samples: np.ndarray, rate: int = 16000, piece_s: float = 0.1, pace: float = 0.0) -> None:
        data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
        step = int(piece_s * rate) * 2
        for first in range(0, len(data), step):
            await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(data[first:first + step]).decode()})
            if pace:
                await asyncio.sleep(pace)

    def of(self, kind: str) -> List[dict]:
        return [event for event in self.events if event["type"] == kind]

    async def until(self, condition, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, f"timed out; events: {[e['type'] for e in self.events]}"
            await asyncio.sleep(0.01)


def run(test):
    return asyncio.run(asyncio.wait_for(test(), 60))


def clip(name: str) -> np.ndarray:
    return decode_audio(str(DATA / name), 60)


def quiet(seconds: float) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(int(seconds * SAMPLE_RATE)) * 1e-3).astype(np.float32)


def test_session_created_first_with_openais_shape_and_unique_event_ids():
    async def test():
        client = Client()
        await client.session.start()
        created = client.events[0]
        assert created["type"] == "session.created" and created["event_id"] == "event_1"
        session = created["session"]
        assert set(created) == {"type", "event_id", "session"}
        session_id = session.pop("id")
        assert session_id.startswith("sess_") and session == DEFAULT_SESSION
        assert (await client.update(format={"type": "audio/pcm", "rate": 16000}))["session"]["id"] == session_id
        await client.send("not json")
        assert len({event["event_id"] for event in client.events}) == len(client.events) == 3
        await client.send({"type": "transcription_session.update", "session": {"input_audio_format": "pcm16"}})
        assert client.events[-1]["session"]["id"] == session_id
        await client.session.close()
    run(test)


def test_session_update_merges_only_the_fields_present():
    async def test():
        client = Client()
        updated = await client.update(transcription={"language": "en", "prompt": "Kennedy", "model": "whisper-1"})
        assert updated["type"] == "session.updated"
        audio = updated["session"]["audio"]["input"]
        assert audio["transcription"] == {"model": "whisper-1", "language": "en", "prompt": "Kennedy"}
        assert audio["format"] == {"type": "audio/pcm", "rate": 24000} and audio["turn_detection"]["silence_duration_ms"] == 500
        audio = (await client.update(turn_detection={"type": "server_vad", "threshold": 0.7}))["session"]["audio"]["input"]
        assert audio["turn_detection"] == {"type": "server_vad", "threshold": 0.7, "prefix_padding_ms": 300, "silence_duration_ms": 500}
        assert audio["transcription"]["prompt"] == "Kennedy"
        audio = (await client.update(turn_detection=None, noise_reduction={"type": "near_field"}))["session"]["audio"]["input"]
        assert audio["turn_detection"] is None and audio["noise_reduction"] is None
        await client.send({"type": "session.update", "session": {"type": "transcription", "include": ["item.input_audio_transcription.logprobs"]}})
        assert client.events[-1]["type"] == "session.updated" and client.events[-1]["session"]["include"] == []
        assert client.session.config.turn_detection is None and client.session.config.language == "en"
        await client.session.close()
    run(test)


def test_the_beta_transcription_session_update_is_answered_in_its_own_shape():
    async def test():
        client = Client()
        await client.send({"type": "transcription_session.update", "event_id": "mine", "session": {
            "input_audio_format": "pcm16", "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": ""},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 800}, "input_audio_noise_reduction": None}})
        updated = client.events[-1]
        assert updated["type"] == "transcription_session.updated"
        assert updated["session"]["input_audio_format"] == "pcm16"
        assert updated["session"]["input_audio_transcription"] == {"model": "gpt-4o-transcribe", "language": "en", "prompt": ""}
        assert updated["session"]["turn_detection"] == {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 800}
        await client.send({"type": "transcription_session.update", "session": {"turn_detection": None}})
        assert client.events[-1]["session"]["turn_detection"] is None
        await client.session.close()
    run(test)


BAD_EVENTS = [
    ("not json", "invalid_json", None),
    ("[1, 2]", "invalid_type", None),
    ({"event_id": "e1"}, "missing_required_parameter", "type"),
    ({"type": "response.create", "event_id": "e1"}, "invalid_value", "type"),
    ({"type": ["a", "list"], "event_id": "e1"}, "invalid_value", "type"),
    ({"type": "input_audio_buffer.commit", "colour": 1, "event_id": "e1"}, "unknown_parameter", "colour"),
    ({"type": "input_audio_buffer.append", "audio": "not base64!", "event_id": "e1"}, "invalid_value", "audio"),
    ({"type": "input_audio_buffer.append", "event_id": "e1"}, "missing_required_parameter", "audio"),
    ({"type": "session.update", "event_id": "e1", "session": {"type": "realtime"}}, "invalid_value", "session.type"),
    ({"type": "session.update", "event_id": "e1", "session": {"audio": {}}}, "missing_required_parameter", "session.type"),
    ({"type": "session.update", "event_id": "e1", "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 8000}}}}},
     "invalid_value", "session.audio.input.format.rate"),
    ({"type": "session.update", "event_id": "e1", "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}},
     "invalid_value", "session.audio.input.format.type"),
    ({"type": "session.update", "event_id": "e1", "session": {"type": "transcription", "audio": {"input": {"transcription": {"language": "xx"}}}}},
     "invalid_value", "session.audio.input.transcription.language"),
    ({"type": "session.update", "event_id": "e1", "session": {"type": "transcription", "audio": {"input": {"transcription": {"language": ["en"]}}}}},
     "invalid_value", "session.audio.input.transcription.language"),
    ({"type": "session.update", "event_id": "e1", "session": {"type": "transcription", "audio": {"input": {"transcription": {"language": "de"}}}}},
     "invalid_value", "session.audio.input.transcription.language"),
    ({"type": "session.update", "event_id": "e1", "session": {"type": "transcription", "audio": {"input": {"transcription": {"prompt": "p" * 1001}}}}},
     "invalid_value", "session.audio.input.transcription.prompt"),
    ({"type": "session.update", "event_id": "e1", "session": {"type": "transcription", "audio": {"input": {"transcription": {"model": "gpt-9"}}}}},
     "model_not_found", "session.audio.input.transcription.model"),
    ({"type": "session.update", "event_id": "e1", "session": {"type": "transcription", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}},
     "invalid_value", "session.audio.input.turn_detection.type"),
    ({"type": "session.update", "event_id": "e1", "session": {"type": "transcription",
                                                              "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 1.5}}}}},
     "invalid_value", "session.audio.input.turn_detection.threshold"),
    ({"type": "session.update", "event_id": "e1", "session": {"type": "transcription",
                                                              "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 20000}}}}},
     "invalid_value", "session.audio.input.turn_detection.silence_duration_ms"),
    ({"type": "session.update", "event_id": "e1", "session": {"type": "transcription", "audio": {"input": {"echo": True}}}},
     "unknown_parameter", "session.audio.input.echo"),
    ({"type": "transcription_session.update", "event_id": "e1", "session": {"input_audio_format": "g711_ulaw"}},
     "invalid_value", "session.input_audio_format"),
    ({"type": "transcription_session.update", "event_id": "e1", "session": {"input_audio_transcription": {"language": "xx"}}},
     "invalid_value", "session.input_audio_transcription.language"),
    ({"type": "transcription_session.update", "event_id": "e1", "session": {"input_audio_transcription": {"language": "de"}}},
     "invalid_value", "session.input_audio_transcription.language"),
    ({"type": "transcription_session.update", "event_id": "e1", "session": {"input_audio_transcription": {"prompt": "p" * 1001}}},
     "invalid_value", "session.input_audio_transcription.prompt"),
    ({"type": "session.update", "event_id": "e1"}, "missing_required_parameter", "session"),
    ({"type": "input_audio_buffer.append", "audio": 5, "event_id": "e1"}, "invalid_value", "audio"),
]


@pytest.mark.parametrize("event, code, param", BAD_EVENTS, ids=[f"{code}:{param}" for _, code, param in BAD_EVENTS])
def test_a_bad_event_is_an_error_naming_the_param_and_the_session_goes_on(event, code, param):
    async def test():
        client = Client()
        before = client.session.config
        await client.send(event)
        (error,) = client.events
        assert error["type"] == "error" and error["event_id"].startswith("event_")
        assert error["error"]["type"] == "invalid_request_error"
        assert (error["error"]["code"], error["error"]["param"]) == (code, param), error
        assert error["error"]["event_id"] == (None if isinstance(event, str) else "e1") and error["error"]["message"]
        assert client.session.config == before  # nothing of a refused update applies
        updated = await client.update(transcription={"language": "en"})
        assert updated["type"] == "session.updated"
        await client.session.close()
    run(test)


def test_a_binary_frame_is_an_error_and_the_session_goes_on():
    async def test():
        client = Client()
        await client.session.handle_binary()
        assert client.events[-1]["type"] == "error" and client.events[-1]["error"]["code"] == "invalid_frame"
        assert (await client.update(turn_detection=None))["type"] == "session.updated"
        await client.session.close()
    run(test)


def test_manual_commits_chain_items_and_the_buffer_limit_refuses_appends():
    async def test():
        client = Client(max_buffer_seconds=2.0)
        await client.update(turn_detection=None, format={"type": "audio/pcm", "rate": 16000})
        await client.send({"type": "input_audio_buffer.commit"})
        assert client.events[-1]["error"]["code"] == "input_audio_buffer_commit_empty"
        await client.append(quiet(0.05))
        await client.send({"type": "input_audio_buffer.commit", "event_id": "c1"})
        assert client.events[-1]["error"]["code"] == "input_audio_buffer_commit_empty" and client.events[-1]["error"]["event_id"] == "c1"
        await client.append(quiet(1.5))
        await client.append(quiet(0.6), piece_s=1.0)  # one append taking it to 2.15 s: past the limit
        assert client.events[-1]["error"]["code"] == "input_audio_buffer_full" and client.events[-1]["error"]["param"] == "audio"
        assert client.events[-1]["error"]["message"] == \
            "the input audio buffer holds at most 2 s; this append was dropped (commit or clear the buffer)"
        await client.send({"type": "input_audio_buffer.commit"})
        await client.until(lambda: client.of("conversation.item.input_audio_transcription.completed"))
        first = client.of("input_audio_buffer.committed")[0]
        assert first["previous_item_id"] is None and first["item_id"].startswith("item_")
        completed = client.of("conversation.item.input_audio_transcription.completed")[0]
        assert completed["item_id"] == first["item_id"] and completed["content_index"] == 0
        assert completed["usage"] == {"type": "duration", "seconds": 1.55}  # what was kept, 0.05 + 1.5 s
        assert completed["transcript"] == "and so my"
        await client.append(quiet(1.0))
        await client.send({"type": "input_audio_buffer.commit"})
        await client.until(lambda: len(client.of("conversation.item.input_audio_transcription.completed")) == 2)
        second = client.of("input_audio_buffer.committed")[1]
        assert second["previous_item_id"] == first["item_id"] and second["item_id"] != first["item_id"]
        assert [call[1] for call in client.transcriber.calls] == [int(1.55 * SAMPLE_RATE), SAMPLE_RATE]
        assert not client.of("input_audio_buffer.speech_started")  # no VAD, no partials
        decoder = client.session.audio.decoder
        assert decoder.pending == 0 and not decoder.busy and not decoder.cancels  # both turns done: nothing left waiting
        await client.session.close()
    run(test)


def test_clear_empties_the_buffer():
    async def test():
        client = Client()
        await client.update(turn_detection=None, format={"type": "audio/pcm", "rate": 16000})
        await client.append(quiet(1.0))
        await client.send({"type": "input_audio_buffer.clear"})
        assert client.events[-1]["type"] == "input_audio_buffer.cleared"
        await client.send({"type": "input_audio_buffer.commit"})
        assert client.events[-1]["error"]["code"] == "input_audio_buffer_commit_empty"
        await client.session.close()
    run(test)


def test_24_khz_audio_is_resampled_to_16_khz():
    async def test():
        client = Client()
        await client.update(turn_detection=None)
        await client.append(np.zeros(24000, dtype=np.float32), rate=24000, piece_s=0.02)
        await client.send({"type": "input_audio_buffer.commit"})
        await client.until(lambda: client.transcriber.calls)
        assert abs(client.transcriber.calls[0][1] - 16000) <= 32  # the resampler holds back under 2 ms
        await client.session.close()
    run(test)


def test_server_vad_turns_on_real_speech_in_order_with_one_item_id_each():
    async def test():
        client = Client()
        await client.update(format={"type": "audio/pcm", "rate": 16000}, transcription={"language": "en", "prompt": "Kennedy"})
        first, second = clip("ljspeech/LJ001-0002.wav"), clip("ljspeech/LJ001-0008.wav")
        audio = np.concatenate([quiet(1.0), first, quiet(1.5), second, quiet(1.5)])
        await client.append(audio, piece_s=0.05)
        await client.until(lambda: len(client.of("conversation.item.input_audio_transcription.completed")) == 2)
        turn_events = [e for e in client.events if e["type"].startswith(("input_audio_buffer", "conversation"))]
        kinds = [e["type"].rsplit(".", 1)[-1] for e in turn_events if not e["type"].endswith("delta")]
        assert kinds == ["speech_started", "speech_stopped", "committed", "speech_started", "speech_stopped", "committed",
                         "completed", "completed"] or kinds == ["speech_started", "speech_stopped", "committed", "completed",
                                                                "speech_started", "speech_stopped", "committed", "completed"]
        items = [e["item_id"] for e in client.of("input_audio_buffer.committed")]
        for kind in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                     "conversation.item.input_audio_transcription.completed"):
            assert [e["item_id"] for e in client.of(kind)] == items
        assert [e["previous_item_id"] for e in client.of("input_audio_buffer.committed")] == [None, items[0]]
        assert all(item.startswith("item_") for item in items) and len(set(items)) == 2
        started = [e["audio_start_ms"] for e in client.of("input_audio_buffer.speech_started")]
        stopped = [e["audio_end_ms"] for e in client.of("input_audio_buffer.speech_stopped")]
        assert 950 <= started[0] <= 1300 and started[0] < stopped[0] < started[1] < stopped[1]
        assert all(type(ms) is int for ms in started + stopped)
        assert stopped[0] <= 1000 + first.size * 1000 // SAMPLE_RATE + 100
        # each turn's final decode: from 300 ms before its speech to EARLY_MS (plus at most one
        # 100 ms piece) after its end, started in the silence, before speech_stopped (at 500 ms)
        finals = [call for call in client.transcriber.calls if not call[0]]
        assert len(finals) == 2
        for (_, size, language, prompt), start, stop in zip(finals, started, stopped):
            after = size * 1000 // SAMPLE_RATE - (stop - start + 300)
            assert session_module.EARLY_MS - 2 <= after <= session_module.EARLY_MS + 132 and (language, prompt) == ("en", "Kennedy")
        await client.session.close()
    run(test)


def test_partials_while_speaking_never_more_than_one_at_a_time_and_the_deltas_add_up_to_the_transcript():
    async def test():
        client = Client(FakeTranscriber(partial_delay=0.25), partial_interval=0.05)
        await client.session.start()  # the partials' ticker
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        speech = clip("ljspeech/LJ001-0004.wav")  # 5.1 s
        await client.append(np.concatenate([quiet(0.5), speech, quiet(1.0)]), piece_s=0.1, pace=0.05)  # 2x real time
        await client.until(lambda: client.of("conversation.item.input_audio_transcription.completed"))
        deltas = client.of("conversation.item.input_audio_transcription.delta")
        completed = client.of("conversation.item.input_audio_transcription.completed")[0]
        assert len(deltas) >= 3 and all(d["item_id"] == completed["item_id"] and d["content_index"] == 0 for d in deltas)
        first_delta = client.events.index(deltas[0])
        assert first_delta < client.events.index(client.of("input_audio_buffer.speech_stopped")[0])  # while speaking
        assert "".join(d["delta"] for d in deltas).split() == completed["transcript"].split()
        assert client.transcriber.most_partials == 1
        await client.session.close()
    run(test)


def test_a_turn_reaching_the_buffer_limit_is_committed_and_the_next_one_opens():
    async def test():
        client = Client(max_buffer_seconds=3.0)
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        speech = clip("ljspeech/LJ001-0001.wav")  # 9.7 s of speech with short pauses
        await client.append(np.concatenate([quiet(0.5), speech, quiet(1.0)]), piece_s=0.1)
        await client.until(lambda: len(client.of("conversation.item.input_audio_transcription.completed"))
                           == len(client.of("input_audio_buffer.committed")) >= 3)
        sizes = [call[1] for call in client.transcriber.calls if not call[0]]
        assert 3 * SAMPLE_RATE <= max(sizes) <= 3 * SAMPLE_RATE + SAMPLE_RATE // 10  # the turn cut at the limit: all of it
        assert len(client.of("input_audio_buffer.speech_started")) == len(client.of("input_audio_buffer.committed"))
        await client.session.close()
    run(test)


def test_close_cancels_the_decodes_in_flight_and_leaves_no_task():
    async def test():
        transcriber = FakeTranscriber(block=True)
        client = Client(transcriber)
        await client.session.start()
        await client.update(turn_detection=None, format={"type": "audio/pcm", "rate": 16000})
        await client.append(quiet(1.0))
        await client.send({"type": "input_audio_buffer.commit"})
        await client.until(lambda: transcriber.calls)
        count = len(client.events)
        await client.session.close()
        assert all(flag.is_set() for flag in transcriber.cancelled)
        assert not client.session.audio.decoder.tasks and client.session._ticker.done()
        await asyncio.sleep(0.05)
        await client.send("not json")  # would be an error event
        assert len(client.events) == count  # nothing after close
    run(test)


def test_a_failing_decode_is_a_failed_event_for_its_item():
    async def test():
        client = Client(FakeTranscriber(fail=DeviceFailure("the GPU reported a fault")))
        await client.update(turn_detection=None, format={"type": "audio/pcm", "rate": 16000})
        await client.append(quiet(1.0))
        await client.send({"type": "input_audio_buffer.commit"})
        await client.until(lambda: client.of("conversation.item.input_audio_transcription.failed"))
        failed = client.of("conversation.item.input_audio_transcription.failed")[0]
        assert failed["item_id"] == client.of("input_audio_buffer.committed")[0]["item_id"] and failed["content_index"] == 0
        assert failed["error"]["code"] == "device_failed" and failed["error"]["type"] == "server_error"
        assert (await client.update(turn_detection=None))["type"] == "session.updated"
        await client.session.close()
    run(test)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
FIELDS = st.sampled_from(["type", "audio", "input", "format", "rate", "transcription", "language", "prompt", "model", "turn_detection",
                          "threshold", "prefix_padding_ms", "silence_duration_ms", "noise_reduction", "include", "session",
                          "input_audio_format", "input_audio_transcription", "event_id"])


def shaped(value):
    """Random JSON dressed as the events and fields the session reads, so the checks get deep."""
    return st.fixed_dictionaries({"type": st.sampled_from(["session.update", "transcription_session.update", "input_audio_buffer.append"]),
                                  "session": st.fixed_dictionaries({"type": st.just("transcription")},
                                                                   optional={"audio": st.fixed_dictionaries(
                                                                       {"input": st.dictionaries(FIELDS, value, max_size=4)})}
                                                                   ) | st.dictionaries(FIELDS, value, max_size=4)},
                                 optional={"audio": value, "event_id": value})


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, shaped(JSON)))
def test_any_json_is_answered_with_an_event_and_never_breaks_the_session(event):
    async def test():
        client = Client()
        await client.send(json.dumps(event))
        assert len(client.events) == 1 and client.events[0]["type"] in ("error", "session.updated", "transcription_session.updated")
        await client.update(turn_detection=None)
        assert client.events[-1]["type"] == "session.updated"
        await client.session.close()
    run(test)


def test_an_early_final_decode_is_dropped_when_speech_comes_back_before_speech_stopped():
    async def test():
        client = Client()
        await client.update(format={"type": "audio/pcm", "rate": 16000}, transcription={"language": "en"})
        first, second = clip("ljspeech/LJ001-0002.wav"), clip("ljspeech/LJ001-0008.wav")
        audio = np.concatenate([quiet(1.0), first, quiet(0.4), second, quiet(1.5)])  # 0.4 s: over EARLY_MS, under 500 ms
        await client.append(audio, piece_s=0.05)
        await client.until(lambda: len(client.of("conversation.item.input_audio_transcription.completed")) == 1)
        await asyncio.sleep(0.2)
        assert len(client.of("input_audio_buffer.committed")) == 1  # one turn: the pause did not end it
        finals = [(index, call) for index, call in enumerate(client.transcriber.calls) if not call[0]]
        assert len(finals) >= 2  # an early decode in the pause, then the turn's own
        dropped, kept = finals[:-1], finals[-1]
        assert all(client.transcriber.cancelled[index].is_set() for index, _ in dropped)
        assert not client.transcriber.cancelled[kept[0]].is_set()
        start = client.of("input_audio_buffer.speech_started")[0]["audio_start_ms"]
        stop = client.of("input_audio_buffer.speech_stopped")[0]["audio_end_ms"]
        after = kept[1][1] * 1000 // SAMPLE_RATE - (stop - start + 300)
        assert stop >= 1000 + (first.size + second.size) * 1000 // SAMPLE_RATE  # the turn holds both clips
        assert session_module.EARLY_MS - 2 <= after <= session_module.EARLY_MS + 132
        await client.session.close()
    run(test)


SEAL_MIN = int(session_module.SEAL_MIN_S * SAMPLE_RATE)


def test_a_pause_after_a_long_stretch_seals_it_and_later_decodes_read_only_the_audio_after_it():
    async def test():
        client = Client()
        await client.update(format={"type": "audio/pcm", "rate": 16000}, transcription={"language": "en", "prompt": "Kennedy"})
        first, second = clip("ljspeech/LJ001-0004.wav"), clip("ljspeech/LJ001-0002.wav")  # 5.1 s (over SEAL_MIN_S), 1.9 s
        await client.append(np.concatenate([quiet(1.0), first, quiet(0.4), second, quiet(1.5)]), piece_s=0.05)
        await client.until(lambda: client.of("conversation.item.input_audio_transcription.completed"))
        await asyncio.sleep(0.2)
        assert len(client.of("input_audio_buffer.committed")) == 1  # one turn: the pause did not end it
        calls = client.transcriber.calls
        finals = [index for index, call in enumerate(calls) if not call[0]]
        kept = [index for index in finals if not client.transcriber.cancelled[index].is_set()]
        assert len(kept) == 2  # the sealed piece (its early decode, kept) and the rest; dropped: early decodes in shorter pauses
        piece, rest = kept
        assert all(calls[index][1] < SEAL_MIN for index in finals if index not in kept)
        assert client.transcriber.contexts[piece] == "" and calls[piece][3] == "Kennedy"
        piece_text = " ".join(WORDS[:int(calls[piece][1] / SAMPLE_RATE * 2)])
        assert client.transcriber.contexts[rest] == piece_text and calls[rest][3] == "Kennedy"
        start = client.of("input_audio_buffer.speech_started")[0]["audio_start_ms"]
        stop = client.of("input_audio_buffer.speech_stopped")[0]["audio_end_ms"]
        total = stop - start + 300 + session_module.EARLY_MS  # the turn's audio up to its final decode's end
        assert abs(calls[piece][1] * 1000 // SAMPLE_RATE - (300 + first.size * 1000 // SAMPLE_RATE + session_module.EARLY_MS)) <= 150
        assert abs((calls[piece][1] + calls[rest][1]) * 1000 // SAMPLE_RATE - total) <= 2  # the rest starts where the piece ends
        completed = client.of("conversation.item.input_audio_transcription.completed")[0]
        words = int(calls[piece][1] / SAMPLE_RATE * 2) + int(calls[rest][1] / SAMPLE_RATE * 2)
        assert completed["transcript"] == " ".join(WORDS[:words])  # the pieces' text joined
        for index, call in enumerate(calls):  # partial decodes after the seal: the audio after it, with its text
            if call[0] and index > piece:
                assert client.transcriber.contexts[index] == piece_text and call[1] <= calls[rest][1] + SAMPLE_RATE // 10
        await client.session.close()
    run(test)


def test_a_short_stretch_before_a_pause_is_not_sealed_and_clear_drops_a_sealed_piece():
    async def test():
        client = Client(FakeTranscriber(block=True))  # no decode ever finishes
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        first, second = clip("ljspeech/LJ001-0004.wav"), clip("ljspeech/LJ001-0002.wav")
        await client.append(np.concatenate([quiet(1.0), second, quiet(0.25), first, quiet(0.25), second]), piece_s=0.05)
        turn = client.session.audio.turn
        assert turn is not None and turn.pieces and not any(piece.cancel.is_set() for piece in turn.pieces)
        ends = [turn.start] + [piece.end for piece in turn.pieces]
        assert all(end - before >= SEAL_MIN for before, end in zip(ends, ends[1:]))
        assert ends[1] - turn.start > (300 + 1900 + 400) * SAMPLE_RATE // 1000  # the first pause (after 1.9 s of speech) sealed nothing
        calls, cancelled = client.transcriber.calls, client.transcriber.cancelled
        current = turn.early.cancel if turn.early is not None else None  # one in the silence at the end, still valid
        assert all(cancelled[index].is_set() for index, call in enumerate(calls) if call[1] < SEAL_MIN and cancelled[index] is not current)
        await client.send({"type": "input_audio_buffer.clear"})
        assert turn.pieces[0].cancel.is_set() and client.session.audio.turn is None
        await client.session.close()
    run(test)


def test_appends_are_refused_while_too_many_committed_turns_wait_for_their_decodes():
    async def test():
        transcriber = FakeTranscriber(block=True)  # no decode ever finishes
        client = Client(transcriber)
        await client.update(format={"type": "audio/pcm", "rate": 16000}, turn_detection=None)
        tone = (0.1 * np.sin(np.arange(SAMPLE_RATE // 5) / 5)).astype(np.float32)  # 200 ms
        for _ in range(session_module.MAX_PENDING_TURNS):
            await client.append(tone)
            await client.send({"type": "input_audio_buffer.commit"})
        assert len(client.of("input_audio_buffer.committed")) == session_module.MAX_PENDING_TURNS and not client.of("error")
        await client.append(tone)
        errors = client.of("error")
        assert errors and errors[0]["error"]["code"] == "transcription_backlog" and errors[0]["error"]["param"] == "audio"
        assert errors[0]["error"]["message"] == ("4 committed turns are still being transcribed; this append was dropped "
                                                 "(send audio no faster than it is transcribed)")
        await client.session.close()  # the blocked decodes are cancelled
        assert all(event.is_set() for event in transcriber.cancelled)
    run(test)


def test_a_large_append_does_not_hold_the_event_loop():
    """Minutes of audio in one append: the conversion and Silero run off the event loop, so
    another coroutine (another session, an HTTP request) keeps being served meanwhile."""
    async def test():
        client = Client()
        await client.update(format={"type": "audio/pcm", "rate": 24000})
        speech = np.tile(clip("ljspeech/LJ001-0002.wav"), 18)  # about 3 minutes at 16 kHz, sent as 24 kHz bytes: 2 minutes
        beats: List[float] = []
        stop = asyncio.Event()

        async def heartbeat():
            while not stop.is_set():
                await asyncio.sleep(0)
                beats.append(asyncio.get_running_loop().time())

        beating = asyncio.ensure_future(heartbeat())
        await asyncio.sleep(0)
        started = asyncio.get_running_loop().time()
        await client.append(speech, rate=24000, piece_s=len(speech) / 24000)  # one append
        ended = asyncio.get_running_loop().time()
        stop.set()
        await beating
        during = [t for t in beats if started < t < ended]
        # before: the loop was held for the whole append (no beat during it); now it turns over
        # between the 100 ms pieces (about 1200 of them), whatever the machine's speed or load
        assert len(during) >= 100, f"{len(during)} beats of the loop during a {ended - started:.2f} s append"
        await client.session.close()
    run(test)


def rest_after(hypotheses: List[str], final: str) -> str:
    """The last delta of a turn whose partials were `hypotheses` and whose text is `final`."""
    agreement = Agreement()
    for hypothesis in hypotheses:
        agreement.update(hypothesis)
    agreement.finish(final)
    return session_module._rest(agreement, final)


def test_the_last_delta_is_the_final_texts_words_after_those_sent_spaced_as_their_script_is():
    assert rest_after([], "and so my") == "and so my"  # nothing sent: the whole text
    assert rest_after(["and so my", "and so my fellow"], "and so my fellow americans") == " fellow americans"
    assert rest_after(["and so my", "and so my fellow"], "And so, my") == ""  # nothing after the sent words
    assert rest_after(["我们", "我们今天"], "我们今天去公园") == "今天去公园"  # no space in a script written without
    assert rest_after(["你好", "你好吗"], "你好吗?") == "吗?"
    assert rest_after(["and so my", "and so my fellow"], "and then my fellow americans") == ""  # sent words taken back: none


def pieces_of(*outcomes) -> List[EarlyDecode]:
    """Sealed pieces whose decodes ended so (a text, an exception, "cancelled") or are still running (None)."""
    loop, pieces = asyncio.get_running_loop(), []
    for outcome in outcomes:
        task = loop.create_future()
        if outcome == "cancelled":
            task.cancel()
        elif isinstance(outcome, Exception):
            task.set_exception(outcome)
        elif outcome is not None:
            task.set_result(outcome)
        pieces.append(EarlyDecode(0, 0, task, threading.Event()))
    return pieces


def test_a_turns_context_is_its_sealed_pieces_text_once_every_one_is_decoded():
    async def test():
        turn = Turn("item_1", 0)
        assert turn.context() == ""
        turn.pieces = pieces_of("The art of printing.", "in the only sense")
        assert turn.context() == "The art of printing in the only sense"
        for unusable in (None, RuntimeError("failed"), "cancelled"):  # still decoding, failed, dropped: no context yet
            turn.pieces = pieces_of("The art of printing.", unusable)
            assert turn.context() is None, unusable
            turn.pieces = pieces_of(unusable, "in the only sense")
            assert turn.context() is None, unusable
    run(test)


def test_a_binary_frame_is_refused_with_a_message_saying_what_to_send():
    async def test():
        client = Client()
        await client.session.handle_binary()
        assert client.events[-1]["error"]["message"] == \
            "binary frames are not events; send JSON text (audio as base64 in input_audio_buffer.append)"
        await client.session.close()
    run(test)


def test_a_commit_needs_100_ms_of_audio_or_with_server_vad_a_turn_and_says_what_it_found():
    async def test():
        client = Client()
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        await client.append(quiet(1.0))
        await client.send({"type": "input_audio_buffer.commit"})
        error = client.events[-1]["error"]
        assert (error["code"], error["message"]) == (
            "input_audio_buffer_commit_empty", "buffer too small: expected at least 100 ms of audio, but no speech was detected in it")
        await client.update(turn_detection=None)
        await client.send({"type": "input_audio_buffer.clear"})
        await client.append(quiet(0.1)[:-1])  # 1599 samples: 1 short of 100 ms
        await client.send({"type": "input_audio_buffer.commit"})
        assert client.events[-1]["error"]["message"] == "buffer too small: expected at least 100 ms of audio, but it holds 99 ms"
        await client.append(quiet(0.1)[:1])  # exactly 100 ms
        await client.send({"type": "input_audio_buffer.commit"})
        assert client.events[-1]["type"] == "input_audio_buffer.committed"
        await client.append(quiet(0.2)[:1609])
        await client.send({"type": "input_audio_buffer.commit"})
        await client.until(lambda: len(client.of("conversation.item.input_audio_transcription.completed")) == 2)
        assert [call[1] for call in client.transcriber.calls] == [1600, 1609]
        assert [event["usage"]["seconds"] for event in client.of("conversation.item.input_audio_transcription.completed")] == [0.1, 0.101]
        await client.session.close()
    run(test)


def test_a_client_commit_with_server_vad_commits_the_open_turn_and_the_speech_after_it_opens_the_next():
    async def test():
        client = Client()
        await client.update(format={"type": "audio/pcm", "rate": 16000}, transcription={"language": "en", "prompt": "Kennedy"})
        speech = clip("ljspeech/LJ001-0002.wav")  # 1.9 s without a pause
        await client.append(np.concatenate([quiet(0.5), speech[:SAMPLE_RATE]]))  # still speaking: the turn is open
        audio = client.session.audio
        turn, end = audio.turn, audio.buffer.end
        assert turn is not None and turn.early is None
        await client.send({"type": "input_audio_buffer.commit"})
        assert audio.turn is None and not client.of("error")
        assert [event["item_id"] for event in client.of("input_audio_buffer.committed")] == [turn.item_id]
        await client.until(lambda: client.of("conversation.item.input_audio_transcription.completed"))
        assert client.transcriber.calls == [(False, end - turn.start, "en", "Kennedy")]  # the turn's audio up to the commit
        await client.append(speech[SAMPLE_RATE:])
        started = client.of("input_audio_buffer.speech_started")
        assert len(started) == 2 and started[1]["item_id"] not in (turn.item_id, None)  # the detector's turn ended with it
        await client.session.close()
    run(test)


def test_a_client_commit_in_a_pause_drops_the_early_decode_and_decodes_the_whole_turn():
    async def test():
        client = Client(FakeTranscriber(delay=0.3))
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        await client.append(np.concatenate([quiet(0.5), clip("ljspeech/LJ001-0002.wav"), quiet(0.35)]))  # a pause over EARLY_MS
        audio = client.session.audio
        turn, end = audio.turn, audio.buffer.end
        assert turn is not None and turn.early is not None and len(client.transcriber.calls) == 1
        early = turn.early
        assert early.end - early.silence_start == session_module.EARLY_MS * SAMPLE_RATE // 1000  # the speech and EARLY_MS after it
        await client.send({"type": "input_audio_buffer.commit"})
        assert early.cancel.is_set() and turn.early is None  # dropped: its audio ends before the commit's
        await client.until(lambda: client.of("conversation.item.input_audio_transcription.completed"))
        assert [call[1] for call in client.transcriber.calls] == [early.end - turn.start, end - turn.start]
        await client.session.close()
    run(test)


async def speak_with_partials(client: Client, speech: np.ndarray, cuts, lead: float = 0.5) -> Turn:
    """`lead` s of quiet, then `speech` (no pause in it) appended up to each cut, a partial decode after each."""
    audio, done = client.session.audio, 0
    if lead:
        await client.append(quiet(lead))
    for cut in cuts:
        await client.append(speech[done:cut])
        done = cut
        assert audio.turn is not None and audio.turn.early is None
        audio.partial()
        await client.until(lambda: audio.decoder.partial_task is not None and audio.decoder.partial_task.done())
    return audio.turn


@pytest.mark.parametrize("ending", ["input_audio_buffer.commit", "input_audio_buffer.clear"])
def test_a_commit_or_a_clear_cancels_the_partial_decode_in_flight_and_no_delta_follows_it(ending):
    async def test():
        transcriber = FakeTranscriber(partial_delay=0.2)  # a partial ignores its cancel flag: it answers late
        client = Client(transcriber)
        await client.update(format={"type": "audio/pcm", "rate": 16000}, transcription={"language": "en", "prompt": "Kennedy"})
        speech = clip("ljspeech/LJ001-0002.wav")
        turn = await speak_with_partials(client, speech, [SAMPLE_RATE, speech.size // 2 + SAMPLE_RATE // 2])
        assert client.of("conversation.item.input_audio_transcription.delta")  # two partials agreed on words
        await client.append(speech[speech.size // 2 + SAMPLE_RATE // 2:])
        client.session.audio.partial()
        partial = client.session.audio.decoder.partial_task
        await client.until(lambda: len(transcriber.calls) == 3)
        await client.send({"type": ending})
        assert transcriber.cancelled[2].is_set() and not turn.open
        await partial
        await client.until(lambda: ending.endswith("clear") or client.of("conversation.item.input_audio_transcription.completed"))
        await asyncio.sleep(0.05)
        after = client.events[client.events.index(client.of(ending.replace("commit", "committed").replace("clear", "cleared"))[0]):]
        assert [event["type"].rsplit(".", 1)[-1] for event in after] in (
            ["cleared"], ["committed", "completed"], ["committed", "delta", "completed"])  # the partial's answer sent nothing
        assert all(call[2:] == ("en", "Kennedy") for call in transcriber.calls)  # partials and the final: the session's settings
        await client.session.close()
    run(test)


def test_a_partial_after_a_sealed_piece_reads_the_audio_after_it_with_its_text_before_it():
    async def test():
        client = Client()
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        first, second = clip("ljspeech/LJ001-0004.wav"), clip("ljspeech/LJ001-0002.wav")  # 5.1 s (sealed at its pause), 1.9 s
        await client.append(np.concatenate([quiet(1.0), first, quiet(0.4)]), piece_s=0.05)
        turn = await speak_with_partials(client, second, [SAMPLE_RATE, second.size], lead=0)
        assert len(turn.pieces) == 1
        piece_text = turn.pieces[0].task.result()
        partials = [index for index, call in enumerate(client.transcriber.calls) if call[0]]
        assert [client.transcriber.contexts[index] for index in partials] == [piece_text] * 2
        deltas = "".join(event["delta"] for event in client.of("conversation.item.input_audio_transcription.delta"))
        assert deltas.split()[:len(piece_text.split()) + 1] == WORDS[:len(piece_text.split()) + 1]  # the piece's words, then the next
        await client.session.close()
    run(test)


@pytest.mark.parametrize("error, kind, code, message, logged", [
    (RequestError("the prompt is too long", field="initial_prompt"), "invalid_request_error", "invalid_request", "initial_prompt: the prompt is too long", False),
    (RuntimeError("a bug"), "server_error", "internal_error", "internal error", True)])
def test_a_failed_final_decode_says_whose_fault_and_only_a_bug_is_logged(error, kind, code, message, logged, caplog):
    async def test():
        client = Client(FakeTranscriber(fail=error))
        await client.update(turn_detection=None, format={"type": "audio/pcm", "rate": 16000})
        await client.append(quiet(1.0))
        await client.send({"type": "input_audio_buffer.commit"})
        await client.until(lambda: client.of("conversation.item.input_audio_transcription.failed"))
        failed = client.of("conversation.item.input_audio_transcription.failed")[0]["error"]
        assert failed == {"type": kind, "code": code, "message": message, "param": None}
        await client.session.close()
    with caplog.at_level("ERROR", logger="worker.live"):
        run(test)
    assert [(record.getMessage(), record.exc_info is not None) for record in caplog.records] == \
        ([("a live turn's decode failed", True)] if logged else [])


@pytest.mark.parametrize("error, logged", [(DeviceFailure("the GPU reported a fault"), False), (RuntimeError("a bug"), True)])
def test_a_failed_partial_decode_sends_nothing_and_only_a_bug_is_logged(error, logged, caplog):
    async def test():
        client = Client(FakeTranscriber(partial_fail=error))
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        speech = clip("ljspeech/LJ001-0002.wav")
        await speak_with_partials(client, speech, [SAMPLE_RATE, speech.size])
        assert len(client.transcriber.calls) == 2 and [event["type"] for event in client.events] == [
            "session.updated", "input_audio_buffer.speech_started"]
        await client.session.close()
    with caplog.at_level("ERROR", logger="worker.live"):
        run(test)
    assert [(record.getMessage(), record.exc_info is not None) for record in caplog.records] == \
        ([("a live partial decode failed", True)] * 2 if logged else [])


def test_a_partial_decode_waits_for_half_a_second_of_turn_and_a_quarter_second_of_new_audio():
    async def test():
        client = Client()
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        await client.append(np.concatenate([quiet(0.5), clip("ljspeech/LJ001-0002.wav")[:SAMPLE_RATE]]))
        audio, calls = client.session.audio, client.transcriber.calls
        turn, end = audio.turn, audio.buffer.end
        assert turn is not None and turn.early is None and not calls

        async def tick(start: int, decoded_to: int) -> List[int]:
            """The turn's audio begun at `start` and last decoded up to `decoded_to`: the partial decodes a tick starts."""
            turn.start, turn.decoded_to, before = start, decoded_to, len(calls)
            audio.partial()
            await client.until(lambda: audio.decoder.partial_task is None or audio.decoder.partial_task.done())
            return [call[1] for call in calls[before:]]

        turn_min, new_min = int(session_module.MIN_PARTIAL_S * SAMPLE_RATE), int(session_module.MIN_NEW_AUDIO_S * SAMPLE_RATE)
        assert await tick(end - turn_min + 1, 0) == []  # a sample short of half a second of turn
        assert await tick(end - turn_min, end - new_min + 1) == []  # a sample short of a quarter second not yet decoded
        assert await tick(end - turn_min, end - new_min) == [turn_min] and turn.decoded_to == end
        await client.session.close()
    run(test)


class ScriptedTranscriber(FakeTranscriber):
    """Partial decodes answer `partials` in turn; a final decode answers `final`."""

    def __init__(self, partials: List[str], final: str):
        super().__init__()
        self.partials, self.final = list(partials), final

    async def transcribe(self, samples, language, prompt, cancelled, partial, context=""):
        await super().transcribe(samples, language, prompt, cancelled, partial, context)
        return self.partials.pop(0) if partial else self.final


def test_the_final_text_not_the_last_partial_decides_whether_the_last_delta_completes_the_sent_words():
    async def test():
        final = "and so my fellow americans"
        client = Client(ScriptedTranscriber(["and so my", "and so my fellow", "and then my fellow"], final))
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        speech = clip("ljspeech/LJ001-0002.wav")
        await speak_with_partials(client, speech, [SAMPLE_RATE, SAMPLE_RATE * 3 // 2, speech.size])  # the last took "so" back
        await client.send({"type": "input_audio_buffer.commit"})
        await client.until(lambda: client.of("conversation.item.input_audio_transcription.completed"))
        deltas = [event["delta"] for event in client.of("conversation.item.input_audio_transcription.delta")]
        assert deltas == ["and so my", " fellow americans"]
        assert client.of("conversation.item.input_audio_transcription.completed")[0]["transcript"] == "".join(deltas) == final
        await client.session.close()
    run(test)


def test_a_dropped_early_decode_that_failed_is_not_reported_as_an_unretrieved_error(caplog):
    async def test():
        client = Client(FakeTranscriber(fail=RuntimeError("a bug")))
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        speech = clip("ljspeech/LJ001-0002.wav")
        await client.append(np.concatenate([quiet(0.5), speech, quiet(0.3)]))  # a pause over EARLY_MS: an early decode, which fails
        early = client.session.audio.turn.early
        assert early is not None
        await client.until(lambda: early.task.done())
        await client.append(speech[:SAMPLE_RATE // 2])  # speech again: it is dropped (failed, and under SEAL_MIN_S)
        assert client.session.audio.turn.early is None and not client.session.audio.turn.pieces
        await client.session.close()
    with caplog.at_level("ERROR", logger="asyncio"):
        run(test)
        gc.collect()
    assert not [record for record in caplog.records if record.name == "asyncio"], caplog.text


def test_the_sessions_own_refusals_say_what_is_wrong_and_answer_only_a_string_event_id():
    async def test():
        client = Client()
        takes = "session.update, transcription_session.update, input_audio_buffer.append, input_audio_buffer.commit, input_audio_buffer.clear"
        for event, message in [
                ("{", "the message is not valid JSON"),
                ("[1]", "an event is a JSON object with a `type`"),
                ({"event_id": "e1"}, "every event needs a `type`"),
                ({"type": "t" * 100}, f"unknown event type {'t' * 80!r}; a transcription session takes {takes}"),
                ({"type": "input_audio_buffer.append", "audio": 5}, "must be base64 PCM16 audio (a string)"),
                ({"type": "session.update"}, "is required")]:
            await client.send(event)
            assert client.events[-1]["error"]["message"] == message
        await client.send({"type": "response.create", "event_id": 7})
        assert client.events[-1]["error"]["event_id"] is None  # not a string: not echoed
        await client.session.close()
    run(test)


def test_the_sample_buffer_keeps_stream_positions_across_pieces_and_trims():
    buffer, stream = session_module.SampleBuffer(), np.arange(100, dtype=np.float32)
    assert (buffer.start, buffer.end, buffer.size) == (0, 0, 0)
    assert buffer.view(0, 10).dtype == np.float32 and buffer.view(0, 10).size == 0
    for first, last in ((0, 30), (30, 60), (60, 60), (60, 90), (90, 100)):
        buffer.append(stream[first:last])
    assert (buffer.start, buffer.end) == (0, 100) and np.array_equal(buffer.view(25, 65), stream[25:65])
    buffer.trim_before(40)  # inside the second piece
    assert (buffer.start, buffer.size) == (40, 60) and np.array_equal(buffer.view(0, 200), stream[40:])
    buffer.trim_before(45)  # inside the same piece again, now cut
    assert np.array_equal(buffer.view(0, 70), stream[45:70]) and np.array_equal(buffer.view(88, 92), stream[88:92])
    buffer.trim_before(10)  # before what is held: nothing
    buffer.trim_before(1000)  # past the end: everything
    assert (buffer.start, buffer.end, buffer.size) == (100, 100, 0)
    assert buffer.view(0, 200).dtype == np.float32 and buffer.view(0, 200).size == 0


def _ms_of(samples: int) -> int:
    return samples * 1000 // SAMPLE_RATE


def test_turn_detection_switched_off_commits_the_open_turn_and_switched_on_reads_the_audio_held():
    async def test():
        client = Client()
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        speech = clip("ljspeech/LJ001-0002.wav")
        await client.append(np.concatenate([quiet(0.5), speech[:SAMPLE_RATE]]))
        audio = client.session.audio
        turn, end = audio.turn, audio.buffer.end
        assert turn is not None
        await client.update(turn_detection=None)
        assert [event["item_id"] for event in client.of("input_audio_buffer.committed")] == [turn.item_id]
        assert audio.turn is None and audio.detector is None and audio.buffer.size == 0
        await client.until(lambda: client.transcriber.calls)
        assert client.transcriber.calls == [(False, end - turn.start, None, "")]
        await client.append(np.concatenate([quiet(0.5), speech, quiet(1.0)]))  # held, uncommitted
        await client.update(turn_detection={"type": "server_vad"})  # detection runs over the audio held
        await client.until(lambda: len(client.of("conversation.item.input_audio_transcription.completed")) == 2)
        started = client.of("input_audio_buffer.speech_started")
        assert len(started) == 2 and _ms_of(end) + 450 <= started[1]["audio_start_ms"] <= _ms_of(end) + 800  # in the stream's time
        assert audio.buffer.end == end + int(1.5 * SAMPLE_RATE) + speech.size and audio.origin + audio.detector.position == audio.buffer.end
        await client.session.close()
    run(test)


def test_outside_a_turn_only_the_prefix_padding_and_a_second_are_kept():
    async def test():
        client = Client()
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        await client.append(quiet(3.0))
        assert client.session.audio.buffer.size == int(1.3 * SAMPLE_RATE) and client.session.audio.buffer.end == 3 * SAMPLE_RATE
        await client.update(turn_detection={"type": "server_vad", "prefix_padding_ms": 500})
        await client.append(quiet(0.5))
        assert client.session.audio.buffer.size == int(1.5 * SAMPLE_RATE)
        await client.session.close()
    run(test)


def test_with_a_silence_duration_under_early_ms_a_turn_stops_before_any_early_decode_and_is_decoded_whole():
    async def test():
        client = Client()
        await client.update(format={"type": "audio/pcm", "rate": 16000}, turn_detection={"type": "server_vad", "silence_duration_ms": 100})
        await client.append(np.concatenate([quiet(0.5), clip("ljspeech/LJ001-0008.wav"), quiet(1.0)]))
        await client.until(lambda: len(client.of("conversation.item.input_audio_transcription.completed"))
                           == len(client.of("input_audio_buffer.committed")) >= 1)
        started = [event["audio_start_ms"] for event in client.of("input_audio_buffer.speech_started")]
        stopped = [event["audio_end_ms"] for event in client.of("input_audio_buffer.speech_stopped")]
        usage = [event["usage"]["seconds"] for event in client.of("conversation.item.input_audio_transcription.completed")]
        sizes = [call[1] for call in client.transcriber.calls]
        assert len(sizes) == len(usage) == len(started) == len(stopped)  # one decode a turn: none started early
        # Silero's 32 ms windows make the events' times exact: the first turn is 300 ms before its speech to 100 ms after it
        assert sizes[0] == (stopped[0] - started[0]) * SAMPLE_RATE // 1000 + (300 + 100) * SAMPLE_RATE // 1000
        for size, seconds, start, stop in zip(sizes, usage, started, stopped):  # its audio: 300 ms before the speech to 100 ms after
            assert abs(size * 1000 // SAMPLE_RATE - (stop - start + 300 + 100)) <= 2 and abs(seconds * 1000 - (stop - start + 400)) <= 2
        await client.session.close()
    run(test)


def test_the_early_decode_in_a_pause_cancels_the_partial_decode_in_flight():
    async def test():
        transcriber = FakeTranscriber(partial_delay=0.5)
        client = Client(transcriber)
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        await client.append(np.concatenate([quiet(0.5), clip("ljspeech/LJ001-0002.wav")]))
        audio = client.session.audio
        audio.partial()
        await client.until(lambda: transcriber.calls)
        await client.append(quiet(0.35))  # a pause over EARLY_MS: the turn's final decode starts
        assert audio.turn.early is not None and [call[0] for call in transcriber.calls] == [True, False]
        assert transcriber.cancelled[0].is_set() and not transcriber.cancelled[1].is_set()
        await client.session.close()
    run(test)


@pytest.mark.parametrize("short_by, sealed", [(0, True), (1, False)])
def test_an_early_decode_of_seal_min_s_of_audio_is_sealed_and_a_sample_less_is_not(short_by, sealed):
    async def test():
        client = Client()
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        speech = clip("ljspeech/LJ001-0002.wav")
        await client.append(np.concatenate([quiet(2.0), speech, quiet(0.3)]))
        turn = client.session.audio.turn
        early = turn.early
        assert early is not None
        turn.start = early.end - SEAL_MIN + short_by  # as if the turn had begun SEAL_MIN_S (or a sample less) before its end
        await client.until(lambda: early.task.done())
        await client.append(speech[:SAMPLE_RATE // 2])  # speech again
        assert turn.early is None and turn.pieces == ([early] if sealed else []) and early.cancel.is_set() is not sealed
        await client.session.close()
    run(test)


def test_an_append_up_to_the_buffer_limit_is_taken_and_a_sample_more_is_refused():
    async def test():
        client = Client(max_buffer_seconds=2.0)
        await client.update(turn_detection=None, format={"type": "audio/pcm", "rate": 16000})
        await client.append(quiet(2.0), piece_s=1.0)
        assert not client.of("error") and client.session.audio.buffer.size == 2 * SAMPLE_RATE
        await client.append(quiet(0.1)[:1])
        assert client.events[-1]["error"]["code"] == "input_audio_buffer_full" and client.session.audio.buffer.size == 2 * SAMPLE_RATE
        await client.session.close()
    run(test)


@pytest.mark.parametrize("short_by, cut", [(0, True), (1, False)])
def test_a_turn_holding_exactly_the_buffer_limit_is_committed_and_a_sample_less_is_not(short_by, cut):
    async def test():
        client = Client(max_buffer_seconds=3.0)
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        speech = clip("ljspeech/LJ001-0002.wav")
        await client.append(np.concatenate([quiet(0.5), speech[:SAMPLE_RATE]]))
        audio = client.session.audio
        turn = audio.turn
        turn.start = audio.buffer.end + session_module.PIECE - 3 * SAMPLE_RATE + short_by  # as if it had begun so long ago
        await client.append(speech[SAMPLE_RATE:SAMPLE_RATE + session_module.PIECE])  # one more 100 ms piece
        assert (audio.turn is None) is cut and len(client.of("input_audio_buffer.committed")) == int(cut)
        await client.session.close()
    run(test)
