"""`python -m worker` as users run it: the SDK's --test_input and its local HTTP API (/runsync)."""

import json
import os
import subprocess
import sys

import pytest
import requests

from benchmarks.local_worker import LocalWorker
from helpers import ROOT, LocalServer, wer

JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def worker_env(model_dir, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHISPER_", "RUNPOD_"))}
    env.update(WHISPER_MODEL=model_dir, WHISPER_ALLOW_LOCAL_FILES="true", WHISPER_CPU_THREADS="2", PYTHONUNBUFFERED="1", **extra)
    return env


def test_test_input_runs_one_job(tiny_en_dir, data_dir):
    job = {"input": {"audio": str(data_dir / "jfk.flac"), "response_format": "srt"}}
    proc = subprocess.run([sys.executable, "-m", "worker", "--test_input", json.dumps(job)], cwd=ROOT,
                          env=worker_env(tiny_en_dir), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Job local_test completed successfully" in proc.stdout + proc.stderr
    assert "ask not what your country can do for you" in (proc.stdout + proc.stderr)


def test_bad_setting_exits_with_a_clear_message(tiny_en_dir):
    proc = subprocess.run([sys.executable, "-m", "worker"], cwd=ROOT, env=worker_env(tiny_en_dir, WHISPER_BATCH_SIZE="lots"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "WHISPER_BATCH_SIZE" in proc.stderr


def test_missing_model_exits_with_a_clear_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "worker"], cwd=ROOT, env=worker_env(str(tmp_path / "no-model")),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and "does not exist" in proc.stderr


@pytest.fixture(scope="module")
def api(tiny_en_dir):
    extra = {"WHISPER_ALLOW_LOCAL_FILES": "true", "WHISPER_ALLOW_PRIVATE_URLS": "true", "WHISPER_CPU_THREADS": "2"}
    try:
        worker = LocalWorker(tiny_en_dir, concurrency=4, env_extra=extra, start_limit=180)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    with worker:
        yield worker.url


def test_runsync_over_http(api, data_dir):
    with LocalServer() as audio_server:
        response = requests.post(f"{api}/runsync", json={"input": {"audio": audio_server.url("/data/jfk.flac"), "word_timestamps": True}}, timeout=120)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "COMPLETED"
    assert wer(JFK, body["output"]["text"]) < 0.1
    assert body["output"]["words"]


def test_runsync_errors_and_keeps_serving(api, data_dir):
    bad = requests.post(f"{api}/runsync", json={"input": {"audio": str(data_dir / "jfk.flac"), "speed": 2}}, timeout=60).json()
    assert "speed: unknown field" in json.dumps(bad)
    good = requests.post(f"{api}/runsync", json={"input": {"audio": str(data_dir / "jfk.flac")}}, timeout=120).json()
    assert wer(JFK, good["output"]["text"]) < 0.1
