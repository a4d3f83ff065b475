"""Output shapes: SRT and WebVTT must survive real parsers; hours are always written."""

import io

import srt
import webvtt

from worker.formats.legacy import LEGACY_FORMATTERS, legacy_output
from worker.formats.openai import openai_output
from worker.formats.subtitles import timestamp, to_srt, to_text, to_vtt
from worker.request.legacy import LEGACY_FORMATS
from worker.transcript import Segment, Transcript, Word


def segment(i, start, end, text, words=None):
    return Segment(id=i, seek=0, start=start, end=end, text=text, tokens=[1, 2], temperature=0.0,
                   avg_logprob=-0.2, compression_ratio=1.1, no_speech_prob=0.01, words=words)


SEGMENTS = [
    segment(0, 0.0, 2.5, " Hello <world> & friends --> there", [Word(0.0, 1.0, " Hello", 0.9)]),
    segment(1, 2.5, 2.5, "   "),  # empty cue: dropped
    segment(2, 3725.5, 3730.125, " An hour later."),
    segment(3, 3731.0, 3730.0, " End before start."),  # clamped, never negative duration
]
TRANSCRIPT = Transcript(language="en", language_probability=0.98, duration=3731.0, duration_after_vad=10.0, segments=SEGMENTS)


def test_timestamp_always_has_hours():
    assert timestamp(0, ".") == "00:00:00.000"
    assert timestamp(3725.5, ",") == "01:02:05,500"
    assert timestamp(59.9996, ".") == "00:01:00.000"


def test_vtt_parses_with_a_real_parser():
    text = to_vtt(SEGMENTS)
    assert text.startswith("WEBVTT\n\n")
    captions = webvtt.from_buffer(io.StringIO(text)).captions
    assert [c.start for c in captions] == ["00:00:00.000", "01:02:05.500", "01:02:11.000"]
    assert captions[0].raw_text == "Hello &lt;world&gt; &amp; friends --&gt; there"
    assert all(c.end_in_seconds >= c.start_in_seconds for c in captions)


def test_srt_parses_with_a_real_parser():
    subtitles = list(srt.parse(to_srt(SEGMENTS)))
    assert [s.index for s in subtitles] == [1, 2, 3]
    assert subtitles[1].start.total_seconds() == 3725.5
    assert "-->" not in subtitles[0].content


def test_text_joins_non_empty_segments():
    assert to_text(SEGMENTS) == "Hello <world> & friends --> there An hour later. End before start."


def test_verbose_json_shape():
    out = openai_output(TRANSCRIPT, "verbose_json", "transcribe", with_words=True)
    assert set(out) >= {"text", "language", "language_probability", "duration", "segments", "words"}
    assert set(out["segments"][0]) == {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                                       "compression_ratio", "no_speech_prob", "words"}
    assert out["words"] == [{"start": 0.0, "end": 1.0, "word": " Hello", "probability": 0.9}]
    assert "words" not in openai_output(TRANSCRIPT, "verbose_json", "transcribe", with_words=False)["segments"][0]


def test_json_is_text_only_and_srt_vtt_add_the_string():
    assert openai_output(TRANSCRIPT, "json", "transcribe", False) == {"text": TRANSCRIPT.text}
    assert openai_output(TRANSCRIPT, "vtt", "transcribe", False)["vtt"].startswith("WEBVTT")
    assert openai_output(TRANSCRIPT, "srt", "transcribe", False)["srt"].startswith("1\n")


def test_every_legacy_format_the_request_accepts_has_one_formatter():
    assert tuple(LEGACY_FORMATTERS) == LEGACY_FORMATS


def test_legacy_output_keys():
    out = legacy_output(TRANSCRIPT, "formatted_text", None, "plain_text", True, "cpu", "base")
    assert set(out) == {"segments", "detected_language", "transcription", "translation", "device", "model", "word_timestamps"}
    assert out["transcription"].count("\n") == 2
    assert out["translation"] is None
    assert out["word_timestamps"] == [{"word": " Hello", "start": 0.0, "end": 1.0}]


def timed_words(text, start=10.0, step=0.4):
    return [Word(start + i * step, start + i * step + 0.3, " " + w, 0.9) for i, w in enumerate(text.split())]


