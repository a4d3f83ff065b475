"""Test helpers that are not fixtures: model locations, references and the audio encoder (both
benchmarks/audio_files.py's, shared with the benchmarks), WER, a loopback HTTP server."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import os
import threading
import time
from pathlib import Path
from typing import Dict

from benchmarks import bundled
from benchmarks.audio_files import DATA, ROOT, encode_audio, read_transcripts  # noqa: F401 - the tests import them from here


def tiny_en_model_dir() -> str:
    return bundled.tiny_en_dir()


def base_model_dir() -> str:
    return bundled.base_dir()


def references(folder: Path) -> Dict[str, str]:
    """The folder's transcripts.txt: file name -> reference text (benchmarks' reader)."""
    return read_transcripts(folder)


def wer(reference: str, hypothesis: str, english: bool = True) -> float:
    import jiwer
    from whisper_normalizer.basic import BasicTextNormalizer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalise = EnglishTextNormalizer() if english else BasicTextNormalizer()
    return jiwer.wer(normalise(reference), normalise(hypothesis))


class Routes(http.server.BaseHTTPRequestHandler):
    """Files from tests/data plus misbehaving routes for the fetch tests."""

    protocol_version = "HTTP/1.1"
    redirect_target = "http://169.254.169.254/latest/meta-data"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path.startswith("/data/"):
            file = DATA / path[len("/data/"):]
            if not file.is_file():
                return self._send(404, b"not found")
            return self._send(200, file.read_bytes())
        if path == "/redirect":
            self.send_response(302)
            self.send_header("Location", self.server.redirect_target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                pass
            return
        if path == "/lying-length":
            body = (DATA / "jfk.flac").read_bytes()[:1000]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) * 10))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        if path == "/huge-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.close_connection = True
            return
        if path == "/endless":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(10_000):
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                pass
            self.close_connection = True
            return
        if path == "/redirect-with-body":  # a redirect with an 8 MB body, sent over about 1.3 s
            body = os.urandom(8 * 1024 * 1024)
            self.send_response(302)
            self.send_header("Location", "/data/jfk.flac")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            sent = 0
            try:
                for start in range(0, len(body), 65536):
                    self.wfile.write(body[start:start + 65536])
                    self.wfile.flush()
                    sent += 65536
                    time.sleep(0.01)
            except OSError:
                pass
            self.server.redirect_body_sent = sent
            self.close_connection = True
            return
        if path == "/trickle-headers":  # a header byte every 0.2 s, for ever (a read timeout never fires)
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for _ in range(200):
                    self.wfile.write(b"X")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            self.close_connection = True
            return
        if path == "/odd-length":
            body = (DATA / "jfk.flac").read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", "\u00b2")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        if path == "/gzip-bomb":
            body = gzip.compress(b"\0" * (50 * 1024 * 1024))
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        return self._send(404, b"not found")

    def _send(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 with a free port; use as a context manager."""

    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Routes)
        self.httpd.daemon_threads = True
        self.httpd.redirect_target = Routes.redirect_target
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def pcm_wav(samples, rate: int, channels: int) -> bytes:
    """A plain PCM WAV file written by hand (mono float samples in [-1, 1] copied to every
    channel), for channel counts no encoder's layout table names: FFmpeg reads any count here."""
    import struct

    import numpy as np

    data = np.repeat((np.asarray(samples) * 32767).astype("<i2")[:, None], channels, axis=1).tobytes()
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


@contextlib.contextmanager
def loopback_server(app, log_level: str = "warning"):
    """`app` under uvicorn on 127.0.0.1 in a thread, on a port the OS picks (port 0: free, no
    race); yields the port, and stops the server after."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 10), "the server did not start"
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def wait_until(condition, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll `condition` until it is true or `timeout` seconds pass; return whether it came true.
    Tests synchronise on this (a state they can see) instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def record_sampling(monkeypatch) -> list:
    """Every real-model decoding above temperature 0 from now on, batched ("batched at T") or
    sequential ("sequential at T"): a sampled output changes with the random draw and the CPU."""
    from faster_whisper.transcribe import WhisperModel

    import worker.decoding.whisper.device as device

    sampled: list = []
    run_windows, generate_with_fallback = device.run_windows, WhisperModel.generate_with_fallback

    def batched(whisper, windows, tokenizer, options):
        if options.temperatures[0] > 0:
            sampled.append(f"batched at {options.temperatures[0]}")
        return run_windows(whisper, windows, tokenizer, options)

    def sequential(self, *args, **kwargs):
        result = generate_with_fallback(self, *args, **kwargs)
        if result[2] > 0:  # (result, avg_logprob, temperature, compression_ratio)
            sampled.append(f"sequential at {result[2]}")
        return result

    monkeypatch.setattr(device, "run_windows", batched)
    monkeypatch.setattr(WhisperModel, "generate_with_fallback", sequential)
    return sampled
