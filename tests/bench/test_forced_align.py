"""pocketsphinx forced alignment (`benchmarks/forced_align.py`) and the timing benchmark's use of
it: on real speech the aligned words come in order, inside the audio, near the trim rule's edges;
words outside the dictionary are named, not guessed; a text that cannot fit the audio fails
loudly; transcribed words are matched to the aligned ones by content, order and time; the
`pocketsphinx-align` system and the report section on the independent reference are built."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from benchmarks import forced_align, timing

RATE = timing.SAMPLE_RATE
needs_pocketsphinx = pytest.mark.skipif(not forced_align.available(), reason="pocketsphinx is not installed (the bench extra)")

# Measured on these clips (pocketsphinx 5.1.1): the aligned edges lie 6-43 ms from the trim
# rule's edges (Harvard spk2_snt3 -39 / +25 ms and LJ001-0010 -15 / +43 ms, each between 1 s of
# -80 dBFS noise; FSDD 0_george_1 + 1_george_0 -6 / -25 / +13 / +35 ms). Over all the corpora's
# clips most lie within 80 ms and a few 100-350 ms away (the two estimates disagree), so the
# tolerance holds for these clips only.
TOLERANCE_S = 0.060
PADDING = 16000  # 1 s of -80 dBFS white noise either side: an edge clamped to the audio's end cannot pass


def _padded(audio):
    noise = np.random.default_rng(0).standard_normal(2 * PADDING).astype(np.float32) * 10 ** (-80 / 20)
    return np.concatenate([noise[:PADDING], audio, noise[PADDING:]])


@pytest.fixture(scope="module")
def harvard():
    return {c.name: c for c in timing.load_clips("harvard")[0]}


def _near(aligned, clip, offset=0):
    return (abs(aligned[0].start - (offset + clip.start) / RATE) <= TOLERANCE_S,
            abs(aligned[-1].end - (offset + clip.end) / RATE) <= TOLERANCE_S)


def _in_order_inside(aligned, seconds):
    assert all(0.0 <= w.start < w.end <= seconds for w in aligned)
    assert all(a.end <= b.start for a, b in zip(aligned, aligned[1:]))


def test_text_is_normalised_to_the_dictionarys_words():
    assert forced_align.normalise('Printing, then, "forty-two line Bible" don\'t') == [
        "printing", "then", "forty", "two", "line", "bible", "don't"]
    assert forced_align.normalise("by 25 to 30 year, 4,096 and 3.5") == [
        "by", "twenty", "five", "to", "thirty", "year", "four", "thousand", "ninety", "six", "and", "three", "point", "five"]
    assert forced_align.normalise("the 1st café") == ["the", "1st", "café"]  # kept as they are, to be reported
    assert forced_align.spell_number(0) == ["zero"] and forced_align.spell_number(1455) == ["one", "thousand", "four", "hundred", "fifty", "five"]
    assert forced_align.spell_number(2_000_019) == ["two", "million", "nineteen"]


def test_a_missing_pocketsphinx_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import pocketsphinx now raises ImportError
    assert not forced_align.available()
    with pytest.raises(forced_align.AlignerMissing, match="pip install 'pocketsphinx"):
        forced_align.align(np.zeros(RATE, np.float32), "hello")
    assert "pocketsphinx-align" not in timing.default_systems()


@needs_pocketsphinx
def test_real_read_speech_is_aligned_in_order_near_the_trimmed_edges(harvard):
    clip = harvard["spk2_snt3.wav"]  # "Tear a thin sheet from the yellow pad."
    aligned = forced_align.align(_padded(clip.audio), clip.text)
    assert [w.text for w in aligned] == ["tear", "a", "thin", "sheet", "from", "the", "yellow", "pad"]
    _in_order_inside(aligned, clip.audio.size / RATE + 2)
    assert _near(aligned, clip, PADDING) == (True, True), (aligned[0].start, aligned[-1].end, (PADDING + clip.start) / RATE, (PADDING + clip.end) / RATE)
    lj = {c.name: c for c in timing.load_clips("ljspeech")[0]}["LJ001-0010.wav"]  # "Now, as all books not primarily intended as picture-books ..."
    aligned = forced_align.align(_padded(lj.audio), lj.text)
    assert [w.text for w in aligned][:6] == ["now", "as", "all", "books", "not", "primarily"] and len(aligned) == 18
    assert _near(aligned, lj, PADDING) == (True, True), (aligned[0].start, aligned[-1].end, (PADDING + lj.start) / RATE, (PADDING + lj.end) / RATE)


@needs_pocketsphinx
def test_two_spoken_digits_are_aligned_near_their_trimmed_edges():
    clips = {c.name: c for c in timing.load_clips("digits")[0]}
    first, second = clips["0_george_1.flac"], clips["1_george_0.flac"]
    audio = np.concatenate([first.audio, second.audio])  # each with its own lead and tail
    aligned = forced_align.align(audio, [first.text, second.text])
    assert [w.text for w in aligned] == ["zero", "one"]
    _in_order_inside(aligned, audio.size / RATE)
    assert _near(aligned[:1], first) == (True, True)
    assert _near(aligned[1:], second, offset=first.audio.size) == (True, True)


@needs_pocketsphinx
def test_words_out_of_the_dictionary_are_named_not_guessed(harvard):
    clip = harvard["spk2_snt3.wav"]
    with pytest.raises(forced_align.OutOfDictionary) as raised:
        forced_align.align(clip.audio, "Tear a thin sheet from the zyxwv pad, Sintra")
    assert raised.value.words == ["zyxwv", "sintra"]
    assert forced_align.out_of_dictionary(["tear", "sintra", "splendours"], {"sintra": "S IH N T R AH"}) == ["splendours"]
    # the benchmark's own pronunciations cover every word of the transcripts the dictionary lacks
    words = [w for corpus in ("harvard", "ljspeech", "fleurs") for clip in timing.load_clips(corpus)[0] if clip.language == "en"
             for w in forced_align.normalise(clip.text)]
    missing = forced_align.out_of_dictionary(words)
    assert missing and set(missing) <= set(timing.PRONUNCIATIONS)
    assert forced_align.out_of_dictionary(words, timing.PRONUNCIATIONS) == []


@needs_pocketsphinx
def test_a_text_that_cannot_fit_the_audio_fails_loudly(harvard):
    clip = harvard["spk2_snt3.wav"]  # 2.6 s: too short for sixty words of at least three 10 ms frames a phone
    with pytest.raises(forced_align.AlignmentFailed):
        forced_align.align(clip.audio, " ".join(["the yellow pad was torn from the sheet"] * 8))
    with pytest.raises(ValueError, match="16000"):
        forced_align.align(clip.audio, clip.text, sample_rate=8000)


def test_words_are_matched_by_content_order_and_time_with_an_insertion_and_a_deletion():
    reference = [(0.5, 0.7, "the"), (0.7, 1.0, "child"), (1.0, 1.4, "almost"), (1.4, 1.7, "hurt"), (1.7, 1.8, "the"),
                 (1.8, 2.1, "small"), (2.1, 2.5, "dog")]
    # "almost" is left out; "very" is inserted; a repeat of "dog" 3 s later is too far to say the reference's
    hypothesis = [(0.45, 0.72, " The"), (0.72, 1.05, " child"), (1.05, 1.7, " hurt"), (1.7, 1.79, " the"), (1.79, 1.9, " very"),
                  (1.9, 2.1, " small"), (2.1, 2.4, " dog."), (5.5, 5.8, " dog")]
    assert timing.match_words(reference, hypothesis) == {0: (0, 0), 1: (1, 1), 2: (3, 3), 3: (4, 4), 5: (5, 5), 6: (6, 6)}
    # a word that says several reference words is matched at its outer tokens
    digits = [(0.5, 0.9, "four"), (1.0, 1.4, "zero"), (1.5, 1.9, "nine")]
    assert timing.match_words(digits, [(0.48, 1.95, " 409")], digits=True) == {0: (0, 2)}
    assert timing.match_words(digits, [(0.95, 1.45, " Oh,")], digits=True) == {0: (1, 1)}
    assert timing.match_words(digits, [(0.95, 1.45, " Oh,")]) == {}  # outside a digit string "oh" is not zero


def _sequence(part="edges"):
    clip = timing.Clip("c", "harvard", "en", "spk", "x", np.zeros(RATE, np.float32), 0, RATE)
    return timing.Joined("s", "held-out", part, "harvard", "en", "silence", np.zeros(4 * RATE, np.float32), [timing.Placed(clip, 0, RATE, 0.5, 0.5)])


def test_edges_are_split_into_pauses_and_continuous_speech():
    reference = [(0.5, 0.8, "tear"), (0.8, 0.9, "a"), (0.95, 1.2, "thin"), (1.5, 1.9, "sheet")]  # gaps 0, 0.05, 0.3 s
    words = [(0.52, 0.83, "Tear"), (0.83, 0.88, "a"), (0.96, 1.3, "thin"), (1.45, 1.95, "sheet.")]
    rows = timing.versus_reference(_sequence(), words, reference, "worker-batched-vad")
    got = [(r["reference_word"], r["edge"], r["where"], r["difference_ms"]) for r in rows]
    assert got == [("tear", "start", "pause", 20.0), ("tear", "end", "inside speech", 30.0),
                   ("a", "start", "inside speech", 30.0), ("a", "end", "inside speech", -20.0),
                   ("thin", "start", "inside speech", 10.0), ("thin", "end", "pause", 100.0),
                   ("sheet", "start", "pause", -50.0), ("sheet", "end", "pause", 50.0)]
    rows = timing.versus_reference(_sequence(), words[:1], reference, "worker-batched-vad")  # the rest unmatched
    summary = timing.reference_summary(rows)
    pause_end = next(s for s in summary if (s["where"], s["edge"], s["group"]) == ("pause", "end", "all"))
    assert pause_end["n"] == 0 and pause_end["missed"] == 2
    inside_end = next(s for s in summary if (s["where"], s["edge"], s["group"]) == ("inside speech", "end", "utterances"))
    assert inside_end["n"] == 1 and inside_end["median_ms"] == 30.0 and inside_end["missed"] == 1


@needs_pocketsphinx
def test_the_aligner_is_a_system_and_the_others_are_reported_against_it(monkeypatch):
    items, _, _ = timing.build(["harvard", "digits", "fleurs"], ["held-out"], ["en", "de"], limit=1)
    items = [x for x in items if x.corpus in ("harvard", "digits") or x.language == "de"]
    assert {x.corpus for x in items} == {"harvard", "digits", "fleurs"}

    def shifted(system, runner, samples, wav_base64, language, batch_size):  # a stand-in system: pocketsphinx 40 ms late
        sequence = next(x for x in items if x.language == language and x.audio.size == samples.size)
        aligned = timing.force_align(sequence, samples)
        return [(a + 0.04, b + 0.04, " " + t) for a, b, t in aligned.words]

    monkeypatch.setattr(timing, "transcribe", shifted)
    reference = {"aligner": "pocketsphinx", "pronunciations": timing.PRONUNCIATIONS}
    rows, runs = timing.evaluate(None, items, ["worker-batched-vad", "pocketsphinx-align"], 8, log=lambda *_: None, reference=reference)
    statuses = {name: a["status"] for name, a in reference["alignments"].items()}
    assert [statuses[x.name] for x in items] == ["not timed" if x.language == "de" else "aligned" for x in items]
    german = next(r for r in runs if r["system"] == "pocketsphinx-align" and "fleurs" in r["sequence"])
    assert german["not_timed"].startswith("language de") and not any(r["sequence"] == german["sequence"] and r["system"] == "pocketsphinx-align" for r in rows)
    english = [r for r in rows if r["system"] == "pocketsphinx-align"]
    assert english and sum(r["error_ms"] is not None for r in english) == len(english)  # every English edge timed
    # every aligned word of the English sequences is matched, 40 ms apart at both edges
    differences = [r["difference_ms"] for r in reference["rows"]]
    assert len(differences) == 2 * sum(len(a["words"]) for a in reference["alignments"].values())
    assert set(differences) == {40.0} and {r["where"] for r in reference["rows"]} == {"pause", "inside speech"}
    reference["summary"] = timing.reference_summary(reference["rows"])
    data = {"settings": {"systems": ["worker-batched-vad", "pocketsphinx-align"], "sets": ["held-out"]}, "reference": reference}
    text = "\n".join(timing.reference_lines(data))
    assert "## Against pocketsphinx's alignment" in text and "### Against pocketsphinx: held-out, all" in text
    assert "| worker batched, VAD | at pauses | 40 / 40 | 100 / 100 / 100 | +40 |" in text
    assert "pocketsphinx align, known text" not in text  # the aligner is not scored against itself
    assert "not aligned: language de" in text
    assert "against pocketsphinx's alignment" in "\n".join(timing.reference_console(data))
