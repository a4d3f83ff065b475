"""OpenAI's Realtime transcription-session events as plain dicts: the session's configuration and
how `session.update` (and the older beta `transcription_session.update`) changes it, field by
field, refusing what this server cannot do by the parameter's path; the server events' shapes;
`error` events. No I/O here: worker/live/session.py drives the protocol, the entry
(worker/entries/realtime.py) carries the events over a WebSocket.

The shapes follow OpenAI's Realtime API reference (GA `session.update` with `session.type =
"transcription"`, the beta `transcription_session.update`), as the official `openai` client's
types declare them. Fields OpenAI documents that change nothing here are accepted and left out of
the effective session (`noise_reduction`: the worker denoises nothing, null; `include`: no
per-token log-probabilities are sent, []); fields this server cannot honour are refused by name.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional

from worker.audio.pcm import PCM_RATES
from worker.languages import LANGUAGE_CODES
from worker.request.schema import MAX_PROMPT_CHARS

PCM_TYPE = "audio/pcm"
DEFAULT_RATE = 24000  # OpenAI's clients send 24 kHz; PCM_RATES (worker/audio/pcm.py) are those the resampler takes
# OpenAI's transcription models, accepted as names of the served model (as the file endpoint
# accepts whisper-1): a client written for OpenAI changes only its URL.
MODEL_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-live-transcribe")
MAX_VAD_MS = 10_000  # prefix_padding_ms and silence_duration_ms, each
INCLUDABLE = ("item.input_audio_transcription.logprobs",)
NOISE_REDUCTION = ("near_field", "far_field")


class ProtocolError(Exception):
    """A client event this server refuses: the `error` event's code, message and param (the
    field's path in the client's event, e.g. session.audio.input.format.rate)."""

    def __init__(self, message: str, param: Optional[str] = None, code: str = "invalid_value"):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class ServerVad:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    def as_dict(self) -> dict:
        return {"type": "server_vad", **dataclasses.asdict(self)}


@dataclass(frozen=True)
class SessionConfig:
    """The effective session: `model` is the name the client chose (the served model by default)."""

    model: str
    rate: int = DEFAULT_RATE
    language: Optional[str] = None
    prompt: str = ""
    turn_detection: Optional[ServerVad] = ServerVad()


def new_id(prefix: str) -> str:
    """OpenAI-style ids: sess_..., item_..."""
    return f"{prefix}_{secrets.token_hex(10)}"


def error_event(error: ProtocolError, client_event_id: Optional[str] = None, kind: str = "invalid_request_error") -> dict:
    return {"type": "error", "error": {"type": kind, "code": error.code, "message": error.message, "param": error.param,
                                       "event_id": client_event_id}}


def session_object(config: SessionConfig, session_id: str) -> dict:
    """The GA transcription session, as `session.created` and `session.updated` carry it."""
    return {
        "object": "realtime.session", "type": "transcription", "id": session_id,
        "audio": {"input": {
            "format": {"type": PCM_TYPE, "rate": config.rate},
            "noise_reduction": None,
            "transcription": {"model": config.model, "language": config.language, "prompt": config.prompt},
            "turn_detection": config.turn_detection.as_dict() if config.turn_detection else None,
        }},
        "include": [],
    }


def beta_session_object(config: SessionConfig, session_id: str) -> dict:
    """The beta transcription session, as `transcription_session.updated` carries it."""
    return {
        "object": "realtime.transcription_session", "id": session_id,
        "input_audio_format": "pcm16",
        "input_audio_transcription": {"model": config.model, "language": config.language, "prompt": config.prompt},
        "turn_detection": config.turn_detection.as_dict() if config.turn_detection else None,
        "input_audio_noise_reduction": None,
        "include": [],
    }


class _Fields:
    """One JSON object of a client event, read field by field; `path` names it in errors."""

    def __init__(self, value: Any, path: str, known: Iterable[str]):
        if not isinstance(value, dict):
            raise ProtocolError(f"must be an object, got {_json_type(value)}", path, "invalid_type")
        for key in value:
            if key not in known:
                raise ProtocolError(f"unknown parameter {key!r}", f"{path}.{key}", "unknown_parameter")
        self.value, self.path = value, path

    def has(self, key: str) -> bool:
        return key in self.value

    def param(self, key: str) -> str:
        return f"{self.path}.{key}"

    def get(self, key: str, check: Callable[[Any], bool], expected: str, nullable: bool = False) -> Any:
        value = self.value.get(key)
        if value is None and nullable:
            return None
        if key not in self.value:
            raise ProtocolError(f"is required: {expected}", self.param(key), "missing_required_parameter")
        if not check(value):
            raise ProtocolError(f"must be {expected}, got {_shown(value)}", self.param(key))
        return value

    def unsupported(self, *keys: str) -> None:
        """Documented fields this server cannot honour: null is accepted, anything else refused."""
        for key in keys:
            if self.value.get(key) is not None:
                raise ProtocolError("is not supported by this server (Whisper); send null or leave it out", self.param(key))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, int, float, bool)) else _json_type(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _transcription(config: SessionConfig, fields: _Fields, models: Iterable[str]) -> SessionConfig:
    """`transcription` (GA) or `input_audio_transcription` (beta): model, language, prompt."""
    fields.unsupported("delay", "keywords", "languages")
    changes: Dict[str, Any] = {}
    if fields.value.get("model") is not None:
        names = tuple(models)
        model = fields.value["model"]
        if not isinstance(model, str) or model not in names:
            raise ProtocolError(f"unknown model {_shown(model)}; this server transcribes with {names[0]!r} (also accepted: "
                                f"{', '.join(repr(name) for name in names[1:])})", fields.param("model"), "model_not_found")
        changes["model"] = model
    if fields.has("language"):
        changes["language"] = fields.get("language", lambda v: isinstance(v, str) and v in LANGUAGE_CODES, "an ISO 639-1 code Whisper knows (e.g. 'en') or null",
                                         nullable=True)
    if fields.has("prompt"):
        prompt = fields.get("prompt", lambda v: isinstance(v, str) and len(v) <= MAX_PROMPT_CHARS,
                            f"a string of at most {MAX_PROMPT_CHARS} characters", nullable=True)
        changes["prompt"] = prompt or ""
    return dataclasses.replace(config, **changes)


def _turn_detection(current: Optional[ServerVad], value: Any, path: str, beta: bool) -> Optional[ServerVad]:
    """null: the client commits; server_vad: merged field by field into the current one."""
    if value is None:
        return None
    fields = _Fields(value, path, ("type", "threshold", "prefix_padding_ms", "silence_duration_ms", "create_response",
                                   "interrupt_response", "idle_timeout_ms", "eagerness"))
    kind = value.get("type", "server_vad" if beta else None)
    if kind != "server_vad":
        raise ProtocolError(f"must be 'server_vad' (or turn_detection null for manual commits), got {_shown(kind)}", fields.param("type"))
    fields.get("create_response", lambda v: isinstance(v, bool), "a boolean", nullable=True)  # nothing to respond: ignored
    fields.get("interrupt_response", lambda v: isinstance(v, bool), "a boolean", nullable=True)
    fields.unsupported("idle_timeout_ms", "eagerness")
    vad = current or ServerVad()
    changes: Dict[str, Any] = {}
    if fields.get("threshold", lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1", nullable=True) is not None:
        changes["threshold"] = float(value["threshold"])
    for key in ("prefix_padding_ms", "silence_duration_ms"):
        if fields.get(key, lambda v: _is_whole(v) and 0 <= v <= MAX_VAD_MS, f"a whole number of milliseconds from 0 to {MAX_VAD_MS}",
                      nullable=True) is not None:
            changes[key] = value[key]
    return dataclasses.replace(vad, **changes)


def _include(fields: _Fields, key: str) -> None:
    fields.get(key, lambda v: isinstance(v, list) and all(item in INCLUDABLE for item in v),
               f"a list of {', '.join(INCLUDABLE)}", nullable=True)


def _noise_reduction(fields: _Fields, key: str) -> None:
    if fields.value.get(key) is not None:
        inner = _Fields(fields.value[key], fields.param(key), ("type",))
        inner.get("type", lambda v: v in NOISE_REDUCTION, " or ".join(NOISE_REDUCTION), nullable=True)


def apply_update(config: SessionConfig, session: Any, models: Iterable[str]) -> SessionConfig:
    """GA `session.update`: the fields present in `session` merged into `config`."""
    fields = _Fields(session, "session", ("type", "audio", "include", "id", "object"))
    if not fields.has("type"):
        raise ProtocolError("is required: 'transcription' for a transcription session", "session.type", "missing_required_parameter")
    fields.get("type", lambda v: v == "transcription", "'transcription' (this endpoint serves transcription sessions only)")
    _include(fields, "include")
    if fields.value.get("audio") is None:
        return config
    audio = _Fields(fields.value["audio"], "session.audio", ("input",))
    if audio.value.get("input") is None:
        return config
    source = _Fields(audio.value["input"], "session.audio.input", ("format", "noise_reduction", "transcription", "turn_detection"))
    if source.value.get("format") is not None:
        form = _Fields(source.value["format"], source.param("format"), ("type", "rate"))
        form.get("type", lambda v: v == PCM_TYPE, f"{PCM_TYPE!r} (16-bit little-endian mono PCM; G.711 is not supported)")
        rate = form.get("rate", lambda v: v in PCM_RATES and _is_whole(v), " or ".join(map(str, sorted(PCM_RATES, reverse=True))), nullable=True)
        config = dataclasses.replace(config, rate=rate or DEFAULT_RATE)
    _noise_reduction(source, "noise_reduction")
    if source.has("transcription"):
        transcription = _Fields(source.value["transcription"], source.param("transcription"),
                                ("model", "language", "prompt", "delay", "keywords", "languages"))
        config = _transcription(config, transcription, models)
    if source.has("turn_detection"):
        config = dataclasses.replace(config, turn_detection=_turn_detection(config.turn_detection, source.value["turn_detection"],
                                                                            source.param("turn_detection"), beta=False))
    return config


def apply_beta_update(config: SessionConfig, session: Any, models: Iterable[str]) -> SessionConfig:
    """The beta `transcription_session.update`: `input_audio_format` pcm16 (24 kHz),
    `input_audio_transcription`, `turn_detection`, `input_audio_noise_reduction`, `include`."""
    fields = _Fields(session, "session", ("input_audio_format", "input_audio_transcription", "turn_detection", "input_audio_noise_reduction",
                                          "include", "modalities", "client_secret", "id", "object"))
    if fields.has("input_audio_format"):
        fields.get("input_audio_format", lambda v: v == "pcm16", "'pcm16' (24 kHz 16-bit PCM; G.711 is not supported)")
        config = dataclasses.replace(config, rate=DEFAULT_RATE)
    _noise_reduction(fields, "input_audio_noise_reduction")
    _include(fields, "include")
    fields.get("modalities", lambda v: isinstance(v, list) and all(item in ("text", "audio") for item in v), "a list of 'text', 'audio'",
               nullable=True)
    if fields.value.get("input_audio_transcription") is not None:
        transcription = _Fields(fields.value["input_audio_transcription"], fields.param("input_audio_transcription"),
                                ("model", "language", "prompt"))
        config = _transcription(config, transcription, models)
    if fields.has("turn_detection"):
        config = dataclasses.replace(config, turn_detection=_turn_detection(config.turn_detection, fields.value["turn_detection"],
                                                                            "session.turn_detection", beta=True))
    return config
