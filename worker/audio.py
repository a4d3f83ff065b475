"""Decoding real audio and video containers into 16 kHz mono float32, under a duration limit.

The samples equal faster-whisper's own `decode_audio` (same resampler settings, s16 then /32768),
so the worker hears exactly what faster-whisper would. Unlike it, decoding refuses long audio
early: from the container's declared duration when it has one, and by a running sample count
while decoding when it does not (or lies), so hours of audio are never held in memory.
"""

from __future__ import annotations

import io
import threading
from typing import BinaryIO, Optional, Union

import av
import numpy as np

from .errors import AudioError, AudioTooLong, Cancelled

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
MAX_CHANNELS = 64


def decode_audio(source: Union[str, bytes, BinaryIO], max_seconds: float, cancelled: Optional[threading.Event] = None,
                 max_channels: Optional[int] = None) -> np.ndarray:
    """Return mono float32 samples at 16 kHz; AudioError for anything that is not usable audio.
    With `max_channels`, the channels are kept apart: (channels, samples), at most that many."""
    if isinstance(source, str):
        try:
            with open(source, "rb") as handle:
                return decode_audio(handle, max_seconds, cancelled, max_channels)
        except OSError as exc:
            raise AudioError(f"cannot read the audio file: {exc.strerror or type(exc).__name__}", field="audio") from None
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    max_samples = int(max_seconds * SAMPLE_RATE)
    try:
        with av.open(source, mode="r", metadata_errors="ignore", container_options=CONTAINER_OPTIONS) as container:
            if not container.streams.audio:
                raise AudioError("contains no audio stream", field="audio")
            stream = container.streams.audio[0]
            _check_declared(container, stream, max_seconds)
            layout = "mono"
            if max_channels is not None:
                channels = stream.codec_context.channels or 1
                if channels > max_channels:
                    raise AudioError(f"has {channels} channels; multichannel transcribes at most {max_channels}", field="audio")
                layout = stream.codec_context.layout
            samples = _decode_stream(container, stream, max_samples, max_seconds, cancelled, layout)
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
    if samples.size == 0:
        raise AudioError("contains no audio samples (empty or unreadable)", field="audio")
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise AudioError("is silent (no signal above -80 dBFS)", field="audio")
    return samples


def _check_declared(container, stream, max_seconds: float) -> None:
    declared = None
    if stream.duration is not None and stream.time_base is not None:
        declared = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        declared = container.duration / av.time_base
    if declared is not None and declared > max_seconds:
        raise AudioTooLong(f"is {declared:.0f} s long, over the {max_seconds:g} s limit", field="audio")
    if stream.codec_context is None:
        raise AudioError("has an audio stream with no decoder (unknown or corrupt codec)", field="audio")
    channels = stream.codec_context.channels or 0
    if channels > MAX_CHANNELS:
        raise AudioError(f"has {channels} channels; at most {MAX_CHANNELS} are accepted", field="audio")


def _decode_stream(container, stream, max_samples: int, max_seconds: float, cancelled: Optional[threading.Event], layout="mono") -> np.ndarray:
    resampler = av.audio.resampler.AudioResampler(format="s16p", layout=layout, rate=SAMPLE_RATE)
    parts = []
    total = 0

    def take(frames) -> None:
        nonlocal total
        for frame in frames:
            array = frame.to_ndarray()  # (channels, samples), planar
            total += array.shape[1]
            if total > max_samples:
                raise AudioTooLong(f"is longer than the {max_seconds:g} s limit", field="audio")
            parts.append(array)

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
            take(resampler.resample(frame))
    take(resampler.resample(None))
    # One float32 array, filled part by part (freeing each): the peak is the int16 parts plus the
    # output, not several whole-file copies (concatenate, astype and the division each make one).
    channels = parts[0].shape[0] if parts else 1
    samples = np.empty((channels, total), dtype=np.float32)
    position = 0
    parts.reverse()
    while parts:
        part = parts.pop()
        samples[:, position:position + part.shape[1]] = part
        position += part.shape[1]
    samples *= 1.0 / 32768.0
    return samples[0] if layout == "mono" else samples
