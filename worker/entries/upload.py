"""The upload of the HTTP server's audio routes, read by the worker itself from the ASGI receive
channel (not Starlette's form parser, which spools parts into the system temp dir): bytes counted
as they arrive, chunked bodies too, within WHISPER_UPLOAD_TIMEOUT, the file part written into the
request's own folder under WHISPER_TEMP_DIR, plain fields kept as text, each under its cap.
Refused carries the OpenAI-shaped answer for a body the worker will not take."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Dict, List, Optional, Tuple

from fastapi.responses import JSONResponse
from python_multipart.multipart import MultipartParser, parse_options_header

from worker.errors import StorageError
from worker.request.schema import MAX_KNOWN_SPEAKERS

# A form's plain fields: known_speaker_references[] are data URLs of clips of a few MB each.
MAX_FIELD_BYTES = 8 * 1024 * 1024
MAX_FIELDS = 100
MAX_FIELDS_BYTES = MAX_KNOWN_SPEAKERS * MAX_FIELD_BYTES + 1024 * 1024
FORM_OVERHEAD = 64 * 1024  # boundaries and part headers
WRITE_EVERY = 1024 * 1024  # upload bytes gathered before each write to disk


def openai_error(status: int, message: str, param: Optional[str] = None, code: Optional[str] = None, headers=None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 and status != 429 else ("rate_limit_error" if status == 429 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status, headers=headers)


class Refused(Exception):
    """A request refused with an OpenAI-shaped error: raised anywhere below a route, answered there."""

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = "invalid_request", headers=None):
        super().__init__(message)
        self.response = openai_error(status, message, param, code, headers)


class ClientGone(Exception):
    """The client disconnected (or a balancer cut the request): nobody reads an answer."""


def boundary_of(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise Refused(400, "the body must be multipart/form-data (a `file` part with the audio)", "file")
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise Refused(400, "the multipart/form-data Content-Type has no usable boundary", "file")
    return boundary


class UploadedForm:
    """A multipart body parsed as it arrives: the file part written to `folder`/upload, plain
    fields kept as text, each under its cap; nothing is buffered whole or spooled elsewhere."""

    def __init__(self, boundary: bytes, folder: str, limit: int):
        self.fields: List[Tuple[str, str]] = []
        self.file: Optional[str] = None  # the path the file part went to
        self.ended = False
        self._limit = limit
        self._path = os.path.join(folder, "upload")
        self._out = None
        self._pending = bytearray()
        self._file_bytes = 0
        self._fields_bytes = 0
        self._part: Dict[str, Any] = {}
        self._header = [b"", b""]
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._begin, "on_part_data": self._data, "on_part_end": self._end,
            "on_header_field": lambda data, start, end: self._header.__setitem__(0, self._header[0] + data[start:end]),
            "on_header_value": lambda data, start, end: self._header.__setitem__(1, self._header[1] + data[start:end]),
            "on_header_end": self._header_end, "on_headers_finished": self._headers_done, "on_end": self._ended,
        })

    # -- parser callbacks: no I/O here, so that a parser error and a disk error stay apart ----
    def _begin(self) -> None:
        self._part = {"disposition": b"", "name": None, "is_file": False, "data": bytearray()}

    def _header_end(self) -> None:
        if self._header[0].strip().lower() == b"content-disposition":
            self._part["disposition"] = self._header[1]
        self._header = [b"", b""]

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._part["disposition"])
        if b"name" not in options:
            raise Refused(400, "a multipart part has no name (Content-Disposition: form-data; name=...)")
        name = _text(options[b"name"])
        self._part["name"] = name
        if b"filename" in options:
            if name != "file":
                raise Refused(400, "only the `file` part may be a file", param=name)
            if self.file is not None:
                raise Refused(400, "send one `file` part", param="file")
            self.file = self._path
            self._part["is_file"] = True
        elif len(self.fields) >= MAX_FIELDS:
            raise Refused(400, f"more than {MAX_FIELDS} form fields", param=name)

    def _data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        if self._part["is_file"]:
            self._file_bytes += size
            if self._file_bytes > self._limit:
                raise Refused(413, f"the file is over the {self._limit}-byte limit", "file", "audio_too_long")
            self._pending += data[start:end]
            return
        self._fields_bytes += size
        if len(self._part["data"]) + size > MAX_FIELD_BYTES or self._fields_bytes > MAX_FIELDS_BYTES:
            raise Refused(413, f"form fields are limited to {MAX_FIELD_BYTES} bytes each, {MAX_FIELDS_BYTES} in all", param=self._part["name"])
        self._part["data"] += data[start:end]

    def _end(self) -> None:
        if not self._part["is_file"]:
            self.fields.append((self._part["name"], _text(bytes(self._part["data"]))))

    def _ended(self) -> None:
        self.ended = True

    # -- disk -------------------------------------------------------------------------------
    def flush(self, at_least: int = 0) -> None:
        """Write the file bytes gathered so far once there are `at_least` of them (the file is
        created at the first call, even empty); a disk error (full, read-only) is StorageError."""
        if self.file is None or (self._out is not None and len(self._pending) < max(at_least, 1)):
            return
        try:
            if self._out is None:
                self._out = open(self._path, "wb")
            self._out.write(self._pending)
            self._pending.clear()
        except OSError as exc:
            raise StorageError(f"cannot store the upload: {exc.strerror or exc}") from None

    def finish(self) -> None:
        """The last bytes written and the file closed: StorageError if the disk refuses them."""
        self.flush()
        out, self._out = self._out, None
        if out is not None:
            try:
                out.close()
            except OSError as exc:
                raise StorageError(f"cannot store the upload: {exc.strerror or exc}") from None

    def discard(self) -> None:
        """Close the file whatever state it is in (the request failed; its folder goes too)."""
        out, self._out = self._out, None
        if out is not None:
            try:
                out.close()
            except OSError:
                pass


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


async def receive_form(receive, boundary: bytes, folder: str, limit: int, cap: int, timeout: float) -> UploadedForm:
    """The request body, read from the ASGI receive channel as it arrives: every byte counted
    against `cap` (chunked bodies declare no length), the file part against `limit`, the whole
    upload within `timeout` seconds. Refused raises 413 at the cap, 408 at the deadline; a
    client that disconnects raises ClientGone."""
    form = UploadedForm(boundary, folder, limit)
    received = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > cap:
                    raise Refused(413, f"the upload is over the {limit}-byte limit", "file", "audio_too_long")
                try:
                    form.parser.write(chunk)
                except (Refused, StorageError):
                    raise
                except Exception as exc:  # noqa: BLE001 - whatever the parser makes of a hostile body is the caller's mistake
                    raise Refused(400, f"cannot read the multipart form: {exc}", "file") from None
                form.flush(WRITE_EVERY)
                if not message.get("more_body", False):
                    break
        form.finish()
    except TimeoutError:
        raise Refused(408, f"the upload did not arrive within {timeout:g} seconds (WHISPER_UPLOAD_TIMEOUT)", "file", "upload_timeout") from None
    finally:
        form.discard()
    if not form.ended:
        raise Refused(400, "the multipart form ends before its closing boundary", "file")
    return form


