"""Decoding real audio and video containers into 16 kHz mono float32, under a duration limit.

The samples equal faster-whisper's own `decode_audio` (same resampler settings, s16 then /32768),
so the worker hears exactly what faster-whisper would. Unlike it, decoding refuses long audio
early: from the container's declared duration when it has one, and by a running sample count
while decoding when it does not (or lies), so hours of audio are never held in memory.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from typing import BinaryIO, List, Optional, Union

import av
import numpy as np

from worker.stages import timed
from worker.errors import AudioError, AudioTooLong, Cancelled
from worker.stopping import AnyEvent

SAMPLE_RATE = 16000
# FFmpeg is a programmable reader: playlist, concat and session-description demuxers open other
# files and sockets named inside the bytes. Only these containers may be opened, and no protocol
# at all (the bytes reach FFmpeg through a Python file object, so none is needed).
CONTAINERS = (
    "wav", "w64", "flac", "mp3", "ogg", "mov", "matroska", "asf", "aac", "aiff", "caf", "amr", "au",
    "wv", "ape", "tta", "avi", "flv", "mpeg", "mpegts", "ac3", "eac3", "dts", "truehd", "mlp", "voc", "gsm",
)
CONTAINER_OPTIONS = {"format_whitelist": ",".join(CONTAINERS), "protocol_whitelist": "none"}
SILENCE_PEAK = 1e-4  # about -80 dBFS: nothing a microphone records is this quiet
# Each change of sample rate or channels mid-stream costs a new resampler (2.3 ms here, 20x a
# frame's resampling): joined files have a few, a broadcast stream dozens an hour; a file made to
# change on every frame would cost minutes of CPU per audio hour, so it is refused past this.
MAX_FORMAT_CHANGES = 1000
MAX_CHANNELS = 64


@timed("decode")
def decode_audio(source: Union[str, bytes, BinaryIO], max_seconds: float, cancelled: Optional[threading.Event] = None,
                 max_channels: Optional[int] = None) -> np.ndarray:
    """Return mono float32 samples at 16 kHz; AudioError for anything that is not usable audio.
    With `max_channels`, the channels are kept apart: (channels, samples), at most that many, each
    channel's row contiguous; `max_seconds` then bounds the work, channels x seconds."""
    if isinstance(source, str):
        try:
            with open(source, "rb") as handle:
                return decode_audio(handle, max_seconds, cancelled, max_channels)
        except OSError as exc:
            raise AudioError(f"cannot read the audio file: {exc.strerror or type(exc).__name__}", field="audio") from None
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    with _as_audio_errors():
        with _open_audio(source, max_seconds, max_channels) as container:
            stream = container.streams.audio[0]
            layout, reserve = "mono", None
            if max_channels is not None:
                channels = stream.codec_context.channels or 1
                if channels > max_channels:
                    raise AudioError(f"has {channels} channels; multichannel transcribes at most {max_channels}", field="audio")
                layout = stream.codec_context.layout
                reserve = _declared_seconds(container, stream)
            samples = _decode_stream(container, stream, int(max_seconds * SAMPLE_RATE), max_seconds, cancelled, layout, reserve)
    # max and min, not max(abs(...)): abs() would be a whole-file copy
    _check_signal(samples.size, max(float(samples.max()), -float(samples.min())) if samples.size else 0.0)
    return samples


def _open_audio(source: BinaryIO, max_seconds: float, max_channels: Optional[int] = None):
    """The container, opened under the whitelist, with an audio stream and a usable duration
    (with `max_channels`, that of up to that many channels kept apart: channels x seconds)."""
    container = av.open(source, mode="r", metadata_errors="ignore", container_options=CONTAINER_OPTIONS)
    try:
        if not container.streams.audio:
            raise AudioError("contains no audio stream", field="audio")
        _check_declared(container, container.streams.audio[0], max_seconds, max_channels)
    except BaseException:
        container.close()
        raise
    return container


