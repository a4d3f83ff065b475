"""How the batched job feeds the device: audio still being decoded gives the windows and segments of
the whole file, planned as it arrives; features on a host pool; requests ending out of order give
the same segments; at most `in_flight` planned windows sent ahead. See scripted_job.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from scripted_fixtures import *  # noqa: F403 - the job's fixtures (hf_tokenizer, jfk, ...)
from scripted_job import (
    SR, Blocking, Consumer, Trickle, changed, collect, decoding, expected, first_temperature_windows, job_of, mixed, rows, speech,
    without_vad)
from worker.decoding import windows as windows_module
from worker.decoding.windows import MAX_PAUSE_S

pytestmark = pytest.mark.timeout(20)  # a job that hangs fails its test in seconds, not at the suite's limit


@pytest.mark.parametrize("ahead", [0.0, 19.0])
def test_audio_still_decoding_gives_the_windows_and_segments_of_the_whole_file(hf_tokenizer, paused, monkeypatch, ahead):
    whole_device, streamed_device = Blocking(speech), Blocking(speech)
    whole = job_of(hf_tokenizer, paused, decoding(), whole_device)
    whole_segments = collect(whole)
    audio = Trickle(paused, ahead)  # a second at a time, or 20 s (a whole window past a long pause in one round)
    planning = []  # the spans each planning round was given
    plan = windows_module.plan_windows
    monkeypatch.setattr(windows_module, "plan_windows", lambda samples, spans, **kw: planning.append(list(spans)) or plan(samples, spans, **kw))
    streamed = job_of(hf_tokenizer, audio, decoding(), streamed_device)
    assert streamed.windows and audio.available < paused.shape[0]  # the first window is planned before the end is there
    streamed_segments = collect(streamed)
    assert [(w.start, w.end) for w in streamed.windows] == [(w.start, w.end) for w in whole.windows]
    assert len(whole.windows) >= 3
    assert first_temperature_windows(streamed_device) == first_temperature_windows(whole_device)
    assert rows(streamed_segments) == rows(whole_segments) == expected([(w.start, w.end) for w in whole.windows])
    assert streamed.spans == whole.spans
    assert streamed.speech_seconds == whole.speech_seconds
    assert streamed.vad_seconds > 0
    # each round plans from the last pause over 2 s seen before it (a window always ends there),
    # not from the start: planning stays linear in the length of the file
    spans = whole.spans
    long_pauses = [k for k in range(1, len(spans)) if spans[k][0] - spans[k - 1][1] > MAX_PAUSE_S * SR]
    assert len(planning) > 1 and len(long_pauses) == 2
    for before, now in zip(planning, planning[1:]):
        known = spans.index(before[-1]) + 1  # the spans final when `before` was planned
        assert spans.index(now[0]) == max([k for k in long_pauses if k < known], default=0)


def test_without_vad_audio_still_decoding_is_planned_once_all_of_it_is_there(hf_tokenizer, jfk):
    samples = np.concatenate([jfk] * 3)
    whole = job_of(hf_tokenizer, samples, decoding(vad_filter=False), Blocking(speech))
    audio = Trickle(samples)
    streamed = job_of(hf_tokenizer, audio, decoding(vad_filter=False), Blocking(speech))
    assert audio.finished and streamed.windows == whole.windows
    assert rows(collect(streamed)) == rows(collect(whole)) == expected([(w.start, w.end) for w in whole.windows])


def test_features_computed_on_a_host_pool_reach_the_device_in_window_order(hf_tokenizer, paused, devices):
    options = without_vad(2.5)
    reference = collect(job_of(hf_tokenizer, paused, options, Blocking(mixed)))
    device = devices(mixed, gather=0)
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="host") as host:
        job = job_of(hf_tokenizer, paused, options, device, host=host)
        segments = collect(job)
    assert rows(segments) == rows(reference)
    assert any(name.startswith("host") for name in job.whisper.extracting_threads)
    sent = [w for r in device.requests if r.temperature == 0.0 and not r.urgent for w in r.windows]
    assert sent == [(w.start, w.end) for w in job.windows]
    assert max(len(r.windows) for r in device.requests) > 1


@pytest.mark.parametrize("seed", [0, 1])
def test_requests_ending_out_of_order_give_the_same_segments(hf_tokenizer, paused, devices, seed):
    options = without_vad(2.5)
    blocking = Blocking(mixed)
    job = job_of(hf_tokenizer, paused, options, blocking)
    reference = collect(job)
    planned_windows = [(w.start, w.end) for w in job.windows]
    device = devices(mixed, seed=seed)
    segments = collect(job_of(hf_tokenizer, paused, options, device))
    assert rows(segments) == rows(reference)
    assert [s.temperature for s in segments] == [s.temperature for s in reference]
    assert len(reference) > 30 and {s.temperature for s in reference} == {0.0, 0.2}
    assert any(s.text.startswith(" Half of") for s in reference)
    assert all(b.start >= a.start for a, b in zip(segments, segments[1:]))
    # the same windows at the same temperatures (the follow-ups may be grouped differently)
    sent = lambda d: sorted((r.temperature, w) for r in d.requests for w in r.windows)  # noqa: E731
    assert sent(device) == sent(blocking)
    # tails go first (urgent); the planned windows and their fallbacks queue as usual
    tails = [r for r in device.requests if r.temperature == 0.0 and r.windows[0] not in planned_windows]
    assert tails and all(r.urgent for r in tails)
    assert all(not r.urgent for r in device.requests if r not in tails)
    assert all(not set(r.windows) & set(planned_windows) for r in tails)


@pytest.mark.parametrize("in_flight, batch_size, bound", [(8, 8, 8), (None, 8, 16), (None, 2, 8), (3, 8, 3), (1, 8, 1)])
def test_at_most_in_flight_planned_windows_are_sent_ahead(hf_tokenizer, paused, devices, many_windows, in_flight, batch_size, bound):
    options, windows = many_windows
    device = devices(speech, allow=lambda request: False, gather=0)  # nothing ends until released
    consumer = Consumer(job_of(hf_tokenizer, paused, changed(options, batch_size=batch_size), device, in_flight=in_flight))
    assert device.wait_for(lambda: device.planned >= bound), device.planned
    # none given out, so no more may go (watched for a while: a bound, not a synchronisation)
    assert not device.wait_for(lambda: device.planned > bound, timeout=0.2)
    device.release()
    assert rows(consumer.result()) == expected(windows)
    assert consumer.error is None and first_temperature_windows(device) == windows
