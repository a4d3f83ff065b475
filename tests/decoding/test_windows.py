"""The batched job's windows: where plan_windows cuts speech into windows of at most 30 s (at the
longest pause past 10 s, at the quietest 100 ms of a long span, never leaving a sliver), and what
the job plans from a request: its VAD parameters, its language, audio without speech or without
VAD. See scripted_job.py for the scripted device."""

from __future__ import annotations

import numpy as np
import pytest

from scripted_fixtures import *  # noqa: F403 - the job's fixtures (hf_tokenizer, jfk, ...)
from scripted_job import SR, Blocking, collect, decoding, expected, job_of, planned, rows, short, speech
from worker.decoding.whisper.vad import speech_spans
from worker.decoding.windows import ENERGY_FRAME, MAX_WINDOW_S, MIN_TAIL_S, MIN_WINDOW_S, Window, plan_windows

pytestmark = pytest.mark.timeout(20)  # a job that hangs fails its test in seconds, not at the suite's limit


def test_a_long_span_is_cut_at_the_centre_of_its_first_quiet_100_ms():
    rng = np.random.default_rng(3)
    audio = rng.standard_normal(70 * SR).astype(np.float32) * 0.3
    audio[int(26.0 * SR):int(26.2 * SR)] = 0.0  # 200 ms of silence; the search starts at 22 s, on a 20 ms frame edge
    windows = plan_windows(audio, [(0, audio.size)])
    assert windows[0].end == int(26.05 * SR)  # the first silent 100 ms is 26.0-26.1 s


def test_a_cut_searched_over_only_100_ms_still_finds_the_quiet_moment():
    """Windows of at most 0.3 s search the last 100 ms (five 20 ms frames) before 0.3 s for the cut."""
    rng = np.random.default_rng(4)
    audio = rng.standard_normal(5 * SR).astype(np.float32) * 0.3
    quiet = int(0.2 * SR) + 2 * ENERGY_FRAME  # the last three frames of the first search (0.2-0.3 s) are silent
    audio[quiet:int(0.3 * SR)] = 0.0
    windows = plan_windows(audio, [(0, audio.size)], max_window_s=0.3)
    assert windows[0].end == int(0.2 * SR) + 4 * ENERGY_FRAME + ENERGY_FRAME // 2


@pytest.mark.parametrize("spans, first_end", [
    ([(0, 3), (4.9, 12), (12.6, 20), (20.5, 29), (29.3, 40)], 12),  # not at the longer pause 3 s in, nor a shorter later
    ([(0, 3), (4, 12), (12.3, 20), (21.5, 26), (26.4, 40)], 20),  # the longest pause may be the last one before 30 s
    ([(0, 4), (4.5, 10), (11.5, 20), (20.3, 29), (29.5, 40)], 10),  # a piece ending at 10 s exactly counts
    ([(0, 5), (5, 12), (12, 20), (20, 28), (28, 40)], 12),  # spans that touch: the first of the equal (zero) pauses
])
def test_a_full_window_ends_at_its_longest_pause_after_its_first_10_seconds(spans, first_end):
    audio = np.zeros(45 * SR, np.float32)
    spans = [(int(a * SR), int(b * SR)) for a, b in spans]
    rest = next(start for start, _ in spans if start >= first_end * SR)
    assert plan_windows(audio, spans) == [Window(0, first_end * SR), Window(rest, 40 * SR)]


@pytest.mark.parametrize("spans, windows", [
    ([(0, 30)], [(0, 30)]),  # exactly 30 s of speech: one window
    ([(0, 10), (11, 30)], [(0, 30)]),  # spans that fill exactly 30 s: one window
    ([(0, 5), (7, 10)], [(0, 10)]),  # a pause of exactly 2 s stays inside a window
])
def test_windows_reach_exactly_their_limits(spans, windows):
    audio = np.zeros(40 * SR, np.float32)
    assert plan_windows(audio, [(a * SR, b * SR) for a, b in spans]) == [Window(a * SR, b * SR) for a, b in windows]


def test_a_cut_never_leaves_less_than_a_second_behind_it():
    """A 30.5 s span whose quietest moment is 0.7 s before its end is cut earlier, not there."""
    rng = np.random.default_rng(6)
    audio = rng.standard_normal(int(30.5 * SR)).astype(np.float32) * 0.3
    audio[int(29.75 * SR):int(29.95 * SR)] = 0.0
    windows = plan_windows(audio, [(0, audio.size)])
    assert len(windows) == 2 and windows[1].end == audio.size
    assert windows[1].start <= audio.size - MIN_TAIL_S * SR


