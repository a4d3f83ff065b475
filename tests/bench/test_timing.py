"""`python -m benchmarks timing`: its reference is exact by construction (a tone burst at a known
sample is scored 0 ms), the trim finds speech edges within a few ms and follows its written rule,
digits are matched to words by content and time, and the command runs end to end (tiny.en, a
tiny subset) and reports what it says it does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from benchmarks import timing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RATE = timing.SAMPLE_RATE


def _noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * 10 ** (dbfs / 20)


def _tone(samples: int, amplitude: float = 0.3, hz: float = 500.0) -> np.ndarray:
    """A cosine burst: its first sample is at full amplitude, so its onset is one exact sample."""
    return amplitude * np.cos(2 * np.pi * hz * np.arange(samples) / RATE)


def _voiced(samples: int, amplitude: float = 0.3) -> np.ndarray:
    """A vowel-like burst: 150 Hz and its harmonics, with 10 ms raised-cosine ramps."""
    n = np.arange(samples)
    wave = sum(np.sin(2 * np.pi * 150 * k * n / RATE) / k for k in range(1, 12))
    ramp = np.ones(samples)
    edge = RATE // 100
    ramp[:edge] = 0.5 - 0.5 * np.cos(np.pi * np.arange(edge) / edge)
    ramp[-edge:] = ramp[:edge][::-1]
    return amplitude * wave / np.abs(wave).max() * ramp


def test_the_trim_puts_a_tone_burst_on_its_first_and_last_sample():
    clip = _noise(2.0, -90)
    clip[8000:24000] += _tone(16000)  # 500 Hz: 32 samples a period, so the last sample is near a peak too
    edges = timing.speech_edges(clip)
    assert (edges.start, edges.end) == (8000, 24000)
    assert edges.threshold_db == pytest.approx(edges.speech_db - timing.EDGE_BELOW_SPEECH_DB)


def test_the_trim_finds_the_edges_of_a_ramped_voice_within_a_few_ms():
    clip = _noise(3.0, -65)
    clip[12000:36000] += _voiced(24000)
    edges = timing.speech_edges(clip)
    assert abs(edges.start - 12000) <= 0.003 * RATE and abs(edges.end - 36000) <= 0.003 * RATE
    assert edges.rise < 0.010 * RATE and edges.fall < 0.010 * RATE  # the ramps are 10 ms: the loud edge lies inside them


def test_the_trim_leaves_out_a_breath_and_a_distant_click_but_keeps_a_final_release():
    clip = _noise(3.0, -70)
    clip[16000:32000] += _voiced(16000)  # the vowel, 1.0-2.0 s
    clip[9600:14400] += _noise(0.3, -50, seed=1)  # a breath ending 100 ms before it, 30 dB under it: not speech
    clip[33280:33600] += _noise(0.02, -18, seed=2)  # a release burst 80 ms after it: speech
    clip[40000:40080] += _noise(0.005, -12, seed=3)  # a click 400 ms after that: not speech
    edges = timing.speech_edges(clip)
    assert abs(edges.start - 16000) <= 0.003 * RATE
    assert abs(edges.end - 33600) <= 0.003 * RATE


def test_the_trim_finds_no_speech_in_noise():
    assert timing.speech_edges(_noise(1.0, -40)) is None


def _write_corpus(folder, bursts):
    """A fake VCTK speaker: clips of -90 dBFS noise with a tone burst at a known sample each."""
    speaker = folder / "voices" / "vctk-p999"
    speaker.mkdir(parents=True)
    for index, (length, onset, burst) in enumerate(bursts):
        clip = _noise(length, -90, seed=index)
        clip[onset:onset + burst] += _tone(burst)
        soundfile.write(str(speaker / f"p999_{index:03d}.flac"), clip, RATE, subtype="PCM_24")


def test_reference_edges_are_exact_by_construction(tmp_path):
    bursts = [(1.5, 4000, 9600), (2.0, 9000, 12800), (1.2, 3000, 6400), (1.8, 7000, 16000), (1.0, 2000, 3200), (2.2, 12000, 9600)]
    _write_corpus(tmp_path, bursts)
    clips, left_out = timing.load_clips("vctk", tmp_path)
    assert not left_out and [(c.start, c.end) for c in clips] == [(onset, onset + burst) for _, onset, burst in bursts]
    items, _, counts = timing.build(["vctk"], ["tuning", "held-out"], data=tmp_path)
    assert counts == {"tuning": 3, "held-out": 3} and {x.pause_kind for x in items} <= {"room", "silence"}
    for sequence in items:
        loud = np.flatnonzero(np.abs(sequence.audio) > 0.05)  # the bursts, found in the joined audio alone
        onsets = [int(loud[0])] + [int(b) for a, b in zip(loud, loud[1:]) if b - a > RATE // 10]
        ends = [int(a) + 1 for a, b in zip(loud, loud[1:]) if b - a > RATE // 10] + [int(loud[-1]) + 1]
        assert [p.start for p in sequence.placed] == onsets and [p.end for p in sequence.placed] == ends
        for item, before in zip(sequence.placed, [0.0] + [p.pause_after for p in sequence.placed]):
            assert item.pause_before == before or before == 0.0
            assert 0.3 <= item.pause_before <= 2.5 and 0.3 <= item.pause_after <= 2.5
            np.testing.assert_array_equal(sequence.audio[item.start:item.end], item.clip.speech)
        words = [(p.start / RATE, p.end / RATE, " word") for p in sequence.placed]
        rows = timing.edge_errors(sequence, words)
        assert len(rows) == 2 * len(sequence.placed)
        assert all(abs(r["error_ms"]) < 0.1 for r in rows), rows  # only rounding to the ms


def test_edges_go_to_the_utterance_whose_stretch_holds_the_word():
    clip = timing.Clip("a", "vctk", "en", "p", None, np.zeros(RATE, np.float32), 0, RATE)
    sequence = timing.Joined("s", "tuning", "edges", "vctk", "en", "silence", np.zeros(5 * RATE, np.float32), [
        timing.Placed(clip, 1 * RATE, 2 * RATE, 1.0, 1.0), timing.Placed(clip, 3 * RATE, 4 * RATE, 1.0, 1.0)])
    words = [(0.9, 1.2, "a"), (1.5, 2.4, "b"), (2.6, 3.1, "c"), (3.5, 4.1, "d")]  # b's middle 1.95 < 2.5; c's 2.85 > 2.5
    rows = timing.edge_errors(sequence, words)
    assert [(r["edge"], r["word"], r["error_ms"]) for r in rows] == [
        ("start", "a", -100.0), ("end", "b", 400.0), ("start", "c", -400.0), ("end", "d", 100.0)]
    assert [r["error_ms"] for r in timing.edge_errors(sequence, [])] == [None] * 4


def test_digits_are_matched_by_what_they_say_and_when():
    assert timing.digits_of(" Seven,") == [7] and timing.digits_of("4,096.") == [4, 0, 9, 6] and timing.digits_of("to") == [2]
    assert timing.digits_of("hello") == []
    reference = [(7, 1.0), (6, 1.6), (5, 2.2)]
    # a hallucinated repeat of the string 4 s later says the same digits: time keeps it out
    tokens = [(6, 1.62), (5, 2.1), (7, 6.0), (6, 6.0), (5, 6.0)]
    assert timing.align(reference, tokens) == {1: 0, 2: 1}


def test_a_word_that_says_several_digits_is_timed_at_its_outer_edges_only():
    clips = [timing.Clip(f"{d}", "digits", "en", "x", timing.DIGIT_WORDS[d], np.zeros(RATE, np.float32), 0, RATE // 2) for d in (4, 0, 9)]
    placed = [timing.Placed(c, int((0.5 + i * 0.75) * RATE), int((1.0 + i * 0.75) * RATE), 0.25, 0.25) for i, c in enumerate(clips)]
    sequence = timing.Joined("d", "tuning", "words", "digits", "en", "silence", np.zeros(3 * RATE, np.float32), placed)
    rows = timing.word_errors(sequence, [(0.45, 2.6, " 409")])
    assert [(r["edge"], r["status"], r["error_ms"]) for r in rows] == [
        ("start", "timed", -50.0), ("end", "inside a word", None), ("start", "inside a word", None),
        ("end", "inside a word", None), ("start", "inside a word", None), ("end", "timed", 100.0)]
    rows = timing.word_errors(sequence, [(0.5, 1.0, " four"), (1.2, 1.8, " oh")])
    assert [r["status"] for r in rows] == ["timed"] * 4 + ["missed"] * 2


def test_stats_are_over_the_timed_edges():
    figures = timing.stats([-40.0, 60.0, -150.0, 250.0, None], [0.0, 10.0, 20.0, 30.0, None])
    assert figures["n"] == 4 and figures["missed"] == 1
    assert figures["median_ms"] == 105.0 and figures["signed_median_ms"] == 10.0 and figures["median_loud_ms"] == 15.0
    assert (figures["within_50"], figures["within_100"], figures["within_200"]) == (0.25, 0.5, 0.75)


def test_the_command_runs_end_to_end_on_a_tiny_subset(tiny_en_dir, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmarks", "timing", "--model", tiny_en_dir, "--device", "cpu", "--corpora", "harvard,digits",
               "--sets", "held-out", "--limit", "1", "--cpu-threads", "2", "--out", str(out), "--quiet"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((out / "results.json").read_text())
    assert {"created", "command", "settings", "machine", "versions", "wall_seconds", "audio_seconds", "trim_rule", "clips",
            "left_out", "sequences", "summary", "targets", "results", "runs"} <= set(data)
    systems = timing.default_systems()  # every system; pocketsphinx's where it imports
    assert data["settings"]["systems"] == systems and data["settings"]["sets"] == ["held-out"]
    assert data["machine"]["cpu_logical_cores"] >= 1 and data["versions"]["faster-whisper"]
    parts = {s["part"] for s in data["sequences"]}
    assert parts == {"edges", "words"} and {s["corpus"] for s in data["sequences"]} == {"harvard", "digits"}
    for sequence in data["sequences"]:
        assert all(0 < i["start_s"] < i["end_s"] <= sequence["seconds"] for i in sequence["items"])
    items = sum(len(s["items"]) for s in data["sequences"])
    assert len(data["results"]) == 2 * items * len(systems)  # every edge of every clip, by every system (all English here)
    assert len(data["runs"]) == len(data["sequences"]) * len(systems)
    for row in data["results"]:
        assert {"system", "set", "part", "sequence", "clip", "language", "edge", "reference_s", "hypothesis_s", "error_ms", "word"} <= set(row)
        if row["error_ms"] is not None:
            assert row["error_ms"] == pytest.approx(1000 * (row["hypothesis_s"] - row["reference_s"]), abs=0.6)
    scored = [r["error_ms"] for r in data["results"] if r["error_ms"] is not None]
    assert len(scored) > len(data["results"]) / 2  # tiny.en times most edges
    summary = {(s["part"], s["system"], s["edge"], s["group"]): s for s in data["summary"]}
    for system in systems:
        for key in (("edges", system, "start", "all"), ("edges", system, "end", "all"), ("words", system, "boundary", "all")):
            assert {"n", "missed", "median_ms", "p90_ms", "within_50", "within_100", "within_200", "signed_median_ms",
                    "median_loud_ms"} <= set(summary[key])
    assert {t["target"] for t in data["targets"]} == {text for *_, text in timing.TARGETS}
    markdown = (out / "results.md").read_text()
    assert "## Targets" in markdown and "worker batched, VAD" in markdown and "faster-whisper sequential, no VAD" in markdown
    assert "targets (held-out, informative)" in done.stdout
    if "pocketsphinx-align" in systems:  # the aligner given the true text, and every system against its alignment
        assert "pocketsphinx align, known text" in markdown and "## Against pocketsphinx's alignment" in markdown
        assert "against pocketsphinx's alignment" in done.stdout
        assert {a["status"] for a in data["reference"]["alignments"].values()} == {"aligned"}
        compared = {r["system"] for r in data["reference"]["summary"]}
        assert compared == set(systems) - {"pocketsphinx-align"}
