"""One small exception tree for everything a caller can get wrong, with stable codes.

    WorkerError                 code            HTTP  meaning
    ├── RequestError            invalid_request 400   a field has a wrong type, value or combination
    ├── AudioError              invalid_audio   415   the bytes are not decodable audio, or are empty/silent
    │   └── AudioTooLong        audio_too_long  413   longer than WHISPER_MAX_AUDIO_SECONDS
    ├── DownloadError           download_failed 400   404, timeout, too large, dropped connection
    │   └── UnsafeURL           unsafe_url      400   non-http scheme or a private/loopback/link-local address
    ├── StorageError            storage_failed  507   the temporary directory cannot be written (disk full)
    ├── ResourceExhausted       out_of_memory   503   the model ran out of memory even at batch size 1
    ├── DeviceFailure           device_failed   500   CUDA reported a fault (illegal address, launch failure)
    └── Cancelled               cancelled       499   the job was cancelled or timed out; its work stops where it is

`to_response()` is the one place an error becomes the job's `{"error": ...}` output, and
`http_status` the one place it gets the HTTP server's status (OpenAI answers bad files with 400;
these are more exact). Anything
that is not a WorkerError is a bug: it propagates so that the RunPod SDK reports it with a trace.
"""

from __future__ import annotations

from typing import Optional


class WorkerError(Exception):
    code = "worker_error"
    http_status = 500
    refresh_worker = False

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field

    def to_response(self) -> dict:
        response = {"error": str(self), "error_code": self.code}
        if self.field:
            response["error_field"] = self.field
        if self.refresh_worker:
            response["refresh_worker"] = True
        return response


class RequestError(WorkerError):
    code = "invalid_request"
    http_status = 400


class AudioError(WorkerError):
    code = "invalid_audio"
    http_status = 415


class AudioTooLong(AudioError):
    code = "audio_too_long"
    http_status = 413


class DownloadError(WorkerError):
    code = "download_failed"
    http_status = 400


class UnsafeURL(DownloadError):
    code = "unsafe_url"
    http_status = 400


class StorageError(WorkerError):
    code = "storage_failed"
    http_status = 507


class ResourceExhausted(WorkerError):
    """Raised after retries with smaller batches; the GPU state is suspect, so ask for a fresh worker."""

    code = "out_of_memory"
    http_status = 503
    refresh_worker = True


class DeviceFailure(WorkerError):
    """The GPU reported a fault: its state is unknown, so this worker asks to be replaced."""

    code = "device_failed"
    http_status = 500
    refresh_worker = True


class Cancelled(WorkerError):
    """The job was cancelled (client cancel, timeout): download, decoding, diarization and decoding
    windows stop where they are. The message says where; the response says only that."""

    code = "cancelled"
    http_status = 499

    def to_response(self) -> dict:
        return {"error": "job cancelled", "error_code": self.code}


_DEVICE_FAULTS = ("illegal memory access", "illegal address", "launch failure", "device-side assert", "cuda failed",
                  "cublas_status", "misaligned address", "ecc error", "an illegal instruction")


def is_device_failure(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(fault in text for fault in _DEVICE_FAULTS)
