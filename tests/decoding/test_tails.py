"""The batched job's tails: speech the model left out after a window's last timestamp is decoded
again (at most TAIL_ROUNDS deep, over a second of audio with speech in it), falls back like any
window, and its segments follow its parent's. See scripted_job.py."""

from __future__ import annotations

import pytest

from scripted_fixtures import *  # noqa: F403 - the job's fixtures (hf_tokenizer, jfk, ...)
from scripted_job import LOOP, SR, Blocking, Request, chain, collect, decoding, job_of, output, planned, rows, say
from worker.decoding.batched import TAIL_ROUNDS
from worker.decoding.whisper.device import WindowOutput
from worker.decoding.windows import MIN_TAIL_S

pytestmark = pytest.mark.timeout(20)  # a job that hangs fails its test in seconds, not at the suite's limit


def test_speech_after_the_last_timestamp_is_decoded_again_at_most_twice_deeper(hf_tokenizer, jfk, devices):
    end = jfk.shape[0]  # 11 s, one window without VAD
    stops = {(0, end): (" One.", 4.0), (4 * SR, end): (" Two.", 3.0), (7 * SR, end): (" Three.", 1.0)}
    device = devices(chain(stops))
    segments = collect(job_of(hf_tokenizer, jfk, decoding(vad_filter=False), device))
    assert TAIL_ROUNDS == 2
    assert device.requests == [Request(0.0, [(0, end)], False), Request(0.0, [(4 * SR, end)], True),
                               Request(0.0, [(7 * SR, end)], True)]  # not the third tail from 8 s
    assert rows(segments) == [(0.0, 4.0, " One."), (4.0, 7.0, " Two."), (7.0, 8.0, " Three.")]


@pytest.mark.parametrize("last, tail", [(11.0 - MIN_TAIL_S, True), (11.0 - MIN_TAIL_S + 0.02, False)])
def test_a_tail_needs_a_second_of_audio_left(hf_tokenizer, jfk, last, tail):
    end = jfk.shape[0]
    rest = (int(last * SR), end)
    device = Blocking(chain({(0, end): (" Almost all.", last), rest: (" The rest.", 0.5)}))
    segments = collect(job_of(hf_tokenizer, jfk, decoding(vad_filter=False), device))
    assert device.requests == [Request(0.0, [(0, end)], None)] + ([Request(0.0, [rest], None)] if tail else [])
    assert rows(segments) == [(0.0, round(last, 3), " Almost all.")] + ([(round(last, 3), round(last + 0.5, 3), " The rest.")] if tail else [])


def test_a_tail_over_speech_found_by_the_vad(hf_tokenizer, jfk):
    (window,) = planned(hf_tokenizer, jfk, decoding())  # jfk's pauses are short: one window
    start, end = window
    seconds = (end - start) / SR
    last = round((seconds - 1.1) / 0.02) * 0.02
    tail = (start + int(last * SR), end)
    device = Blocking(chain({window: (" Ask not.", last), tail: (" What you can do.", 1.0)}))
    segments = collect(job_of(hf_tokenizer, jfk, decoding(), device))
    assert [r.windows for r in device.requests] == [[window], [tail]]
    assert [s.text for s in segments] == [" Ask not.", " What you can do."]


def test_a_tail_falls_back_like_any_window_and_its_segments_follow_its_parent(hf_tokenizer, jfk, devices):
    end = jfk.shape[0]
    tail = (5 * SR, end)

    def script(tokenizer, start, stop, temperature):
        if (start, stop) == tail and temperature == 0.0:
            return output(tokenizer, LOOP)
        text, last = {(0, end): (" Parent.", 5.0), tail: (" Tail.", 6.0)}[(start, stop)]
        return WindowOutput(tokens=say(tokenizer, 0.0, text, last), avg_logprob=-0.3, no_speech_prob=0.1)

    device = devices(script)
    segments = collect(job_of(hf_tokenizer, jfk, decoding(vad_filter=False), device))
    assert device.requests == [Request(0.0, [(0, end)], False), Request(0.0, [tail], True), Request(0.2, [tail], False)]
    assert rows(segments) == [(0.0, 5.0, " Parent."), (5.0, 11.0, " Tail.")]
    assert [s.temperature for s in segments] == [0.0, 0.2]
