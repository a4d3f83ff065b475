"""Raw PCM in, for live audio: little-endian signed 16-bit mono bytes as a client streams them
(base64 in OpenAI's `input_audio_buffer.append`, at 24 kHz or 16 kHz) turned into the 16 kHz
float32 samples the rest of the worker reads, piece by piece as they arrive.

Why not `decode.py`: there is no container to open and the bytes come in pieces of any size (an
odd byte may even split a sample), so the conversion must carry its state between pieces: the
resampled samples do not depend on where the pieces were cut (within float rounding, 1e-6).

24 kHz -> 16 kHz is a numpy polyphase FIR (ratio 2/3): a Kaiser-windowed sinc, cutoff 7.6 kHz,
64 taps at the input rate, two phases (every third input sample gives two outputs), with the
last input samples carried to the next piece. Flat within 0.01 dB up to 6.7 kHz (-0.3 dB at
7 kHz, -6 dB at 7.6 kHz); from 8.5 kHz up attenuated by over 60 dB, from 9 kHz by over 80 dB (an
11 kHz tone, which would alias to 5 kHz, by about 90 dB), so what Whisper hears has no aliases. The output is delayed by `HALF` input samples inside the
resampler, never in time: sample k of the output is the signal at 1.5 k input samples; `flush()`
gives the last ones.

Cost (measured on the 2-core development VM under load, CPU time, best of 5 runs of 20 s of audio;
tests/audio/test_pcm.py holds it under 1 ms): one second of 24 kHz audio fed in 20 ms pieces
converts in about 0.5 ms (50 calls of about 10 us), in 100 ms pieces about 0.2 ms; 16 kHz input
0.08 ms and 0.02 ms. PyAV's `AudioResampler` (also piece-invariant) costs 1.1 ms per second in
20 ms pieces, its per-frame overhead.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from worker.errors import RequestError

PCM_RATES = (16000, 24000)  # the rates a live client may send
OUTPUT_RATE = 16000
HALF = 32  # taps on each side of an output sample, at the input rate
CUTOFF_HZ = 7600.0
KAISER_BETA = 8.0


def _phases() -> np.ndarray:
    """The two phases as one (2, 2 HALF + 1) matrix over a window of input samples starting at
    3k - HALF + 1: row 0 gives output 2k (centred on input 3k), row 1 output 2k + 1 (centred on
    input 3k + 1.5). Each row sums to 1 (unit gain at DC)."""
    fc = CUTOFF_HZ / 24000.0  # cycles per input sample

    def taps(offsets: np.ndarray) -> np.ndarray:
        # the continuous Kaiser window, sampled at each tap's offset (|offset| <= HALF)
        shaped = np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (offsets / HALF) ** 2, 0, 1))) / np.i0(KAISER_BETA)
        h = 2 * fc * np.sinc(2 * fc * offsets) * shaped
        return h / h.sum()

    matrix = np.zeros((2, 2 * HALF + 1))
    matrix[0, :2 * HALF] = taps(np.arange(-HALF + 1, HALF + 1, dtype=np.float64))
    matrix[1, 1:] = taps(np.arange(-HALF + 1, HALF + 1, dtype=np.float64) - 0.5)
    return matrix.T  # (2 HALF + 1, 2): windows @ it


_SCALE = np.float32(1 / 32768)
_PHASES = np.ascontiguousarray(_phases() / 32768, dtype=np.float32)  # on unscaled int16 values
_BOTTOM, _TOP = np.float32(-1.0), np.float32(32767 / 32768)


class PcmInput:
    """One live stream's PCM16 bytes to 16 kHz float32, piece by piece. `feed()` takes bytes of any
    length (an odd trailing byte waits for the next piece); `flush()` ends the stream: it returns
    what the resampler still holds and starts afresh (a later `feed()` begins a new signal)."""

    def __init__(self, rate: int):
        if rate not in PCM_RATES:
            raise ValueError(f"PCM rate {rate!r} is not one of {PCM_RATES}")
        self.rate = rate
        self._odd = b""
        self._start()

    def _start(self) -> None:
        # inputs kept for the next blocks: HALF - 1 zeros before the signal, so output 0's window
        # (inputs -HALF + 1 .. HALF + 1) exists; `_fed` counts the signal's input samples
        self._history = np.zeros(HALF - 1, dtype=np.float32)
        self._fed = 0
        self._made = 0  # output samples given out

    def feed(self, data: bytes) -> np.ndarray:
        """The 16 kHz samples that these bytes (after any carried byte) complete."""
        if self._odd:
            data = self._odd + bytes(data)
        whole = len(data) & ~1
        self._odd = bytes(data[whole:]) if whole != len(data) else b""
        samples = np.frombuffer(data, dtype="<i2", count=whole // 2).astype(np.float32)
        if self.rate == OUTPUT_RATE:
            samples *= _SCALE
            return samples
        self._fed += samples.size  # kept unscaled: the filter's taps carry the 1/32768
        return self._resample(np.concatenate((self._history, samples)))

    def flush(self) -> np.ndarray:
        """The samples still held (the resampler's last HALF inputs' worth), then a fresh state; an
        odd byte left over is dropped (half a sample is no sample)."""
        self._odd = b""
        if self.rate == OUTPUT_RATE:
            return np.zeros(0, dtype=np.float32)
        total = -(-2 * self._fed // 3)  # outputs centred before the end: 1.5 m < fed
        buffer = np.concatenate((self._history, np.zeros(HALF + 3, dtype=np.float32)))
        wanted = max(0, total - self._made)
        out = self._resample(buffer)[:wanted]
        self._start()
        return out

    def _resample(self, buffer: np.ndarray) -> np.ndarray:
        """Outputs of every block whose window lies in `buffer` (whose first sample is input
        3 b - HALF + 1 for the next block b); the rest of `buffer` is kept as history."""
        width = 2 * HALF + 1
        blocks = (buffer.size - width) // 3 + 1 if buffer.size >= width else 0
        if blocks <= 0:
            self._history = buffer
            return np.zeros(0, dtype=np.float32)
        windows = np.ndarray((blocks, width), dtype=np.float32, buffer=buffer, strides=(12, 4))  # buffer is contiguous
        out = np.dot(windows.copy(), _PHASES).reshape(-1)  # a contiguous copy: 2x faster than the strided product
        self._history = buffer[3 * blocks:].copy()
        self._made += out.size
        np.minimum(out, _TOP, out=out)
        np.maximum(out, _BOTTOM, out=out)
        return out


def decode_base64(text: str) -> bytes:
    """Strict base64 (no stray characters, correct padding), as OpenAI's `audio` field carries;
    RequestError on anything else."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise RequestError("is not valid base64", field="audio") from None
