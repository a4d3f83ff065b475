"""GitHub workflows: valid against the GitHub workflow schema (check-jsonschema's vendored copy,
offline), and doing what the deployment guide says they do."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict) -> dict:
    # YAML 1.1 reads the key `on` as True.
    return workflow.get("on", workflow.get(True))


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def check_jsonschema() -> str:
    found = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    if not Path(found).exists():
        pytest.fail("check-jsonschema not installed (test extra)")
    return found


def test_workflows_exist():
    assert {path.name for path in FILES} >= {"ci.yml", "docker.yml"}


def test_workflows_match_the_github_schema():
    result = subprocess.run(
        [check_jsonschema(), "--builtin-schema", "vendor.github-workflows", *map(str, FILES)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_lints_and_runs_the_readme_command_on_prs_and_pushes():
    workflow = load("ci.yml")
    on = triggers(workflow)
    assert "pull_request" in on and "push" in on
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in steps(job)]
    assert any(run.strip() == "bash .ci/run" for run in runs)
    assert any("ruff check" in run for run in runs)


def test_docker_workflow_builds_on_main_and_tags_with_the_named_credentials():
    workflow = load("docker.yml")
    push = triggers(workflow)["push"]
    assert push["branches"] == ["main"] and any(tag.startswith("v") for tag in push["tags"])
    text = (WORKFLOWS / "docker.yml").read_text()
    for needed in ("vars.DOCKERHUB_USERNAME", "secrets.DOCKERHUB_TOKEN", "secrets.RUNPOD_API_KEY"):
        assert needed in text
    build = [step for step in steps(workflow["jobs"]["image"]) if "build-push-action" in step.get("uses", "")]
    assert build and build[0]["with"]["context"] == "."


def test_runpod_tests_are_skipped_without_the_secret():
    job = load("docker.yml")["jobs"]["runpod-tests"]
    assert job["needs"] == "image"
    assert job["env"]["RUNPOD_API_KEY"] == "${{ secrets.RUNPOD_API_KEY }}"
    runs = [step for step in steps(job) if "runpod_release_test.py" in step.get("run", "")]
    assert runs and "env.RUNPOD_API_KEY != ''" in runs[0]["if"]
    for step in steps(job):
        if "Skip" not in step.get("name", ""):
            assert "env.RUNPOD_API_KEY != ''" in step["if"], step


def release_test_module():
    path = ROOT / ".github" / "scripts" / "runpod_release_test.py"
    spec = importlib.util.spec_from_file_location("runpod_release_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_release_test_script_reads_the_hub_tests_and_judges_outputs():
    module = release_test_module()
    assert module.TESTS == ROOT / ".runpod" / "tests.json" and module.TESTS.is_file()
    assert module.check_output("t", {"text": " And so my fellow Americans", "segments": []}) == ""
    assert "empty transcript" in module.check_output("t", {"text": "  "})
    assert "invalid_audio" in module.check_output("t", {"error": "not audio", "error_code": "invalid_audio"})
    assert "expected an object" in module.check_output("t", ["a"])
    assert module.main(["prog"]) == 2


def test_release_test_waits_for_the_rollout_and_proves_which_image_answered():
    module = release_test_module()
    good = {"text": "hello", "metrics": {"image_revision": "abc"}}
    assert module.check_output("t", good, "abc") == ""
    assert "old worker" in module.check_output("t", {**good, "metrics": {"image_revision": "old"}}, "abc")
    failed = {"status": "FAILED", "error": "worker exited", "output": {"error": "audio: not audio", "error_code": "invalid_audio"}}
    assert "worker exited" in module.check_state("t", failed) and "invalid_audio" in module.check_state("t", failed)
    assert "NoneType" not in module.check_state("t", {"status": "FAILED"})

    class Reply:
        def __init__(self, data):
            self.data = data

        def raise_for_status(self):
            pass

        def json(self):
            return self.data

    replies = [{"version": 2, "workers": [{"image": "old:1"}, {"image": "new:2"}]},
               {"version": 3, "workers": [{"image": "new:2"}]}]
    calls = []
    module.wait_for_rollout("key", "ep", "new:2", timeout=60, every=0, get=lambda *a, **k: calls.append(k) or Reply(replies.pop(0)), sleep=lambda s: None)
    assert len(calls) == 2 and calls[0]["params"] == {"includeWorkers": "true"}
    stuck = lambda *a, **k: Reply({"workers": [{"image": "old:1"}]})  # noqa: E731
    with pytest.raises(TimeoutError, match="old image"):
        module.wait_for_rollout("key", "ep", "new:2", timeout=0, every=0, get=stuck, sleep=lambda s: None)
