"""Run .runpod/tests.json against a real RunPod endpoint after pointing it at a new image.

Used by .github/workflows/docker.yml once the image is pushed. It needs a dedicated test
endpoint (min workers 0, so no worker on the old image is left serving) whose template it
updates: PATCH https://rest.runpod.io/v1/templates/{id} with the new imageName, which RunPod
rolls out to the endpoints using that template. Then every test input is sent to /runsync and
must come back COMPLETED with a transcript.

    RUNPOD_API_KEY=... RUNPOD_ENDPOINT_ID=... RUNPOD_TEMPLATE_ID=... \
        python .github/scripts/runpod_release_test.py IMAGE[:TAG]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import requests

TESTS = Path(__file__).resolve().parents[2] / ".runpod" / "tests.json"
REST = "https://rest.runpod.io/v1"


def check_output(name: str, output) -> str:
    """Return a problem description, or '' when the output is a real transcript."""
    if not isinstance(output, dict):
        return f"{name}: expected an object, got {type(output).__name__}: {str(output)[:200]}"
    if "error" in output:
        return f"{name}: worker error {output.get('error_code')}: {output['error']}"
    text = str(output.get("text", "")).strip()
    if not text:
        return f"{name}: empty transcript"
    return ""


def update_template(api_key: str, template_id: str, image: str) -> None:
    response = requests.patch(
        f"{REST}/templates/{template_id}",
        headers={"Authorization": f"Bearer {api_key}"},
        json={"imageName": image},
        timeout=30,
    )
    response.raise_for_status()
    print(f"template {template_id} now uses {image}")


def run_tests(endpoint_id: str) -> list[str]:
    import runpod

    endpoint = runpod.Endpoint(endpoint_id)
    problems = []
    for test in json.loads(TESTS.read_text())["tests"]:
        started = time.monotonic()
        timeout_s = max(60, test.get("timeout", 300_000) // 1000)
        try:
            output = endpoint.run_sync(test["input"], timeout=timeout_s)
        except Exception as exc:  # timeouts and HTTP errors are test failures, reported together
            problems.append(f"{test['name']}: {type(exc).__name__}: {exc}")
            continue
        problem = check_output(test["name"], output)
        print(f"{test['name']}: {'FAIL ' + problem if problem else 'ok'} ({time.monotonic() - started:.1f} s)")
        if problem:
            problems.append(problem)
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    import runpod

    api_key = os.environ["RUNPOD_API_KEY"]
    runpod.api_key = api_key
    template_id = os.environ.get("RUNPOD_TEMPLATE_ID")
    if template_id:
        update_template(api_key, template_id, argv[1])
    problems = run_tests(os.environ["RUNPOD_ENDPOINT_ID"])
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
