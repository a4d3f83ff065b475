"""Settings from the environment: parsing, defaults, and refusing values the worker cannot use."""

import dataclasses

import pytest

from worker.config import BOUNDS, SETTINGS_DOC, Settings, SettingsError


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
    # ... and holds only those rows, in the order Settings declares them.
    section = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    table = next(block for block in section.split("\n\n") if block.startswith("| variable"))
    assert table.splitlines()[2:] == [f"| `{env_name}` | {default} | {meaning} |" for env_name, default, meaning in SETTINGS_DOC.values()]


@pytest.mark.parametrize("name, raw", [("WHISPER_MAX_AUDIO_SECONDS", "inf"), ("WHISPER_DOWNLOAD_TIMEOUT", "Infinity"),
                                       ("WHISPER_MAX_BATCH_WAIT_MS", "nan"), ("WHISPER_BATCH_SIZE", "16.5"),
                                       ("WHISPER_BATCH_SIZE", "inf"), ("WHISPER_LOG_LEVEL", "VERBOSE")])
def test_non_finite_fractional_and_unknown_values_are_refused_by_name(name, raw):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: raw})


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_each_bounded_setting_takes_its_bounds_and_refuses_beyond_them_by_name(name):
    env_name, (low, high) = SETTINGS_DOC[name][0], BOUNDS[name]
    if name != "concurrency":  # there 0 means one job per usable core (tested below)
        assert getattr(Settings.from_env({env_name: f"{low:g}"}), name) == low
    assert getattr(Settings.from_env({env_name: str(high)}), name) == high
    for beyond in (low - 1, high + 1):
        with pytest.raises(SettingsError) as info:
            Settings.from_env({env_name: str(beyond)})
        assert str(info.value) == f"{env_name}: must be between {low:g} and {high:g}"


def test_whole_numbers_from_the_hub_form_are_accepted():
    settings = Settings.from_env({"WHISPER_BATCH_SIZE": "16.0", "WHISPER_CONCURRENCY": "4", "WHISPER_MAX_BATCH_SIZE": "3.2e1"})
    assert (settings.batch_size, settings.concurrency, settings.max_batch_size) == (16, 4, 32)


def test_the_log_level_takes_effect_after_the_sdk_configured_logging():
    import logging

    from worker.__main__ import configure_logging

    root = logging.getLogger()
    sdk_handler = logging.StreamHandler()
    root.addHandler(sdk_handler)  # what runpod does on import, before our basicConfig
    try:
        configure_logging(Settings.from_env({"WHISPER_LOG_LEVEL": "debug"}))
        assert logging.getLogger("worker.jobs").isEnabledFor(logging.DEBUG)
        configure_logging(Settings.from_env({"WHISPER_LOG_LEVEL": "ERROR"}))
        assert not logging.getLogger("worker.jobs").isEnabledFor(logging.INFO)
    finally:
        root.removeHandler(sdk_handler)
        logging.getLogger("worker").setLevel(logging.NOTSET)


def test_concurrency_zero_is_sized_to_the_usable_cores(monkeypatch):
    from worker import config

    assert Settings.from_env({}).concurrency == max(config.MIN_AUTO_CONCURRENCY, config.usable_cores())
    monkeypatch.setattr(config, "usable_cores", lambda: 16)
    assert Settings.from_env({}).concurrency == 16
    assert Settings.from_env({"WHISPER_CONCURRENCY": "0"}).concurrency == 16
    monkeypatch.setattr(config, "usable_cores", lambda: 2)
    assert Settings.from_env({}).concurrency == config.MIN_AUTO_CONCURRENCY
    assert Settings.from_env({"WHISPER_CONCURRENCY": "3"}).concurrency == 3
    with pytest.raises(SettingsError, match="WHISPER_CONCURRENCY"):
        Settings.from_env({"WHISPER_CONCURRENCY": "-1"})
