"""Decoding at its boundaries: the duration limit from either kind of metadata and while counting,
exactly at the limit, the first audio stream only, an unknown codec, cancellation mid-file."""

import io
import threading

import av
import numpy as np
import pytest

from helpers import encode_audio
from worker.audio import decode as audio_module
from worker.audio.decode import DecodingAudio, decode_audio
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
    assert DecodingAudio(io.BytesIO(buffer.getvalue()), 60).result().size == 16000  # the streamed decode too


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


def test_a_concat_list_naming_a_local_file_opens_nothing(data_dir, monkeypatch):
    """FFmpeg would read `jfk.flac` from the worker's disk for these bytes; only real containers open."""
    monkeypatch.chdir(data_dir)
    with pytest.raises(AudioError) as info:
        decode_audio(b"ffconcat version 1.0\nfile 'jfk.flac'\n", 60)
    assert str(info.value).startswith("audio: cannot decode audio: not a supported audio or video container, or corrupt (")


def test_tags_that_are_not_utf8_do_not_stop_the_audio():
    import struct

    from helpers import pcm_wav

    wav = pcm_wav(0.3 * np.sin(np.arange(16000) / 5), 16000, 1)
    info = b"INFO" + b"INAM" + struct.pack("<I", 8) + b"\xff\xfebad\xe9\0\0"  # a Latin-1 tagger's title
    chunks = wav[12:] + b"LIST" + struct.pack("<I", len(info)) + info
    assert decode_audio(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks, 60).size == 16000


