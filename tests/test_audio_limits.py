"""Decoding at its boundaries: the duration limit from either kind of metadata and while counting,
exactly at the limit, the first audio stream only, an unknown codec, cancellation mid-file."""

import io
import threading

import av
import numpy as np
import pytest

from helpers import encode_audio
from worker import audio as audio_module
from worker.audio import decode_audio
from worker.errors import AudioError, AudioTooLong, Cancelled

TONE = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000 * 3) / 16000)  # 3 s


@pytest.fixture
def no_decoding(monkeypatch):
    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded although the metadata already said too long")

    monkeypatch.setattr(audio_module, "_decode_stream", must_not_decode)


@pytest.mark.parametrize("fmt, codec", [("wav", "pcm_s16le"), ("matroska", "pcm_s16le")])  # stream duration; container duration only
def test_declared_duration_over_the_limit_is_refused_before_decoding(fmt, codec, no_decoding):
    data = encode_audio(TONE, 16000, fmt, codec)
    with av.open(io.BytesIO(data)) as container:  # the two kinds of metadata this test is about
        assert (container.streams.audio[0].duration is None) == (fmt == "matroska") and container.duration == 3_000_000
    with pytest.raises(AudioTooLong) as info:
        decode_audio(data, max_seconds=2.5)
    assert str(info.value) == "audio: is 3 s long, over the 2.5 s limit" and info.value.field == "audio"


@pytest.mark.parametrize("fmt, codec", [("wav", "pcm_s16le"), ("matroska", "pcm_s16le"), ("flac", "flac")])
def test_audio_exactly_at_the_limit_is_accepted(fmt, codec):
    assert decode_audio(encode_audio(TONE, 16000, fmt, codec), max_seconds=3).size == 48000


def test_the_running_count_accepts_exactly_the_limit_and_refuses_one_sample_more(monkeypatch):
    monkeypatch.setattr(audio_module, "_check_declared", lambda *args: None)  # metadata absent or lying
    data = encode_audio(TONE, 16000)
    assert decode_audio(data, max_seconds=3).size == 48000
    with pytest.raises(AudioTooLong) as info:
        decode_audio(data, max_seconds=2.99)
    assert str(info.value) == "audio: is longer than the 2.99 s limit"


def test_only_the_first_audio_stream_is_decoded():
    """A file with two audio tracks (a dub, a commentary) is transcribed from its first."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as out:
        tracks = [(out.add_stream("pcm_s16le", rate=16000, layout="mono"), seconds) for seconds in (1, 2)]
        for stream, seconds in tracks:
            samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000 * seconds) / 16000) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.rate, frame.pts = 16000, 0
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                out.mux(packet)
    with av.open(io.BytesIO(buffer.getvalue())) as container:
        samples_by_track = [0, 0]
        for packet in container.demux():
            samples_by_track[packet.stream.index] += packet.size // 2
        assert samples_by_track == [16000, 32000]  # both tracks are there
    assert decode_audio(buffer.getvalue(), 60).size == 16000


def test_an_unknown_codec_is_named_as_such():
    import struct

    fmt = struct.pack("<HHIIHH", 0x1234, 1, 16000, 32000, 2, 16)  # a format tag no decoder knows
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 3200) + b"\0\1" * 1600
    with pytest.raises(AudioError) as info:
        decode_audio(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks, 60)
    assert str(info.value) == "audio: has an audio stream with no decoder (unknown or corrupt codec)"


def test_a_cancelled_job_stops_decoding_a_long_file(data_dir):
    cancelled = threading.Event()
    assert decode_audio(str(data_dir / "long/silero_test.wav"), 120, cancelled).size == 60 * 16000
    cancelled.set()
    with pytest.raises(Cancelled, match="job cancelled while decoding"):
        decode_audio(str(data_dir / "long/silero_test.wav"), 120, cancelled)