LONG = "the crew of the shuttle Columbia did not return safely to Earth yet we can pray that all are safely home"


def test_subtitle_layout_splits_cues_on_word_boundaries_within_the_limits():
    words = timed_words(LONG)
    segments = [segment(0, 10.0, 18.0, " " + LONG, words)]
    for layout in ({"max_line_width": 20, "max_line_count": 2}, {"max_line_width": 30}, {"max_words_per_line": 3, "max_line_count": 1}):
        cues = list(srt.parse(to_srt(segments, layout)))
        lines = [line for cue in cues for line in cue.content.split("\n")]
        assert " ".join(lines).split() == LONG.split()  # every word once, in order
        if "max_line_width" in layout:
            assert max(len(line) for line in lines) <= layout["max_line_width"]
        if "max_words_per_line" in layout:
            assert max(len(line.split()) for line in lines) <= layout["max_words_per_line"]
        if "max_line_count" in layout:
            assert max(len(cue.content.split("\n")) for cue in cues) <= layout["max_line_count"]
            assert len(cues) > 1
        first = 0
        for cue in cues:  # a cue starts when its first word does and ends with its last
            count = len(cue.content.split())
            assert abs(cue.start.total_seconds() - words[first].start) < 0.002
            assert abs(cue.end.total_seconds() - words[first + count - 1].end) < 0.002
            first += count
    vtt = webvtt.from_buffer(io.StringIO(to_vtt(segments, {"max_line_width": 20, "max_line_count": 2})))
    assert all(len(line) <= 20 for caption in vtt for line in caption.text.split("\n"))


def test_a_word_longer_than_the_line_gets_a_line_of_its_own():
    words = timed_words("a supercalifragilisticexpialidocious word")
    cues = list(srt.parse(to_srt([segment(0, 10.0, 12.0, " x", words)], {"max_line_width": 10, "max_line_count": 1})))
    assert [cue.content for cue in cues] == ["a", "supercalifragilisticexpialidocious", "word"]


def test_cue_text_with_blank_lines_cannot_break_the_file():
    segments = [segment(0, 0.0, 1.0, " first\n\n2\n00:00:00,000 --> 00:00:09,000\nforged"), segment(1, 1.0, 2.0, " second")]
    cues = list(srt.parse(to_srt(segments)))
    assert len(cues) == 2 and cues[1].content == "second"
    assert len(list(webvtt.from_buffer(io.StringIO(to_vtt(segments))))) == 2


def test_verbose_json_values_are_the_transcripts_rounded_for_clients():
    transcript = Transcript(language="de", language_probability=0.987654, duration=12.345678, duration_after_vad=9.876543, segments=SEGMENTS[:1])
    out = openai_output(transcript, "verbose_json", "translate", with_words=False)
    assert (out["task"], out["language"], out["text"]) == ("translate", "de", "Hello <world> & friends --> there")
    assert (out["language_probability"], out["duration"], out["duration_after_vad"]) == (0.9877, 12.346, 9.877)


def test_text_format_is_the_plain_text_and_subtitle_formats_follow_the_layout():
    out = openai_output(TRANSCRIPT, "text", "transcribe", False)
    assert out["text"] == TRANSCRIPT.text and not {"srt", "vtt"} & set(out)
    words = timed_words(LONG)
    transcript = Transcript(language="en", language_probability=1.0, duration=20.0, duration_after_vad=20.0,
                            segments=[segment(0, 10.0, 18.0, " " + LONG, words)])
    layout = {"max_line_width": 20, "max_line_count": 1, "max_words_per_line": None}
    for fmt in ("srt", "vtt"):
        laid_out = openai_output(transcript, fmt, "transcribe", True, layout)[fmt]
        assert laid_out == (to_srt if fmt == "srt" else to_vtt)(transcript.segments, layout)
        assert laid_out != (to_srt if fmt == "srt" else to_vtt)(transcript.segments)  # one cue per segment without it


