"""Worker settings, read once from the environment at start-up.

Nothing below the entry point reads environment variables: `Settings.from_env()` is called by
`python -m worker` (and by tests with an explicit mapping) and the resulting frozen object is
passed down. Each setting is declared once, as a field of `Settings` made by `setting()`: its
type, variable, default, meaning and bounds. `SETTINGS_DOC` (the README's settings table) and
`BOUNDS` (the Hub form's ranges) are read from those declarations, and tests hold both equal.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Tuple

RUNPOD_VOLUME = "/runpod-volume"
RUNPOD_HF_CACHE = "/runpod-volume/huggingface-cache/hub"


class SettingsError(ValueError):
    """An environment variable has a value the worker cannot use."""


def setting(env: str, default: Any, doc: str, *, shown: Optional[str] = None,
            bounds: Optional[Tuple[float, float]] = None, check: Optional[Tuple[Callable[[Any], bool], str]] = None) -> Any:
    """One setting, declared once: the variable it is read from, its default, what it means (the
    README's settings table; `shown` when the default is not a plain value), and the values it
    may take: `bounds` inclusive (the Hub form offers the same range) or a `check` and why not."""
    if shown is None:
        shown = str(default).lower() if isinstance(default, bool) else f"{default:g}" if isinstance(default, float) else str(default)
    return field(default=default, metadata={"env": env, "shown": shown, "doc": doc, "bounds": bounds, "check": check})


AT_LEAST_ZERO = (lambda value: value >= 0, "must be >= 0")


@dataclass(frozen=True)
class Settings:
    """Each field is a setting (`setting`); its type annotation is how the variable's text is read."""

    model: str = setting("WHISPER_MODEL", "large-v3", "Size alias (large-v3, turbo, distil-large-v3, medium, small, base, tiny, *.en), a Hugging Face repo id of a CTranslate2 model, or a local model directory.")
    model_name: Optional[str] = setting("WHISPER_MODEL_NAME", None, "Name jobs report as `model`, and that legacy requests may send as `model` (e.g. large-v3 for a baked-in /models/whisper).", shown="(the value of WHISPER_MODEL)")
    model_revision: Optional[str] = setting("WHISPER_MODEL_REVISION", None, "Git revision (branch, tag or commit) of the Hugging Face model repo.", shown="(latest)")
    compute_type: str = setting("WHISPER_COMPUTE_TYPE", "auto", "CTranslate2 compute type: auto (float16 on CUDA, int8 on CPU), float16, int8_float16, int8, bfloat16, float32, ...")
    device: str = setting("WHISPER_DEVICE", "auto", "auto, cuda or cpu.", check=(lambda value: value in ("auto", "cpu", "cuda"), "must be auto, cpu or cuda"))
    device_index: int = setting("WHISPER_DEVICE_INDEX", 0, "CUDA device index.", check=AT_LEAST_ZERO)
    cpu_threads: int = setting("WHISPER_CPU_THREADS", 0, "CPU threads per model call (0 = CTranslate2's default).", check=AT_LEAST_ZERO)
    batch_size: int = setting("WHISPER_BATCH_SIZE", 16, "Default `batch_size` of a request (1 = sequential long-form decoding).", bounds=(1, 256))
    model_cache_dir: Optional[str] = setting("WHISPER_CACHE_DIR", None, "Where downloaded models are cached.", shown="/runpod-volume/huggingface-cache/hub when a network volume is mounted, else the Hugging Face default")
    local_files_only: bool = setting("WHISPER_LOCAL_FILES_ONLY", False, "Never contact the Hugging Face hub; use cached or baked-in weights only.")
    max_download_bytes: int = setting("WHISPER_MAX_DOWNLOAD_BYTES", 1024 * 1024 * 1024, "Largest audio download or base64 payload accepted, in bytes.", bounds=(1, 10 * 2**30))
    max_audio_seconds: float = setting("WHISPER_MAX_AUDIO_SECONDS", 4 * 3600.0, "Longest audio accepted, in seconds (checked from metadata and while decoding); a `multichannel` job counts channels x seconds.", bounds=(1, 86_400))
    max_reference_seconds: float = setting("WHISPER_MAX_REFERENCE_SECONDS", 60.0, "Longest `known_speakers` reference clip accepted, in seconds (each clip; checked like the main audio, before the transcription starts).", bounds=(1, 3600))
    diarization_models: str = setting("WHISPER_DIARIZATION_MODELS", "/models/diarization", "Folder of the meeting diarizer's ONNX models (`diarization_model: meeting`), made at image build time by builder/prepare_diarization.py.")
    diarization_preload: bool = setting("WHISPER_DIARIZATION_PRELOAD", False, "Load the default diarizer (with the meeting models when there) in the background at start-up, so the first `diarize` job does not pay the load; readiness does not wait for it. The image built with DIARIZATION=true sets it.")
    download_timeout: float = setting("WHISPER_DOWNLOAD_TIMEOUT", 120.0, "Wall-clock limit for one audio download, in seconds.", bounds=(1, 3600))
    allow_local_files: bool = setting("WHISPER_ALLOW_LOCAL_FILES", False, "Accept a local file path as `audio` (the demo and tests turn it on).")
    allow_private_urls: bool = setting("WHISPER_ALLOW_PRIVATE_URLS", False, "Allow URLs that resolve to loopback/private/link-local addresses (tests only; never in production).")
    # 0: sized to the cores (auto_concurrency), resolved in __post_init__
    concurrency: int = setting("WHISPER_CONCURRENCY", 0, "Jobs one worker serves at once (RunPod concurrency_modifier); 0 = one per usable CPU core, at least 4.", bounds=(0, 256))
    host_threads: int = setting("WHISPER_HOST_THREADS", 0, "Threads computing batched jobs' window features, shared by all jobs (0 = the cores this process may use).", bounds=(0, 256))
    max_batch_size: int = setting("WHISPER_MAX_BATCH_SIZE", 16, "Most 30-second windows the scheduler sends to the model in one batch, across jobs.", bounds=(1, 256))
    max_batch_wait_ms: float = setting("WHISPER_MAX_BATCH_WAIT_MS", 10.0, "How long the scheduler waits for more windows before running a partial batch.", bounds=(0, 10_000))
    streaming: bool = setting("WHISPER_STREAMING", False, "Register the generator handler so `stream: true` jobs yield segments live; outputs then become lists (see README).")
    temp_dir: Optional[str] = setting("WHISPER_TEMP_DIR", None, "Directory for per-job temporary files (always removed after the job).", shown="(system default)")
    log_level: str = setting("WHISPER_LOG_LEVEL", "INFO", "Python logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
                             check=(lambda value: isinstance(logging.getLevelName(value.upper()), int), "must be DEBUG, INFO, WARNING, ERROR or CRITICAL"))
    image_revision: Optional[str] = setting("WHISPER_IMAGE_REVISION", None, "Reported by every job as `metrics.image_revision`, so a release test can tell which image answered.", shown="(set by the image build: the git commit)")
    mode: str = setting("WHISPER_MODE", "queue", "queue: the RunPod handler (queue endpoints); openai: OpenAI's audio API over HTTP on PORT (load-balancing endpoints; see README).",
                        check=(lambda value: value in ("queue", "openai"), "must be queue (RunPod queue endpoints) or openai (load-balancing endpoints)"))
    port: int = setting("PORT", 80, "The openai mode's HTTP port (RunPod's load-balancing convention).", bounds=(1, 65535))
    port_health: Optional[int] = setting("PORT_HEALTH", None, "The openai mode's /ping port: 204 while the model loads, 200 once it can serve.", shown="(the value of PORT)",
                                         check=(lambda value: value is None or 1 <= value <= 65535, "must be 1..65535"))
    upload_timeout: float = setting("WHISPER_UPLOAD_TIMEOUT", 120.0, "The openai mode's wall-clock limit for receiving one upload, in seconds (a slower client gets 408; no transcription slot is held meanwhile).", bounds=(1, 3600))
    realtime_sessions: int = setting("WHISPER_REALTIME_SESSIONS", 16, "The openai mode's most live transcription sessions (`/v1/realtime`) at once; a further one gets an `error` event and close code 1013 (try again later).", bounds=(1, 1024))
    realtime_max_buffer_seconds: float = setting("WHISPER_REALTIME_MAX_BUFFER_SECONDS", 60.0, "Most uncommitted audio one live session may hold, in seconds: with server VAD a turn that reaches it is committed at once; with manual commits an append past it is refused (an `error` event) and dropped.", bounds=(1, 600))
    realtime_idle_timeout: float = setting("WHISPER_REALTIME_IDLE_TIMEOUT", 60.0, "Seconds a live session may go without any client message before the server closes it (an `error` event `idle_timeout`, then close code 1000).", bounds=(1, 86_400))

    def __post_init__(self) -> None:
        if self.concurrency == 0:
            object.__setattr__(self, "concurrency", auto_concurrency())

    @property
    def host_workers(self) -> int:
        """Threads for the host work of batched jobs: the cores this process may use, unless set."""
        return self.host_threads or usable_cores()

    @property
    def health_port(self) -> int:
        return self.port_health or self.port

    @property
    def served_model_name(self) -> str:
        return self.model_name or self.model

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Settings":
        """Build settings from `env` (default: os.environ); unknown values raise SettingsError."""
        env = os.environ if env is None else env
        types = typing.get_type_hints(cls)
        values = {}
        for item in dataclasses.fields(cls):
            raw = env.get(item.metadata["env"])
            if raw is None or raw.strip() == "":
                continue
            values[item.name] = _parse(item.metadata["env"], raw.strip(), types[item.name])
        if "model_cache_dir" not in values and os.path.isdir(RUNPOD_VOLUME):
            values["model_cache_dir"] = RUNPOD_HF_CACHE
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse a value outside its setting's bounds or check, naming the variable."""
        for item in dataclasses.fields(self):
            value, env_name = getattr(self, item.name), item.metadata["env"]
            if item.metadata["bounds"]:
                low, high = item.metadata["bounds"]
                if not low <= value <= high:
                    raise SettingsError(f"{env_name}: must be between {low:g} and {high:g}")
            if item.metadata["check"]:
                ok, why = item.metadata["check"]
                if not ok(value):
                    raise SettingsError(f"{env_name}: {why}")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's cpuset, taskset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


MIN_AUTO_CONCURRENCY = 4


def auto_concurrency() -> int:
    """Jobs served at once when WHISPER_CONCURRENCY is 0: one per usable core, so that every
    core has a job's decode, VAD and features to run while the device decodes others' windows,
    and at least MIN_AUTO_CONCURRENCY, so that even a small host keeps windows of several jobs
    queued for the device's batches (a job's own host work is two threads: decode and VAD)."""
    return max(MIN_AUTO_CONCURRENCY, usable_cores())


# Read from the declarations: field -> (environment variable, default as the README shows it,
# meaning), and field -> (low, high) for the numeric settings the Hub form offers.
SETTINGS_DOC = {item.name: (item.metadata["env"], item.metadata["shown"], item.metadata["doc"]) for item in dataclasses.fields(Settings)}
BOUNDS = {item.name: item.metadata["bounds"] for item in dataclasses.fields(Settings) if item.metadata["bounds"]}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(name: str, raw: str, hint: Any):
    """Read a variable's text as its field's type (Optional[int] reads as int)."""
    kind = next((arg for arg in typing.get_args(hint) if arg is not type(None)), hint)
    try:
        if kind is bool:
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(raw)
        if kind is int:
            # the Hub's form may send a whole number as "16.0"
            number = float(raw) if "." in raw or "e" in raw.lower() else int(raw)
            if isinstance(number, float) and not (math.isfinite(number) and number.is_integer()):
                raise ValueError(raw)
            return int(number)
        if kind is float:
            number = float(raw)
            if not math.isfinite(number):  # inf would fail every job, or silently lift a limit
                raise ValueError(raw)
            return number
    except ValueError:
        raise SettingsError(f"{name}: cannot read {raw!r} as {kind.__name__}") from None
    return raw
