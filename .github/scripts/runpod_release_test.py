"""Run .runpod/tests.json against a real RunPod endpoint after pointing it at a new image, and
prove that the new image answered.

Used by .github/workflows/docker.yml once the image is pushed. It needs a dedicated test
endpoint whose template it updates (PATCH https://rest.runpod.io/v1/templates/{id} with the new
imageName). RunPod then starts a rolling release (docs.runpod.io/serverless/endpoints/
rolling-releases): idle workers on the old image are replaced at once, busy ones after their
job, so jobs sent right away may still reach old workers. This script therefore
1. waits for the rollout: GET https://rest.runpod.io/v1/endpoints/{id}?includeWorkers=true
   until no listed worker runs another image (an endpoint with no workers is rolled out too);
2. sends every test input to /runsync (polling /status if /runsync returns before the end) and
   reads the job's own error when it fails;
3. checks that each output's metrics.image_revision is the commit the image was built from
   (GIT_REVISION, baked in by the Dockerfile), so a pass cannot come from an old worker.

    RUNPOD_API_KEY=... RUNPOD_ENDPOINT_ID=... RUNPOD_TEMPLATE_ID=... GIT_REVISION=<sha> \\
        python .github/scripts/runpod_release_test.py IMAGE[:TAG]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import requests

TESTS = Path(__file__).resolve().parents[2] / ".runpod" / "tests.json"
REST = "https://rest.runpod.io/v1"
QUEUE = "https://api.runpod.ai/v2"
FINAL = {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}


def check_output(name: str, output, revision: Optional[str] = None) -> str:
    """Return a problem description, or '' when the output is a real transcript from `revision`."""
    if not isinstance(output, dict):
        return f"{name}: expected an object, got {type(output).__name__}: {str(output)[:200]}"
    if "error" in output:
        return f"{name}: worker error {output.get('error_code')}: {output['error']}"
    text = str(output.get("text", "")).strip()
    if not text:
        return f"{name}: empty transcript"
    served = (output.get("metrics") or {}).get("image_revision")
    if revision and served != revision:
        return f"{name}: answered by image revision {served!r}, not {revision!r} (an old worker?)"
    return ""


def check_state(name: str, state: dict, revision: Optional[str] = None) -> str:
    """A finished job's state from /runsync or /status: its output judged, or why it failed."""
    status = state.get("status")
    if status == "COMPLETED":
        return check_output(name, state.get("output"), revision)
    output = state.get("output")
    detail = state.get("error") or (output.get("error") if isinstance(output, dict) else None) or "no error message"
    code = output.get("error_code") if isinstance(output, dict) else None
    return f"{name}: job {status}: {detail}" + (f" [{code}]" if code else "")


def update_template(api_key: str, template_id: str, image: str) -> None:
    response = requests.patch(f"{REST}/templates/{template_id}", headers=_auth(api_key), json={"imageName": image}, timeout=30)
    response.raise_for_status()
    print(f"template {template_id} now uses {image}")


def stale_workers(endpoint: dict, image: str) -> list:
    """Workers of the endpoint (REST v1, includeWorkers=true) that run another image."""
    return [w for w in endpoint.get("workers") or [] if w.get("image") and w.get("image") != image]


def wait_for_rollout(api_key: str, endpoint_id: str, image: str, timeout: float = 1200, every: float = 15,
                     get: Callable = requests.get, sleep: Callable = time.sleep) -> None:
    deadline = time.monotonic() + timeout
    while True:
        response = get(f"{REST}/endpoints/{endpoint_id}", params={"includeWorkers": "true"}, headers=_auth(api_key), timeout=30)
        response.raise_for_status()
        endpoint = response.json()
        stale = stale_workers(endpoint, image)
        if not stale:
            print(f"rollout done: endpoint version {endpoint.get('version')}, {len(endpoint.get('workers') or [])} worker(s) on {image}")
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(stale)} worker(s) still on an old image after {timeout:.0f} s: {sorted({w.get('image') for w in stale})}")
        print(f"waiting for the rollout: {len(stale)} worker(s) on an old image")
        sleep(every)


def run_job(api_key: str, endpoint_id: str, job_input: dict, timeout_s: float) -> dict:
    """/runsync, then /status until final: the job's whole state, errors included."""
    state = requests.post(f"{QUEUE}/{endpoint_id}/runsync", headers=_auth(api_key), json={"input": job_input}, timeout=timeout_s).json()
    deadline = time.monotonic() + timeout_s
    while state.get("status") not in FINAL:
        if time.monotonic() > deadline:
            requests.post(f"{QUEUE}/{endpoint_id}/cancel/{state.get('id')}", headers=_auth(api_key), timeout=30)
            return {"status": "TIMED_OUT", "error": f"still {state.get('status')} after {timeout_s:.0f} s (cancelled)"}
        time.sleep(2)
        state = requests.get(f"{QUEUE}/{endpoint_id}/status/{state['id']}", headers=_auth(api_key), timeout=30).json()
    return state


def run_tests(api_key: str, endpoint_id: str, revision: Optional[str]) -> list[str]:
    problems = []
    for test in json.loads(TESTS.read_text())["tests"]:
        started = time.monotonic()
        timeout_s = max(60, test.get("timeout", 300_000) // 1000)
        try:
            state = run_job(api_key, endpoint_id, test["input"], timeout_s)
        except (requests.RequestException, ValueError) as exc:  # HTTP failures are test failures, reported together
            problems.append(f"{test['name']}: {type(exc).__name__}: {exc}")
            continue
        problem = check_state(test["name"], state, revision)
        print(f"{test['name']}: {'FAIL ' + problem if problem else 'ok'} ({time.monotonic() - started:.1f} s)")
        if problem:
            problems.append(problem)
    return problems


def _auth(api_key: str) -> dict:
    return {"Authorization": f"Bearer {api_key}"}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    image = argv[1]
    api_key = os.environ["RUNPOD_API_KEY"]
    endpoint_id = os.environ["RUNPOD_ENDPOINT_ID"]
    template_id = os.environ.get("RUNPOD_TEMPLATE_ID")
    revision = os.environ.get("GIT_REVISION") or None
    if template_id:
        update_template(api_key, template_id, image)
        wait_for_rollout(api_key, endpoint_id, image)
    problems = run_tests(api_key, endpoint_id, revision)
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