def test_legacy_output_renders_the_translation_and_the_layout():
    words = timed_words(LONG)
    transcript = Transcript(language="en", language_probability=1.0, duration=20.0, duration_after_vad=20.0,
                            segments=[segment(0, 10.0, 18.0, " " + LONG, words)])
    translation = Transcript(language="en", language_probability=1.0, duration=20.0, duration_after_vad=20.0,
                             segments=[segment(0, 10.0, 18.0, " Translated text.", timed_words("Translated text."))])
    layout = {"max_line_width": 20, "max_line_count": 2, "max_words_per_line": None}
    out = legacy_output(transcript, "srt", translation, "vtt", True, "cpu", "base", layout)
    assert out["transcription"] == to_srt(transcript.segments, layout) and len(list(srt.parse(out["transcription"]))) > 1
    assert out["translation"] == to_vtt(translation.segments, layout)
    assert [c.text for c in webvtt.from_buffer(io.StringIO(out["translation"]))] == ["Translated text."]
    assert all("words" not in s for s in out["segments"])  # that worker's segments never carry words


def test_layout_lines_are_filled_greedily_up_to_exactly_the_width():
    words = timed_words("aaaa bbbb cccc dddd eeee")  # "aaaa bbbb" is 9 characters
    cues = list(srt.parse(to_srt([segment(0, 10.0, 12.0, " x", words)], {"max_line_width": 9, "max_line_count": 2})))
    assert [cue.content for cue in cues] == ["aaaa bbbb\ncccc dddd", "eeee"]


def test_layout_keeps_every_segment_and_a_cue_starting_at_zero():
    first = [Word(0.0, 0.4, " one", 0.9), Word(0.5, 0.6, " ", 0.9), Word(0.7, 1.0, " two", 0.9)]  # a blank word inside
    second = timed_words("three four", start=2.0)
    segments = [segment(0, 0.0, 1.0, " one two", first), segment(1, 2.0, 3.0, " three four", second)]
    cues = list(srt.parse(to_srt(segments, {"max_words_per_line": 5})))
    assert [cue.content for cue in cues] == ["one two", "three four"]
    assert cues[0].start.total_seconds() == 0.0


def test_srt_arrows_in_text_become_a_plain_arrow():
    assert list(srt.parse(to_srt(SEGMENTS[:1])))[0].content == "Hello <world> & friends -> there"


def test_text_format_is_the_plain_text_as_a_json_object():
    from worker.formats.openai import openai_output
    from worker.transcript import Segment, Transcript

    segment = Segment(id=0, seek=0, start=0.0, end=1.0, text=" Hello there.", tokens=[1], temperature=0.0,
                      avg_logprob=-0.1, compression_ratio=1.0, no_speech_prob=0.0)
    assert openai_output(Transcript("en", 1.0, 1.0, 1.0, [segment]), "text", "transcribe", False) == {"text": "Hello there."}


def test_job_metrics_reads_every_stage_and_the_total_from_the_one_timings():
    from types import SimpleNamespace

    from worker.formats.openai import job_metrics
    from worker.transcript import Timings

    timings = Timings(download=0.12345, decode=0.5, vad=0.25, queue=0.0625, inference=2.0, diarize=1.5, total=3.7310)
    model = SimpleNamespace(name="tiny.en", compute_type="int8", device="cpu")
    request = SimpleNamespace(diarize=False, is_batched=True, batch_size=8)
    metrics = job_metrics(request, TRANSCRIPT, timings, model, "abc")
    assert metrics == {
        "download_seconds": 0.1235, "decode_seconds": 0.5, "vad_seconds": 0.25, "queue_seconds": 0.0625,
        "inference_seconds": 2.0, "total_seconds": 3.731, "audio_seconds": 3731.0, "real_time_factor": 0.001,
        "mode": "batched", "batch_size": 8, "model": "tiny.en", "compute_type": "int8", "device": "cpu", "image_revision": "abc",
    }
    diarized = job_metrics(SimpleNamespace(diarize=True, is_batched=False, batch_size=1), TRANSCRIPT, timings, model, None)
    assert list(diarized) == [*list(metrics)[:8], "diarize_seconds", *list(metrics)[8:]]
    assert (diarized["diarize_seconds"], diarized["mode"], diarized["image_revision"]) == (1.5, "sequential", None)
    silent = Transcript(language="en", language_probability=1.0, duration=0.0, duration_after_vad=0.0)
    assert job_metrics(request, silent, timings, model, "abc")["real_time_factor"] is None
