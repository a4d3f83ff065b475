"""A BatchedJob (worker/decoding/batched.py) driven by a scripted device instead of the model, shared
by the job's tests (test_windows, test_segments, test_fallbacks, test_tails, test_feeding,
test_cancellation): which windows reach the device, at which temperature and in which requests,
and the segments that come back. No encode or generate runs, so those tests take seconds.

The job's `whisper` is tiny.en's real tokenizer with a stand-in feature extractor: its "features"
carry the first and last sample index of the audio they were made from (nothing reads them but
the scripted device), so the device knows exactly which audio each window holds and fabricates
that window's output from it, the same every time. Their fixtures: scripted_fixtures.py."""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from collections import namedtuple
from concurrent.futures import Future
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Union

import numpy as np

from worker.audio.decode import SAMPLE_RATE
from worker.config import Settings
from worker.decoding.batched import BatchedJob
from worker.decoding.whisper.device import WindowOutput
from worker.decoding.whisper.features import HOP, WINDOW_FRAMES, WindowInput
from worker.decoding.whisper.options import batching_key
from worker.decoding.windows import MAX_WINDOW_S
from worker.request.schema import DecodingOptions, parse_request

SR = SAMPLE_RATE
LIMIT = 10.0  # seconds: only a bound for a test that fails by hanging; a passing test takes far less

Request = namedtuple("Request", "temperature windows urgent")  # windows: [(first sample, end sample)]


def decoding(**fields) -> DecodingOptions:
    """The decoding options the engine passes for a request with these fields."""
    return parse_request({"audio": "x", **fields}, Settings(batch_size=8)).decoding_options()


@dataclass(frozen=True)
class Short:
    """Decoding options with a window limit of the job's own, for tests that want many windows (a
    request cannot shorten them)."""

    options: DecodingOptions
    max_window_s: float


def short(seconds: float, options: DecodingOptions) -> Short:
    """`options` with windows of at most `seconds`."""
    return Short(options, seconds)


def short_windows() -> Short:
    return short(2.5, decoding())


def without_vad(longest: float) -> Short:
    """No VAD (the whole file is speech, which saves the VAD's time) and windows of at most
    `longest` seconds: the loop's tests want many windows, and where they are does not matter."""
    return short(longest, decoding(vad_filter=False))


def changed(options: Union[DecodingOptions, Short], **fields) -> Union[DecodingOptions, Short]:
    """`options` with these fields changed (their window limit kept)."""
    if isinstance(options, Short):
        return Short(dataclasses.replace(options.options, **fields), options.max_window_s)
    return dataclasses.replace(options, **fields)


def job_of(hf_tokenizer, samples, options: Union[DecodingOptions, Short], device, cancelled=None, in_flight=None, host=None, **whisper):
    """`options` may be short() ones, whose window limit is given to the job."""
    longest = MAX_WINDOW_S
    if isinstance(options, Short):
        options, longest = options.options, options.max_window_s
    return BatchedJob(Whisper(hf_tokenizer, getattr(samples, "samples", samples), **whisper), samples, options, device,
                      cancelled, host=host, in_flight=in_flight, max_window_s=longest)


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
        features = np.zeros((80, view.shape[0] // HOP + 1), np.float32)
        features[0, 0], features[1, 0] = first, first + view.shape[0]
        self.extracted.append((first, first + view.shape[0]))
        self.extracting_threads.add(threading.current_thread().name)
        return features

    def detect_language(self, features):
        self.detections.append(window_of_features(features))
        return self.detected[0], self.detected[1], []


def window_of_features(features) -> tuple:
    return int(features[0, 0]), int(features[1, 0])


def window_of(inputs: WindowInput) -> tuple:
    start, end = window_of_features(inputs.features)
    assert inputs.content_frames == min((end - start) // HOP, WINDOW_FRAMES)
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


def speech(tokenizer, start: int, end: int, temperature: float) -> WindowOutput:
    """Two sentences naming the window, the second ending at the window's end: no tail, no fallback."""
    half, last = stamps(start, end)
    tokens = say(tokenizer, 0.0, f" First at {start}.", half, half, f" Second at {start}.", last)
    return WindowOutput(tokens=tokens, avg_logprob=-0.3, no_speech_prob=0.1)


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
        assert key == batching_key(tokenizer, options)
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


def planned(hf_tokenizer, samples, options):
    return [(w.start, w.end) for w in job_of(hf_tokenizer, samples, options, Blocking(speech)).windows]


def first_temperature_windows(device) -> list:
    return [w for r in device.requests if r.temperature == 0.0 for w in r.windows]


def temperatures_of(device, window) -> list:
    return [r.temperature for r in device.requests if window in r.windows]


def feeders_alive() -> bool:
    return any(thread.name == "whisper-feed" and thread.is_alive() for thread in threading.enumerate())


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


def output(tokenizer, text, avg_logprob=-0.3, no_speech_prob=0.1):
    """Text from the window's start that runs on to its end (so no tail)."""
    return WindowOutput(tokens=say(tokenizer, 0.0, text), avg_logprob=avg_logprob, no_speech_prob=no_speech_prob)


def fails(bad: dict):
    """The speech script, except that window k (by its start) gives `bad[k](tokenizer, temperature)`
    when that returns an output."""

    def script(tokenizer, start, end, temperature):
        output = bad[start](tokenizer, temperature) if start in bad else None
        return output or speech(tokenizer, start, end, temperature)

    return script


def chain(stops: dict):
    """Window (start, end) -> its text and the timestamp (seconds into it) where the model stops
    (None: no closing timestamp)."""

    def script(tokenizer, start, end, temperature):
        text, last = stops[(start, end)]  # a window the test did not expect fails the job
        tokens = say(tokenizer, 0.0, text) + (say(tokenizer, last) if last is not None else [])  # None: text to the end
        return WindowOutput(tokens=tokens, avg_logprob=-0.3, no_speech_prob=0.1)

    return script


def mixed(tokenizer, start, end, temperature):
    """Windows of 2 s or more stop halfway (a tail follows); every third window by its start loops at
    the first temperature; the rest is the speech script."""
    seconds = (end - start) / SR
    if start % 3 == 0 and temperature == 0.0:
        return output(tokenizer, LOOP)
    if seconds >= 2.0:
        half, _ = stamps(start, end)
        return WindowOutput(tokens=say(tokenizer, 0.0, f" Half of {start}.", half), avg_logprob=-0.3, no_speech_prob=0.1)
    return speech(tokenizer, start, end, temperature)
