"""Batched long-form decoding: the worker's own loop, built from faster-whisper's parts, that keeps
the device fed across jobs while each job's transcript stays what decoding window after window
would give.

    audio -> speech spans (Silero VAD, or the whole file) -> windows of at most 30 s of contiguous
    audio (worker/decoding/windows.py) -> features -> the shared scheduler (encode + generate +
    align, many jobs per batch) -> segments by the rules of worker/decoding/segments.py -> word
    timings -> Segment objects in time order

Why not faster-whisper's BatchedInferencePipeline: it throws away the text after a window's last
timestamp token (whole sentences at the end of most 30 s chunks), concatenates speech from
different places into one window and maps times back approximately (times out of order), and
has no no-speech threshold.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional, Tuple

import numpy as np

from worker.audio.decode import DecodedAudio
from worker.decoding.segments import SegmentRules
from worker.decoding.whisper.device import WindowOutput, detect_language
from worker.decoding.whisper.features import WindowInput, window_features
from worker.decoding.whisper.options import at_temperature, batched_options, batching_key, tokenizer_for
from worker.decoding.windows import MAX_WINDOW_S, Plan, Window, WindowPlanner
from worker.errors import Cancelled
from worker.stopping import AnyEvent
from worker.transcript import Segment

if TYPE_CHECKING:
    from worker.request.schema import DecodingOptions

TAIL_ROUNDS = 2  # how many times a tail's own tail is decoded again
FEED_CHUNK = 4  # windows sent to the device together by the feeder (their features computed in parallel)

# run(key, windows, context) -> one WindowOutput per window, in order (the scheduler, or a test)
RunWindows = Callable[[object, List[WindowInput], object], List[WindowOutput]]


def audio_source(audio):
    """Audio read the way DecodingAudio is (wait_for, view, finished, result): samples already in
    memory (a numpy array) are wrapped; audio still being decoded is that already."""
    return DecodedAudio(audio) if isinstance(audio, np.ndarray) else audio


def _language(whisper, audio, language: Optional[str], windows: List[Window]) -> Tuple[str, float]:
    """The job's language and its probability: the request's, English for an English-only model,
    or detected on the first window (English, probability 0, when there is no speech)."""
    if language is not None:
        return language, 1.0
    if not whisper.model.is_multilingual:
        return "en", 1.0
    if not windows:
        return "en", 0.0
    first = windows[0]
    return detect_language(whisper, window_features(whisper, audio.view(first.start, first.end)))


class _Now:
    """A blocking run(key, windows, context) function used as a device (tests, tools)."""

    def __init__(self, run: RunWindows):
        self._run = run

    def submit(self, key, windows, context, urgent: bool = False):
        return self._run(key, windows, context)

    def wait(self, handle):
        return handle

    def done(self, handle) -> bool:
        return True

    def when_done(self, handle, callback: Callable[[], None]) -> None:
        callback()

    def cancel(self, handle) -> None:
        pass


class _Inbox:
    """What the job thread waits for: chunks the feeder sent (windows, inputs, device handle),
    then None (no more) or the feeder's exception; and a poke whenever a device request ends."""

    def __init__(self):
        self._items: deque = deque()
        self._cond = threading.Condition()
        self._poked = False

    def put(self, item) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def poke(self) -> None:
        with self._cond:
            self._poked = True
            self._cond.notify()

    def wait(self, timeout: float) -> None:
        """Until an item or a poke came since the last take (or `timeout` seconds)."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._poked, timeout)

    def take_all(self) -> list:
        with self._cond:
            items, self._items, self._poked = list(self._items), deque(), False
        return items


@dataclass(eq=False)
class _Decoding:
    """One window on its way through the device: decoded at each temperature in turn until a
    result passes (sequential decoding's fallback); then, if the model stopped before speech
    that is there, its tail is a decoding of its own (`depth` + 1)."""

    window: Window
    inputs: Optional[WindowInput]
    owner: int  # the planned window whose transcript it is part of
    depth: int = 0  # 0: a planned window; k: a tail k levels down
    tried: List[WindowOutput] = field(default_factory=list)


class _Progress:
    """The job thread's account of its planned windows: the decodings of each not final yet, the
    final outputs of each (its own and its tails'), and how many were given out."""

    def __init__(self):
        self.final: List[List[Tuple[int, Window, WindowOutput]]] = []  # per planned window sent: (depth, window, output)
        self.unresolved: List[int] = []  # per planned window: its decodings not final yet
        self.given = 0  # planned windows whose segments were given out

    def planned(self, window: Window, inputs: WindowInput) -> _Decoding:
        self.final.append([])
        self.unresolved.append(1)
        return _Decoding(window, inputs, owner=len(self.final) - 1)

    def resolved(self, decoding: _Decoding, output: WindowOutput, tail: Optional[Window]) -> Optional[_Decoding]:
        """The decoding is final with `output`; its tail's decoding, if it has one."""
        self.final[decoding.owner].append((decoding.depth, decoding.window, output))
        self.unresolved[decoding.owner] -= 1
        if tail is None:
            return None
        self.unresolved[decoding.owner] += 1
        return _Decoding(tail, None, owner=decoding.owner, depth=decoding.depth + 1)

    def next_done(self) -> Optional[List[Tuple[Window, WindowOutput]]]:
        """The next planned window in order, once it and its tails are final: (window, output) in
        time order (a tail after its parent); None while it is not."""
        if self.given >= len(self.final) or self.unresolved[self.given]:
            return None
        own = sorted(self.final[self.given], key=lambda item: (item[1].start, item[0]))
        self.final[self.given] = []
        self.given += 1
        return [(window, output) for _, window, output in own]

    @property
    def all_given(self) -> bool:
        return self.given == len(self.final)


class _Feeder:
    """The feeder thread: planned windows to the device as soon as they are final, FEED_CHUNK at a
    time, while at most `limit` of them are sent and not yet given out (release() gives a slot
    back); more planning whenever all planned windows are sent. What it sent goes to `inbox` as
    (windows, inputs, handle), then None, or the exception it met."""

    def __init__(self, planner: WindowPlanner, send: Callable[[List[Window]], tuple], inbox: _Inbox, stop, limit: int):
        self.planner = planner
        self._send = send  # windows -> (inputs, handle)
        self._inbox = inbox
        self._stop = stop
        self.limit = limit
        self._slots = threading.Semaphore(limit)
        self.thread = threading.Thread(target=self._run, name="whisper-feed", daemon=True)

    def release(self) -> None:
        """A planned window was given out: its slot is free."""
        self._slots.release()

    def _run(self) -> None:
        try:
            sent = 0
            windows = self.planner.windows
            while True:
                while sent < len(windows):
                    # a chunk never needs more slots than there are (a limit under FEED_CHUNK would wait forever)
                    chunk = windows[sent:sent + min(FEED_CHUNK, self.limit)]
                    for _ in chunk:
                        while not self._slots.acquire(timeout=0.1):
                            if self._stop.is_set():
                                return
                    if self._stop.is_set():  # the job ended while there were free slots: send nothing more
                        return
                    self._inbox.put((chunk, *self._send(chunk)))
                    sent += len(chunk)
                if self.planner.planned_all or self._stop.is_set():
                    break
                self.planner.plan_more()
            self._inbox.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the job's thread
            self._inbox.put(exc)


class BatchedJob:
    """One job's batched decoding, as a pipeline that keeps the device fed:

        decode thread (DecodingAudio) -> feeder thread: VAD as samples arrive, windows planned as
        soon as they are final, their features on the host pool, sent to the device at once
        -> this job's thread (segments()): each result as it ends, its fallback or tail sent
        at once, segments in window order with word timing, while the device works on the
        windows sent after.

    At most `in_flight` planned windows are sent and not yet given out (memory stays bounded;
    the feeder waits). The transcript equals the one made window after window: every window is
    decoded alone (rows are independent), given out in time order, with its tails after it.
    `audio`: samples, or audio read the way DecodingAudio is (see audio_source).
    `device`: submit(key, windows, context, urgent) -> handle, done(handle), when_done(handle,
    callback), wait(handle) -> outputs, cancel(handle); or a blocking run(key, windows, context)."""

    def __init__(self, whisper, audio, decoding: DecodingOptions, device, cancelled: Optional[threading.Event],
                 host: Optional[Executor] = None, in_flight: Optional[int] = None, max_window_s: float = MAX_WINDOW_S):
        self.whisper = whisper
        self.audio = audio_source(audio)
        self.decoding = decoding
        self.device = device if hasattr(device, "submit") else _Now(device)
        self.cancelled = cancelled or threading.Event()
        self.finished = threading.Event()  # done, failed or abandoned: the feeder stops
        self.host = host
        # Windows are up to 30 s whatever the request's max_speech_duration_s: that option only
        # splits the VAD's speech spans, which windows merge again (Whisper decodes 1 s windows
        # badly). `max_window_s` is for tests and tools that want many short windows.
        self.planner = WindowPlanner(self.audio, decoding.batched_vad_parameters, min(MAX_WINDOW_S, float(max_window_s)))
        self.planner.plan_first()
        language, probability = _language(whisper, self.audio, decoding.language, self.windows)
        self.plan = Plan(windows=self.windows, speech_seconds=0.0, language=language, language_probability=probability)
        self.tokenizer = tokenizer_for(whisper, decoding.task, self.plan.language)
        self.options = batched_options(self.tokenizer, decoding)
        self.rules = SegmentRules(whisper, self.tokenizer, self.options, lambda: self.planner.spans)
        self._inbox = _Inbox()
        self._feeder = _Feeder(self.planner, self._send_planned, self._inbox, AnyEvent(self.finished, self.cancelled),
                               in_flight or 2 * max(decoding.batch_size, FEED_CHUNK))

    @property
    def windows(self) -> List[Window]:
        return self.planner.windows

    @property
    def spans(self) -> Optional[List[Tuple[int, int]]]:
        """The speech spans found so far (all, once planned_all); None without VAD."""
        return self.planner.spans

    @property
    def planned_all(self) -> bool:
        return self.planner.planned_all

    @property
    def speech_seconds(self) -> float:
        return self.planner.speech_seconds

    @property
    def vad_seconds(self) -> float:
        return self.planner.vad_seconds

    # -- the device ------------------------------------------------------------------------
    def _send_planned(self, windows: List[Window]) -> tuple:
        """Planned windows to the device at the first temperature (the feeder thread)."""
        inputs = self._features(windows)
        return inputs, self._submit(inputs, 0)

    def _submit(self, inputs: List[WindowInput], temperature: int, urgent: bool = False):
        """Windows to the device at the job's temperature number `temperature`; urgent ones go
        ahead of the job's others."""
        options = at_temperature(self.options, self.options.temperatures[temperature])
        return self.device.submit(batching_key(self.tokenizer, options), inputs, (self.tokenizer, options), urgent=urgent)

    def _features(self, windows: List[Window]) -> List[WindowInput]:
        compute = lambda w: window_features(self.whisper, self.audio.view(w.start, w.end))  # noqa: E731
        if self.host is None or len(windows) == 1:
            return [compute(w) for w in windows]
        return list(self.host.map(compute, windows))

    # -- consuming (the job's thread) ---------------------------------------------------------
    def segments(self) -> Iterator[Segment]:
        """Segments in time order. The job's thread never waits on one request: whenever any
        of its requests ends, it sends what follows (the next temperature for a window that
        failed, the tail the model left out), so the follow-ups of many windows gather in the
        device queue and share batches; a planned window's segments are given out once it and
        its tails are final. Each window's result is its own (rows are independent), so this
        equals decoding window after window."""
        self._feeder.thread.start()
        last_speech = 0.0
        progress = _Progress()
        waiting: dict = {}  # id(handle) -> (handle, decodings)
        fed_all = False
        try:
            while True:
                for item in self._inbox.take_all():
                    if isinstance(item, BaseException):
                        raise item
                    if item is None:
                        fed_all = True
                        continue
                    chunk, inputs, handle = item
                    self._watch(waiting, handle, [progress.planned(window, i) for window, i in zip(chunk, inputs)])
                follow: dict = {}  # temperature index -> decodings to send
                for key in [key for key, (handle, _) in waiting.items() if self.device.done(handle)]:
                    handle, decodings = waiting.pop(key)
                    for decoding, output in zip(decodings, self.device.wait(handle)):
                        output.temperature = self.options.temperatures[len(decoding.tried)]
                        decoding.tried.append(output)
                        self._advance(decoding, follow, progress)
                self._send(follow, waiting)
                while (done := progress.next_done()) is not None:
                    last_speech, segments = self.rules.window_segments(done, last_speech)
                    self._feeder.release()
                    yield from segments
                if fed_all and progress.all_given:
                    break
                self._inbox.wait(0.1)
                if self.cancelled.is_set():
                    raise Cancelled("job cancelled")
        finally:
            self.finished.set()  # done, failed or abandoned: the feeder stops, queued windows are dropped
            self._feeder.thread.join(timeout=5)
            for item in self._inbox.take_all():
                if isinstance(item, tuple):
                    self.device.cancel(item[2])
            for handle, _ in waiting.values():
                self.device.cancel(handle)

    def _watch(self, waiting: dict, handle, decodings: List[_Decoding]) -> None:
        waiting[id(handle)] = (handle, decodings)
        self.device.when_done(handle, self._inbox.poke)

    def _advance(self, decoding: _Decoding, follow: dict, progress: _Progress) -> None:
        """After a decoding's latest result: the next temperature, or final (and its tail sent)."""
        if len(decoding.tried) < len(self.options.temperatures) and self.rules.needs_fallback(decoding.tried[-1]):
            follow.setdefault(len(decoding.tried), []).append(decoding)
            return
        output = self.rules.best(decoding.tried)
        tail = self.rules.tail(decoding.window, output) if decoding.depth < TAIL_ROUNDS else None
        following = progress.resolved(decoding, output, tail)
        if following is not None:
            follow.setdefault(0, []).append(following)

    def _send(self, follow: dict, waiting: dict) -> None:
        """One request per temperature. Tails (the first temperature) go ahead of the job's
        other windows, whose batches they share; fallbacks queue behind, so that those of later
        windows join them before their turn and a fallback round costs one batch, not one per
        window."""
        for index, decodings in sorted(follow.items()):
            fresh = [d for d in decodings if d.inputs is None]
            for decoding, inputs in zip(fresh, self._features([d.window for d in fresh])):
                decoding.inputs = inputs
            self._watch(waiting, self._submit([d.inputs for d in decodings], index, urgent=index == 0), decodings)
