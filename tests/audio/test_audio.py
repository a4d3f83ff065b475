"""Decoding: the same samples faster-whisper decodes, every container, and refusals with a cause."""


import numpy as np
import pytest

from helpers import encode_audio
from worker.audio import decode as audio_module
from worker.audio.decode import decode_audio
from worker.errors import AudioError, AudioTooLong

FILES = ["jfk.flac", "multilingual.mp3", "fleurs/fleurs-de-000.ogg", "harvard/spk1_snt1.wav",
         "stereo_diarization.wav", "long/columbia.wma"]


@pytest.mark.parametrize("name", FILES)
def test_samples_equal_faster_whispers_decoder(data_dir, name):
    from faster_whisper import decode_audio as fw_decode

    ours = decode_audio(str(data_dir / name), max_seconds=3600)
    assert ours.dtype == np.float32
    assert np.array_equal(ours, fw_decode(str(data_dir / name)))


def test_bytes_and_paths_decode_alike(data_dir):
    path = data_dir / "jfk.flac"
    assert np.array_equal(decode_audio(path.read_bytes(), 60), decode_audio(str(path), 60))
    assert decode_audio(str(path), 60).size == 11 * 16000


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 96000, 192000])
def test_any_rate_is_resampled_to_16k(rate):
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    decoded = decode_audio(encode_audio(tone, rate), 60)
    assert abs(decoded.size - 16000) <= 32


@pytest.mark.parametrize("payload, cause", [
    (b"", "cannot decode audio"),
    (b"this is not audio at all" * 100, "cannot decode audio"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "cannot decode audio"),
])
def test_non_audio_bytes_are_refused(payload, cause):
    with pytest.raises(AudioError, match=cause) as info:
        decode_audio(payload, 60)
    assert info.value.field == "audio"


def test_silence_is_refused():
    with pytest.raises(AudioError, match="silent"):
        decode_audio(encode_audio(np.zeros(16000), 16000), 60)


def test_zero_length_audio_is_refused():
    with pytest.raises(AudioError, match="no audio samples|cannot decode"):
        decode_audio(encode_audio(np.zeros(0), 16000), 60)


def test_long_audio_is_refused_from_metadata_before_decoding(data_dir, monkeypatch):
    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded although the metadata already said too long")

    monkeypatch.setattr(audio_module, "_decode_stream", must_not_decode)
    with pytest.raises(AudioTooLong, match="199 s long"):
        decode_audio(str(data_dir / "long/columbia.wma"), max_seconds=60)


def test_long_audio_without_metadata_is_refused_by_the_running_count(data_dir, monkeypatch):
    monkeypatch.setattr(audio_module, "_check_declared", lambda *args: None)
    assembled = []
    original = np.empty
    monkeypatch.setattr(audio_module.np, "empty", lambda size, dtype: assembled.append(size) or original(size, dtype))
    assert (1, decode_audio(str(data_dir / "jfk.flac"), max_seconds=20).size) == assembled[-1]  # the output is np.empty'd
    assembled.clear()
    with pytest.raises(AudioTooLong, match="longer than the 20 s limit"):
        decode_audio(str(data_dir / "long/columbia.wma"), max_seconds=20)
    assert assembled == []  # stopped while counting, never assembled the whole file


def test_more_than_64_channels_are_refused_from_the_header_before_decoding(monkeypatch):
    from helpers import pcm_wav

    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)
    assert decode_audio(pcm_wav(tone, 16000, 2), 60).size == 8000  # the hand-made WAV is real audio
    reached = []
    monkeypatch.setattr(audio_module, "_decode_stream", lambda *args: reached.append(args[1].codec_context.channels) or np.ones(10, np.float32))
    for channels in (65, 300):
        with pytest.raises(AudioError, match=f"has {channels} channels; at most 64 are accepted") as info:
            decode_audio(pcm_wav(tone, 16000, channels), 60)
        assert info.value.field == "audio"
    assert reached == []
    decode_audio(pcm_wav(tone, 16000, 64), 60)  # 64 passes the check (FFmpeg's downmix then decides)
    assert reached == [64]


def test_files_joined_end_to_end_decode_whole_across_a_change_of_rate_and_channels(data_dir, tmp_path):
    """hotwords.mp3 (44.1 kHz stereo) then multilingual.mp3 (24 kHz mono) in one file, as `cat`
    joins podcast parts: one resampler refuses the second part's frames ("Frame does not match
    AudioResampler setup"), so the decode must set up a new one at the join, not fail the job."""
    first = decode_audio(str(data_dir / "hotwords.mp3"), 3600)
    second = decode_audio(str(data_dir / "multilingual.mp3"), 3600)
    joined = tmp_path / "joined.mp3"
    joined.write_bytes((data_dir / "hotwords.mp3").read_bytes() + (data_dir / "multilingual.mp3").read_bytes())
    samples = decode_audio(str(joined), 3600)
    assert abs(samples.size - first.size - second.size) < 0.1 * 16000
    assert np.array_equal(samples[:first.size - 16000], first[:-16000])  # the first part as decoded alone
    # the second part is the other file's audio: the join shifts it by under 0.1 s (the second
    # header's frame), after which the two match sample for sample but for the resampler's phase
    probe = second[10 * 16000:12 * 16000]
    rest = samples[first.size - 1600:first.size + 14 * 16000]
    shift = int(np.argmax(np.correlate(rest, probe, mode="valid"))) - 10 * 16000 - 1600
    assert 0 <= shift < 1600
    aligned = samples[first.size + shift:][:second.size]
    body = slice(16000, aligned.size - 16000)
    assert np.corrcoef(aligned[body], second[:aligned.size][body])[0, 1] > 0.99
