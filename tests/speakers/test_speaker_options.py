"""Known speakers' reference clips: fetched, checked and decoded before the transcription starts
(a bad clip refuses the job as a bad `audio` does, naming `known_speakers[i].audio`), under
their own length limit (WHISPER_MAX_REFERENCE_SECONDS), and their voiceprints stop when the job
is cancelled. No model: the engine and the diarizer are stand-ins that record what reaches them
(the real path is tests/speakers/test_diarize.py's)."""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest

from helpers import encode_audio
from worker.config import Settings
from worker.speakers.conversation import Diarizer, SpeakerCount
from worker.errors import AudioError, Cancelled
from worker.entries.runpod import JobRunner
from worker.service import Service
from worker.speakers.backends import Speakers


def _clip(seconds: float) -> str:
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000)
    return base64.b64encode(encode_audio(tone, 16000)).decode()


class _Model:
    device, name = "cpu", "stand-in"


class _Engine:
    """Records whether the transcription started and stops when its cancel event is set."""

    model = _Model()

    def __init__(self):
        self.started = threading.Event()
        self.stopped_after = None

    def check(self, request):
        pass

    def transcribe(self, audio, request, job_id, on_segment=None, cancelled=None, timings=None):
        self.started.set()
        began = time.monotonic()
        while time.monotonic() - began < 5:
            if cancelled is not None and cancelled.is_set():
                self.stopped_after = time.monotonic() - began
                raise Cancelled("job cancelled")
            time.sleep(0.01)
        raise AssertionError("the transcription went on after the diarization had failed")


class _Diarization:
    """Service.diarization(): records what start() is given; its Future fails with `error`."""

    def __init__(self, error=None):
        self.references = None
        self.error = error

    def start(self, audio, count, references, cancelled, kind="conversation"):
        self.references, self.kind = references, kind
        future = Future()
        if self.error is not None:
            threading.Timer(0.05, future.set_exception, [self.error]).start()
        return future


@pytest.fixture
def service(monkeypatch):
    service = JobRunner(Service(Settings(device="cpu", max_reference_seconds=2), _Engine()))
    diarization = _Diarization()
    monkeypatch.setattr(service.service, "diarization", lambda: diarization)
    return service


def _job(service, known):
    return service.process({"id": "known", "input": {"audio_base64": _clip(3), "diarize": True, "known_speakers": known}})


@pytest.mark.parametrize("known, field, code, error", [
    ([{"name": "Ann", "audio_base64": _clip(1)}, {"name": "Bo", "audio_base64": base64.b64encode(b"RIFF" + b"\0" * 300).decode()}],
     "known_speakers[1].audio", "invalid_audio", "known_speakers[1].audio: cannot decode audio"),
    ([{"name": "Ann", "audio_base64": _clip(3)}],  # 3 s, main audio 3 s too: only the clip's own limit (2 s) refuses it
     "known_speakers[0].audio", "audio_too_long", "known_speakers[0].audio: is 3 s long, over the 2 s limit"),
    ([{"name": "Ann", "audio": "http://169.254.169.254/ann.wav"}], "known_speakers[0].audio", "unsafe_url", "known_speakers[0].audio: "),
])
def test_a_bad_reference_clip_is_refused_before_the_transcription_starts(service, known, field, code, error):
    output = _job(service, known)
    assert (output["error_field"], output["error_code"]) == (field, code) and output["error"].startswith(error), output
    assert not service.engine.started.is_set()
    assert service.service.diarization().references is None  # the diarization never started either


def test_reference_clips_reach_the_diarization_decoded_and_a_failed_voiceprint_stops_the_transcription(service, monkeypatch):
    """A clip that decodes but holds no speech is found by the voiceprint, beside the
    transcription: the job answers with that error at once, not after the whole file."""
    diarization = _Diarization(AudioError("has no speech to learn the voice from", field="known_speakers[0].audio"))
    monkeypatch.setattr(service.service, "diarization", lambda: diarization)
    output = _job(service, [{"name": "Ann", "audio_base64": _clip(1.5)}])
    assert output["error"] == "known_speakers[0].audio: has no speech to learn the voice from", output
    [(name, clip)] = diarization.references
    assert name == "Ann" and isinstance(clip, np.ndarray) and clip.shape == (24000,)
    assert service.engine.stopped_after is not None and service.engine.stopped_after < 2


def test_the_reference_limit_is_a_setting_of_its_own():
    assert Settings().max_reference_seconds == 60
    assert Settings.from_env({"WHISPER_MAX_REFERENCE_SECONDS": "30"}).max_reference_seconds == 30


class _Voices:
    """A diarizer stand-in: cancels the job while learning the first voice."""

    def __init__(self, cancelled):
        self.cancelled, self.learnt, self.diarized = cancelled, [], False

    def voiceprint(self, clip, cancelled=None):
        self.learnt.append(clip.size)
        self.cancelled.set()
        return np.ones(4, np.float32) / 2

    def turns(self, *args):
        self.diarized = True


def test_a_cancelled_job_stops_learning_the_known_voices_between_clips():
    cancelled = threading.Event()
    speakers = Speakers("cpu")
    voices = _Voices(cancelled)
    speakers.diarizer = lambda kind="conversation": voices
    clips = [("Ann", np.ones(16000, np.float32)), ("Bo", np.ones(8000, np.float32))]
    with pytest.raises(Cancelled):
        speakers.start(np.ones(16000, np.float32), SpeakerCount(), clips, cancelled).result(timeout=10)
    assert voices.learnt == [16000] and not voices.diarized


class _Senko:
    """senko's stages, counted: a long clip's windows, embeddings that cancel the job."""

    def __init__(self, cancelled, windows):
        self.cancelled, self.windows, self.embedded = cancelled, windows, []

    def _perform_vad(self, audio):
        return [(0.0, 1.0)]

    def _generate_subsegments(self, speech, accurate):
        return [(i * 0.6, i * 0.6 + 1.5) for i in range(self.windows)]

    def _generate_embeddings(self, features, frames, offsets, dim):
        self.embedded.append(len(frames))
        if self.cancelled is not None:
            self.cancelled.set()
        return np.ones((len(frames), 4), np.float32)


def _diarizer(senko) -> Diarizer:
    diarizer = object.__new__(Diarizer)  # the pipeline's stages without loading senko's models
    diarizer._senko, diarizer._lock, diarizer._segmenter = senko, threading.Lock(), None
    diarizer._filterbanks = lambda audio, windows: (None, np.full(len(windows), 150), np.zeros(len(windows)), 80)
    return diarizer


@pytest.mark.parametrize("call", ["voiceprint", "turns"])
def test_a_cancelled_job_stops_embedding_at_the_next_block_of_windows(call):
    from worker.speakers.conversation import EMBED_BLOCK

    cancelled = threading.Event()
    senko = _Senko(cancelled, 3 * EMBED_BLOCK)
    diarizer = _diarizer(senko)
    with pytest.raises(Cancelled):
        if call == "voiceprint":
            diarizer.voiceprint(np.ones(16000, np.float32), cancelled)
        else:
            diarizer.turns(np.ones(16000, np.float32), SpeakerCount(), cancelled)
    assert senko.embedded == [EMBED_BLOCK]  # one block embedded, not the whole clip's windows
    assert EMBED_BLOCK % 64 == 0  # senko's own batches: blocks give the embeddings of one call
    whole = _Senko(None, 2 * EMBED_BLOCK + 5)
    assert _diarizer(whole).voiceprint(np.ones(16000, np.float32)).shape == (4,)
    assert whole.embedded == [EMBED_BLOCK, EMBED_BLOCK, 5]
