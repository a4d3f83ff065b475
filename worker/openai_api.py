"""The OpenAI server mode (`WHISPER_MODE=openai`): OpenAI's audio API over HTTP, for RunPod
load-balancing endpoints, so the official `openai` client works unchanged.

    POST /v1/audio/transcriptions, /v1/audio/translations   multipart, as OpenAI defines them
    GET  /v1/models                                          the served model
    GET  /ping                                               204 while the model loads, 200 after

RunPod's load-balancing conventions (docs.runpod.io/serverless/load-balancing/overview): the
API listens on PORT, the health check on PORT_HEALTH (the same port unless set), and /ping
answers 204 during initialization and 200 when healthy. A load balancer request is limited to
about 5.5 minutes, so long files belong on a queue endpoint (or streamed there).

One path: a form becomes the same job input a queue job carries (OpenAI's names mapped onto the
worker's, the worker's own options as extra fields, unknown ones refused by name) and runs
through the same Service: limits, decoding, engine and cross-job scheduler. Errors come from the
one error tree and are mapped to HTTP here only. When all `WHISPER_CONCURRENCY` slots are busy
the answer is 429 with Retry-After, not an unbounded queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
from importlib import resources
from typing import Any, Callable, Dict, List, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .request import TranscriptionRequest

OPENAI_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
GRANULARITIES = ("segment", "word")
MAX_FIELD_BYTES = 8 * 1024 * 1024
# error_code -> HTTP status (OpenAI answers bad files with 400; these are more exact)
STATUS = {"invalid_request": 400, "invalid_audio": 415, "audio_too_long": 413, "download_failed": 400,
          "unsafe_url": 400, "storage_failed": 507, "out_of_memory": 503, "device_failed": 500, "cancelled": 499}
_TEXT_FIELDS = {name for name, info in TranscriptionRequest.model_fields.items() if info.annotation in (str, Optional[str])}
_UPLOAD_CHUNK = 1024 * 1024


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


class Readiness:
    """Whether the model is loaded: the health route and the API read it."""

    def __init__(self, service=None):
        self.service = service
        self.failed: Optional[str] = None


def create_app(readiness: Readiness) -> FastAPI:
    app = FastAPI(title="Whisper (OpenAI audio API)", docs_url=None, redoc_url=None, openapi_url=None)
    slots: Dict[str, threading.BoundedSemaphore] = {}

    def service():
        return readiness.service

    def slot() -> threading.BoundedSemaphore:
        if "jobs" not in slots:
            slots["jobs"] = threading.BoundedSemaphore(service().settings.concurrency)
        return slots["jobs"]

    @app.get("/ping")
    async def ping():
        if readiness.failed:
            return PlainTextResponse(readiness.failed, status_code=500)
        return Response(status_code=200 if service() is not None else 204)

    @app.get("/v1/models")
    async def models():
        if service() is None:
            return openai_error(503, "the model is still loading", code="loading", headers={"Retry-After": "5"})
        name = service().settings.served_model_name
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "whisper-runpod-worker"}]}

    async def audio_route(request: Request, task: str):
        if service() is None:
            return openai_error(503, "the model is still loading", code="loading", headers={"Retry-After": "5"})
        limit = service().settings.max_download_bytes
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit + 64 * 1024:
            return openai_error(413, f"the upload is {int(declared)} bytes, over the {limit}-byte limit", param="file", code="audio_too_long")
        if not slot().acquire(blocking=False):
            return openai_error(429, f"all {service().settings.concurrency} transcription slots are busy; retry shortly",
                                code="busy", headers={"Retry-After": "1"})
        try:
            return await _transcribe(request, task, limit)
        finally:
            slot().release()

    async def _transcribe(request: Request, task: str, limit: int):
        try:
            # known_speaker_references[] are data URLs in plain fields: allow clips of a few MB
            form = await request.form(max_files=1, max_fields=100, max_part_size=MAX_FIELD_BYTES)
        except Exception as exc:  # noqa: BLE001 - a malformed multipart body is the caller's mistake
            return openai_error(400, f"cannot read the multipart form: {exc}", code="invalid_request")
        with tempfile.TemporaryDirectory(prefix="whisper-upload-", dir=service().settings.temp_dir) as folder:
            try:
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    return openai_error(400, "a `file` part with the audio is required", param="file", code="invalid_request")
                path = os.path.join(folder, "upload")
                size = await _save(upload, path, limit)
                if size is None:
                    return openai_error(413, f"the file is over the {limit}-byte limit", param="file", code="audio_too_long")
                mapped = form_to_input(form, task, service().settings)
                if isinstance(mapped, JSONResponse):
                    return mapped
                job_input, shape = mapped
                cancelled = threading.Event()
                try:
                    output = await asyncio.get_running_loop().run_in_executor(
                        service()._threads, lambda: service().process({"id": "openai", "input": job_input}, None, cancelled, upload=path))
                except asyncio.CancelledError:
                    cancelled.set()  # the client went away: stop decoding
                    raise
            finally:
                await form.close()
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


async def _save(upload, path: str, limit: int) -> Optional[int]:
    """Copy the uploaded part to `path`; None when it is over `limit` (nothing more is read)."""
    size = 0
    with open(path, "wb") as out:
        while True:
            chunk = await upload.read(_UPLOAD_CHUNK)
            if not chunk:
                return size
            size += len(chunk)
            if size > limit:
                return None
            out.write(chunk)


def form_to_input(form, task: str, settings) -> Any:
    """OpenAI's form fields as the worker's job input, plus how to shape the response."""
    fields: Dict[str, Any] = {}
    granularities: List[str] = []
    names: List[str] = []
    references: List[str] = []
    response_format = "json"
    for key, value in form.multi_items():
        if key == "file":
            continue
        if not isinstance(value, str):
            return openai_error(400, "only the `file` part may be a file", param=key, code="invalid_request")
        if key in ("timestamp_granularities[]", "timestamp_granularities"):
            if value not in GRANULARITIES:
                return openai_error(400, f"must be one of {', '.join(GRANULARITIES)}", param="timestamp_granularities[]", code="invalid_request")
            granularities.append(value)
        elif key == "model":
            if value not in (settings.served_model_name, settings.model, "whisper-1"):
                return openai_error(400, f"this endpoint serves {settings.served_model_name!r}", param="model", code="model_not_found")
        elif key == "response_format":
            if value not in OPENAI_FORMATS:
                return openai_error(400, f"must be one of {', '.join(OPENAI_FORMATS)}", param="response_format", code="invalid_request")
            response_format = value
        elif key == "prompt":
            fields["initial_prompt"] = value
        elif key in ("known_speaker_names[]", "known_speaker_names"):
            names.append(value)
        elif key in ("known_speaker_references[]", "known_speaker_references"):
            references.append(value)
        elif key == "chunking_strategy":
            continue  # the worker always cuts long audio at pauses itself (worker/longform.py)
        elif key == "language" and task == "translate":
            return openai_error(400, "translations take no language (the output is English)", param="language", code="invalid_request")
        elif key in ("task", "audio", "audio_base64", "stream"):
            return openai_error(400, "unknown field", param=key, code="invalid_request")
        else:
            fields[key] = value if key in _TEXT_FIELDS else _typed(value)
    if names or references:
        known = _known_speakers(names, references)
        if isinstance(known, JSONResponse):
            return known
        fields["known_speakers"] = known
    if response_format == "diarized_json" or "known_speakers" in fields:
        fields["diarize"] = True
    if granularities and response_format != "verbose_json":
        return openai_error(400, "needs response_format=verbose_json", param="timestamp_granularities[]", code="invalid_request")
    words = "word" in granularities
    fields.update(task=task, response_format="verbose_json" if response_format in ("json", "text", "verbose_json", "diarized_json") else response_format)
    if words:
        fields["word_timestamps"] = True
    segments = not granularities or "segment" in granularities
    return fields, {"format": response_format, "words": words, "segments": segments}


def _known_speakers(names: List[str], references: List[str]) -> Any:
    """OpenAI's known_speaker_names[] / known_speaker_references[] (data URLs) as known_speakers."""
    if len(names) != len(references):
        return openai_error(400, f"{len(names)} names for {len(references)} references; give one of each per speaker",
                            param="known_speaker_references[]", code="invalid_request")
    known = []
    for index, (name, reference) in enumerate(zip(names, references)):
        header, comma, data = reference.partition(",")
        if not (comma and header.startswith("data:") and header.endswith(";base64")):
            return openai_error(400, "must be a data URL (data:audio/wav;base64,...)", param=f"known_speaker_references[{index}]", code="invalid_request")
        known.append({"name": name, "audio_base64": data})
    return known


