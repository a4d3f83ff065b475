"""Shared by the examples: an SDK endpoint (hosted or local), audio inputs, and job results.

Hosted: set RUNPOD_API_KEY and RUNPOD_ENDPOINT_ID. Local: start the worker with the SDK's test
server (`python -m worker --rp_serve_api --rp_api_port 8000`) and set
RUNPOD_LOCAL_API=http://127.0.0.1:8000.

Why an adapter for local: runpod.Endpoint builds URLs as {runpod.endpoint_url_base}/{endpoint_id}/
{operation} and reads /status and /stream with GET, while the SDK's own test server serves
/run, /runsync, /status/{id} and /stream/{id} without the endpoint id and for POST only; and once
it has answered a job it forgets it, so the SDK's stream loop reads a final reply with no
"stream" key. LocalAPIAdapter, mounted on the endpoint's requests session, drops the id segment,
sends those reads as POST (the hosted API accepts both) and adds the empty "stream". Against the
hosted API nothing is rewritten.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import runpod
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

# Request body limits of the hosted API (docs.runpod.io, endpoint operations): base64 grows a file by 4/3.
PAYLOAD_LIMITS = {"run": 10 * 1024 * 1024, "runsync": 20 * 1024 * 1024}
FINAL = {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}


class JobFailed(RuntimeError):
    """The job ended without a transcript; `code` is the worker's error_code when it sent one."""

    def __init__(self, status: str, message: str, code: str | None = None):
        super().__init__(f"{status}: {message}" + (f" [{code}]" if code else ""))
        self.status, self.message, self.code = status, message, code


class LocalAPIAdapter(HTTPAdapter):
    """Maps the hosted API's URLs and methods onto the SDK's local test server."""

    def __init__(self, endpoint_id: str):
        super().__init__(max_retries=Retry(total=5, backoff_factor=1, status_forcelist=[408, 429]))
        self.prefix = f"/{endpoint_id}/"

    def send(self, request, **kwargs):
        url = urlsplit(request.url)
        path = "/" + url.path[len(self.prefix):] if url.path.startswith(self.prefix) else url.path
        request.url = urlunsplit(url._replace(path=path))
        operation = path.strip("/").split("/")[0]
        if operation in ("status", "stream") and request.method == "GET":
            request.method = "POST"
        response = super().send(request, **kwargs)
        if operation == "stream" and response.ok:
            reply = response.json()
            if "stream" not in reply:
                reply["stream"] = []
                response._content = json.dumps(reply).encode()
        return response


def connect() -> runpod.Endpoint:
    """The endpoint named by the environment: the local test server or a hosted endpoint."""
    local = os.environ.get("RUNPOD_LOCAL_API")
    if local:
        runpod.api_key = runpod.api_key or "local-test-server"
        runpod.endpoint_url_base = local.rstrip("/")
        endpoint = runpod.Endpoint("local")
        endpoint.rp_client.rp_session.mount(runpod.endpoint_url_base + "/", LocalAPIAdapter("local"))
        return endpoint
    runpod.api_key = os.environ["RUNPOD_API_KEY"]
    return runpod.Endpoint(os.environ["RUNPOD_ENDPOINT_ID"])


def audio_input(source: str, operation: str = "run") -> dict:
    """A URL is passed as is; a local file is sent inline as base64, within the body limit."""
    if source.startswith(("http://", "https://")):
        return {"audio": source}
    data = Path(source).read_bytes()
    encoded = base64.b64encode(data).decode()
    if len(encoded) > PAYLOAD_LIMITS[operation] - 64 * 1024:
        raise ValueError(f"{source}: {len(data)} bytes is too large to send inline to /{operation} "
                         f"(limit {PAYLOAD_LIMITS[operation] // 2**20} MB after base64); upload it and pass a URL")
    return {"audio_base64": encoded}


def audio_or_exit(source: str, operation: str = "run") -> dict:
    """`audio_input` for command lines: an unreadable or too large file exits with status 2."""
    try:
        return audio_input(source, operation)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def result(state: dict):
    """The output of a finished job, or JobFailed with the worker's message and code."""
    status = state.get("status")
    if status == "COMPLETED":
        return state.get("output")
    output = state.get("output") if isinstance(state.get("output"), dict) else {}
    raise JobFailed(status or "UNKNOWN", str(state.get("error") or output.get("error") or "no output"), output.get("error_code"))


def run_sync(endpoint: runpod.Endpoint, job_input: dict, timeout: int = 600):
    """Like Endpoint.run_sync, but a failed job raises JobFailed with its error instead of
    returning None; a job still running when /runsync returns is polled until it ends."""
    state = endpoint.rp_client.post(f"{endpoint.endpoint_id}/runsync", {"input": job_input}, timeout=timeout)
    if state.get("status") not in FINAL:
        state = wait(endpoint, state["id"], timeout)
    return result(state)


def wait(endpoint: runpod.Endpoint, job_id: str, timeout: float = 600, every: float = 1.0) -> dict:
    """Poll /status/{id} until the job is final; returns the raw state (see `result`)."""
    deadline = time.monotonic() + timeout
    while True:
        state = endpoint.rp_client.get(f"{endpoint.endpoint_id}/status/{job_id}", timeout=max(10, int(timeout)))
        if state.get("status") in FINAL:
            return state
        if time.monotonic() > deadline:
            # giving up must not leave the job running (and billing): cancel it first
            cancelled = "cancelled" if cancel(endpoint, job_id) else "cancel failed"
            raise TimeoutError(f"job {job_id} still {state.get('status')} after {timeout:.0f} s ({cancelled})")
        time.sleep(every)


def cancel(endpoint: runpod.Endpoint, job_id: str) -> bool:
    """POST /cancel/{id}; True when the API accepted it (best effort: never raises)."""
    try:
        endpoint.rp_client.post(f"{endpoint.endpoint_id}/cancel/{job_id}", None, timeout=10)
        return True
    except Exception:  # noqa: BLE001 - the caller is already giving up; say so, do not crash
        return False


def status(endpoint: runpod.Endpoint, job_id: str) -> dict:
    return endpoint.rp_client.get(f"{endpoint.endpoint_id}/status/{job_id}", timeout=10)
