"""The OpenAI server mode (`WHISPER_MODE=openai`): OpenAI's audio API over HTTP, for RunPod
load-balancing endpoints, so the official `openai` client works unchanged.

    POST /v1/audio/transcriptions, /v1/audio/translations   multipart, as OpenAI defines them
    GET  /v1/models                                          the served model
    GET  /ping                                               204 while the model loads, 200 after

RunPod's load-balancing conventions (docs.runpod.io/serverless/load-balancing/overview): the
API listens on PORT, the health check on PORT_HEALTH (the same port unless set; when apart it
serves /ping only), and /ping answers 204 during initialization and 200 when healthy; a model
that fails to load stops the servers (`python -m worker` exits 3, as in queue mode). A load balancer request is limited to
about 5.5 minutes, so long files belong on a queue endpoint (or streamed there).

One path: a form becomes the same job input a queue job carries (OpenAI's names mapped onto the
worker's, the worker's own options as extra fields, unknown ones refused by name) and runs
through the same Service: limits, decoding, engine and cross-job scheduler. Errors come from the
one error tree and are mapped to HTTP here only. When all `WHISPER_CONCURRENCY` slots are busy
the answer is 429 with Retry-After, not an unbounded queue.

The upload is read from the ASGI receive channel by the worker itself (not Starlette's form
parser, which spools parts into the system temp dir): bytes are counted as they arrive, chunked
bodies too, within WHISPER_UPLOAD_TIMEOUT, into one directory per request under WHISPER_TEMP_DIR
that is removed when the job's thread is done with it. A slot is taken only once the upload has
arrived; at most UPLOADS_PER_SLOT x WHISPER_CONCURRENCY uploads arrive at once. While the job
runs, the receive channel is watched: a client that disconnects cancels its job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from importlib import resources
from typing import Any, Callable, Dict, List, Optional, Tuple

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import FormData

from worker.errors import StorageError
from worker.request.schema import MAX_KNOWN_SPEAKERS, TranscriptionRequest

log = logging.getLogger("worker.openai")

OPENAI_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
GRANULARITIES = ("segment", "word")
# A form's plain fields: known_speaker_references[] are data URLs of clips of a few MB each.
MAX_FIELD_BYTES = 8 * 1024 * 1024
MAX_FIELDS = 100
MAX_FIELDS_BYTES = MAX_KNOWN_SPEAKERS * MAX_FIELD_BYTES + 1024 * 1024
FORM_OVERHEAD = 64 * 1024  # boundaries and part headers
UPLOADS_PER_SLOT = 4  # uploads that may be arriving at once, per WHISPER_CONCURRENCY slot
WRITE_EVERY = 1024 * 1024  # upload bytes gathered before each write to disk
# error_code -> HTTP status (OpenAI answers bad files with 400; these are more exact)
STATUS = {"invalid_request": 400, "invalid_audio": 415, "audio_too_long": 413, "download_failed": 400,
          "unsafe_url": 400, "storage_failed": 507, "out_of_memory": 503, "device_failed": 500, "cancelled": 499}
_TEXT_FIELDS = {name for name, info in TranscriptionRequest.model_fields.items() if info.annotation in (str, Optional[str])}
_GENERATED_LABEL = re.compile(r"SPEAKER_\d+")  # the diarizer's label of a voice no known speaker matched


def language_name(code: Optional[str]) -> Optional[str]:
    """OpenAI's verbose_json names the language ("english"), as Whisper's own table does."""
    return _language_names().get(code, code)


def _language_names() -> Dict[str, str]:
    if not hasattr(_language_names, "table"):
        _language_names.table = json.loads(resources.files("worker").joinpath("language_names.json").read_text(encoding="utf-8"))
    return _language_names.table


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


class Readiness:
    """Whether the model is loaded: the health route and the API read it."""

    def __init__(self, service=None):
        self.service = service
        self.failed: Optional[str] = None


def _add_ping(app: FastAPI, readiness: Readiness) -> None:
    @app.get("/ping")
    async def ping():
        if readiness.failed:
            return PlainTextResponse(readiness.failed, status_code=500)
        return Response(status_code=200 if readiness.service is not None else 204)


def create_health_app(readiness: Readiness) -> FastAPI:
    """PORT_HEALTH's app when it is not PORT: /ping only; every other route is 404."""
    app = FastAPI(title="Whisper health", docs_url=None, redoc_url=None, openapi_url=None)
    _add_ping(app, readiness)
    return app


