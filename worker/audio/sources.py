"""Where a job's audio comes from: base64 in the request, a local path (when allowed), or a URL
downloaded into a per-job temporary directory (removed whatever happens); then decoded under the
duration limit. The same guards hold for the main audio and for known speakers' clips."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from typing import Optional


from worker.audio import fetch
import io

from worker.audio.decode import DecodingAudio, decode_audio
from worker.config import Settings
from worker.errors import StorageError
from worker.transcript import Timings


class AudioSources:
    def __init__(self, settings: Settings):
        self.settings = settings
        allowed = fetch.EVERYWHERE if settings.allow_private_urls else ()
        self.limits = fetch.FetchLimits(settings.max_download_bytes, settings.download_timeout, allowed)

    def load(self, source, timings: Timings, cancelled: Optional[threading.Event] = None, channels: Optional[int] = None,
             streaming: bool = False, max_seconds: Optional[float] = None):
        """The audio that `source` (a request or a known speaker) names by `audio` or `audio_base64`;
        with `streaming`, a DecodingAudio that decodes in the background (mono only). `max_seconds`:
        the duration limit (default the main audio's; a known speaker's clip has its own)."""
        settings = self.settings
        if source.audio_base64 is not None:
            started = time.perf_counter()
            data = fetch.decode_base64(source.audio_base64, settings.max_download_bytes)
            timings.download = time.perf_counter() - started
            return self.decode(data, timings, cancelled, channels, streaming, max_seconds)
        if not fetch.is_url(source.audio):
            path = fetch.check_local_path(source.audio, settings.allow_local_files, settings.max_download_bytes)
            return self.decode(path, timings, cancelled, channels, streaming, max_seconds)
        try:
            with tempfile.TemporaryDirectory(prefix="whisper-job-", dir=settings.temp_dir) as workdir:
                started = time.perf_counter()
                path = os.path.join(workdir, "audio")
                fetch.download(source.audio, path, self.limits, cancelled)
                timings.download = time.perf_counter() - started
                return self.decode(path, timings, cancelled, channels, streaming, max_seconds)
        except OSError as exc:
            raise StorageError(f"cannot use temporary storage: {exc.strerror or exc}") from None

    def decode(self, source, timings: Timings, cancelled: Optional[threading.Event] = None, channels: Optional[int] = None,
               streaming: bool = False, max_seconds: Optional[float] = None):
        """Samples from bytes or a file path (an upload, a download), timed as `decode` (a
        streaming decode's time is known once it ends: `DecodingAudio.seconds`). With `channels`,
        the limit counts channels x seconds (each channel is a transcription)."""
        max_seconds = self.settings.max_audio_seconds if max_seconds is None else max_seconds
        if streaming and channels is None:
            return DecodingAudio(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source, max_seconds, cancelled)
        started = time.perf_counter()
        audio = decode_audio(source, max_seconds, cancelled, channels)
        timings.decode = time.perf_counter() - started
        return audio


def describe(request) -> str:
    """What the log may say about a request's audio: never bytes, base64 or query strings."""
    if request.audio_base64 is not None:
        return f"base64({len(request.audio_base64)} chars)"
    if fetch.is_url(request.audio):
        return fetch.redact(request.audio)
    return "local-file"
