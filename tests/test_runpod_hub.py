""".runpod/hub.json and tests.json: valid against schemas written from the Hub's documented
format, and consistent with the worker (every env key is a real setting, every test input a
field the worker accepts, every preset value one the worker can parse)."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from worker.config import SETTINGS_DOC, Settings

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "tests" / "schemas"
# The public request fields a Hub test may use (README's request table).
ACCEPTED_INPUTS = {
    "audio", "audio_base64", "language", "task", "response_format", "word_timestamps", "vad_filter",
    "vad_parameters", "batch_size", "beam_size", "temperature", "initial_prompt",
}
ENV_NAMES = {env_name for env_name, _default, _doc in SETTINGS_DOC.values()}


def load(name: str) -> dict:
    return json.loads((ROOT / ".runpod" / name).read_text())


def validate(document: dict, schema_name: str) -> None:
    schema = json.loads((SCHEMAS / schema_name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)


def test_hub_json_matches_schema():
    validate(load("hub.json"), "runpod-hub.schema.json")


def test_tests_json_matches_schema():
    validate(load("tests.json"), "runpod-tests.schema.json")


def test_schema_rejects_what_the_hub_would():
    hub = load("hub.json")
    broken = json.loads(json.dumps(hub))
    del broken["config"]["gpuIds"]
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, "runpod-hub.schema.json")
    broken = json.loads(json.dumps(hub))
    broken["category"] = "speech"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, "runpod-hub.schema.json")
    with pytest.raises(jsonschema.ValidationError):
        validate({"tests": [{"name": "x", "input": {"audio": "a"}, "timeout": "60s"}], "config": {"gpuTypeId": "g", "gpuCount": 1}}, "runpod-tests.schema.json")


def test_hub_is_a_gpu_audio_worker_with_the_required_presets():
    hub = load("hub.json")
    assert (hub["type"], hub["category"], hub["config"]["runsOn"]) == ("serverless", "audio", "GPU")
    names = [preset["name"] for preset in hub["config"]["presets"]]
    assert "Large V3 float16" in names and "Large V3 int8 (low VRAM)" in names
    keys = {entry["key"] for entry in hub["config"]["env"]}
    for required in ("WHISPER_MODEL", "WHISPER_COMPUTE_TYPE", "WHISPER_BATCH_SIZE", "WHISPER_CONCURRENCY", "WHISPER_MAX_AUDIO_SECONDS"):
        assert required in keys


def test_cuda_versions_fit_ctranslate2():
    """ctranslate2 4.8's PTX is CUDA 12.8 (ISA 8.7): older host drivers cannot JIT it on H100-class GPUs."""
    for document in (load("hub.json")["config"], load("tests.json")["config"]):
        for version in document["allowedCudaVersions"]:
            major, minor = map(int, version.split("."))
            assert (major, minor) >= (12, 8), version


def test_every_env_key_is_a_worker_setting():
    hub = load("hub.json")
    keys = [entry["key"] for entry in hub["config"]["env"]]
    keys += [key for preset in hub["config"]["presets"] for key in preset["defaults"]]
    keys += [entry["key"] for entry in load("tests.json")["config"].get("env", [])]
    unknown = sorted(set(keys) - ENV_NAMES)
    assert not unknown, f"not settings in worker.config.SETTINGS_DOC: {unknown}"


def as_env_value(value) -> str:
    """How the Hub writes a preset or default value into the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def test_presets_and_defaults_parse_as_settings():
    hub = load("hub.json")
    defaults = {e["key"]: as_env_value(e["input"]["default"]) for e in hub["config"]["env"] if "input" in e}
    Settings.from_env(defaults)
    for preset in hub["config"]["presets"]:
        env = dict(defaults, **{key: as_env_value(value) for key, value in preset["defaults"].items()})
        Settings.from_env(env)  # raises SettingsError on a value the worker refuses


def test_option_values_are_valid_compute_types():
    hub = load("hub.json")
    (compute,) = [e for e in hub["config"]["env"] if e["key"] == "WHISPER_COMPUTE_TYPE"]
    values = {option["value"] for option in compute["input"]["options"]}
    assert {"float16", "int8_float16"} <= values
    assert values <= {"auto", "float16", "int8_float16", "int8", "bfloat16", "int8_bfloat16", "float32"}


def test_tests_json_inputs_use_only_accepted_fields():
    from worker.request.schema import TranscriptionRequest

    for test in load("tests.json")["tests"]:
        fields = set(test["input"])
        assert fields <= ACCEPTED_INPUTS, f"{test['name']}: {sorted(fields - ACCEPTED_INPUTS)}"
        assert fields <= set(TranscriptionRequest.model_fields), test["name"]
        assert "audio" in fields or "audio_base64" in fields
        assert test["input"].get("audio", "https://").startswith("https://")
        assert test.get("timeout", 0) >= 60_000  # cold start + first CUDA JIT on a fresh worker


def test_tests_json_inputs_parse_as_requests():
    from worker.request.schema import parse_request

    settings = Settings()
    for test in load("tests.json")["tests"]:
        parse_request(test["input"], settings)


def test_root_handler_reexports_the_worker_entry():
    """The Hub wants a handler.py; it must re-export, not re-implement, the worker's entry."""
    source = (ROOT / "handler.py").read_text()
    tree = ast.parse(source)
    defined = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert defined == []
    import importlib.util

    import worker.entries.runpod

    spec = importlib.util.spec_from_file_location("hub_handler", ROOT / "handler.py")
    hub_handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub_handler)

    assert hub_handler.handler is worker.entries.runpod.handler
    assert hub_handler.stream_handler is worker.entries.runpod.stream_handler


def test_the_hub_form_offers_the_bounds_and_defaults_the_worker_declares():
    from worker.config import BOUNDS, SETTINGS_DOC

    numbers = {env["key"]: env["input"] for env in load("hub.json")["config"]["env"] if env["input"].get("type") == "number"}
    for name, (low, high) in BOUNDS.items():
        key = SETTINGS_DOC[name][0]
        if key in numbers:
            assert (numbers[key]["min"], numbers[key]["max"]) == (low, high), key
    assert {SETTINGS_DOC[name][0] for name in BOUNDS} >= set(numbers), "a number in the Hub form has no declared bounds"
    defaults = {SETTINGS_DOC[item.name][0]: item.default for item in dataclasses.fields(Settings)}
    for key, number in numbers.items():
        assert number["default"] == defaults[key], key  # the form's numbers default as the worker does
