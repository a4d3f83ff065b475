"""Model resolution and loading: every way the configured model can be wrong is a ModelError naming
the cause, and the worker exits 3 with that cause instead of a traceback."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT
from worker.config import Settings
from worker.decoding.models import ModelError, load_model, pick_compute_type, resolve_model_path


def cpu_settings(model: str, **overrides) -> Settings:
    return Settings(model=model, device="cpu", compute_type=overrides.pop("compute_type", "int8"), cpu_threads=1, **overrides)


@pytest.fixture
def model_copy(tiny_en_dir, tmp_path):
    """The tiny.en directory, with links to its large files, for breaking one file at a time."""
    target = tmp_path / "model"
    target.mkdir()
    for item in Path(tiny_en_dir).iterdir():
        os.symlink(item, target / item.name)
    return target


def break_file(folder: Path, name: str, content: bytes) -> None:
    (folder / name).unlink()
    (folder / name).write_bytes(content)


def test_the_real_model_loads_with_the_precision_asked_for(tiny_en_dir):
    model = load_model(cpu_settings(tiny_en_dir, compute_type="auto"))
    assert (model.device, model.compute_type, model.path) == ("cpu", "int8", tiny_en_dir)  # auto on CPU is int8
    assert model.is_multilingual is False and model.name == tiny_en_dir


@pytest.mark.parametrize("name, cause", [
    ("/no/such/model/dir", "model directory /no/such/model/dir does not exist"),
    ("./no-such-model", "does not exist"),
    ("tiny-but-misspelt", "unknown model alias 'tiny-but-misspelt'; expected one of"),
])
def test_a_model_that_is_not_there_is_refused_by_name(name, cause):
    with pytest.raises(ModelError, match=cause):
        resolve_model_path(name)


def test_a_directory_without_the_model_files_is_refused(model_copy):
    (model_copy / "model.bin").unlink()
    with pytest.raises(ModelError, match="is a directory but not a CTranslate2 Whisper model .needs model.bin, config.json"):
        load_model(cpu_settings(str(model_copy)))


def test_an_uncached_hub_model_offline_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match=r"cannot fetch model 'Systran/faster-whisper-tiny' \(revision latest\)"):
        resolve_model_path("Systran/faster-whisper-tiny", cache_dir=str(tmp_path), local_files_only=True)


@pytest.mark.parametrize("name, content", [("model.bin", b"\0" * 1000), ("config.json", b"{not json")])
def test_a_corrupt_model_file_is_a_model_error(model_copy, name, content):
    break_file(model_copy, name, content)
    with pytest.raises(ModelError, match=f"cannot load the model from {model_copy} on cpu .int8."):
        load_model(cpu_settings(str(model_copy)))


def test_a_compute_type_the_device_lacks_is_refused_with_the_supported_ones(tiny_en_dir):
    with pytest.raises(ModelError, match="compute type 'float16' is not supported on cpu; supported: .*int8"):
        load_model(cpu_settings(tiny_en_dir, compute_type="float16"))
    with pytest.raises(ModelError, match="'int4' is not supported"):
        pick_compute_type("int4", "cpu")
    assert pick_compute_type("default", "cpu") == "default"
    assert pick_compute_type("auto", "cuda") == "float16"


def test_the_worker_exits_3_naming_the_cause_when_the_model_is_corrupt(model_copy):
    break_file(model_copy, "model.bin", b"\0" * 1000)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHISPER_", "RUNPOD_"))}
    env.update(WHISPER_MODEL=str(model_copy), WHISPER_DEVICE="cpu", WHISPER_COMPUTE_TYPE="int8", WHISPER_LOCAL_FILES_ONLY="true")
    done = subprocess.run([sys.executable, "-m", "worker"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"worker: cannot load the model: cannot load the model from {model_copy}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_model_directory_is_used_in_place_and_nothing_is_downloaded(model_copy, monkeypatch):
    import faster_whisper.utils

    monkeypatch.setattr(faster_whisper.utils, "download_model", lambda *a, **k: pytest.fail("downloaded a local model"))
    assert resolve_model_path(str(model_copy)) == str(model_copy)
    shutil.rmtree(model_copy)
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_path(str(model_copy))
