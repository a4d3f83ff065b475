"""The batched job's temperature fallback, as sequential decoding's: which windows are decoded again
at the next temperatures, in which requests, which output is kept; and the windows given nothing
(silence, loops over non-speech), at their thresholds' exact values. See scripted_job.py."""

from __future__ import annotations

import pytest

from scripted_fixtures import *  # noqa: F403 - the job's fixtures (hf_tokenizer, jfk, ...)
from scripted_job import (
    AT_RATIO, LOOP, SR, Blocking, Request, changed, collect, expected, fails, first_temperature_windows, job_of, output, planned,
    rows, say, short_windows, temperatures_of)
from worker.decoding.segments import compression_ratio
from worker.decoding.whisper.device import WindowOutput
from worker.decoding.windows import MIN_TAIL_S

pytestmark = pytest.mark.timeout(20)  # a job that hangs fails its test in seconds, not at the suite's limit


def test_a_failing_window_is_sent_again_alone_at_the_next_temperatures(hf_tokenizer, jfk):
    windows = planned(hf_tokenizer, jfk, short_windows())
    assert len(windows) >= 5
    one, three = windows[1][0], windows[3][0]
    bad = {
        one: lambda tok, t: output(tok, LOOP) if t < 0.4 else output(tok, f" Fine at {t}."),  # loops
        three: lambda tok, t: output(tok, " Unsure.", avg_logprob=-1.2, no_speech_prob=0.5) if t < 0.2 else None,  # low log-prob
    }
    device = Blocking(fails(bad))
    job = job_of(hf_tokenizer, jfk, short_windows(), device)
    segments = collect(job)
    assert sorted(job.whisper.extracted) == windows  # features computed once a window, also for those sent again
    assert first_temperature_windows(device) == windows
    # the fallbacks of two windows sent together share one request per temperature; only the failing windows go
    assert [r for r in device.requests if r.temperature > 0] == [Request(0.2, [windows[1], windows[3]], None),
                                                                   Request(0.4, [windows[1]], None)]
    texts = [s.text for s in segments]
    assert " Fine at 0.4." in texts and " Unsure." not in texts and "know what" not in " ".join(texts)
    fine = next(s for s in segments if s.text == " Fine at 0.4.")
    assert fine.temperature == 0.4 and fine.start == round(one / SR, 3)
    redone = next(s for s in segments if s.text == f" First at {three}.")
    assert redone.temperature == 0.2
    assert all(s.temperature == 0.0 for s in segments if s not in (fine, redone) and s.text != f" Second at {three}.")
    assert [s.start for s in segments] == sorted(s.start for s in segments)


def test_when_every_temperature_fails_the_best_output_is_kept(hf_tokenizer, jfk):
    """As sequential faster-whisper: the highest average log-probability among the outputs that do
    not loop (among all of them when every one loops)."""
    logprobs = {0.0: -1.5, 0.2: -1.2, 0.4: -1.9, 0.6: -1.05, 0.8: -1.3, 1.0: -1.4}
    windows = planned(hf_tokenizer, jfk, short_windows())
    first, second = windows[0][0], windows[2][0]
    bad = {
        first: lambda tok, t: output(tok, LOOP if t == 0.6 else f" Low at {t}.", avg_logprob=logprobs[t]),
        second: lambda tok, t: output(tok, LOOP + f" at {t}", avg_logprob=logprobs[t]),
    }
    device = Blocking(fails(bad))
    segments = collect(job_of(hf_tokenizer, jfk, short_windows(), device))
    assert [r.temperature for r in device.requests if r.windows == [windows[0], windows[2]]] == [0.2, 0.4, 0.6, 0.8, 1.0]
    kept = {s.start: s for s in segments}
    assert kept[round(first / SR, 3)].text == " Low at 0.2." and kept[round(first / SR, 3)].temperature == 0.2
    assert kept[round(first / SR, 3)].avg_logprob == -1.2
    looped = kept[round(second / SR, 3)]  # every output loops, none over non-speech: the best is kept
    assert looped.text.endswith(" at 0.6") and looped.temperature == 0.6


def test_the_request_temperatures_are_followed_in_order(hf_tokenizer, jfk):
    options = changed(short_windows(), temperature=[0.1, 0.5, 0.9])
    windows = planned(hf_tokenizer, jfk, options)
    bad = {windows[1][0]: lambda tok, t: output(tok, LOOP) if t < 0.9 else output(tok, " At last.")}
    device = Blocking(fails(bad))
    segments = collect(job_of(hf_tokenizer, jfk, options, device))
    assert [r.temperature for r in device.requests if r.windows == [windows[1]]] == [0.5, 0.9]
    assert sum(len(r.windows) for r in device.requests if r.temperature == 0.1) == len(windows)
    assert next(s for s in segments if s.text == " At last.").temperature == 0.9
    assert {s.temperature for s in segments} == {0.1, 0.9}


def test_thresholds_switched_off_never_fall_back(hf_tokenizer, jfk):
    options = changed(short_windows(), compression_ratio_threshold=None, log_prob_threshold=None)
    windows = planned(hf_tokenizer, jfk, options)
    bad = {windows[0][0]: lambda tok, t: output(tok, LOOP, avg_logprob=-3.0, no_speech_prob=0.9),  # silent by no-speech alone
           windows[1][0]: lambda tok, t: output(tok, LOOP, avg_logprob=-3.0, no_speech_prob=0.1)}
    device = Blocking(fails(bad))
    segments = collect(job_of(hf_tokenizer, jfk, options, device))
    assert {r.temperature for r in device.requests} == {0.0}
    start, end = windows[1]
    assert rows(segments)[:3] == [(round(start / SR, 3), round(end / SR, 3), LOOP)] + expected(windows[2:3])


