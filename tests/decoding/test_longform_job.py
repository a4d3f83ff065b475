"""BatchedJob (worker/decoding/batched.py) driven by a scripted device instead of the model: which windows
reach the device, at which temperature and in which requests; the segments that come back;
tails, silence, hallucinations; out-of-order completion, the in-flight bound, cancellation and
device failures. No encode or generate runs, so these tests take seconds, not minutes.

The job's `whisper` is tiny.en's real tokenizer with a stand-in feature extractor: its "features"
carry the first and last sample index of the audio they were made from (nothing reads them but
the scripted device), so the device knows exactly which audio each window holds and fabricates
that window's output from it, the same every time."""

from __future__ import annotations

import math
import random
import threading
from collections import namedtuple
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tokenizers

from helpers import DATA, tiny_en_model_dir, wait_until
from worker.decoding import batched as longform
from worker.decoding.whisper import parts
from worker.audio.decode import decode_audio
from worker.config import Settings
from worker.errors import Cancelled
from worker.decoding.batched import (ENERGY_FRAME, MAX_WINDOW_S, MIN_TAIL_S, SAMPLE_RATE, TAIL_ROUNDS, BatchedJob, Window,
                             compression_ratio, plan_windows)
from worker.request.schema import parse_request

SR = SAMPLE_RATE
pytestmark = pytest.mark.timeout(20)  # a job that hangs fails its test in seconds, not at the suite's limit
LIMIT = 10.0  # seconds: only a bound for a test that fails by hanging; a passing test takes far less

Request = namedtuple("Request", "temperature windows urgent")  # windows: [(first sample, end sample)]


def decoding(**fields) -> dict:
    """The decoding options the engine passes for a request with these fields."""
    return parse_request({"audio": "x", **fields}, Settings(batch_size=8)).decoding_options()


@pytest.fixture(scope="module")
def hf_tokenizer():
    return tokenizers.Tokenizer.from_file(str(Path(tiny_en_model_dir()) / "tokenizer.json"))


@pytest.fixture(scope="module")
def jfk():
    return decode_audio(str(DATA / "jfk.flac"), 100)  # 11 s, five speech spans