@contextlib.contextmanager
def _as_audio_errors():
    """Whatever decoding untrusted bytes raises, as an AudioError naming the field."""
    try:
        yield
    except (AudioError, MemoryError, Cancelled):
        raise
    except (av.error.InvalidDataError, av.error.ArgumentError) as exc:
        # also what a container outside CONTAINERS (playlist, concat, sdp, ...) gives
        raise AudioError(f"cannot decode audio: not a supported audio or video container, or corrupt ({exc.strerror or type(exc).__name__})", field="audio") from None
    except av.error.FFmpegError as exc:
        raise AudioError(f"cannot decode audio: {exc.strerror or type(exc).__name__}", field="audio") from None
    except (ValueError, OSError, EOFError, IndexError, TypeError, AttributeError, RuntimeError) as exc:
        # PyAV parses untrusted bytes: whatever a corrupt file makes it throw is the file's fault.
        raise AudioError(f"cannot decode audio: {type(exc).__name__}: {str(exc)[:200]}", field="audio") from None


def _check_signal(samples: int, peak: float) -> None:
    if samples == 0:
        raise AudioError("contains no audio samples (empty or unreadable)", field="audio")
    if peak < SILENCE_PEAK:
        raise AudioError("is silent (no signal above -80 dBFS)", field="audio")


def _declared_seconds(container, stream) -> Optional[float]:
    """The duration the header states (the stream's, else the container's); None when it
    states none, as for a source that cannot seek. It may be wrong: decoding counts anyway."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _check_declared(container, stream, max_seconds: float, max_channels: Optional[int] = None) -> None:
    declared = _declared_seconds(container, stream)
    kept = 1  # channels transcribed: mixed down to one, or (multichannel) each on its own
    if max_channels is not None and stream.codec_context is not None:
        kept = max(1, min(stream.codec_context.channels or 1, max_channels))
    if declared is not None and declared * kept > max_seconds:
        if kept == 1:
            raise AudioTooLong(f"is {declared:.0f} s long, over the {max_seconds:g} s limit", field="audio")
        raise AudioTooLong(f"is {declared:.0f} s long with {kept} channels: {declared * kept:.0f} s to transcribe, over the "
                           f"{max_seconds:g} s limit (multichannel counts channels x seconds)", field="audio")
    if stream.codec_context is None:
        raise AudioError("has an audio stream with no decoder (unknown or corrupt codec)", field="audio")
    channels = stream.codec_context.channels or 0
    if channels > MAX_CHANNELS:
        raise AudioError(f"has {channels} channels; at most {MAX_CHANNELS} are accepted", field="audio")


def decode_chunks(container, stream, max_samples: int, max_seconds: float, cancelled: Optional[threading.Event], layout="mono"):
    """Yield the stream's samples as (channels, n) int16 arrays at 16 kHz, in order."""
    # packed s16, as faster-whisper asks: PyAV 18 reads past the frame's 8 plane pointers for a
    # planar frame of 8 or more channels (a segfault), so the channels are split here instead
    resampler, source_shape, changes = None, None, 0
    total = 0

    def resample(frame):
        """The frame at 16 kHz (None: what the resampler still holds). Joined files (two MP3s
        put together, a broadcast stream) change rate or channels mid-stream, which a resampler
        refuses: the old one is flushed and a new one set up for the new shape."""
        nonlocal resampler, source_shape, changes
        flushed = []
        if frame is not None:
            shape = (frame.format.name, frame.layout.name, frame.sample_rate)
            if shape != source_shape:
                if resampler is not None:  # a change mid-stream, not the first frame
                    changes += 1
                    if changes > MAX_FORMAT_CHANGES:
                        raise AudioError(f"changes its sample rate or channels more than {MAX_FORMAT_CHANGES} times", field="audio")
                    flushed = resampler.resample(None)
                resampler = av.audio.resampler.AudioResampler(format="s16", layout=layout, rate=SAMPLE_RATE)
                source_shape = shape
        elif resampler is None:
            return []
        try:
            return flushed + resampler.resample(frame)
        except av.error.ArgumentError:
            # FFmpeg mixes down only the layouts it knows; a WAV without a channel mask has none,
            # and for counts with no default layout (9, 11, 13, 15, 17-23, 25 and up) no downmix exists
            if frame is not None and frame.layout.name == f"{frame.layout.nb_channels} channels":
                raise AudioError(f"has {frame.layout.nb_channels} channels without a channel layout, which cannot be "
                                 "mixed down to mono", field="audio") from None
            raise

    def take(frames):
        nonlocal total
        for frame in frames:
            array = frame.to_ndarray().reshape(frame.samples, -1).T  # (channels, samples)
            total += array.shape[1]
            if total * array.shape[0] > max_samples:  # the work: channels x samples
                if array.shape[0] == 1:
                    raise AudioTooLong(f"is longer than the {max_seconds:g} s limit", field="audio")
                raise AudioTooLong(f"has {array.shape[0]} channels longer than {max_seconds / array.shape[0]:g} s: over the "
                                   f"{max_seconds:g} s limit (multichannel counts channels x seconds)", field="audio")
            yield array

    packets = container.demux(stream)
    count = 0
    while True:
        count += 1
        if cancelled is not None and count % 256 == 0 and cancelled.is_set():
            raise Cancelled("job cancelled while decoding")
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.error.InvalidDataError:
            continue
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            continue  # a corrupt packet: skip it, as faster-whisper does
        for frame in frames:
            frame.pts = None
            yield from take(resample(frame))
    yield from take(resample(None))


