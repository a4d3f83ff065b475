"""The OpenAI server mode's upload path, on a real uvicorn server on loopback with a scripted engine
(the plumbing, not the model): the upload has a deadline and a size cap that holds for chunked
bodies too, holds no transcription slot while it arrives, and writes only under WHISPER_TEMP_DIR;
a client that goes away cancels its job; hostile form values and a full disk are clean errors."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tempfile
import threading
import time
from types import SimpleNamespace

import numpy as np
import requests

from helpers import loopback_server, pcm_wav, wait_until
from worker.config import Settings
from worker.errors import Cancelled
from worker.service import Service
from worker.entries.http import Readiness, create_app
from worker.transcript import Segment, Transcript

BOUNDARY = "test-boundary-7d1f"


class ScriptedEngine:
    """Answers every job with one scripted segment; with `hold`, the first job waits until it is
    cancelled (or 10 s) and records that it saw the cancel."""

    def __init__(self, hold: bool = False):
        self.model = SimpleNamespace(name="scripted", compute_type="int8", device="cpu", is_multilingual=False)
        self.hold = hold
        self.started = threading.Event()
        self.saw_cancel = threading.Event()

    def check(self, request) -> None:
        pass

    def transcribe(self, audio, request, job_id="local", on_segment=None, cancelled=None, timings=None) -> Transcript:
        if self.hold:
            self.hold = False
            self.started.set()
            if cancelled.wait(10):
                self.saw_cancel.set()
                raise Cancelled("cancelled while transcribing")
        segment = Segment(0, 0, 0.0, 1.0, " scripted words", [], 0.0, -0.1, 1.0, 0.01)
        return Transcript("en", 1.0, 1.0, 1.0, [segment])


def scripted_service(tmp_path, engine=None, **overrides) -> Service:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    settings = Settings(model="scripted", device="cpu", concurrency=1, temp_dir=str(work), **overrides)
    return Service(settings, engine or ScriptedEngine())


def leftovers(service) -> list:
    return os.listdir(service.settings.temp_dir)


@contextlib.contextmanager
def serving(service, wrap=None):
    """(host, port) of a uvicorn server on loopback serving `service` (its app wrapped by `wrap`)."""
    app = create_app(Readiness(service))
    with loopback_server(wrap(app) if wrap else app, log_level="critical") as port:
        yield "127.0.0.1", port


def wav(seconds: float) -> bytes:
    """A quiet tone (silence alone is refused as empty audio)."""
    return pcm_wav(0.1 * np.sin(np.arange(int(16000 * seconds)) * 2 * np.pi * 440 / 16000), 16000, 1)


def form_head(fields=()) -> bytes:
    """Plain fields, then the head of the `file` part (its bytes and form_tail() follow)."""
    parts = [f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n" for name, value in fields]
    parts.append(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n")
    return "".join(parts).encode()


def form_tail() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


def request_head(address, length=None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n").encode()


def post(address, body: bytes, content_type=f"multipart/form-data; boundary={BOUNDARY}", timeout=10):
    return requests.post(f"http://{address[0]}:{address[1]}/v1/audio/transcriptions", data=body,
                         headers={"Content-Type": content_type}, timeout=timeout)


def read_response(sock, timeout: float) -> bytes:
    """One response (head and Content-Length body), or what came before `timeout` passed or the
    server closed."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    received = b""
    with contextlib.suppress(OSError):
        while time.monotonic() < deadline:
            head, _, body = received.partition(b"\r\n\r\n")
            if _ and len(body) >= int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)):
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


