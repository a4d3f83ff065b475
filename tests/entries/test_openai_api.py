"""The OpenAI server mode, called with the official `openai` client on loopback, unchanged apart
from base_url and api_key."""

import concurrent.futures
import contextlib
import dataclasses
import threading
import time

import openai
import pytest
import requests

from helpers import DATA, loopback_server, references, wer
from worker.service import Service
from worker.entries.http import Readiness, create_app

JFK = DATA / "jfk.flac"


@contextlib.contextmanager
def running(readiness):
    with loopback_server(create_app(readiness)) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def tiny_url(tiny_service):
    small = Service(dataclasses.replace(tiny_service.settings, max_download_bytes=2_000_000, concurrency=4), tiny_service.engine)
    with running(Readiness(small)) as url:
        yield url


@pytest.fixture(scope="module")
def base_url(base_service):
    with running(Readiness(base_service.service)) as url:
        yield url


def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def served(url):
    return requests.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]


def test_every_response_format_through_the_official_client(tiny_url):
    import srt
    import webvtt
    import io

    api = client(tiny_url)
    model = served(tiny_url)
    reference = references(DATA)["jfk.flac"]
    with open(JFK, "rb") as f:
        as_json = api.audio.transcriptions.create(file=f, model=model)
    assert wer(reference, as_json.text) < 0.1
    with open(JFK, "rb") as f:
        text = api.audio.transcriptions.create(file=f, model=model, response_format="text")
    assert isinstance(text, str) and wer(reference, text) < 0.1
    with open(JFK, "rb") as f:
        subtitles = api.audio.transcriptions.create(file=f, model=model, response_format="srt")
    assert wer(reference, " ".join(c.content for c in srt.parse(subtitles))) < 0.1
    with open(JFK, "rb") as f:
        vtt = api.audio.transcriptions.create(file=f, model=model, response_format="vtt")
    assert wer(reference, " ".join(c.text for c in webvtt.from_buffer(io.StringIO(vtt)))) < 0.1
    with open(JFK, "rb") as f:
        verbose = api.audio.transcriptions.create(file=f, model=model, response_format="verbose_json", language="en", prompt="Kennedy")
    assert verbose.language == "english" and abs(verbose.duration - 11.0) < 0.1 and verbose.segments and verbose.words is None
    assert all(s.end > s.start for s in verbose.segments)


def test_word_and_segment_granularities(tiny_url):
    api = client(tiny_url)
    with open(JFK, "rb") as f:
        words = api.audio.transcriptions.create(file=f, model="whisper-1", response_format="verbose_json", timestamp_granularities=["word"])
    assert len(words.words) >= 20 and words.segments is None
    assert all(b.start >= a.start for a, b in zip(words.words, words.words[1:]))
    with open(JFK, "rb") as f:
        both = api.audio.transcriptions.create(file=f, model="whisper-1", response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert both.words and both.segments


def test_translation_through_the_official_client(base_url):
    api = client(base_url)
    with open(DATA / "fleurs" / "fleurs-de-000.ogg", "rb") as f:  # "... Hongkong ... Kowloon ..."
        translated = api.audio.translations.create(file=f, model=served(base_url))
    assert "hong kong" in translated.text.lower(), translated.text
    with open(DATA / "fleurs" / "fleurs-de-000.ogg", "rb") as f:
        verbose = api.audio.translations.create(file=f, model=served(base_url), response_format="verbose_json")
    assert verbose.language == "english" and verbose.model_dump()["task"] == "translate" and verbose.segments


def test_mistakes_are_openai_errors_with_fitting_statuses(tiny_url, tmp_path):
    api = client(tiny_url)
    bogus = tmp_path / "notes.wav"
    bogus.write_bytes(b"these are not audio bytes" * 40)
    with pytest.raises(openai.APIStatusError) as info:
        api.audio.transcriptions.create(file=bogus.open("rb"), model="whisper-1")
    assert info.value.status_code == 415 and info.value.body["code"] == "invalid_audio"
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * 3_000_000)
    with pytest.raises(openai.APIStatusError) as info:
        api.audio.transcriptions.create(file=big.open("rb"), model="whisper-1")
    assert info.value.status_code == 413
    with pytest.raises(openai.BadRequestError) as info:
        api.audio.transcriptions.create(file=JFK.open("rb"), model="whisper-1", extra_body={"unknown_field": "1"})
    assert info.value.body["param"] == "unknown_field"
    with pytest.raises(openai.BadRequestError) as info:
        api.audio.transcriptions.create(file=JFK.open("rb"), model="whisper-1", extra_body={"beam_size": "wide"})
    assert info.value.body["param"] == "beam_size"
    with pytest.raises(openai.BadRequestError) as info:
        api.audio.transcriptions.create(file=JFK.open("rb"), model="gpt-4o-transcribe")
    assert info.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as info:  # tiny.en cannot translate: refused, not quietly transcribed
        api.audio.translations.create(file=JFK.open("rb"), model="whisper-1")
    assert info.value.body["param"] == "task"
    # the worker's own options pass as extra fields, typed by the schema
    ok = api.audio.transcriptions.create(file=JFK.open("rb"), model="whisper-1", response_format="srt",
                                         extra_body={"batch_size": "1", "beam_size": "2", "word_timestamps": "true", "max_line_width": "20"})
    assert max(len(line) for line in ok.splitlines() if line and "-->" not in line and not line.isdigit()) <= 20


