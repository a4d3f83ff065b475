"""The client examples, run as a user would against the worker's local API server
(`python -m worker --rp_serve_api`, tiny.en on CPU), all traffic on loopback."""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from benchmarks import bundled
from benchmarks.local_worker import LocalWorker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DATA = ROOT / "tests" / "data"
JFK_WORDS = ("fellow americans", "ask not what your country can do for you")


def tiny_en() -> str:
    return bundled.tiny_en_dir()


def start_worker(streaming: bool) -> LocalWorker:
    extra = {"WHISPER_DEVICE": "cpu", "WHISPER_ALLOW_LOCAL_FILES": "true", "WHISPER_ALLOW_PRIVATE_URLS": "true",
             "WHISPER_STREAMING": "true" if streaming else "false"}
    try:
        return LocalWorker(tiny_en(), concurrency=4, env_extra=extra, start_limit=120)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def local_api():
    with start_worker(streaming=False) as worker:
        yield worker.url


@pytest.fixture(scope="module")
def streaming_api():
    with start_worker(streaming=True) as worker:
        yield worker.url


@pytest.fixture(scope="module")
def audio_server():
    """tests/data over HTTP on loopback, to send the worker a URL as a user would."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(DATA))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run_example(script: str, api: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}, "RUNPOD_LOCAL_API": api}
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=EXAMPLES, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_jfk(text: str) -> None:
    low = text.lower()
    for words in JFK_WORDS:
        assert words in low, text


def test_runsync_with_a_local_file_sent_as_base64(local_api):
    result = run_example("client_runsync.py", local_api, str(DATA / "jfk.flac"), "--language", "en")
    assert result.returncode == 0, result.stderr
    assert_jfk(result.stdout)


def test_runsync_with_a_url_and_full_json(local_api, audio_server):
    result = run_example("client_runsync.py", local_api, f"{audio_server}/jfk.flac", "--word-timestamps", "--json")
    assert result.returncode == 0, result.stderr
    import json

    output = json.loads(result.stdout)
    assert output["language"] == "en" and output["segments"]
    assert output["segments"][0]["words"]
    assert_jfk(output["text"])


def test_runsync_reports_the_worker_error(local_api, tmp_path):
    bogus = tmp_path / "not-audio.wav"
    bogus.write_bytes(b"this is not audio" * 10)
    result = run_example("client_runsync.py", local_api, str(bogus))
    assert result.returncode == 1
    assert "transcription failed: FAILED" in result.stderr and "Traceback" not in result.stderr


def test_async_run_then_status_polling(local_api):
    result = run_example("client_async.py", local_api, str(DATA / "jfk.flac"), "--response-format", "srt")
    assert result.returncode == 0, result.stderr
    assert "submitted job" in result.stderr
    # the first cue starts where the speech does (about 0.3 s in), not before it
    assert re.search(r"^1\n00:00:00,[0-4]\d\d --> 00:00:\d\d,\d{3}\n", result.stdout), result.stdout
    assert_jfk(result.stdout.replace("\n", " "))


def test_batch_runs_concurrently_and_isolates_failures(local_api, audio_server, tmp_path):
    out = tmp_path / "transcripts"
    sources = [str(DATA / "jfk.flac"), f"{audio_server}/hotwords.mp3", str(tmp_path / "missing.wav"), f"{audio_server}/nope.flac"]
    result = run_example("client_batch.py", local_api, *sources, "--workers", "4", "--out", str(out))
    assert result.returncode == 1  # two of four fail
    assert "2 of 4 transcribed" in result.stderr
    assert sum(line.startswith("FAILED ") for line in result.stderr.splitlines()) == 2
    assert_jfk((out / "jfk.txt").read_text())
    assert (out / "hotwords.txt").read_text().strip()


def test_stream_prints_segments_then_the_result(streaming_api):
    result = run_example("client_stream.py", streaming_api, str(DATA / "jfk.flac"))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(lines) >= 1
    assert_jfk(" ".join(lines))
    assert "language=en" in result.stderr


def test_payload_limit_is_checked_before_sending(tmp_path):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import rp_client
    finally:
        sys.path.remove(str(EXAMPLES))
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * (8 * 1024 * 1024))  # 8 MiB -> 10.7 MiB of base64
    with pytest.raises(ValueError, match="too large"):
        rp_client.audio_input(str(big), "run")
    assert "audio_base64" in rp_client.audio_input(str(big), "runsync")
    assert rp_client.audio_input("https://example.com/a.mp3") == {"audio": "https://example.com/a.mp3"}


def test_make_demo_ends_with_what_a_person_reads():
    import subprocess
    import sys

    from helpers import ROOT

    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert "WEBVTT" in out and "ask not what" in out
    assert out.strip().splitlines()[-1].startswith("language en · 11.0 s of audio")
    assert "Job result" not in out + run.stderr and "'segments'" not in out + run.stderr  # no SDK dict dumps


def test_stream_reports_a_failed_job_instead_of_blaming_the_setting(streaming_api, tmp_path):
    bogus = tmp_path / "not-audio.wav"
    bogus.write_bytes(b"this is not audio" * 10)
    result = run_example("client_stream.py", streaming_api, str(bogus))
    assert result.returncode == 1
    assert "transcription failed" in result.stderr and "invalid_audio" not in result.stdout
    assert "WHISPER_STREAMING" not in result.stderr and "Traceback" not in result.stderr


def test_giving_up_on_a_job_cancels_it():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import rp_client
    finally:
        sys.path.remove(str(EXAMPLES))

    class FakeClient:
        posts = []

        def get(self, path, timeout):
            return {"status": "IN_QUEUE"}

        def post(self, path, data, timeout):
            self.posts.append(path)
            return {"status": "CANCELLED"}

    class FakeEndpoint:
        endpoint_id = "ep"
        rp_client = FakeClient()

    with pytest.raises(TimeoutError, match="cancelled"):
        rp_client.wait(FakeEndpoint(), "job-1", timeout=0.05, every=0.01)
    assert FakeClient.posts == ["ep/cancel/job-1"]
