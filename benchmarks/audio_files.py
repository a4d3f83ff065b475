"""Audio files the benchmarks and the tests read and make: the one `transcripts.txt` reader and the
one audio encoder (PyAV: WAV, MP3, FLAC, Opus, WMA, ... into bytes or a file).

tests/helpers.py re-exports both, so the tests and the benchmarks read references and write audio
the same way. This module imports no worker code (`pipeline --baseline` imports the benchmarks
before it picks which worker to run), and PyAV only when something is encoded.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Dict, Optional, Union

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"  # the audio the repository carries (clips with references, long files)
TRANSCRIPTS = "transcripts.txt"

PathLike = Union[str, "os.PathLike[str]"]


def read_transcripts(path: PathLike) -> Dict[str, Optional[str]]:
    """A `transcripts.txt` (or any manifest in its format): lines `<file> [reference text]`, in
    file order; blank lines and lines starting with '#' are skipped; a file with no text has the
    reference None. `path` may be the file or the folder holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / TRANSCRIPTS
    references: Dict[str, Optional[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, text = line.partition(" ")
        references[name] = text.strip() or None
    return references


def write_audio(target: Union[PathLike, BinaryIO], samples, rate: int, fmt: str = "wav", codec: str = "pcm_s16le",
                layout: Optional[str] = None, bit_rate: int = 64000) -> None:
    """Encode float samples in [-1, 1] (n, or channels x n) as 16-bit audio into `target` (a path
    or a writable binary file). `layout` defaults to mono / stereo by the channel count; values
    outside [-1, 1] are clipped. The samples are converted a frame at a time, so hours of audio
    cost no second copy in memory."""
    import av

    data = np.atleast_2d(np.asarray(samples))
    channels = data.shape[0]
    layout = layout or {1: "mono", 2: "stereo"}.get(channels)
    if layout is None:
        raise ValueError(f"name a layout for {channels} channels")
    destination = os.fspath(target) if isinstance(target, (str, os.PathLike)) else target
    with av.open(destination, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        stream.bit_rate = bit_rate  # wmav2 will not open without one; the others accept it
        frame_size = stream.codec_context.frame_size or 4096
        for start in range(0, data.shape[1], frame_size):
            block = (np.clip(data[:, start:start + frame_size], -1.0, 1.0) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block.T.reshape(1, -1)), format="s16", layout=layout)
            frame.rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def encode_audio(samples, rate: int, fmt: str = "wav", codec: str = "pcm_s16le", layout: Optional[str] = None,
                 bit_rate: int = 64000) -> bytes:
    """`write_audio` into memory: the encoded file's bytes."""
    buffer = io.BytesIO()
    write_audio(buffer, samples, rate, fmt, codec, layout, bit_rate)
    return buffer.getvalue()