def test_corrupt_frames_mid_file_are_skipped_and_decoding_goes_on(data_dir):
    """(faster-whisper's own decode_audio stops at the first corrupt frame: half of this file)"""
    clean = (data_dir / "multilingual.mp3").read_bytes()
    broken = bytearray(clean)
    broken[len(clean) // 2:len(clean) // 2 + 2000] = b"\xff\xfb" * 1000  # frame headers with nothing valid behind
    full = decode_audio(clean, 120).size
    assert 0.95 * full < decode_audio(bytes(broken), 120).size <= full


def test_a_header_without_samples_is_refused_as_empty():
    from helpers import pcm_wav

    with pytest.raises(AudioError) as info:
        decode_audio(pcm_wav(np.zeros(0), 16000, 1), 60)
    assert str(info.value) == "audio: contains no audio samples (empty or unreadable)"


@pytest.mark.parametrize("raised, error", [
    (av.error.FFmpegError(5, "Input/output error"), "audio: cannot decode audio: Input/output error"),
    (av.error.InvalidDataError(1094995529, "Invalid data found when processing input"),
     "audio: cannot decode audio: not a supported audio or video container, or corrupt (Invalid data found when processing input)"),
    (ValueError("x" * 300), "audio: cannot decode audio: ValueError: " + "x" * 200),
    (IndexError(), "audio: cannot decode audio: IndexError: "),
    # without a text, an error is named by its kind
    (av.error.FFmpegError(5, ""), "audio: cannot decode audio: FFmpegError"),
    (av.error.InvalidDataError(1094995529, ""), "audio: cannot decode audio: not a supported audio or video container, or corrupt (InvalidDataError)"),
])
def test_whatever_the_decoder_throws_on_bad_bytes_is_an_audio_error(monkeypatch, raised, error):
    """PyAV parses untrusted bytes: its errors become the client's invalid_audio, never a crash."""
    def broken_open(*args, **kwargs):
        raise raised

    monkeypatch.setattr(audio_module.av, "open", broken_open)
    with pytest.raises(AudioError) as info:
        decode_audio(b"anything", 60)
    assert str(info.value) == error and info.value.field == "audio"


def test_every_refusal_names_the_audio_field(data_dir, tmp_path):
    from helpers import pcm_wav

    cases = [
        (str(tmp_path), "audio: cannot read the audio file: Is a directory"),
        (pcm_wav(np.zeros(16000), 16000, 1), "audio: is silent (no signal above -80 dBFS)"),
        (b"not audio" * 100, "audio: cannot decode audio: not a supported audio or video container, or corrupt (Invalid data found when processing input)"),
    ]
    for source, error in cases:
        with pytest.raises(AudioError) as info:
            decode_audio(source, 60)
        assert (str(info.value), info.value.field) == (error, "audio")


def test_multichannel_decoding_keeps_the_channels_apart_up_to_the_limit(data_dir):
    from helpers import pcm_wav

    path = str(data_dir / "stereo_diarization.wav")
    kept = decode_audio(path, 60, max_channels=2)  # a path, as the handler passes it
    mono = decode_audio(path, 60)
    assert kept.shape == (2, mono.size) and not np.array_equal(kept[0], kept[1])
    assert np.array_equal(decode_audio((data_dir / "stereo_diarization.wav").read_bytes(), 60, max_channels=2), kept)
    three = pcm_wav(TONE, 16000, 3)
    assert decode_audio(three, 60, max_channels=3).shape == (3, 48000)
    with pytest.raises(AudioError) as info:
        decode_audio(three, 60, max_channels=2)
    assert (str(info.value), info.value.field) == ("audio: has 3 channels; multichannel transcribes at most 2", "audio")


def test_a_video_without_sound_is_refused_by_name():
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as out:
        stream = out.add_stream("mpeg4", rate=1)
        stream.width, stream.height = 16, 16
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(AudioError) as info:
        decode_audio(buffer.getvalue(), 60)
    assert (str(info.value), info.value.field) == ("audio: contains no audio stream", "audio")


def test_eight_or_more_channels_without_a_layout_are_kept_apart_without_crashing():
    """PyAV 18 crashes the process (a segfault) converting a planar frame of 8 or more channels,
    so this runs in a child process: a crash is then this test's failure, not the suite's end."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    child = """
import sys
import numpy as np
from helpers import pcm_wav
from worker.audio.decode import decode_audio
tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
for channels in (8, 9, 64):
    levels = (np.arange(channels) + 1) / channels  # each channel its own level: kept apart, in order
    data = (np.outer(tone, levels) * 32767).astype("<i2")
    wav = pcm_wav(tone, 16000, channels)[:44] + data.tobytes()  # the header of a WAV without a channel mask
    kept = decode_audio(wav, 3600, max_channels=channels)  # channels x seconds within the limit
    peaks = np.abs(kept).max(axis=1)
    assert kept.shape == (channels, 16000), kept.shape
    assert np.allclose(peaks, 0.3 * levels, atol=2e-3), peaks
print("kept apart")
"""
    tests = Path(__file__).parent.parent
    done = subprocess.run([sys.executable, "-c", child], cwd=tests.parent, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{tests}:{tests.parent}"})
    assert (done.returncode, done.stdout.strip()) == (0, "kept apart"), done.stderr[-2000:]


@pytest.mark.parametrize("channels", [9, 11, 64])
def test_channels_without_a_layout_that_cannot_be_mixed_down_are_named_as_such(channels):
    from helpers import pcm_wav

    wav = pcm_wav(TONE, 16000, channels)  # no channel mask, and no default layout for this count
    for decode in (lambda: decode_audio(wav, 60), lambda: audio_module.DecodingAudio(io.BytesIO(wav), 60).result()):
        with pytest.raises(AudioError) as info:
            decode()
        assert (str(info.value), info.value.field) == (
            f"audio: has {channels} channels without a channel layout, which cannot be mixed down to mono", "audio")
    assert decode_audio(pcm_wav(TONE, 16000, 10), 60).size == 48000  # 10 channels have a default layout: mixed down


def test_a_file_that_keeps_changing_its_sample_rate_is_refused(monkeypatch):
    """Every change of rate or channels costs a new resampler (20x a frame's work): a file made to
    alternate on every frame is refused past MAX_FORMAT_CHANGES, while a few joins decode whole."""
    def tone(rate, samples):
        return encode_audio(0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate), rate, fmt="mp3", codec="mp3")

    head, fast, slow = tone(44100, 1152 * 40), tone(44100, 1152), tone(24000, 576)
    assert audio_module.MAX_FORMAT_CHANGES >= 100  # room for real joined files and broadcast streams
    monkeypatch.setattr(audio_module, "MAX_FORMAT_CHANGES", 10)
    assert decode_audio(head + (slow + fast) * 4, 60).size > 16000  # 9 changes: decoded
    with pytest.raises(AudioError) as info:
        decode_audio(head + (slow + fast) * 5, 60)  # 11
    assert str(info.value) == "audio: changes its sample rate or channels more than 10 times"
    with pytest.raises(AudioError, match="more than 10 times"):
        DecodingAudio(io.BytesIO(head + (slow + fast) * 5), 60).result()
