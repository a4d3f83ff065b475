"""The live session's protocol with a fake transcriber (plumbing only; tests/entries/test_realtime.py
runs the real model over a real WebSocket): OpenAI's transcription-session events in and out,
session configuration merged field by field and refused by name, manual commits and the buffer
limit, server-VAD turns on real speech (real Silero), partial text, one partial decode in flight,
cancellation on close, a failing decode."""

from __future__ import annotations

import asyncio
import base64
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
from worker.live.session import LiveSession
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

    def __init__(self, delay: float = 0.0, partial_delay: float = 0.0, block: bool = False, fail: Optional[Exception] = None):
        self.delay, self.partial_delay, self.block, self.fail = delay, partial_delay, block, fail
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
        assert session.pop("id").startswith("sess_") and session == DEFAULT_SESSION
        await client.update(format={"type": "audio/pcm", "rate": 16000})
        await client.send("not json")
        assert len({event["event_id"] for event in client.events}) == len(client.events) == 3
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
        started = [e["audio_start_ms"] for e in client.of("input_audio_buffer.speech_started")]
        stopped = [e["audio_end_ms"] for e in client.of("input_audio_buffer.speech_stopped")]
        assert 950 <= started[0] <= 1300 and started[0] < stopped[0] < started[1] < stopped[1]
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
        assert max(sizes) <= 3 * SAMPLE_RATE + SAMPLE_RATE // 10
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