def _speaker_letters(output: dict) -> Dict[str, str]:
    """OpenAI labels unknown speakers A, B, ...; known speakers keep their names."""
    letters: Dict[str, str] = {}
    for speaker in output.get("speakers", []):
        label = speaker["speaker"]
        if label.startswith("SPEAKER_"):
            number = len(letters)
            letters[label] = chr(ord("A") + number % 26) * (1 + number // 26)
    return letters


def _typed(value: str) -> Any:
    """A form value for a non-text option: JSON (numbers, true/false, lists), else the string, so
    the schema refuses it by name."""
    try:
        return json.loads(value)
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
        letters = _speaker_letters(output)
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
    """Listen on PORT (and PORT_HEALTH) at once, answer 204 on /ping while `load()` runs, then 200."""
    import uvicorn

    readiness = Readiness()
    app = create_app(readiness)

    def loader():
        try:
            readiness.service = load()
        except Exception as exc:  # noqa: BLE001 - reported on /ping and in the log; the process exits
            readiness.failed = f"cannot load the model: {exc}"
            raise

    threading.Thread(target=loader, name="model-loader", daemon=True).start()
    servers = [uvicorn.Server(uvicorn.Config(app, host="0.0.0.0", port=settings.port, log_level="warning"))]
    if settings.health_port != settings.port:
        servers.append(uvicorn.Server(uvicorn.Config(app, host="0.0.0.0", port=settings.health_port, log_level="warning")))

    async def run_all():
        await asyncio.gather(*(server.serve() for server in servers))

    asyncio.run(run_all())
