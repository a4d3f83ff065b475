"""The one transcripts.txt reader and the one encoder, shared by the benchmarks and the tests
(tests/helpers.py re-exports them)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.audio_files import DATA, encode_audio, read_transcripts, write_audio


def test_the_reader_keeps_file_order_and_skips_blanks_and_comments(tmp_path):
    (tmp_path / "transcripts.txt").write_text("# a comment\nb.wav  Second one. \n\na.wav First one.\nc.wav\n", encoding="utf-8")
    assert read_transcripts(tmp_path) == {"b.wav": "Second one.", "a.wav": "First one.", "c.wav": None}
    assert list(read_transcripts(tmp_path / "transcripts.txt")) == ["b.wav", "a.wav", "c.wav"]


def test_the_reader_reads_every_transcripts_file_the_tests_carry():
    import helpers

    for path in DATA.rglob("transcripts.txt"):
        references = read_transcripts(path)
        assert all(text for text in references.values()), path
        assert all((path.parent / name).is_file() for name in references), path
    assert helpers.references(DATA / "harvard") == read_transcripts(DATA / "harvard")
    assert helpers.encode_audio is encode_audio


@pytest.mark.parametrize("fmt, codec, rate", [("wav", "pcm_s16le", 16000), ("mp3", "mp3", 16000), ("flac", "flac", 16000)])
def test_the_encoder_round_trips_through_the_workers_decoder(fmt, codec, rate, tmp_path):
    from worker.audio.decode import decode_audio

    t = np.arange(rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    decoded = decode_audio(encode_audio(tone, rate, fmt, codec), 60)
    assert abs(decoded.size - tone.size) <= 1152 * 2  # an MP3 encoder's delay and padding
    write_audio(tmp_path / f"tone.{fmt}", tone, rate, fmt, codec)
    assert np.array_equal(decode_audio(str(tmp_path / f"tone.{fmt}"), 60), decoded)
    if fmt != "mp3":  # lossless: the 16-bit samples come back
        assert np.abs(decoded - tone).max() < 1e-4


def test_stereo_gets_its_layout_and_loud_samples_are_clipped():
    from worker.audio.decode import decode_audio

    stereo = np.stack([np.full(1600, 2.0), np.full(1600, -0.5)])
    decoded = decode_audio(encode_audio(stereo, 16000), 60, max_channels=2)
    assert decoded.shape == (2, 1600)
    assert decoded[0].max() == pytest.approx(32767 / 32768) and decoded[1].min() == pytest.approx(-16383 / 32768, abs=1e-4)
    with pytest.raises(ValueError, match="name a layout for 3 channels"):
        encode_audio(np.zeros((3, 100)), 16000)