class CountingApp:
    """An ASGI wrapper counting the request body bytes the app took from the server."""

    def __init__(self, app):
        self.app, self.received = app, 0

    async def __call__(self, scope, receive, send):
        async def counted():
            message = await receive()
            self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def test_a_chunked_upload_stops_at_the_cap(tmp_path):
    """No Content-Length: bytes are counted as they arrive and the request ends at the limit with
    413, not after spooling the whole body (40 MB offered against a 1 MB limit)."""
    service = scripted_service(tmp_path, max_download_bytes=1_000_000)
    counter = {}

    def wrap(app):
        counter["app"] = CountingApp(app)
        return counter["app"]

    with serving(service, wrap) as address, socket.create_connection(address) as sock:
        head = form_head()
        sock.sendall(request_head(address) + f"{len(head):x}\r\n".encode() + head + b"\r\n")
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"\0" * 64 * 1024)
        sent = 0
        with contextlib.suppress(OSError):  # the server may close while we still send
            while sent < 40_000_000:
                sock.sendall(chunk)
                sent += 64 * 1024
                if sent % (1024 * 1024) == 0 and _readable(sock):
                    break
        response = read_response(sock, 5)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert b'"code":"audio_too_long"' in response and b'"param":"file"' in response
        assert counter["app"].received < 2_000_000, counter["app"].received
    assert wait_until(lambda: leftovers(service) == [], 2), leftovers(service)


def _readable(sock) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


def test_a_stalled_upload_gets_408_and_holds_no_slot(tmp_path):
    """One slot, one client stalled mid-upload: another client is served meanwhile (not 429),
    and the stalled one gets 408 at WHISPER_UPLOAD_TIMEOUT."""
    service = scripted_service(tmp_path, upload_timeout=0.5)
    body = form_head() + wav(1.0) + form_tail()
    with serving(service) as address, socket.create_connection(address) as stalled:
        started = time.monotonic()
        stalled.sendall(request_head(address, len(body)) + body[:1000])
        response = post(address, form_head([("model", "whisper-1")]) + wav(1.0) + form_tail())
        assert response.status_code == 200 and response.json() == {"text": "scripted words"}
        answer = read_response(stalled, 5)
        assert answer.startswith(b"HTTP/1.1 408") and b"WHISPER_UPLOAD_TIMEOUT" in answer, answer[:300]
        assert 0.4 < time.monotonic() - started < 3
    assert leftovers(service) == []


def test_uploads_arriving_at_once_are_bounded(tmp_path):
    """At most UPLOADS_PER_SLOT x WHISPER_CONCURRENCY uploads arrive at once; the next is 429 at
    once, and clients that hang up mid-upload leave nothing behind."""
    from worker.entries.http import UPLOADS_PER_SLOT

    service = scripted_service(tmp_path)
    body = form_head() + wav(1.0) + form_tail()
    with serving(service) as address, contextlib.ExitStack() as stack:
        for _ in range(UPLOADS_PER_SLOT):
            sock = stack.enter_context(socket.create_connection(address))
            sock.sendall(request_head(address, len(body)) + body[:1000])
        assert wait_until(lambda: len(leftovers(service)) == UPLOADS_PER_SLOT, 5), leftovers(service)
        refused = post(address, body)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "busy" and refused.headers["Retry-After"] == "1"
        stack.close()  # the stalled clients hang up
        assert wait_until(lambda: leftovers(service) == [], 2), leftovers(service)
        assert post(address, body).status_code == 200