class Whisper:
    """What BatchedJob reads of a WhisperModel besides the model: tiny.en's tokenizer, and a feature
    extractor whose output names the samples it got (rows 0 and 1 of the first column)."""

    frames_per_second = 100

    def __init__(self, hf_tokenizer, samples: np.ndarray, multilingual: bool = False, detected=("de", 0.75)):
        self.hf_tokenizer = hf_tokenizer
        self.model = SimpleNamespace(is_multilingual=multilingual)
        self.samples = samples
        self.detected = detected
        self.detections = []  # the window each language detection saw
        self.extracted = []  # the audio (first sample, end) of each feature computation
        self.extracting_threads = set()  # the names of the threads that computed them

    def feature_extractor(self, view: np.ndarray) -> np.ndarray:
        assert np.shares_memory(view, self.samples), "features of audio that is not the job's"
        first = (view.__array_interface__["data"][0] - self.samples.__array_interface__["data"][0]) // view.itemsize
        features = np.zeros((80, view.shape[0] // parts.HOP + 1), np.float32)
        features[0, 0], features[1, 0] = first, first + view.shape[0]
        self.extracted.append((first, first + view.shape[0]))
        self.extracting_threads.add(threading.current_thread().name)
        return features

    def detect_language(self, features):
        self.detections.append(window_of_features(features))
        return self.detected[0], self.detected[1], []


def window_of_features(features) -> tuple:
    return int(features[0, 0]), int(features[1, 0])


def window_of(inputs: parts.WindowInput) -> tuple:
    start, end = window_of_features(inputs.features)
    assert inputs.content_frames == min((end - start) // parts.HOP, parts.WINDOW_FRAMES)
    return start, end


def say(tokenizer, *items) -> list:
    """Tokens: a number is a timestamp (seconds into the window), a string is text."""
    tokens = []
    for item in items:
        if isinstance(item, str):
            tokens += tokenizer.encode(item)
        else:
            tokens.append(tokenizer.timestamp_begin + round(item / 0.02))
    return tokens


def stamps(start: int, end: int) -> tuple:
    """The speech script's two timestamps for a window: its middle and its end (on the 20 ms grid)."""
    seconds = (end - start) / SR
    return round(seconds / 2 / 0.02) * 0.02, math.floor(seconds / 0.02) * 0.02


def speech(tokenizer, start: int, end: int, temperature: float) -> parts.WindowOutput:
    """Two sentences naming the window, the second ending at the window's end: no tail, no fallback."""
    half, last = stamps(start, end)
    tokens = say(tokenizer, 0.0, f" First at {start}.", half, half, f" Second at {start}.", last)
    return parts.WindowOutput(tokens=tokens, avg_logprob=-0.3, no_speech_prob=0.1)


def expected(windows) -> list:
    """(start, end, text) of the speech script's segments for these windows."""
    rows = []
    for start, end in windows:
        half, last = stamps(start, end)
        offset = start / SR
        rows += [(round(offset, 3), round(offset + half, 3), f" First at {start}."),
                 (round(offset + half, 3), round(offset + last, 3), f" Second at {start}.")]
    return rows


def rows(segments) -> list:
    return [(s.start, s.end, s.text) for s in segments]


LOOP = " I don't know what I'm going to do," * 20
AT_RATIO = " a of know to it of I it" * 3  # compresses by exactly 2.4, the default threshold


class Recorder:
    """What every scripted device shares: the requests it got, and the outputs of the script."""

    def __init__(self, script):
        self.script = script
        self.requests = []
        self.tokenizers = []  # the tokenizer of each request
        self.cond = threading.Condition()

    def record(self, key, inputs, context, urgent):
        tokenizer, options = context
        assert key == parts.batching_key(tokenizer, options)
        (temperature,) = options.temperatures
        windows = [window_of(i) for i in inputs]
        with self.cond:
            self.requests.append(Request(temperature, windows, urgent))
            self.tokenizers.append(tokenizer)
            self.cond.notify_all()
        return tokenizer, temperature, windows

    def outputs(self, tokenizer, temperature, windows):
        return [self.script(tokenizer, start, end, temperature) for start, end in windows]

    @property
    def planned(self) -> int:
        """Windows sent at the first temperature that are not tails (the job's planned windows)."""
        with self.cond:
            return sum(len(r.windows) for r in self.requests if r.temperature == 0.0 and not r.urgent)

    def wait_for(self, condition, timeout=LIMIT) -> bool:
        with self.cond:
            return self.cond.wait_for(condition, timeout)


class Blocking(Recorder):
    """A device given as a blocking run(key, windows, context) function."""

    def __call__(self, key, inputs, context):
        return self.outputs(*self.record(key, inputs, context, None))


class Async(Recorder):
    """A device that completes requests on its own thread, in an order shuffled with a fixed seed,
    and only those `allow` lets through until release()."""

    def __init__(self, script, seed=0, allow=lambda request: True, hold_submits_from=None, gather=0.01):
        super().__init__(script)
        self.rng = random.Random(seed)
        self.gather = gather  # how long to let requests gather before ending one (0: end them as they come)
        self.allow = allow
        self.hold_submits_from = hold_submits_from  # submit() number k and later wait for `submits`
        self.submits = threading.Event()
        self.submitting = False  # a submit() is waiting
        self.watched = []  # the handles the job asked to hear about (it took them from its feeder)
        self.pending = []  # (handle, tokenizer, request)
        self.handles = []
        self.cancelled = []
        self.closed = False
        self.thread = threading.Thread(target=self._complete, daemon=True)
        self.thread.start()

    def submit(self, key, inputs, context, urgent=False):
        if self.hold_submits_from is not None and len(self.handles) >= self.hold_submits_from:
            with self.cond:
                self.submitting = True
                self.cond.notify_all()
            assert self.submits.wait(LIMIT)
        tokenizer, temperature, windows = self.record(key, inputs, context, urgent)
        handle = Future()
        with self.cond:
            self.handles.append(handle)
            self.pending.append((handle, tokenizer, Request(temperature, windows, urgent)))
            self.cond.notify_all()
        return handle

    def done(self, handle):
        return handle.done()

    def when_done(self, handle, callback):
        with self.cond:
            self.watched.append(handle)
            self.cond.notify_all()
        handle.add_done_callback(lambda _future: callback())

    def wait(self, handle):
        return handle.result(timeout=LIMIT)

    def cancel(self, handle):
        with self.cond:
            self.cancelled.append(handle)
        handle.cancel()

    def release(self):
        with self.cond:
            self.allow = lambda request: True
            self.cond.notify_all()

    def close(self):
        self.submits.set()
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.thread.join(LIMIT)

    def _ready(self):
        return [item for item in self.pending if self.allow(item[2])]

    def _complete(self):
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.closed or self._ready())
                if self.closed:
                    return
                # let requests gather (a bound, not a synchronisation), so that they end out of order
                self.cond.wait_for(lambda: self.closed or len(self._ready()) >= 3, timeout=self.gather)
                ready = self._ready()
                if not ready:
                    continue
                item = ready[self.rng.randrange(len(ready))]
                self.pending.remove(item)
            handle, tokenizer, request = item
            if not handle.set_running_or_notify_cancel():
                continue
            try:
                handle.set_result(self.outputs(tokenizer, request.temperature, request.windows))
            except Exception as exc:  # noqa: BLE001 - the job gets the device's error
                handle.set_exception(exc)


@pytest.fixture
def devices():
    made = []

    def make(*args, **kwargs):
        made.append(Async(*args, **kwargs))
        return made[-1]

    yield make
    for device in made:
        device.close()


class Consumer(threading.Thread):
    """Iterates a job's segments on its own thread (so the test can act meanwhile)."""

    def __init__(self, job):
        super().__init__(daemon=True)
        self.job, self.segments, self.error = job, [], None
        self.start()

    def run(self):
        try:
            for segment in self.job.segments():
                self.segments.append(segment)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            self.error = exc

    def result(self):
        self.join(LIMIT)
        assert not self.is_alive(), "the job did not end"
        return self.segments


def collect(job) -> list:
    """The job's segments, read on a thread of their own: a job that hangs fails the test after
    LIMIT seconds; one that fails raises its error here."""
    consumer = Consumer(job)
    segments = consumer.result()
    if consumer.error is not None:
        raise consumer.error
    return segments


def job_of(hf_tokenizer, samples, options, device, cancelled=None, in_flight=None, host=None, **whisper):
    """`options` may hold "max_window_s" (see short()), given to the job as its window limit."""
    options = dict(options)
    longest = options.pop("max_window_s", MAX_WINDOW_S)
    return BatchedJob(Whisper(hf_tokenizer, getattr(samples, "samples", samples), **whisper), samples, options, device,
                      cancelled, host=host, in_flight=in_flight, max_window_s=longest)


def short(seconds: float, options: dict) -> dict:
    """`options` with windows of at most `seconds` (a job's own limit, for tests that want many
    windows: a request cannot shorten them)."""
    return dict(options, max_window_s=seconds)


def first_temperature_windows(device) -> list:
    return [w for r in device.requests if r.temperature == 0.0 for w in r.windows]


def feeders_alive() -> bool:
    return any(thread.name == "whisper-feed" and thread.is_alive() for thread in threading.enumerate())


# -- segments --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def silero():
    return decode_audio(str(DATA / "long" / "silero_test.wav"), 100)  # 60 s of speech, short pauses


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
        assert segment.seek == round(start / parts.HOP)
        assert segment.temperature == 0.0 and segment.avg_logprob == -0.3 and segment.no_speech_prob == 0.1
        assert segment.compression_ratio == compression_ratio(segment.text)
    assert all(s.words is None for s in segments)  # none asked for
    assert job.plan.language == "en" and job.plan.language_probability == 1.0
    spans = parts.speech_spans(silero, {"min_silence_duration_ms": 160})
    assert job.spans == spans
    assert job.speech_seconds == pytest.approx(sum(b - a for a, b in spans) / SR)
    assert 0 < job.vad_seconds < 30


class Trickle:
    """Audio still being decoded: a wait for samples not there yet returns once they are (or all of
    the audio, if fewer), and no more: the VAD asks for a second at a time, so the job plans while
    the rest is still to come, as with a decoder; `finished` once all of it is there."""

    def __init__(self, samples: np.ndarray, ahead: float = 0.0):
        self.samples = samples
        self.ahead = int(ahead * SR)  # how far the decoder runs ahead of what was asked
        self.available = 0
        self.lock = threading.Lock()

    @property
    def finished(self) -> bool:
        with self.lock:
            return self.available == self.samples.shape[0]

    def wait_for(self, samples: int) -> int:
        with self.lock:
            if samples > self.available:
                self.available = min(self.samples.shape[0], samples + self.ahead)
            return self.available

    def view(self, start: int, end: int) -> np.ndarray:
        with self.lock:
            assert end <= self.available, "audio read before it was decoded"
        return self.samples[start:end]


@pytest.fixture(scope="module")
def paused(jfk):
    """jfk, 3 s of silence, jfk, 1 s, jfk, 2.5 s, jfk: pauses that end windows (over 2 s) and some that do not."""
    gap = lambda seconds: np.zeros(int(seconds * SR), np.float32)  # noqa: E731
    return np.concatenate([jfk, gap(3), jfk, gap(1), jfk, gap(2.5), jfk])


@pytest.mark.parametrize("ahead", [0.0, 19.0])
def test_audio_still_decoding_gives_the_windows_and_segments_of_the_whole_file(hf_tokenizer, paused, monkeypatch, ahead):
    whole_device, streamed_device = Blocking(speech), Blocking(speech)
    whole = job_of(hf_tokenizer, paused, decoding(), whole_device)
    whole_segments = collect(whole)
    audio = Trickle(paused, ahead)  # a second at a time, or 20 s (a whole window past a long pause in one round)
    planning = []  # the spans each planning round was given
    plan = longform.plan_windows
    monkeypatch.setattr(longform, "plan_windows", lambda samples, spans, **kw: planning.append(list(spans)) or plan(samples, spans, **kw))
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
    long_pauses = [k for k in range(1, len(spans)) if spans[k][0] - spans[k - 1][1] > longform.MAX_PAUSE_S * SR]
    assert len(planning) > 1 and len(long_pauses) == 2
    for before, now in zip(planning, planning[1:]):
        known = spans.index(before[-1]) + 1  # the spans final when `before` was planned
        assert spans.index(now[0]) == max([k for k in long_pauses if k < known], default=0)


def test_times_are_clamped_into_the_window_and_never_go_backwards(hf_tokenizer, jfk):
    """Timestamps past the window's end, or before the previous segment's end, as a model may give."""

    def script(tokenizer, start, end, temperature):
        tokens = say(tokenizer, 1.0, " One.", 3.0, 2.0, " Two.", 2.5, 2.5, " . . .", 3.5, 3.5, " Three.", 29.0)
        return parts.WindowOutput(tokens=tokens, avg_logprob=-0.3, no_speech_prob=0.1)

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
        return parts.WindowOutput(tokens=tokens, avg_logprob=-0.3, no_speech_prob=0.1)

    device = Blocking(script)
    segments = collect(job_of(hf_tokenizer, jfk, decoding(vad_filter=False), device))
    assert rows(segments) == [(0.0, 2.0, " Said."), (2.0, 11.0, " And then more")]
    assert device.requests == [Request(0.0, [(0, jfk.shape[0])], None)]  # text runs on to the end: no tail


# -- temperature fallback ----------------------------------------------------------------------

def fails(bad: dict):
    """The speech script, except that window k (by its start) gives `bad[k](tokenizer, temperature)`
    when that returns an output."""

    def script(tokenizer, start, end, temperature):
        output = bad[start](tokenizer, temperature) if start in bad else None
        return output or speech(tokenizer, start, end, temperature)

    return script


def output(tokenizer, text, avg_logprob=-0.3, no_speech_prob=0.1):
    """Text from the window's start that runs on to its end (so no tail)."""
    return parts.WindowOutput(tokens=say(tokenizer, 0.0, text), avg_logprob=avg_logprob, no_speech_prob=no_speech_prob)


def short_windows() -> dict:
    return short(2.5, decoding())


def planned(hf_tokenizer, samples, options):
    return [(w.start, w.end) for w in job_of(hf_tokenizer, samples, options, Blocking(speech)).windows]


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
    options = dict(short_windows(), temperature=[0.1, 0.5, 0.9])
    windows = planned(hf_tokenizer, jfk, options)
    bad = {windows[1][0]: lambda tok, t: output(tok, LOOP) if t < 0.9 else output(tok, " At last.")}
    device = Blocking(fails(bad))
    segments = collect(job_of(hf_tokenizer, jfk, options, device))
    assert [r.temperature for r in device.requests if r.windows == [windows[1]]] == [0.5, 0.9]
    assert sum(len(r.windows) for r in device.requests if r.temperature == 0.1) == len(windows)
    assert next(s for s in segments if s.text == " At last.").temperature == 0.9
    assert {s.temperature for s in segments} == {0.1, 0.9}


def test_thresholds_switched_off_never_fall_back(hf_tokenizer, jfk):
    options = dict(short_windows(), compression_ratio_threshold=None, log_prob_threshold=None)
    windows = planned(hf_tokenizer, jfk, options)
    bad = {windows[0][0]: lambda tok, t: output(tok, LOOP, avg_logprob=-3.0, no_speech_prob=0.9),  # silent by no-speech alone
           windows[1][0]: lambda tok, t: output(tok, LOOP, avg_logprob=-3.0, no_speech_prob=0.1)}
    device = Blocking(fails(bad))
    segments = collect(job_of(hf_tokenizer, jfk, options, device))
    assert {r.temperature for r in device.requests} == {0.0}
    start, end = windows[1]
    assert rows(segments)[:3] == [(round(start / SR, 3), round(end / SR, 3), LOOP)] + expected(windows[2:3])


def temperatures_of(device, window) -> list:
    return [r.temperature for r in device.requests if window in r.windows]


# -- silence and hallucinations ----------------------------------------------------------------

def test_silent_windows_and_loops_over_non_speech_give_nothing(hf_tokenizer, jfk):
    windows = planned(hf_tokenizer, jfk, short_windows())
    quiet, spoken, unsure, noise, loop = (w[0] for w in windows[:5])
    assert (windows[0][1] - quiet) / SR > 0.5 + MIN_TAIL_S
    bad = {
        # silence (its text stops 1.5 s before its end, but there is no tail to a window that is silent)
        quiet: lambda tok, t: parts.WindowOutput(tokens=say(tok, 0.0, " Thank you.", 0.5), avg_logprob=-1.5, no_speech_prob=0.9),
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


# -- tails -------------------------------------------------------------------------------------

def chain(stops: dict):
    """Window (start, end) -> its text and the timestamp (seconds into it) where the model stops
    (None: no closing timestamp)."""

    def script(tokenizer, start, end, temperature):
        text, last = stops[(start, end)]  # a window the test did not expect fails the job
        tokens = say(tokenizer, 0.0, text) + (say(tokenizer, last) if last is not None else [])  # None: text to the end
        return parts.WindowOutput(tokens=tokens, avg_logprob=-0.3, no_speech_prob=0.1)

    return script


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
        return parts.WindowOutput(tokens=say(tokenizer, 0.0, text, last), avg_logprob=-0.3, no_speech_prob=0.1)

    device = devices(script)
    segments = collect(job_of(hf_tokenizer, jfk, decoding(vad_filter=False), device))
    assert device.requests == [Request(0.0, [(0, end)], False), Request(0.0, [tail], True), Request(0.2, [tail], False)]
    assert rows(segments) == [(0.0, 5.0, " Parent."), (5.0, 11.0, " Tail.")]
    assert [s.temperature for s in segments] == [0.0, 0.2]


# -- word timestamps ---------------------------------------------------------------------------

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
        return parts.WindowOutput(tokens=tokens, avg_logprob=-0.3, no_speech_prob=0.1, alignment=alignment)

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


# -- an asynchronous device: out of order, bounded, cancelled, failing --------------------------

def mixed(tokenizer, start, end, temperature):
    """Windows of 2 s or more stop halfway (a tail follows); every third window by its start loops at
    the first temperature; the rest is the speech script."""
    seconds = (end - start) / SR
    if start % 3 == 0 and temperature == 0.0:
        return output(tokenizer, LOOP)
    if seconds >= 2.0:
        half, _ = stamps(start, end)
        return parts.WindowOutput(tokens=say(tokenizer, 0.0, f" Half of {start}.", half), avg_logprob=-0.3, no_speech_prob=0.1)
    return speech(tokenizer, start, end, temperature)


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


def without_vad(longest: float) -> dict:
    """No VAD (the whole file is speech, which saves the VAD's time) and windows of at most
    `longest` seconds: the loop's tests want many windows, and where they are does not matter."""
    return short(longest, decoding(vad_filter=False))


@pytest.fixture(scope="module")
def many_windows(hf_tokenizer, paused):
    """About 40 windows (cut at 1.5 s at most)."""
    options = without_vad(1.5)
    windows = planned(hf_tokenizer, paused, options)
    assert len(windows) > 32
    return options, windows


@pytest.mark.parametrize("in_flight, batch_size, bound", [(8, 8, 8), (None, 8, 16), (None, 2, 8), (3, 8, 3), (1, 8, 1)])
def test_at_most_in_flight_planned_windows_are_sent_ahead(hf_tokenizer, paused, devices, many_windows, in_flight, batch_size, bound):
    options, windows = many_windows
    device = devices(speech, allow=lambda request: False, gather=0)  # nothing ends until released
    consumer = Consumer(job_of(hf_tokenizer, paused, dict(options, batch_size=batch_size), device, in_flight=in_flight))
    assert device.wait_for(lambda: device.planned >= bound), device.planned
    # none given out, so no more may go (watched for a while: a bound, not a synchronisation)
    assert not device.wait_for(lambda: device.planned > bound, timeout=0.2)
    device.release()
    assert rows(consumer.result()) == expected(windows)
    assert consumer.error is None and first_temperature_windows(device) == windows


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


# -- windows, language, speech ------------------------------------------------------------------

def test_no_window_is_longer_than_30_seconds_whatever_max_speech_duration_allows(hf_tokenizer, silero):
    windows = planned(hf_tokenizer, silero, decoding(vad_parameters={"max_speech_duration_s": 45}))
    assert max(end - start for start, end in windows) / SR == pytest.approx(MAX_WINDOW_S, abs=8)
    assert all((end - start) / SR <= MAX_WINDOW_S for start, end in windows)


def test_a_short_max_speech_duration_leaves_windows_their_normal_length(hf_tokenizer, jfk, silero):
    """max_speech_duration_s splits the VAD's spans; windows merge them again, up to 30 s, so a
    request's value never makes Whisper decode second-long windows (it once did: 64 % WER)."""
    for samples in (jfk, silero):
        spans = parts.speech_spans(samples, {"min_silence_duration_ms": 160, "max_speech_duration_s": 1})
        assert max(end - start for start, end in spans) <= SR  # the option does cut the speech
        cut = planned(hf_tokenizer, samples, decoding(vad_parameters={"max_speech_duration_s": 1}))
        assert cut == [(w.start, w.end) for w in plan_windows(samples, spans)]
        assert all(longform.MIN_WINDOW_S * SR <= end - start <= MAX_WINDOW_S * SR for start, end in cut), cut


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
    options = dict(short_windows(), no_speech_threshold=None)
    windows = planned(hf_tokenizer, jfk, options)
    bad = {windows[0][0]: lambda tok, t: output(tok, LOOP, no_speech_prob=0.01),  # loops at every temperature: dropped
           windows[1][0]: lambda tok, t: output(tok, " Faint.", avg_logprob=-1.5 + t, no_speech_prob=0.99)}  # never silent
    device = Blocking(fails(bad))
    segments = collect(job_of(hf_tokenizer, jfk, options, device))
    assert len(temperatures_of(device, windows[0])) == 6 and temperatures_of(device, windows[1]) == [0.0, 0.2, 0.4, 0.6]
    assert rows(segments)[0] == (round(windows[1][0] / SR, 3), round(windows[1][1] / SR, 3), " Faint.")
    assert segments[0].temperature == 0.6
    assert rows(segments)[1:] == expected(windows[2:])


# -- where a span longer than a window is cut ----------------------------------------------------

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
    device = Blocking(lambda tok, start, end, t: parts.WindowOutput(tokens=tok.encode(f" All of {start}"), avg_logprob=-0.2,
                                                                     no_speech_prob=0.1))
    job = job_of(hf_tokenizer, jfk, options, device)
    segments = collect(job)
    windows = [(w.start, w.end) for w in job.windows]
    assert rows(segments) == [(round(start / SR, 3), round(end / SR, 3), f" All of {start}") for start, end in windows]
    assert len(windows) > 1 and first_temperature_windows(device) == windows  # each once: no tail, no fallback


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


def test_the_requests_vad_parameters_decide_the_speech(hf_tokenizer, jfk):
    parameters = {"min_silence_duration_ms": 500, "speech_pad_ms": 100}
    job = job_of(hf_tokenizer, jfk, decoding(vad_parameters=parameters), Blocking(speech))
    assert job.spans == parts.speech_spans(jfk, parameters) != parts.speech_spans(jfk, {"min_silence_duration_ms": 160})


def test_the_first_word_of_a_file_follows_no_earlier_speech(hf_tokenizer, jfk):
    """Word timing starts as sequential decoding's does, with no speech before the file: a first word
    far longer than the others is cut to twice the median word length, ending where it ended."""

    def script(tokenizer, start, end, temperature):
        text = tokenizer.encode(" Ask not what your country")
        times = [(0.2, 1.1)] + [(1.2 + 0.1 * k, 1.28 + 0.1 * k) for k in range(len(text) - 1)]
        alignment = [{"word": tokenizer.decode([token]), "tokens": [token], "start": a, "end": b, "probability": 0.9}
                     for token, (a, b) in zip(text, times)]
        return parts.WindowOutput(tokens=say(tokenizer, 0.0, " Ask not what your country"), avg_logprob=-0.3,
                                  no_speech_prob=0.1, alignment=alignment)

    (segment,) = collect(job_of(hf_tokenizer, jfk, decoding(word_timestamps=True, vad_filter=False), Blocking(script)))
    first = segment.words[0]
    assert first.word == " Ask" and first.end == pytest.approx(1.1)
    assert first.start == pytest.approx(1.1 - 2 * 0.08) and segment.start == first.start


def test_without_vad_audio_still_decoding_is_planned_once_all_of_it_is_there(hf_tokenizer, jfk):
    samples = np.concatenate([jfk] * 3)
    whole = job_of(hf_tokenizer, samples, decoding(vad_filter=False), Blocking(speech))
    audio = Trickle(samples)
    streamed = job_of(hf_tokenizer, audio, decoding(vad_filter=False), Blocking(speech))
    assert audio.finished and streamed.windows == whole.windows
    assert rows(collect(streamed)) == rows(collect(whole)) == expected([(w.start, w.end) for w in whole.windows])


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