def create_app(readiness: Readiness) -> FastAPI:
    app = FastAPI(title="Whisper (OpenAI audio API)", docs_url=None, redoc_url=None, openapi_url=None)
    slots: Dict[str, threading.BoundedSemaphore] = {}
    uploading = {"now": 0}  # uploads arriving; only the event loop's thread changes it

    def service():
        return readiness.service

    def slot() -> threading.BoundedSemaphore:
        if "jobs" not in slots:
            slots["jobs"] = threading.BoundedSemaphore(service().settings.concurrency)
        return slots["jobs"]

    _add_ping(app, readiness)

    @app.get("/v1/models")
    async def models():
        if service() is None:
            return openai_error(503, "the model is still loading", code="loading", headers={"Retry-After": "5"})
        name = service().settings.served_model_name
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "whisper-runpod-worker"}]}

    async def audio_route(request: Request, task: str):
        """Receive the upload (its own deadline and size cap, no slot held), then take a slot and
        run the job, cancelling it if the client goes away. Everything written lives in one
        directory under WHISPER_TEMP_DIR, removed when the job's thread is done with it."""
        svc = service()
        if svc is None:
            return openai_error(503, "the model is still loading", code="loading", headers={"Retry-After": "5"})
        settings = svc.settings
        limit = settings.max_download_bytes
        cap = limit + MAX_FIELDS_BYTES + FORM_OVERHEAD
        folder: Optional[str] = None
        job: Optional[asyncio.Future] = None
        try:
            declared = request.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > cap:
                raise Refused(413, f"the upload is {int(declared)} bytes, over the {limit}-byte limit", "file", "audio_too_long")
            boundary = _boundary(request.headers.get("content-type", ""))
            most = settings.concurrency * UPLOADS_PER_SLOT
            if uploading["now"] >= most:
                raise Refused(429, f"{most} uploads are already arriving; retry shortly", code="busy", headers={"Retry-After": "1"})
            uploading["now"] += 1
            try:
                try:
                    folder = tempfile.mkdtemp(prefix="whisper-upload-", dir=settings.temp_dir)
                except OSError as exc:
                    raise StorageError(f"cannot use temporary storage: {exc.strerror or exc}") from None
                form = await _receive_form(request.receive, boundary, folder, limit, cap, settings.upload_timeout)
            finally:
                uploading["now"] -= 1
            if form.file is None:
                raise Refused(400, "a `file` part with the audio is required", "file")
            mapped = form_to_input(form.fields, task, settings)
            if isinstance(mapped, JSONResponse):
                return mapped
            job_input, shape = mapped
            if not slot().acquire(blocking=False):
                raise Refused(429, f"all {settings.concurrency} transcription slots are busy; retry shortly", code="busy", headers={"Retry-After": "1"})
            cancelled = threading.Event()
            try:
                job = asyncio.get_running_loop().run_in_executor(
                    svc._threads, lambda: svc.process({"id": "openai", "input": job_input}, None, cancelled, upload=form.file))
            except BaseException:
                slot().release()
                raise
            semaphore = slot()
            job.add_done_callback(lambda _: (semaphore.release(), shutil.rmtree(folder, ignore_errors=True)))
            output = await _unless_gone(job, request.receive, cancelled)
        except Refused as refusal:
            return refusal.response
        except StorageError as exc:
            return openai_error(507, str(exc), "file", exc.code)
        except ClientGone:
            return Response(status_code=499)  # nobody reads it
        finally:
            if job is None and folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        if "error" in output:
            return openai_error(STATUS.get(output.get("error_code"), 500), output["error"], output.get("error_field"), output.get("error_code"))
        return render(output, shape)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        return await audio_route(request, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request):
        return await audio_route(request, "translate")

    return app


def _boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise Refused(400, "the body must be multipart/form-data (a `file` part with the audio)", "file")
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise Refused(400, "the multipart/form-data Content-Type has no usable boundary", "file")
    return boundary


async def _unless_gone(job: asyncio.Future, receive, cancelled: threading.Event) -> dict:
    """The job's output; if the client disconnects first, the job is cancelled (it stops at its
    next check) and ClientGone raised once its thread is done. uvicorn does not cancel a
    handler whose client went away: the receive channel says so (http.disconnect)."""
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not job.done():
            cancelled.set()
            await asyncio.wait({job})  # its end releases the slot and removes the upload (done callback)
            if job.exception() is not None:
                log.error("the OpenAI server's job failed after its client left", exc_info=job.exception())
            raise ClientGone()
    except asyncio.CancelledError:
        cancelled.set()  # the server is stopping this handler: stop decoding too
        raise
    finally:
        watcher.cancel()
    try:
        return job.result()
    except Exception:  # noqa: BLE001 - a bug: logged with its trace, answered in OpenAI's shape
        log.exception("the OpenAI server's job failed")
        raise Refused(500, "internal error", code="internal_error") from None