def test_silent_windows_and_loops_over_non_speech_give_nothing(hf_tokenizer, jfk):
    windows = planned(hf_tokenizer, jfk, short_windows())
    quiet, spoken, unsure, noise, loop = (w[0] for w in windows[:5])
    assert (windows[0][1] - quiet) / SR > 0.5 + MIN_TAIL_S
    bad = {
        # silence (its text stops 1.5 s before its end, but there is no tail to a window that is silent)
        quiet: lambda tok, t: WindowOutput(tokens=say(tok, 0.0, " Thank you.", 0.5), avg_logprob=-1.5, no_speech_prob=0.9),
        spoken: lambda tok, t: output(tok, " Said softly.", avg_logprob=-0.5, no_speech_prob=0.9),  # confident text wins
        unsure: lambda tok, t: output(tok, " Unsure.", avg_logprob=-1.5, no_speech_prob=0.5) if t == 0 else None,
        # a loop over non-speech: final, though sampling would find a confident " You"
        noise: lambda tok, t: output(tok, LOOP if t == 0 else " You", avg_logprob=-0.3, no_speech_prob=0.7),
        loop: lambda tok, t: output(tok, LOOP + f" {t}", avg_logprob=-0.3 - t, no_speech_prob=0.1),  # a loop over speech
    }
    device = Blocking(fails(bad))
    segments = collect(job_of(hf_tokenizer, jfk, short_windows(), device))
    all_temperatures = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert [temperatures_of(device, w) for w in windows[:5]] == [[0.0], [0.0], [0.0, 0.2], [0.0], all_temperatures]
    assert all(temperatures_of(device, w) == [0.0] for w in windows[5:])
    by_start = {}
    for segment in segments:
        by_start.setdefault(segment.start, []).append(segment.text)
    assert round(quiet / SR, 3) not in by_start and round(noise / SR, 3) not in by_start
    assert by_start[round(spoken / SR, 3)] == [" Said softly."]
    assert by_start[round(unsure / SR, 3)] == [f" First at {unsure}."]
    assert by_start[round(loop / SR, 3)] == [LOOP + " 0.0"]  # the best of the loops (temperature 0)
    assert rows(segments)[-2 * len(windows[5:]):] == expected(windows[5:])


def test_the_thresholds_hold_at_their_exact_values(hf_tokenizer, jfk):
    """No-speech exactly at its threshold is not silence; a log-probability exactly at its
    threshold is not low (sequential decoding's comparisons)."""
    windows = planned(hf_tokenizer, jfk, short_windows())
    at_no_speech, at_log_prob, both, loop, at_ratio = (w[0] for w in windows[:5])
    assert compression_ratio(AT_RATIO) == 2.4
    bad = {
        at_no_speech: lambda tok, t: output(tok, f" Maybe at {t}.", avg_logprob=-1.5 if t == 0 else -0.5, no_speech_prob=0.6),
        at_log_prob: lambda tok, t: output(tok, " Just sure.", avg_logprob=-1.0, no_speech_prob=0.1),
        both: lambda tok, t: output(tok, " Quiet but sure.", avg_logprob=-1.0, no_speech_prob=0.9),
        loop: lambda tok, t: output(tok, LOOP + f" {t}", avg_logprob=-0.3 - t, no_speech_prob=0.6),  # a loop, not over non-speech
        at_ratio: lambda tok, t: output(tok, AT_RATIO, no_speech_prob=0.7),  # repetitive, but not a loop
    }
    device = Blocking(fails(bad))
    segments = collect(job_of(hf_tokenizer, jfk, short_windows(), device))
    every = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert [temperatures_of(device, w) for w in windows[:5]] == [[0.0, 0.2], [0.0], [0.0], every, [0.0]]
    assert [s.text for s in segments[:5]] == [" Maybe at 0.2.", " Just sure.", " Quiet but sure.", LOOP + " 0.0", AT_RATIO]


def test_without_a_no_speech_threshold_every_loop_counts_as_a_hallucination(hf_tokenizer, jfk):
    options = changed(short_windows(), no_speech_threshold=None)
    windows = planned(hf_tokenizer, jfk, options)
    bad = {windows[0][0]: lambda tok, t: output(tok, LOOP, no_speech_prob=0.01),  # loops at every temperature: dropped
           windows[1][0]: lambda tok, t: output(tok, " Faint.", avg_logprob=-1.5 + t, no_speech_prob=0.99)}  # never silent
    device = Blocking(fails(bad))
    segments = collect(job_of(hf_tokenizer, jfk, options, device))
    assert len(temperatures_of(device, windows[0])) == 6 and temperatures_of(device, windows[1]) == [0.0, 0.2, 0.4, 0.6]
    assert rows(segments)[0] == (round(windows[1][0] / SR, 3), round(windows[1][1] / SR, 3), " Faint.")
    assert segments[0].temperature == 0.6
    assert rows(segments)[1:] == expected(windows[2:])