def test_concurrent_requests_equal_the_same_requests_one_at_a_time(tiny_url):
    api = client(tiny_url)
    files = [JFK, DATA / "hotwords.mp3", DATA / "harvard" / "spk1_snt1.wav", DATA / "ljspeech" / "LJ001-0001.wav"]

    def one(path):
        with open(path, "rb") as f:
            return api.audio.transcriptions.create(file=f, model="whisper-1", response_format="verbose_json").model_dump()["segments"]

    alone = [one(path) for path in files]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(one, files))
    assert together == alone


def test_a_full_worker_answers_429_with_retry_after(tiny_service):
    full = Service(dataclasses.replace(tiny_service.settings, concurrency=1), tiny_service.engine)
    gate = threading.Event()
    real = full.transcribe

    def slow(*args, **kwargs):
        gate.wait(10)
        return real(*args, **kwargs)

    full.transcribe = slow
    with running(Readiness(full)) as url:
        api = client(url)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(lambda: api.audio.transcriptions.create(file=JFK.open("rb"), model="whisper-1"))
            time.sleep(0.5)
            response = requests.post(f"{url}/v1/audio/transcriptions", files={"file": JFK.open("rb")}, data={"model": "whisper-1"}, timeout=30)
            gate.set()
            assert response.status_code == 429 and response.headers["Retry-After"] == "1"
            assert response.json()["error"]["type"] == "rate_limit_error"
            assert "country" in first.result(timeout=60).text


def test_health_route_says_loading_then_ready(tiny_service):
    readiness = Readiness()
    with running(readiness) as url:
        assert requests.get(f"{url}/ping", timeout=5).status_code == 204
        assert requests.post(f"{url}/v1/audio/transcriptions", files={"file": JFK.open("rb")}, timeout=5).status_code == 503
        readiness.service = tiny_service.service
        assert requests.get(f"{url}/ping", timeout=5).status_code == 200
        assert requests.get(f"{url}/v1/models", timeout=5).json()["data"][0]["object"] == "model"


def test_python_m_worker_serves_the_openai_mode(tiny_en_dir, tmp_path):
    """The image's own command with WHISPER_MODE=openai: /ping answers at once, then 200."""
    import os
    import socket
    import subprocess
    import sys

    from helpers import ROOT

    for _ in range(3):  # a port picked here could be taken before the worker binds it: try another
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = dict(os.environ, WHISPER_MODE="openai", PORT=str(port), WHISPER_MODEL=tiny_en_dir, WHISPER_COMPUTE_TYPE="int8")
        worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            statuses = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and 200 not in statuses and worker.poll() is None:
                try:
                    statuses.append(requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code)
                except requests.ConnectionError:
                    time.sleep(0.1)
            if worker.poll() is not None:
                continue
            assert statuses[-1] == 200 and set(statuses) <= {200, 204}, statuses
            with open(JFK, "rb") as f:
                text = client(f"http://127.0.0.1:{port}").audio.transcriptions.create(file=f, model="whisper-1").text
            assert "country" in text
            return
        finally:
            worker.terminate()
            worker.wait(10)
    pytest.fail(f"the worker did not start: {worker.stderr.read().decode()[-2000:]}")