def _decode_stream(container, stream, max_samples: int, max_seconds: float, cancelled: Optional[threading.Event], layout="mono",
                   reserve_seconds: Optional[float] = None) -> np.ndarray:
    """The samples as float32, (channels, n) (mono: (n,)). Held once: with
    `reserve_seconds` (a multichannel decode whose header states its duration) a planar buffer of
    that many seconds (and one more, for rounding), bounded by the limit, is filled as the frames
    come, each channel a contiguous row, and returned as a view: the peak is the output itself.
    Without it, or for what outgrows it, the int16 parts are kept and assembled into one float32
    array of the exact size, part by part (freeing each): the peak is the parts plus the output,
    never several whole-file copies (concatenate, astype and the division each make one)."""
    buffer, filled, overflow, extra = None, 0, [], 0
    channels = 1
    for part in decode_chunks(container, stream, max_samples, max_seconds, cancelled, layout):
        channels, size = part.shape
        if size == 0:
            continue
        if buffer is None and reserve_seconds is not None:
            room = max(0.0, min(reserve_seconds, max_seconds / channels)) * SAMPLE_RATE
            buffer = np.empty((channels, int(room) + SAMPLE_RATE), np.float32)
        if not overflow and buffer is not None and filled + size <= buffer.shape[1]:
            _to_float(part, buffer[:, filled:filled + size])
            filled += size
        else:  # no header figure, or more than it said
            overflow.append(part)
            extra += size
    if buffer is not None and not overflow:
        samples = buffer[:, :filled]
    else:
        samples = np.empty((channels, filled + extra), np.float32)
        if filled:
            samples[:, :filled] = buffer[:, :filled]
        buffer = None
        position = filled
        overflow.reverse()
        while overflow:
            part = overflow.pop()
            _to_float(part, samples[:, position:position + part.shape[1]])
            position += part.shape[1]
    return samples[0] if layout == "mono" else samples


def _to_float(part: np.ndarray, out: np.ndarray) -> None:
    """int16 samples into `out` as float32 in [-1, 1): faster-whisper's s16 / 32768 (exact)."""
    out[...] = part
    out *= 1.0 / 32768.0


# Decoded samples are handed to readers in pieces of at least this many (0.25 s), not per codec
# frame (an MP3 frame at 16 kHz is 36 ms): a reader woken and a numpy conversion per frame cost
# the pipeline's threads GIL hand-offs, for no reader needs less than a second at a time.
APPEND_SAMPLES = SAMPLE_RATE // 4
# Room reserved at first for a source that declares no duration; the buffer doubles from there.
UNDECLARED_GUESS_SECONDS = 60.0


