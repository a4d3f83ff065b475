"""Settings from the environment: parsing, defaults, and refusing values the worker cannot use."""

import dataclasses

import pytest

from worker.config import SETTINGS_DOC, Settings, SettingsError


def test_defaults_without_environment():
    settings = Settings.from_env({})
    assert settings.model == "large-v3"
    assert settings.compute_type == "auto"
    assert settings.allow_local_files is False
    assert settings.allow_private_urls is False


def test_values_are_parsed_by_type():
    settings = Settings.from_env({
        "WHISPER_MODEL": "tiny.en", "WHISPER_BATCH_SIZE": "4", "WHISPER_MAX_AUDIO_SECONDS": "90.5",
        "WHISPER_ALLOW_LOCAL_FILES": "true", "WHISPER_CONCURRENCY": "2", "WHISPER_CACHE_DIR": "/tmp/models",
    })
    assert (settings.model, settings.batch_size, settings.max_audio_seconds) == ("tiny.en", 4, 90.5)
    assert settings.allow_local_files is True
    assert settings.model_cache_dir == "/tmp/models"


@pytest.mark.parametrize("name, value", [
    ("WHISPER_BATCH_SIZE", "many"), ("WHISPER_BATCH_SIZE", "0"), ("WHISPER_DEVICE", "tpu"),
    ("WHISPER_ALLOW_LOCAL_FILES", "maybe"), ("WHISPER_MAX_DOWNLOAD_BYTES", "-1"),
])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_every_field_is_documented():
    assert {f.name for f in dataclasses.fields(Settings)} == set(SETTINGS_DOC)


def test_runpod_volume_becomes_the_model_cache(monkeypatch):
    monkeypatch.setattr("worker.config.os.path.isdir", lambda path: path == "/runpod-volume")
    assert Settings.from_env({}).model_cache_dir == "/runpod-volume/huggingface-cache/hub"


def test_readme_settings_table_matches_the_code():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for env_name, default, meaning in SETTINGS_DOC.values():
        assert f"| `{env_name}` | {default} | {meaning} |" in readme, env_name
