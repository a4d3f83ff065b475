"""Word edges refined against the audio (worker.decoding.edges): on synthetic 'words' (noise
bursts at known samples) and on real speech through the engine."""

import numpy as np
import pytest

from benchmarks.timing import speech_edges
from worker.audio.decode import SAMPLE_RATE as SR, decode_audio
from worker.config import Settings
from worker.decoding import edges as edges_module
from worker.decoding.edges import EdgeRefiner
from worker.request.schema import parse_request
from worker.transcript import Segment, Word


def signal(bursts, seconds=4.0, seed=0):
    """Faint room noise (-70 dBFS) with speech-like noise bursts (-20 dBFS) over `bursts` (s)."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(0, 10 ** (-70 / 20), int(seconds * SR)).astype(np.float32)
    for start, end in bursts:
        a, b = int(start * SR), int(end * SR)
        audio[a:b] += rng.normal(0, 0.1, b - a).astype(np.float32)
    return audio


def segment(*words):
    ws = [Word(start, end, text, 0.9) for start, end, text in words]
    return Segment(0, 0, ws[0].start, ws[-1].end, "".join(w.word for w in ws), [], 0.0, -0.1, 1.0, 0.01, words=ws)


def refine(audio, seg, next_start=None, previous_end=0.0):
    refiner = EdgeRefiner(lambda a, b: audio[max(0, a):b])
    refiner.previous_end = previous_end
    return refiner(seg, next_start)


def test_an_early_start_and_end_move_onto_the_burst():
    audio = signal([(1.0, 1.6)])
    seg = refine(audio, segment((0.84, 1.45, " word")))
    assert seg.words[0].start == pytest.approx(1.0, abs=0.02)
    assert seg.words[0].end == pytest.approx(1.6, abs=0.02)
    assert (seg.start, seg.end) == (seg.words[0].start, seg.words[0].end)  # the segment follows its words
    assert seg.words[0].word == " word" and seg.text == " word"


def test_a_late_start_moves_back_and_a_late_end_moves_back():
    audio = signal([(1.0, 1.6)])
    seg = refine(audio, segment((1.12, 1.75, " word")))
    assert seg.words[0].start == pytest.approx(1.0, abs=0.02)
    assert seg.words[0].end == pytest.approx(1.6, abs=0.02)


def test_edges_inside_continuous_speech_do_not_move():
    audio = signal([(0.3, 3.5)])
    seg = refine(audio, segment((1.0, 1.5, " in"), (1.5, 2.2, " speech")))
    assert [(w.start, w.end) for w in seg.words] == [(1.0, 1.5), (1.5, 2.2)]
    assert (seg.start, seg.end) == (1.0, 2.2)


def test_bounds_are_kept():
    audio = signal([(1.0, 1.6)])
    # stamped 0.3 s late, inside the sound: the start moves back to the sound's rise
    seg = refine(audio, segment((1.3, 1.58, " late")))
    assert seg.words[0].start == pytest.approx(1.0, abs=0.02)
    # inside a sound that rose further back than LATE_BACK_S: no rise to move to, BACK_S holds
    audio = signal([(1.0, 2.4)])
    seg = refine(audio, segment((1.8, 2.3, " later")))
    assert 1.8 - edges_module.BACK_S - 1e-9 <= seg.words[0].start <= 1.8
    # the burst starts after the word's stamped end: the word keeps MIN_WORD_S and does not jump
    audio = signal([(2.0, 2.6)])
    seg = refine(audio, segment((1.0, 1.3, " early")))
    assert seg.words[0].end - seg.words[0].start >= edges_module.MIN_WORD_S - 1e-9
    assert seg.words[0].start <= 1.3 and seg.words[0].start >= 1.0 - edges_module.BACK_S - 1e-9
    # never before the previous segment's end, never past the next segment's start
    audio = signal([(1.0, 1.8)])
    seg = refine(audio, segment((1.1, 1.5, " kept")), next_start=1.6, previous_end=1.05)
    assert seg.words[0].start >= 1.05 and seg.words[0].end <= 1.6


def test_adjacent_words_split_at_the_dip_between_them():
    audio = signal([(1.0, 1.5), (1.7, 2.3)])
    seg = refine(audio, segment((0.85, 1.45, " one"), (1.45, 2.1, " two")))
    one, two = seg.words
    assert one.end == pytest.approx(1.5, abs=0.02) and two.start == pytest.approx(1.7, abs=0.02)
    assert one.start == pytest.approx(1.0, abs=0.02) and two.end == pytest.approx(2.3, abs=0.02)
    assert one.end <= two.start


def test_no_words_no_change():
    seg = Segment(0, 0, 1.0, 2.0, " x", [], 0.0, -0.1, 1.0, 0.01, words=None)
    assert refine(signal([(1.0, 1.6)]), seg) is seg and (seg.start, seg.end) == (1.0, 2.0)


@pytest.mark.parametrize("batch_size", [1, 8])
def test_real_speech_word_edges_at_pauses_move_to_the_speech_edges(tiny_service, data_dir, monkeypatch, batch_size):
    """An utterance trimmed to its speech between pauses of room noise: the first word's start and
    the last word's end land near the speech edges (closer than Whisper's alignment put them);
    the words' text is unchanged."""
    clip = decode_audio(str(data_dir / "ljspeech" / "LJ001-0002.wav"), 3600)
    found = speech_edges(clip)
    speech = clip[found.start:found.end]
    pause = int(1.2 * SR)
    rng = np.random.default_rng(1)
    audio = np.concatenate([rng.normal(0, 1e-4, pause), speech, rng.normal(0, 1e-4, pause)]).astype(np.float32)
    start, end = pause / SR, (pause + speech.size) / SR
    request = parse_request({"audio": "x", "word_timestamps": True, "batch_size": batch_size}, Settings(batch_size=8))

    refined = tiny_service.engine.transcribe(audio, request)
    monkeypatch.setattr("worker.decoding.engine.EdgeRefiner", lambda read: lambda segment, following: segment)
    plain = tiny_service.engine.transcribe(audio, request)

    assert [w.word for w in refined.words] == [w.word for w in plain.words] and refined.text == plain.text
    first, last = refined.words[0], refined.words[-1]
    assert abs(first.start - start) <= 0.05 and abs(first.start - start) < abs(plain.words[0].start - start)
    assert abs(last.end - end) <= 0.08 and abs(last.end - end) <= abs(plain.words[-1].end - end)
    assert all(a.end <= b.start + 1e-6 and a.start < a.end for a, b in zip(refined.words, refined.words[1:]))


