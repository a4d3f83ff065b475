"""The request and response shapes of runpod-workers/worker-faster_whisper, so its clients keep
working unchanged: its input names renamed to ours on the way in (`take_legacy`, called by
worker.request.schema); its output keys are rendered by worker/formats/legacy.py. Nothing else in
the worker knows that shape."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from worker.config import Settings
from worker.errors import RequestError

# Fields only that worker takes: one of them marks a request as legacy.
LEGACY_ONLY_FIELDS = {
    "transcription", "translate", "translation", "enable_vad", "logprob_threshold",
    "temperature_increment_on_fallback", "model",
}

# The text shapes that worker takes for `transcription` and `translation` (rendered by
# worker/formats/legacy.py, which has one formatter for each).
LEGACY_FORMATS = ("plain_text", "formatted_text", "srt", "vtt")


class LegacyOutput(BaseModel):
    """What a worker-faster_whisper client asked for: output shape and the translation pass."""

    model_config = ConfigDict(extra="forbid")

    transcription: str = "plain_text"
    translate: bool = False
    translation: str = "plain_text"


def take_legacy(data: dict, renamed: dict) -> dict:
    """Rename worker-faster_whisper inputs to ours; a name given both ways is refused."""
    renames = {"enable_vad": "vad_filter", "logprob_threshold": "log_prob_threshold"}
    for old, new in renames.items():
        if old in data:
            if new in data:
                raise RequestError(f"give either {old} or {new}, not both", field=old)
            data[new] = data.pop(old)
            renamed[new] = old
    data.setdefault("vad_filter", False)  # that worker's default
    if isinstance(data.get("suppress_tokens"), str):
        try:
            data["suppress_tokens"] = [int(t) for t in data["suppress_tokens"].split(",") if t.strip()]
        except ValueError:
            raise RequestError("must be a comma-separated list of token ids", field="suppress_tokens") from None
    # the fallback schedule is built by worker.request.schema.temperature_steps, as the request's own list is read
    legacy: dict = {"model": data.pop("model", None), "increment": data.pop("temperature_increment_on_fallback", None)}
    for name in ("transcription", "translate", "translation"):
        if name in data:
            legacy[name] = data.pop(name)
    for name in ("transcription", "translation"):
        if name in legacy and (not isinstance(legacy[name], str) or legacy[name] not in LEGACY_FORMATS):
            raise RequestError(f"must be one of {', '.join(LEGACY_FORMATS)}", field=name)
    if "translate" in legacy and not isinstance(legacy["translate"], bool):
        raise RequestError("must be true or false", field="translate")
    return legacy


def check_model(model: Any, settings: Settings) -> None:
    if model is None:
        return
    if not isinstance(model, str):
        raise RequestError("must be a string", field="model")
    if model not in (settings.model, settings.served_model_name):
        raise RequestError(f"this endpoint serves {settings.served_model_name!r}; it cannot load {model!r} per request", field="model")