def test_nothing_is_spooled_outside_whisper_temp_dir(tmp_path, monkeypatch):
    """Parts over 1 MB are written under WHISPER_TEMP_DIR only (the system temp dir here does not
    exist, so any write there fails the request), and the directory is empty after a success, a
    failure and an upload over the limit."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-temp-dir-not-to-be-used"))
    service = scripted_service(tmp_path, max_download_bytes=2_000_000)
    with serving(service) as address:
        ok = post(address, form_head([("response_format", "text")]) + wav(48.0) + form_tail())  # 1.5 MB
        assert ok.status_code == 200 and ok.text == "scripted words\n", ok.text[:300]
        assert leftovers(service) == []
        noise = post(address, form_head() + b"not audio at all " * 90_000 + form_tail())
        assert noise.status_code == 415 and noise.json()["error"]["code"] == "invalid_audio"
        assert leftovers(service) == []
        big = post(address, form_head() + wav(95.0) + form_tail())  # 3 MB
        assert big.status_code == 413 and big.json()["error"] == {
            "message": big.json()["error"]["message"], "type": "invalid_request_error", "param": "file", "code": "audio_too_long"}
        assert wait_until(lambda: leftovers(service) == [], 2), leftovers(service)
    assert not (tmp_path / "system-temp-dir-not-to-be-used").exists()


def test_a_client_that_disconnects_cancels_its_job_and_frees_its_slot(tmp_path):
    """uvicorn does not cancel a handler whose client left: the server watches for it, cancels the
    job within a second, and the one slot serves the next client."""
    engine = ScriptedEngine(hold=True)
    service = scripted_service(tmp_path, engine)
    body = form_head() + wav(1.0) + form_tail()
    with serving(service) as address:
        sock = socket.create_connection(address)
        sock.sendall(request_head(address, len(body)) + body)
        assert engine.started.wait(5)
        sock.close()
        gone = time.monotonic()
        assert engine.saw_cancel.wait(1.0), "the job was not cancelled"
        assert wait_until(lambda: leftovers(service) == [], 1.0), leftovers(service)
        after = post(address, body)
        assert after.status_code == 200 and after.json() == {"text": "scripted words"}
        assert time.monotonic() - gone < 2


class FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, path, mode="r", *args, **kwargs):
        self.inner = open(path, mode, *args, **kwargs)

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.inner.close()


def test_a_full_disk_while_receiving_the_upload_is_507(tmp_path, monkeypatch):
    import worker.entries.upload

    monkeypatch.setattr(worker.entries.upload, "open", FullDisk, raising=False)
    service = scripted_service(tmp_path)
    with serving(service) as address:
        response = post(address, form_head() + wav(48.0) + form_tail())
        assert response.status_code == 507, response.text[:300]
        error = response.json()["error"]
        assert error["code"] == "storage_failed" and error["type"] == "server_error" and "No space left" in error["message"]
    assert leftovers(service) == []


HOSTILE_VALUES = [
    ("temperature", "[" * 100_000), ("vad_parameters", '{"a":' * 50_000), ("known_speakers", "[" * 2_000 + "]" * 2_000),
    ("temperature", "NaN"), ("beam_size", "Infinity"), ("patience", "-Infinity"), ("temperature", "1e999"),
    ("temperature", "[0.0, 1e400]"), ("beam_size", "9" * 5_000), ("best_of", "9" * 4_000), ("vad_parameters", '{"threshold": NaN}'),
]


def test_hostile_form_values_are_400_naming_the_field(tmp_path):
    service = scripted_service(tmp_path)
    with serving(service) as address:
        for name, value in HOSTILE_VALUES:
            response = post(address, form_head([(name, value)]) + wav(0.5) + form_tail())
            assert response.status_code == 400, (name, value[:20], response.status_code, response.text[:200])
            error = response.json()["error"]
            assert error["code"] == "invalid_request" and error["param"].startswith(name), (name, value[:20], error)
    assert leftovers(service) == []


def test_malformed_multipart_bodies_are_400(tmp_path):
    service = scripted_service(tmp_path)
    part = form_head() + wav(0.5)
    cases = [
        (part + form_tail(), "multipart/form-data"),  # no boundary
        (b"just some bytes", f"multipart/form-data; boundary={BOUNDARY}"),
        (part, f"multipart/form-data; boundary={BOUNDARY}"),  # no closing boundary
        (f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"),
        (f"--{BOUNDARY}\r\n" + "X: y\r\n" * 1000 + "\r\n", f"multipart/form-data; boundary={BOUNDARY}"),
        (part + form_tail(), "application/json"),
        (part + form_tail(), f"multipart/form-data; boundary={'b' * 300}"),
        (form_head([("language", "en")]).replace(b'name="file"; filename="a.wav"', b'name="notes"; filename="a.wav"') + b"x" + form_tail(),
         f"multipart/form-data; boundary={BOUNDARY}"),
    ]
    with serving(service) as address:
        for body, content_type in cases:
            response = post(address, body if isinstance(body, bytes) else body.encode(), content_type)
            assert response.status_code == 400, (body[:80], content_type, response.status_code, response.text[:200])
            assert response.json()["error"]["type"] == "invalid_request_error"
    assert leftovers(service) == []
