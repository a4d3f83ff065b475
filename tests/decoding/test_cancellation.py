"""How a batched job ends early: cancelled, given up by its reader, or failed by its device; what
it sent is cancelled, nothing more is sent, its feeder thread ends. See scripted_job.py."""

from __future__ import annotations

import threading

import pytest

from helpers import wait_until
from scripted_fixtures import *  # noqa: F403 - the job's fixtures (hf_tokenizer, jfk, ...)
from scripted_job import LIMIT, LOOP, Blocking, Consumer, collect, expected, feeders_alive, job_of, output, planned, short_windows, speech
from worker.errors import Cancelled

pytestmark = pytest.mark.timeout(20)  # a job that hangs fails its test in seconds, not at the suite's limit


def test_cancelling_ends_the_job_and_cancels_what_it_sent(hf_tokenizer, paused, devices, many_windows):
    options, windows = many_windows
    cancelled = threading.Event()
    device = devices(speech, allow=lambda request: False, gather=0)
    consumer = Consumer(job_of(hf_tokenizer, paused, options, device, cancelled=cancelled, in_flight=8))
    assert device.wait_for(lambda: device.planned >= 8)
    assert device.wait_for(lambda: len(device.watched) == 2)  # the job has both requests and waits for them
    cancelled.set()  # no request ends: the job must see the cancel by itself
    assert consumer.result() == [] and isinstance(consumer.error, Cancelled)
    assert not feeders_alive()  # nothing can be sent any more
    assert {id(h) for h in device.cancelled} == {id(h) for h in device.handles} and len(device.handles) == 2
    assert device.planned == 8 < len(windows)


def test_cancelling_after_the_first_segments_stops_there(hf_tokenizer, paused, devices, many_windows):
    options, windows = many_windows
    cancelled = threading.Event()
    device = devices(speech, gather=0)
    job = job_of(hf_tokenizer, paused, options, device, cancelled=cancelled, in_flight=8)
    segments = job.segments()
    first = next(segments)
    assert (first.start, first.end, first.text) == expected(windows[:1])[0]
    cancelled.set()
    # nobody reads the job now, yet its feeder sees the cancel and stops sending windows
    assert wait_until(lambda: not feeders_alive(), LIMIT) and device.planned == 8
    with pytest.raises(Cancelled):
        list(segments)
    assert not feeders_alive() and device.planned < len(windows)


def test_a_job_given_up_cancels_what_it_sent_and_sends_no_more(hf_tokenizer, paused, devices, many_windows):
    """The consumer stops after the first segment (an error of its own): the request the feeder sent
    meanwhile, not yet looked at by the job, is cancelled too."""
    options, windows = many_windows
    device = devices(speech, hold_submits_from=1, gather=0)  # the feeder's second request waits in submit()
    segments = job_of(hf_tokenizer, paused, options, device, in_flight=8).segments()
    first = next(segments)
    assert (first.start, first.end, first.text) == expected(windows[:1])[0]
    assert device.wait_for(lambda: device.submitting)  # the second request is on its way
    device.submits.set()
    segments.close()
    assert not feeders_alive()
    assert len(device.handles) == 2 and device.cancelled == [device.handles[1]]
    assert device.planned == 8


def test_a_job_ended_while_slots_are_free_sends_nothing_more(hf_tokenizer, paused, devices, many_windows):
    """Cancelled while the feeder's second request is on its way, with room for 16 windows: once that
    request is out, the feeder stops instead of filling the free slots with windows nobody will read."""
    options, windows = many_windows
    cancelled = threading.Event()
    device = devices(speech, hold_submits_from=1, gather=0, allow=lambda request: False)
    job = job_of(hf_tokenizer, paused, options, device, cancelled=cancelled, in_flight=16)
    consumer = Consumer(job)
    assert device.wait_for(lambda: device.submitting)  # the second request is held in submit()
    cancelled.set()
    assert wait_until(job.finished.is_set, LIMIT)  # the job has ended; its feeder is still in submit()
    device.submits.set()
    assert consumer.result() == [] and isinstance(consumer.error, Cancelled)
    assert not feeders_alive()
    assert len(device.handles) == 2 and device.planned == 8 < 16 < len(windows)
    assert {id(h) for h in device.cancelled} == {id(h) for h in device.handles}


def test_a_device_error_fails_the_job_with_that_error(hf_tokenizer, jfk):
    windows = planned(hf_tokenizer, jfk, short_windows())

    def broken(tokenizer, start, end, temperature):
        if start == windows[5][0]:  # in the feeder's second request
            raise RuntimeError("device fault at window 5")
        return speech(tokenizer, start, end, temperature)

    device = Blocking(broken)
    job = job_of(hf_tokenizer, jfk, short_windows(), device)
    with pytest.raises(RuntimeError, match="device fault at window 5"):
        collect(job)
    assert not feeders_alive()


def test_a_failing_fallback_request_fails_the_job(hf_tokenizer, jfk):
    windows = planned(hf_tokenizer, jfk, short_windows())

    def broken(tokenizer, start, end, temperature):
        if temperature > 0:
            raise RuntimeError("out of luck at 0.2")
        return output(tokenizer, LOOP) if start == windows[1][0] else speech(tokenizer, start, end, temperature)

    device = Blocking(broken)
    with pytest.raises(RuntimeError, match="out of luck at 0.2"):
        collect(job_of(hf_tokenizer, jfk, short_windows(), device))
    assert [r.temperature for r in device.requests if windows[1] in r.windows] == [0.0, 0.2]


def test_an_asynchronous_device_error_fails_the_job_and_cancels_the_rest(hf_tokenizer, paused, devices, many_windows):
    options, windows = many_windows

    def broken(tokenizer, start, end, temperature):
        if start == windows[0][0]:
            raise RuntimeError("device fault")
        return speech(tokenizer, start, end, temperature)

    device = devices(broken, allow=lambda request: windows[0] in request.windows, gather=0)  # only the failing request ends
    consumer = Consumer(job_of(hf_tokenizer, paused, options, device))
    assert consumer.result() == []
    assert isinstance(consumer.error, RuntimeError) and str(consumer.error) == "device fault"
    assert not feeders_alive()
    assert {id(h) for h in device.cancelled} == {id(h) for h in device.handles[1:]}
    assert len(device.handles) >= 1 and device.handles[0].exception() is consumer.error