class DecodingAudio:
    """Mono samples decoded by a background thread, readable while decoding goes on, so that a
    long file's first windows reach the device seconds after the job starts instead of after the
    whole file is decoded. The samples equal decode_audio's; every error it would raise is raised
    here too: header problems at once, the rest by the first read that reaches them."""

    def __init__(self, source: Union[str, BinaryIO], max_seconds: float, cancelled: Optional[threading.Event] = None):
        if isinstance(source, str):
            try:
                source = open(source, "rb")
            except OSError as exc:
                raise AudioError(f"cannot read the audio file: {exc.strerror or type(exc).__name__}", field="audio") from None
        self._handle = source
        self._max_seconds = max_seconds
        self._cancelled = cancelled
        self._closed = threading.Event()
        self._stop = AnyEvent(self._closed, cancelled)
        self._cond = threading.Condition()
        self._length = 0
        self._finished = False
        self._error: Optional[BaseException] = None
        self.seconds = 0.0  # wall time of decoding, once finished
        try:
            with _as_audio_errors():
                self._container = _open_audio(source, max_seconds)
        except BaseException:
            source.close()
            raise
        declared = _declared_seconds(self._container, self._container.streams.audio[0])
        if declared is None:
            declared = UNDECLARED_GUESS_SECONDS
        # room for what the header declares (and a second for rounding), so that a file whose
        # header is right is never copied while it decodes; one that holds more grows (_append)
        self._buffer = np.empty(int(min(declared, max_seconds) * SAMPLE_RATE) + SAMPLE_RATE, dtype=np.float32)
        self._thread = threading.Thread(target=self._decode, name="whisper-decode", daemon=True)
        self._thread.start()

    @timed("decode")  # the decode thread, timed once (not per frame: that costs GIL hand-offs)
    def _decode(self) -> None:
        started = time.perf_counter()
        peak = 0.0
        try:
            with _as_audio_errors():
                stream = self._container.streams.audio[0]
                parts, gathered = [], 0
                for part in decode_chunks(self._container, stream, int(self._max_seconds * SAMPLE_RATE), self._max_seconds, self):
                    parts.append(part[0])
                    gathered += part.shape[1]
                    if gathered >= APPEND_SAMPLES:
                        peak = max(peak, self._append(parts))
                        parts, gathered = [], 0
                peak = max(peak, self._append(parts))
            _check_signal(self._length, peak)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            self._error = exc
        finally:
            self._container.close()
            self._handle.close()
            self.seconds = time.perf_counter() - started
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _append(self, parts: List[np.ndarray]) -> float:
        """Add decoded int16 parts as float32 samples, readers told once; their peak level."""
        if not parts:
            return 0.0
        chunk = np.concatenate(parts).astype(np.float32)
        chunk *= 1.0 / 32768.0
        end = self._length + chunk.size
        if end > self._buffer.size:  # the container declared less (or nothing): grow
            grown = np.empty(max(end, 2 * self._buffer.size), dtype=np.float32)
            grown[:self._length] = self._buffer[:self._length]
            self._buffer = grown  # readers' earlier views keep the old array, with the same values
        self._buffer[self._length:end] = chunk
        with self._cond:
            self._length = end
            self._cond.notify_all()
        return float(np.max(np.abs(chunk))) if chunk.size else 0.0

    def wait_for(self, samples: int) -> int:
        """Block until `samples` are decoded or decoding ended; the number now available.
        Raises what decoding raised, once it reaches it."""
        with self._cond:
            while self._length < samples and not self._finished:
                self._cond.wait(0.1)
                if self._cancelled is not None and self._cancelled.is_set():
                    raise Cancelled("job cancelled while decoding")
            if self._error is not None and self._length < samples:
                raise self._error
            return self._length

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._finished

    def is_set(self) -> bool:
        """Whether decoding should stop (the decode loop's cancel check)."""
        return self._stop.is_set()

    def close(self) -> None:
        """Stop decoding (a failed or finished job); a no-op once it has ended."""
        self._closed.set()

    def view(self, start: int, end: int) -> np.ndarray:
        """Decoded samples [start, end) (already waited for)."""
        return self._buffer[start:end]

    @property
    def reserved_samples(self) -> int:
        """Samples the buffer has room for now: the memory the decode holds."""
        return self._buffer.size

    def result(self) -> np.ndarray:
        """All the samples, once decoding is over (its error, if it failed)."""
        self.wait_for(1 << 62)  # raises decoding's error, if any
        return self._buffer[:self._length]


class DecodedAudio:
    """Samples already in memory, read the way DecodingAudio is."""

    finished = True
    seconds = 0.0

    def __init__(self, samples: np.ndarray):
        self._samples = samples

    def wait_for(self, samples: int) -> int:
        return self._samples.shape[0]

    def view(self, start: int, end: int) -> np.ndarray:
        return self._samples[start:end]

    def result(self) -> np.ndarray:
        return self._samples