def test_levels_are_rms_of_20_ms_frames_every_10_ms_after_the_high_pass():
    """The envelope against a plain computation: subtract the 10 ms moving average (edge-padded),
    then the mean power of 320-sample frames every 160 samples, in dB."""
    rng = np.random.default_rng(3)
    audio = (rng.normal(0, 0.1, 40000) * np.linspace(0, 1, 40000) + 0.05).astype(np.float32)
    envelope = edges_module.Envelope(lambda a, b: audio[max(0, a):b], 0.25, 2.25)
    samples = audio[4000:36000].astype(np.float64)
    padded = np.pad(samples, (80, 80), mode="edge")
    filtered = samples - np.array([padded[i:i + 160].mean() for i in range(samples.size)])
    expected = [10 * np.log10(np.mean(filtered[i:i + 320] ** 2) + 1e-12) for i in range(0, samples.size - 320 + 1, 160)]
    assert envelope.levels.shape == (len(expected),)
    assert np.allclose(envelope.levels, expected, atol=1e-3)


def test_an_edge_reads_the_levels_within_a_second_of_it_from_the_segment_envelope():
    audio = signal([(1.0, 1.6), (2.5, 3.0)], seconds=6.0)
    read = lambda a, b: audio[max(0, a):b]  # noqa: E731
    shared = edges_module.Envelope(read, 0.5, 5.5)
    part = shared.around(2.5)
    alone = edges_module.Envelope(read, 1.5, 3.5)  # the same frame grid: 1.5 s is a whole number of hops from 0.5 s
    assert part.time(0) == pytest.approx(alone.time(0))
    assert abs(part.levels.size - alone.levels.size) <= 1
    n = min(part.levels.size, alone.levels.size) - 1  # the last frame of `alone` is high-passed against its padding
    assert np.allclose(part.levels[1:n], alone.levels[1:n], atol=1e-3)
    assert part.thresholds() == pytest.approx(alone.thresholds(), abs=0.05)


@pytest.mark.parametrize("size", [10, 11, 199, 200, 201])
def test_percentiles_equal_numpys(size):
    values = np.random.default_rng(size).normal(-40, 15, size)
    assert edges_module._percentiles(values, 95.0, 5.0) == pytest.approx(list(np.percentile(values, [95, 5])), abs=1e-9)