def test_no_window_is_longer_than_30_seconds_whatever_max_speech_duration_allows(hf_tokenizer, silero):
    windows = planned(hf_tokenizer, silero, decoding(vad_parameters={"max_speech_duration_s": 45}))
    assert max(end - start for start, end in windows) / SR == pytest.approx(MAX_WINDOW_S, abs=8)
    assert all((end - start) / SR <= MAX_WINDOW_S for start, end in windows)


def test_a_short_max_speech_duration_leaves_windows_their_normal_length(hf_tokenizer, jfk, silero):
    """max_speech_duration_s splits the VAD's spans; windows merge them again, up to 30 s, so a
    request's value never makes Whisper decode second-long windows (it once did: 64 % WER)."""
    for samples in (jfk, silero):
        spans = speech_spans(samples, {"min_silence_duration_ms": 160, "max_speech_duration_s": 1})
        assert max(end - start for start, end in spans) <= SR  # the option does cut the speech
        cut = planned(hf_tokenizer, samples, decoding(vad_parameters={"max_speech_duration_s": 1}))
        assert cut == [(w.start, w.end) for w in plan_windows(samples, spans)]
        assert all(MIN_WINDOW_S * SR <= end - start <= MAX_WINDOW_S * SR for start, end in cut), cut


def test_the_requests_vad_parameters_decide_the_speech(hf_tokenizer, jfk):
    parameters = {"min_silence_duration_ms": 500, "speech_pad_ms": 100}
    job = job_of(hf_tokenizer, jfk, decoding(vad_parameters=parameters), Blocking(speech))
    assert job.spans == speech_spans(jfk, parameters) != speech_spans(jfk, {"min_silence_duration_ms": 160})


def test_the_language_is_the_requested_one_or_detected_on_the_first_window(hf_tokenizer, jfk):
    device = Blocking(speech)
    late = np.concatenate([np.zeros(2 * SR, np.float32), jfk])  # the first window does not start the file
    job = job_of(hf_tokenizer, late, short(5, decoding()), device, multilingual=True)
    collect(job)
    assert (job.plan.language, job.plan.language_probability) == ("de", 0.75) and job.windows[0].start > SR
    assert job.whisper.detections == [(job.windows[0].start, job.windows[0].end)]
    assert {t.language_code for t in device.tokenizers} == {"de"} and job.tokenizer.language_code == "de"

    device = Blocking(speech)
    job = job_of(hf_tokenizer, jfk, short(5, decoding(language="fr")), device, multilingual=True)
    collect(job)
    assert (job.plan.language, job.plan.language_probability) == ("fr", 1.0) and job.whisper.detections == []
    assert {t.language_code for t in device.tokenizers} == {"fr"}

    device = Blocking(speech)
    job = job_of(hf_tokenizer, jfk, decoding(task="translate"), device, multilingual=True)
    collect(job)
    assert {t.task for t in device.tokenizers} == {hf_tokenizer.token_to_id("<|translate|>")}

    job = job_of(hf_tokenizer, jfk, decoding(), Blocking(speech))  # English-only: never detected
    assert (job.plan.language, job.plan.language_probability) == ("en", 1.0) and job.whisper.detections == []


def test_audio_without_speech_sends_nothing(hf_tokenizer):
    quiet = np.zeros(20 * SR, np.float32)
    device = Blocking(speech)
    job = job_of(hf_tokenizer, quiet, decoding(), device, multilingual=True)
    assert collect(job) == [] and device.requests == [] and job.windows == []
    assert (job.plan.language, job.plan.language_probability) == ("en", 0.0) and job.whisper.detections == []
    assert job.speech_seconds == 0.0 and job.vad_seconds > 0


def test_without_vad_the_whole_file_is_speech(hf_tokenizer, jfk):
    device = Blocking(speech)
    job = job_of(hf_tokenizer, np.concatenate([jfk] * 3), decoding(vad_filter=False), device)
    segments = collect(job)
    windows = [(w.start, w.end) for w in job.windows]
    assert windows[0][0] == 0 and windows[-1][1] == 3 * jfk.shape[0] and len(windows) == 2
    assert all(b[0] == a[1] for a, b in zip(windows, windows[1:]))
    assert rows(segments) == expected(windows)
    assert job.speech_seconds == 33.0 and job.vad_seconds == 0.0 and job.spans is None