def test_diarized_json_in_openais_shape_with_known_speakers(tiny_url, tmp_path):
    import base64

    from benchmarks import conversations
    from benchmarks.diarization import wav_base64

    talk = [c for c in conversations.constructed() if c.name == "long-and-short-turns"][0]
    path = tmp_path / "talk.wav"
    path.write_bytes(base64.b64decode(wav_base64(talk.audio)))
    linda = "data:audio/wav;base64," + base64.b64encode((DATA / "ljspeech" / "LJ001-0016.wav").read_bytes()).decode()
    api = client(tiny_url)
    with open(path, "rb") as f:
        anonymous = api.audio.transcriptions.create(file=f, model="whisper-1", response_format="diarized_json", chunking_strategy="auto")
    assert {s.speaker for s in anonymous.segments} == {"A", "B"} and anonymous.segments[0].speaker == "A"
    assert all(s.type == "transcript.text.segment" and s.id.startswith("seg_") and s.end > s.start for s in anonymous.segments)
    assert "SPEAKER_" not in anonymous.text and anonymous.usage.seconds == int(-(-talk.duration // 1))
    with open(path, "rb") as f:
        known = api.audio.transcriptions.create(file=f, model="whisper-1", response_format="diarized_json",
                                                known_speaker_names=["Linda"], known_speaker_references=[linda])
    assert known.segments[0].speaker == "Linda" and {s.speaker for s in known.segments} == {"Linda", "A"}
    with open(path, "rb") as f, pytest.raises(openai.BadRequestError, match="data URL"):
        api.audio.transcriptions.create(file=f, model="whisper-1", response_format="diarized_json",
                                        known_speaker_names=["Linda"], known_speaker_references=["https://example.com/linda.wav"])


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_health_port_serves_ping_only(monkeypatch):
    """PORT_HEALTH, when it is not PORT, answers /ping and nothing else: the API is on PORT."""
    from types import SimpleNamespace

    import uvicorn

    from helpers import wait_until
    from worker.entries import http as openai_api
    from worker.config import Settings

    servers = []

    class Recorded(uvicorn.Server):  # so that the test can stop what serve() started
        def __init__(self, config):
            super().__init__(config)
            servers.append(self)

    monkeypatch.setattr(uvicorn, "Server", Recorded)
    settings = Settings(model="scripted", device="cpu", port=free_port(), port_health=free_port())
    thread = threading.Thread(target=openai_api.serve, args=(settings, lambda: SimpleNamespace(settings=settings)), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: len(servers) == 2 and all(server.started for server in servers), 10)
        api, health = f"http://127.0.0.1:{settings.port}", f"http://127.0.0.1:{settings.health_port}"
        assert wait_until(lambda: requests.get(f"{health}/ping", timeout=5).status_code == 200, 5)
        for method, path in [("GET", "/v1/models"), ("POST", "/v1/audio/transcriptions"), ("POST", "/v1/audio/translations"), ("GET", "/")]:
            assert requests.request(method, f"{health}{path}", timeout=5).status_code == 404, (method, path)
        assert requests.get(f"{api}/v1/models", timeout=5).json()["data"][0]["id"] == "scripted"
        assert requests.get(f"{api}/ping", timeout=5).status_code == 200
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(10)


def test_a_model_that_cannot_load_ends_the_server_with_exit_3(tmp_path):
    """As in queue mode: "worker: cannot load the model: ..." on stderr and exit code 3, not a
    server answering 503 "still loading" for ever."""
    import os
    import subprocess
    import sys

    from helpers import ROOT

    missing = tmp_path / "no-such-model"
    env = dict(os.environ, WHISPER_MODE="openai", PORT=str(free_port()), WHISPER_MODEL=str(missing), WHISPER_LOCAL_FILES_ONLY="true")
    worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, stderr = worker.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.communicate()
        pytest.fail("the server kept running after the model failed to load")
    assert worker.returncode == 3, stderr.decode()[-2000:]
    assert f"worker: cannot load the model: model directory {missing} does not exist" in stderr.decode()


def diarized(*speakers):
    from worker.transcript import Segment, SpeakerTime, Transcript

    segments = [Segment(id=index, seek=0, start=float(index), end=index + 1.0, text=f" words {index}", tokens=[], temperature=0.0,
                        avg_logprob=0.0, compression_ratio=1.0, no_speech_prob=0.0, speaker=speaker)
                for index, speaker in enumerate(speakers)]
    return Transcript(language="en", language_probability=1.0, duration=float(len(speakers)), duration_after_vad=float(len(speakers)),
                      segments=segments, speakers=[SpeakerTime(speaker, 1.0) for speaker in dict.fromkeys(speakers)])


def test_generated_speaker_letters_never_take_a_known_speakers_name():
    """OpenAI labels unknown voices A, B, ...: a known speaker named "A" and an unknown voice must
    not both read "A". Letters skip the names shown and the names asked for."""
    from worker.formats.openai import HttpShape, http_body
    from worker.request.schema import TranscriptionRequest

    def labels(transcript, known=()):
        shape = HttpShape("diarized_json", words=False, segments=True, known=tuple(known))
        return [segment["speaker"] for segment in http_body(transcript, TranscriptionRequest(), shape)["segments"]]

    assert labels(diarized("A", "SPEAKER_00", "SPEAKER_01", "A")) == ["A", "B", "C", "A"]
    assert labels(diarized("SPEAKER_00", "C", "SPEAKER_01", "SPEAKER_02"), known=["C", "B"]) == ["A", "C", "D", "E"]
    assert labels(diarized("Linda", "SPEAKER_00"), known=["Linda"]) == ["Linda", "A"]
    many = diarized(*[f"SPEAKER_{n:02d}" for n in range(27)], "AA")
    assert labels(many, known=["AA"])[25:] == ["Z", "BB", "AA"]


def test_a_known_speaker_may_not_take_the_unknown_voices_label():
    """SPEAKER_<n> is what the diarizer calls a voice no reference matched: as a known name it
    would merge with one."""
    from starlette.datastructures import FormData

    from worker.config import Settings
    from worker.entries.http import form_to_input

    form = FormData([("known_speaker_names[]", "SPEAKER_01"), ("known_speaker_references[]", "data:audio/wav;base64,UklGRg==")])
    refused = form_to_input(form, "transcribe", Settings(model="scripted"))
    assert refused.status_code == 400 and b"known_speaker_names[0]" in refused.body
