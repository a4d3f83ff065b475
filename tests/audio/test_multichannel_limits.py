"""Multichannel jobs under the limits: every channel is a transcription, so the duration limit
counts channels x seconds (from the header and while decoding), and the decoded audio is held
once (a planar buffer whose rows the channels' transcriptions read as views, no extra copies)."""

from __future__ import annotations

import base64
import tracemalloc

import numpy as np
import pytest

from helpers import pcm_wav
from worker.audio import decode as audio_module
from worker.audio.decode import decode_audio
from worker.config import Settings
from worker.errors import AudioTooLong, RequestError
from worker.entries.runpod import JobRunner
from worker.service import Service

TONE = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000 * 3) / 16000)  # 3 s


def test_the_header_limit_counts_channels_times_seconds():
    four = pcm_wav(TONE, 16000, 4)
    with pytest.raises(AudioTooLong) as info:
        decode_audio(four, 11.9, max_channels=4)
    assert (str(info.value), info.value.field) == (
        "audio: is 3 s long with 4 channels: 12 s to transcribe, over the 11.9 s limit (multichannel counts channels x seconds)", "audio")
    assert decode_audio(four, 12, max_channels=4).shape == (4, 48000)  # exactly at the limit
    assert decode_audio(four, 3).shape == (48000,)  # mixed down to one channel: seconds only


def test_the_running_count_counts_channels_times_seconds(monkeypatch):
    monkeypatch.setattr(audio_module, "_check_declared", lambda *args: None)  # metadata absent or lying
    four = pcm_wav(TONE, 16000, 4)
    assert decode_audio(four, 12, max_channels=4).shape == (4, 48000)
    with pytest.raises(AudioTooLong) as info:
        decode_audio(four, 11.99, max_channels=4)
    assert str(info.value) == "audio: has 4 channels longer than 2.9975 s: over the 11.99 s limit (multichannel counts channels x seconds)"


class _Engine:
    """Records the channels it is handed, then ends the job."""

    class model:
        device, name = "cpu", "stand-in"

    def __init__(self):
        self.channels = []

    def check(self, request):
        pass

    def transcribe(self, audio, request, job_id, on_segment=None, cancelled=None, timings=None):
        self.channels.append(audio)
        raise RequestError("stand-in engine", field="audio")


def test_a_multichannel_job_over_the_limit_in_channels_x_seconds_is_refused_and_channels_are_not_copied():
    service = JobRunner(Service(Settings(device="cpu", max_audio_seconds=5), _Engine()))
    stereo = base64.b64encode(pcm_wav(TONE, 16000, 2)).decode()  # 2 x 3 s = 6 s of work
    output = service.process({"id": "mc", "input": {"audio_base64": stereo, "multichannel": True}})
    assert output["error_code"] == "audio_too_long" and "6 s to transcribe, over the 5 s limit" in output["error"], output
    assert service.engine.channels == []
    service.process({"id": "mono", "input": {"audio_base64": stereo}})  # mixed down: 3 s, within the limit
    assert len(service.engine.channels) == 1
    service = JobRunner(Service(Settings(device="cpu", max_audio_seconds=6), _Engine()))
    service.process({"id": "mc", "input": {"audio_base64": stereo, "multichannel": True}})  # 6 s: exactly the limit
    first, second = service.engine.channels
    assert first.shape == second.shape == (48000,) and first.flags.c_contiguous and second.flags.c_contiguous
    assert first.base is not None and first.base is second.base  # rows of one decoded array, not copies


def test_decoding_many_channels_holds_the_samples_once():
    """The decode's own peak is its output (and a second of room per channel): before, the int16
    parts were held beside the float32 output, and the silence check made an abs() copy (2x)."""
    channels = (0.1 * np.random.default_rng(0).standard_normal((8, 16000 * 20))).clip(-1, 1)  # 8 x 20 s, each its own
    data = (channels.T * 32767).astype("<i2").tobytes()
    header = pcm_wav(np.zeros(0), 16000, 8)
    wav = header[:4] + (len(header) - 8 + len(data)).to_bytes(4, "little") + header[8:40] + len(data).to_bytes(4, "little") + data
    tracemalloc.start()
    try:
        samples = decode_audio(wav, 3600, max_channels=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert samples.shape == (8, 320000) and all(row.flags.c_contiguous for row in samples)
    assert np.array_equal(samples[3], (channels[3] * 32767).astype("<i2") / np.float32(32768))
    assert peak < 1.1 * samples[0].nbytes * 8, peak / (samples[0].nbytes * 8)