async def _disconnected(receive) -> None:
    """Return when the receive channel reports http.disconnect (the body has been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if not message.get("more_body"):
            await asyncio.sleep(0.1)  # a server that answers at once with empty bodies: do not spin


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


async def _receive_form(receive, boundary: bytes, folder: str, limit: int, cap: int, timeout: float) -> UploadedForm:
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


def form_to_input(form, task: str, settings) -> Any:
    """OpenAI's form fields as the worker's job input, plus how to shape the response; a
    JSONResponse (400 naming the field) for a field the worker cannot take. `form`: the plain
    fields, as (name, value) pairs or a FormData."""
    try:
        return _form_to_input(form, task, settings)
    except Refused as refusal:
        return refusal.response


def _form_to_input(form, task: str, settings) -> Any:
    items = form.multi_items() if isinstance(form, FormData) else list(form)
    fields: Dict[str, Any] = {}
    granularities: List[str] = []
    names: List[str] = []
    references: List[str] = []
    response_format = "json"
    for key, value in items:
        if key == "file":
            continue
        if not isinstance(value, str):
            raise Refused(400, "only the `file` part may be a file", param=key)
        if key in ("timestamp_granularities[]", "timestamp_granularities"):
            if value not in GRANULARITIES:
                raise Refused(400, f"must be one of {', '.join(GRANULARITIES)}", param="timestamp_granularities[]")
            granularities.append(value)
        elif key == "model":
            if value not in (settings.served_model_name, settings.model, "whisper-1"):
                raise Refused(400, f"this endpoint serves {settings.served_model_name!r}", param="model", code="model_not_found")
        elif key == "response_format":
            if value not in OPENAI_FORMATS:
                raise Refused(400, f"must be one of {', '.join(OPENAI_FORMATS)}", param="response_format")
            response_format = value
        elif key == "prompt":
            fields["initial_prompt"] = value
        elif key in ("known_speaker_names[]", "known_speaker_names"):
            names.append(value)
        elif key in ("known_speaker_references[]", "known_speaker_references"):
            references.append(value)
        elif key == "chunking_strategy":
            continue  # the worker always cuts long audio at pauses itself (worker/decoding/batched.py)
        elif key == "language" and task == "translate":
            raise Refused(400, "translations take no language (the output is English)", param="language")
        elif key in ("task", "audio", "audio_base64", "stream"):
            raise Refused(400, "unknown field", param=key)
        else:
            fields[key] = value if key in _TEXT_FIELDS else _typed(key, value)
    if names or references:
        fields["known_speakers"] = _known_speakers(names, references)
    if response_format == "diarized_json" or "known_speakers" in fields:
        fields["diarize"] = True
    if granularities and response_format != "verbose_json":
        raise Refused(400, "needs response_format=verbose_json", param="timestamp_granularities[]")
    words = "word" in granularities
    fields.update(task=task, response_format="verbose_json" if response_format in ("json", "text", "verbose_json", "diarized_json") else response_format)
    if words:
        fields["word_timestamps"] = True
    segments = not granularities or "segment" in granularities
    return fields, {"format": response_format, "words": words, "segments": segments, "known": names}


def _known_speakers(names: List[str], references: List[str]) -> List[dict]:
    """OpenAI's known_speaker_names[] / known_speaker_references[] (data URLs) as known_speakers."""
    if len(names) != len(references):
        raise Refused(400, f"{len(names)} names for {len(references)} references; give one of each per speaker",
                      param="known_speaker_references[]")
    known = []
    for index, (name, reference) in enumerate(zip(names, references)):
        if _GENERATED_LABEL.fullmatch(name):
            raise Refused(400, "SPEAKER_<n> is how unknown voices are labelled; choose another name", param=f"known_speaker_names[{index}]")
        header, comma, data = reference.partition(",")
        if not (comma and header.startswith("data:") and header.endswith(";base64")):
            raise Refused(400, "must be a data URL (data:audio/wav;base64,...)", param=f"known_speaker_references[{index}]")
        known.append({"name": name, "audio_base64": data})
    return known


