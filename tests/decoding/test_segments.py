"""The batched job's segments from what the device decoded: the device's text at file times in time
order, times clamped into their window and never backwards, text after the last timestamp to the
window's end, whole milliseconds, windows without timestamps, word timing. See scripted_job.py."""

from __future__ import annotations

import numpy as np
import pytest

from scripted_fixtures import *  # noqa: F403 - the job's fixtures (hf_tokenizer, jfk, ...)
from scripted_job import (
    SR, Blocking, Request, chain, collect, decoding, expected, first_temperature_windows, job_of, rows, say, short, speech, stamps)
from worker.decoding.segments import compression_ratio
from worker.decoding.whisper.device import WindowOutput
from worker.decoding.whisper.features import HOP
from worker.decoding.whisper.vad import speech_spans
from worker.decoding.windows import MAX_WINDOW_S

pytestmark = pytest.mark.timeout(20)  # a job that hangs fails its test in seconds, not at the suite's limit


def test_segments_are_the_devices_text_at_file_times_in_time_order(hf_tokenizer, silero):
    device = Blocking(speech)
    job = job_of(hf_tokenizer, silero, decoding(), device)
    segments = collect(job)
    windows = [(w.start, w.end) for w in job.windows]
    assert len(windows) >= 3
    assert first_temperature_windows(device) == windows  # each planned window sent once, in order
    assert all(r.temperature == 0.0 for r in device.requests)  # and nothing else
    assert all(0 < (end - start) / SR <= MAX_WINDOW_S for start, end in windows)
    assert all(b[0] >= a[1] for a, b in zip(windows, windows[1:]))
    for start, end in job.spans:  # every stretch of speech is in a window
        assert any(w_start <= start and end <= w_end for w_start, w_end in windows)
    assert rows(segments) == expected(windows)
    tokenizer = job.tokenizer
    for segment, (start, end) in zip(segments[::2], windows):
        half, _ = stamps(start, end)
        assert segment.tokens == say(tokenizer, 0.0, f" First at {start}.", half)
        assert segment.seek == round(start / HOP)
        assert segment.temperature == 0.0 and segment.avg_logprob == -0.3 and segment.no_speech_prob == 0.1
        assert segment.compression_ratio == compression_ratio(segment.text)
    assert all(s.words is None for s in segments)  # none asked for
    assert job.plan.language == "en" and job.plan.language_probability == 1.0
    spans = speech_spans(silero, {"min_silence_duration_ms": 160})
    assert job.spans == spans
    assert job.speech_seconds == pytest.approx(sum(b - a for a, b in spans) / SR)
    assert 0 < job.vad_seconds < 30


def test_times_are_clamped_into_the_window_and_never_go_backwards(hf_tokenizer, jfk):
    """Timestamps past the window's end, or before the previous segment's end, as a model may give."""

    def script(tokenizer, start, end, temperature):
        tokens = say(tokenizer, 1.0, " One.", 3.0, 2.0, " Two.", 2.5, 2.5, " . . .", 3.5, 3.5, " Three.", 29.0)
        return WindowOutput(tokens=tokens, avg_logprob=-0.3, no_speech_prob=0.1)

    device = Blocking(script)
    job = job_of(hf_tokenizer, jfk, short(5, decoding()), device)
    segments = collect(job)
    windows = [(w.start, w.end) for w in job.windows]
    assert len(windows) >= 3 and all((end - start) / SR <= 5 for start, end in windows)
    want = []
    for start, end in windows:
        offset, duration = start / SR, (end - start) / SR
        at = lambda seconds: round(offset + min(seconds, duration), 3)  # noqa: E731
        # " Two." starts where " One." ended; " . . ." (no words) is dropped; " Three." ends at the window's end
        want += [(at(1.0), at(3.0), " One."), (at(3.0), at(3.0), " Two."), (at(3.5), at(duration), " Three.")]
    assert rows(segments) == want
    assert all(b.start >= a.end for a, b in zip(segments, segments[1:]))


def test_text_after_the_last_timestamp_ends_at_the_window_end(hf_tokenizer, jfk):
    def script(tokenizer, start, end, temperature):
        tokens = say(tokenizer, 0.0, " Said.", 2.0, 2.0, " And then more")
        return WindowOutput(tokens=tokens, avg_logprob=-0.3, no_speech_prob=0.1)

    device = Blocking(script)
    segments = collect(job_of(hf_tokenizer, jfk, decoding(vad_filter=False), device))
    assert rows(segments) == [(0.0, 2.0, " Said."), (2.0, 11.0, " And then more")]
    assert device.requests == [Request(0.0, [(0, jfk.shape[0])], None)]  # text runs on to the end: no tail


