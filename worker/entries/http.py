"""The OpenAI server mode (`WHISPER_MODE=openai`): OpenAI's audio API over HTTP, for RunPod
load-balancing endpoints, so the official `openai` client works unchanged.

    POST /v1/audio/transcriptions, /v1/audio/translations   multipart, as OpenAI defines them
    GET  /v1/models                                          the served model
    GET  /v1/realtime (WebSocket)                            live transcription sessions (worker/entries/realtime.py)
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
import itertools
import json
import logging
import shutil
import tempfile
import threading
from typing import Any, Callable, Dict, List, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import FormData

from worker.errors import StorageError, WorkerError
from worker.formats.openai import GENERATED_LABEL, HttpShape, http_body
from worker.request.schema import TranscriptionRequest
from worker.service import Outcome
from worker.entries.realtime import MAX_MESSAGE_BYTES, add_realtime
from worker.entries.upload import FORM_OVERHEAD, MAX_FIELDS_BYTES, ClientGone, Refused, boundary_of, openai_error, receive_form

log = logging.getLogger("worker.openai")

OPENAI_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
GRANULARITIES = ("segment", "word")
UPLOADS_PER_SLOT = 4  # uploads that may be arriving at once, per WHISPER_CONCURRENCY slot
_TEXT_FIELDS = {name for name, info in TranscriptionRequest.model_fields.items() if info.annotation in (str, Optional[str])}


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
    numbers = itertools.count(1)  # each job's id in the log and the scheduler: http-1, http-2, ...

    def service():
        return readiness.service

    def slot() -> threading.BoundedSemaphore:
        if "jobs" not in slots:
            slots["jobs"] = threading.BoundedSemaphore(service().settings.concurrency)
        return slots["jobs"]

    _add_ping(app, readiness)
    add_realtime(app, readiness)

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
            boundary = boundary_of(request.headers.get("content-type", ""))
            most = settings.concurrency * UPLOADS_PER_SLOT
            if uploading["now"] >= most:
                raise Refused(429, f"{most} uploads are already arriving; retry shortly", code="busy", headers={"Retry-After": "1"})
            uploading["now"] += 1
            try:
                try:
                    folder = tempfile.mkdtemp(prefix="whisper-upload-", dir=settings.temp_dir)
                except OSError as exc:
                    raise StorageError(f"cannot use temporary storage: {exc.strerror or exc}") from None
                form = await receive_form(request.receive, boundary, folder, limit, cap, settings.upload_timeout)
            finally:
                uploading["now"] -= 1
            if form.file is None:
                raise Refused(400, "a `file` part with the audio is required", "file")
            mapped = form_to_input(form.fields, task, settings)
            if isinstance(mapped, JSONResponse):
                return mapped
            fields, shape = mapped
            if not slot().acquire(blocking=False):
                raise Refused(429, f"all {settings.concurrency} transcription slots are busy; retry shortly", code="busy", headers={"Retry-After": "1"})
            cancelled = threading.Event()
            try:
                job_id = f"http-{next(numbers)}"
                job = svc.submit(lambda: svc.transcribe(svc.parse(fields, job_id, uploaded=True), job_id, form.file, None, cancelled))
            except BaseException:
                slot().release()
                raise
            semaphore = slot()
            job.add_done_callback(lambda _: (semaphore.release(), shutil.rmtree(folder, ignore_errors=True)))
            outcome = await _unless_gone(job, request.receive, cancelled)
        except Refused as refusal:
            return refusal.response
        except StorageError as exc:
            return openai_error(exc.http_status, str(exc), "file", exc.code)
        except ClientGone:
            return Response(status_code=499)  # nobody reads it
        finally:
            if job is None and folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        body = http_body(outcome.transcript, outcome.request, shape)
        if isinstance(body, str):
            return PlainTextResponse(body)
        return JSONResponse(body)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        return await audio_route(request, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request):
        return await audio_route(request, "translate")

    return app


async def _unless_gone(job: asyncio.Future, receive, cancelled: threading.Event) -> Outcome:
    """The job's outcome (a caller's mistake is Refused with its error's HTTP status); if the
    client disconnects first, the job is cancelled (it stops at its
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
    except WorkerError as exc:
        answer = exc.to_response()
        raise Refused(exc.http_status, answer["error"], answer.get("error_field"), exc.code) from None
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
    return fields, HttpShape(response_format, words, segments, tuple(names))


def _known_speakers(names: List[str], references: List[str]) -> List[dict]:
    """OpenAI's known_speaker_names[] / known_speaker_references[] (data URLs) as known_speakers."""
    if len(names) != len(references):
        raise Refused(400, f"{len(names)} names for {len(references)} references; give one of each per speaker",
                      param="known_speaker_references[]")
    known = []
    for index, (name, reference) in enumerate(zip(names, references)):
        if GENERATED_LABEL.fullmatch(name):
            raise Refused(400, "SPEAKER_<n> is how unknown voices are labelled; choose another name", param=f"known_speaker_names[{index}]")
        header, comma, data = reference.partition(",")
        if not (comma and header.startswith("data:") and header.endswith(";base64")):
            raise Refused(400, "must be a data URL (data:audio/wav;base64,...)", param=f"known_speaker_references[{index}]")
        known.append({"name": name, "audio_base64": data})
    return known


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


def serve(settings, load: Callable[[], Any]) -> None:
    """Listen on PORT (and PORT_HEALTH, /ping only) at once, answer 204 on /ping while `load()`
    runs, then 200. If `load()` raises, the servers stop and its exception is raised here, so
    that `python -m worker` exits as queue mode does (3 for a ModelError) instead of answering
    "still loading" for ever."""
    import uvicorn

    readiness = Readiness()
    servers = [uvicorn.Server(uvicorn.Config(create_app(readiness), host="0.0.0.0", port=settings.port, log_level="warning",
                                             ws_max_size=MAX_MESSAGE_BYTES))]
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