def _speaker_letters(output: dict, known=()) -> Dict[str, str]:
    """OpenAI labels unknown speakers A, B, ...; known speakers keep their names. A letter is
    never one a known speaker's name already takes (a known "A" and an unknown voice would
    both read "A"): letters skip every name in use and every known name asked for."""
    labels = [speaker["speaker"] for speaker in output.get("speakers", [])]
    labels += [segment["speaker"] for segment in output.get("segments", []) if segment.get("speaker") is not None]
    generated = [label for label in dict.fromkeys(labels) if _GENERATED_LABEL.fullmatch(label) and label not in known]
    taken = {label for label in labels if label not in generated} | set(known)
    letters: Dict[str, str] = {}
    number = 0
    for label in generated:
        while True:
            letter = chr(ord("A") + number % 26) * (1 + number // 26)
            number += 1
            if letter not in taken:
                break
        letters[label] = letter
    return letters


def _typed(key: str, value: str) -> Any:
    """A form value for a non-text option: JSON (numbers, true/false, lists), else the string, so
    the schema refuses it by name (NaN, Infinity and 1e999 too: no option takes a non-finite
    number). Nesting deeper than the parser goes is refused here, naming the field."""
    try:
        return json.loads(value)
    except RecursionError:
        raise Refused(400, "is nested too deeply", param=key) from None
    except ValueError:
        return value


def render(output: dict, shape: dict) -> Response:
    """The worker's verbose output in OpenAI's shape for the format asked."""
    fmt = shape["format"]
    if fmt == "json":
        return JSONResponse({"text": output["text"]})
    if fmt == "text":
        return PlainTextResponse(output["text"] + "\n")
    if fmt in ("srt", "vtt"):
        return PlainTextResponse(output[fmt], media_type="text/plain")
    if fmt == "diarized_json":
        letters = _speaker_letters(output, shape.get("known", ()))
        return JSONResponse({
            "task": output["task"], "duration": output["duration"],
            "text": " ".join(segment["text"].strip() for segment in output["segments"] if segment["text"].strip()),
            "segments": [{"type": "transcript.text.segment", "id": f"seg_{segment['id']}", "start": segment["start"], "end": segment["end"],
                          "text": segment["text"], "speaker": letters.get(segment["speaker"], segment["speaker"])} for segment in output["segments"]],
            "usage": {"type": "duration", "seconds": int(-(-output["duration"] // 1))},
        })
    translated = output["task"] == "translate"
    body = {"task": output["task"], "language": "english" if translated else language_name(output["language"]),
            "duration": output["duration"], "text": output["text"]}
    if shape["segments"]:
        keys = ("id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob")
        body["segments"] = [{key: segment[key] for key in keys} for segment in output["segments"]]
    if shape["words"]:
        body["words"] = [{"word": w["word"], "start": w["start"], "end": w["end"]} for w in output.get("words", [])]
    return JSONResponse(body)


def serve(settings, load: Callable[[], Any]) -> None:
    """Listen on PORT (and PORT_HEALTH, /ping only) at once, answer 204 on /ping while `load()`
    runs, then 200. If `load()` raises, the servers stop and its exception is raised here, so
    that `python -m worker` exits as queue mode does (3 for a ModelError) instead of answering
    "still loading" for ever."""
    import uvicorn

    readiness = Readiness()
    servers = [uvicorn.Server(uvicorn.Config(create_app(readiness), host="0.0.0.0", port=settings.port, log_level="warning"))]
    if settings.health_port != settings.port:
        servers.append(uvicorn.Server(uvicorn.Config(create_health_app(readiness), host="0.0.0.0", port=settings.health_port, log_level="warning")))
    failure: List[BaseException] = []

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    async def run_all():
        loop = asyncio.get_running_loop()

        def loader():  # a daemon thread: a server stopped by a signal does not wait for the load
            try:
                readiness.service = load()
            except BaseException as exc:  # noqa: BLE001 - raised again by serve(), after the servers stop
                readiness.failed = f"cannot load the model: {exc}"
                failure.append(exc)
                try:
                    loop.call_soon_threadsafe(stop)
                except RuntimeError:  # the servers have already stopped (a signal)
                    pass

        threading.Thread(target=loader, name="model-loader", daemon=True).start()
        await asyncio.gather(*(server.serve() for server in servers))

    asyncio.run(run_all())
    if failure:
        raise failure[0]