def test_times_off_the_millisecond_grid_are_rounded_to_it(hf_tokenizer, jfk):
    """A file that does not end on a whole millisecond, and a tail whose first sample is not on one
    (16.06 s x 16000 truncates to sample 256959): segment times are still whole milliseconds."""
    samples = np.concatenate([jfk, jfk, np.zeros(1, np.float32)])  # 22 s and one sample: one window
    end, tail = samples.shape[0], int(16.06 * SR)
    assert tail % 16 != 0 and end % 16 != 0
    device = Blocking(chain({(0, end): (" Long.", 16.06), (tail, end): (" Rest.", None)}))
    segments = collect(job_of(hf_tokenizer, samples, decoding(vad_filter=False), device))
    assert rows(segments) == [(0.0, 16.06, " Long."), (16.06, 22.0, " Rest.")]


def test_a_window_decoded_without_timestamps_is_one_segment(hf_tokenizer, jfk):
    options = short(5, decoding(without_timestamps=True))
    device = Blocking(lambda tok, start, end, t: WindowOutput(tokens=tok.encode(f" All of {start}"), avg_logprob=-0.2,
                                                                     no_speech_prob=0.1))
    job = job_of(hf_tokenizer, jfk, options, device)
    segments = collect(job)
    windows = [(w.start, w.end) for w in job.windows]
    assert rows(segments) == [(round(start / SR, 3), round(end / SR, 3), f" All of {start}") for start, end in windows]
    assert len(windows) > 1 and first_temperature_windows(device) == windows  # each once: no tail, no fallback


def test_words_are_placed_in_their_segments_at_file_times(hf_tokenizer, jfk):
    def script(tokenizer, start, end, temperature):
        half, last = stamps(start, end)
        first, second = tokenizer.encode(" Ask not"), tokenizer.encode(" what your country")
        # (start, end) of each token's word, seconds into the window: the second segment's first word
        # starts long before its segment (faster-whisper then keeps it starting 30 ms before it)
        times = [(half - 0.3, half - 0.22), (half - 0.2, half - 0.12), (half - 0.8, half + 0.05)] + \
            [(half + 0.1 * k, half + 0.1 * k + 0.08) for k in range(1, len(second))]
        assert len(first) == 2
        alignment = [{"word": tokenizer.decode([token]), "tokens": [token], "start": a, "end": b, "probability": 0.9}
                     for token, (a, b) in zip(first + second, times)]
        tokens = say(tokenizer, 0.0, " Ask not", half, half, " what your country", last)
        return WindowOutput(tokens=tokens, avg_logprob=-0.3, no_speech_prob=0.1, alignment=alignment)

    job = job_of(hf_tokenizer, jfk, short(5, decoding(word_timestamps=True)), Blocking(script))
    segments = collect(job)
    windows = [(w.start, w.end) for w in job.windows]
    assert len(segments) == 2 * len(windows) >= 4
    for segment in segments:
        assert "".join(w.word for w in segment.words) == segment.text
        assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)
        assert all(w.probability == 0.9 for w in segment.words)
    for (start, end), first, second in zip(windows, segments[::2], segments[1::2]):
        half, _ = stamps(start, end)
        assert first.words[0].start == pytest.approx(start / SR + half - 0.3, abs=0.011)  # at the window's place in the file
        assert second.start == pytest.approx(start / SR + half, abs=0.001)
        assert second.words[0].start == second.start  # kept inside its segment
        assert second.words[-1].end == pytest.approx(start / SR + half + 0.1 * (len(second.words) - 1) + 0.08, abs=0.011)


def test_the_first_word_of_a_file_follows_no_earlier_speech(hf_tokenizer, jfk):
    """Word timing starts as sequential decoding's does, with no speech before the file: a first word
    far longer than the others is cut to twice the median word length, ending where it ended."""

    def script(tokenizer, start, end, temperature):
        text = tokenizer.encode(" Ask not what your country")
        times = [(0.2, 1.1)] + [(1.2 + 0.1 * k, 1.28 + 0.1 * k) for k in range(len(text) - 1)]
        alignment = [{"word": tokenizer.decode([token]), "tokens": [token], "start": a, "end": b, "probability": 0.9}
                     for token, (a, b) in zip(text, times)]
        return WindowOutput(tokens=say(tokenizer, 0.0, " Ask not what your country"), avg_logprob=-0.3,
                                  no_speech_prob=0.1, alignment=alignment)

    (segment,) = collect(job_of(hf_tokenizer, jfk, decoding(word_timestamps=True, vad_filter=False), Blocking(script)))
    first = segment.words[0]
    assert first.word == " Ask" and first.end == pytest.approx(1.1)
    assert first.start == pytest.approx(1.1 - 2 * 0.08) and segment.start == first.start
