"""Log-mel features as faster-whisper makes them, in bounded memory: one padded 30 s window for the
batched loop, and whole files computed 60 s at a time for sequential decoding (the library's own
extractor holds several whole-file STFT arrays at once: gigabytes for hours)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import faster_whisper.transcribe as fw_transcribe
from faster_whisper import WhisperModel

from worker.stages import timed

HOP = 160  # samples per feature frame
N_FFT = 400
WINDOW_FRAMES = 3000  # the 30 s every Whisper window is padded to
FEATURE_BLOCK_FRAMES = 6000  # sequential features are computed 60 s at a time


@dataclass(frozen=True)
class WindowInput:
    """One window of one job for the device: padded features and how many frames are audio."""

    features: np.ndarray  # (n_mels, 3000) float32
    content_frames: int


@timed("features")
def window_features(whisper: WhisperModel, samples: np.ndarray) -> WindowInput:
    """Log-mel features of at most 30 s of audio, padded to a full window (as faster-whisper's
    batched pipeline makes them)."""
    features = whisper.feature_extractor(samples)[..., :-1]
    frames = min(features.shape[-1], WINDOW_FRAMES)
    return WindowInput(features=fw_transcribe.pad_or_trim(features), content_frames=frames)


def log_mel(extractor, waveform: np.ndarray, padding: int = HOP) -> np.ndarray:
    """The same array as `extractor(waveform, padding)`, computed 60 s at a time, so that the peak
    is the output plus one block instead of several whole-file STFT arrays."""
    signal_length = waveform.shape[0] + padding
    frames = signal_length // HOP  # the extractor drops the STFT's last frame
    out = np.empty((extractor.mel_filters.shape[0], frames), dtype=np.float32)
    window = np.hanning(N_FFT + 1)[:-1].astype("float32")
    peak = -np.inf
    for first in range(0, frames, FEATURE_BLOCK_FRAMES):
        last = min(first + FEATURE_BLOCK_FRAMES, frames)
        # frame j covers positions [j*HOP - N_FFT/2, j*HOP + N_FFT/2) of the zero-padded signal,
        # reflected at both ends exactly as a centred STFT of the whole signal does
        positions = np.arange(first * HOP - N_FFT // 2, (last - 1) * HOP + N_FFT // 2)
        positions = np.abs(positions)
        positions = np.where(positions >= signal_length, 2 * (signal_length - 1) - positions, positions)
        block = np.zeros(positions.shape[0], dtype=np.float32)
        inside = positions < waveform.shape[0]
        block[inside] = waveform[positions[inside]]
        stft = extractor.stft(block, N_FFT, HOP, window=window, center=False, return_complex=True).astype("complex64")
        magnitudes = np.abs(stft) ** 2
        mel = np.log10(np.clip(extractor.mel_filters @ magnitudes, a_min=1e-10, a_max=None))
        out[:, first:last] = mel
        peak = max(peak, float(mel.max()))
    np.maximum(out, peak - 8.0, out=out)
    out += 4.0
    out /= 4.0
    return out


class BlockFeatureExtractor:
    """faster-whisper's extractor, except that whole-file calls are computed in blocks."""

    def __init__(self, extractor):
        self._extractor = extractor

    def __getattr__(self, name):
        return getattr(self._extractor, name)

    def __call__(self, waveform: np.ndarray, padding: int = HOP, chunk_length=None):
        if chunk_length is not None:
            return self._extractor(waveform, padding, chunk_length)
        return log_mel(self._extractor, waveform, padding)
