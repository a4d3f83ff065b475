"""Worker settings, read once from the environment at start-up.

Nothing below the entry point reads environment variables: `Settings.from_env()` is called by
`python -m worker` (and by tests with an explicit mapping) and the resulting frozen object is
passed down. Every field is documented in the README's settings table; `SETTINGS_DOC` below is
the single source of that table's names, defaults and meanings.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

RUNPOD_VOLUME = "/runpod-volume"
RUNPOD_HF_CACHE = "/runpod-volume/huggingface-cache/hub"


class SettingsError(ValueError):
    """An environment variable has a value the worker cannot use."""


@dataclass(frozen=True)
class Settings:
    model: str = "large-v3"
    model_name: Optional[str] = None
    model_revision: Optional[str] = None
    compute_type: str = "auto"
    device: str = "auto"
    device_index: int = 0
    cpu_threads: int = 0
    batch_size: int = 16
    model_cache_dir: Optional[str] = None
    local_files_only: bool = False
    max_download_bytes: int = 1024 * 1024 * 1024
    max_audio_seconds: float = 4 * 3600.0
    download_timeout: float = 120.0
    allow_local_files: bool = False
    allow_private_urls: bool = False
    concurrency: int = 0  # 0: sized to the cores (usable_cores), resolved in __post_init__
    host_threads: int = 0
    max_batch_size: int = 16
    max_batch_wait_ms: float = 10.0
    streaming: bool = False
    temp_dir: Optional[str] = None
    log_level: str = "INFO"
    image_revision: Optional[str] = None
    mode: str = "queue"
    port: int = 80
    port_health: Optional[int] = None

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
        values = {}
        for field in dataclasses.fields(cls):
            name, _default, _doc = SETTINGS_DOC[field.name]
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                continue
            values[field.name] = _parse(name, raw.strip(), field.type)
        if "model_cache_dir" not in values and os.path.isdir(RUNPOD_VOLUME):
            values["model_cache_dir"] = RUNPOD_HF_CACHE
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        def need(ok: bool, env_name: str, why: str) -> None:
            if not ok:
                raise SettingsError(f"{env_name}: {why}")

        need(self.device in ("auto", "cpu", "cuda"), "WHISPER_DEVICE", "must be auto, cpu or cuda")
        need(self.device_index >= 0, "WHISPER_DEVICE_INDEX", "must be >= 0")
        need(self.cpu_threads >= 0, "WHISPER_CPU_THREADS", "must be >= 0")
        for name, (low, high) in BOUNDS.items():
            need(low <= getattr(self, name) <= high, SETTINGS_DOC[name][0], f"must be between {low:g} and {high:g}")
        need(isinstance(logging.getLevelName(self.log_level.upper()), int), "WHISPER_LOG_LEVEL", "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        need(self.mode in ("queue", "openai"), "WHISPER_MODE", "must be queue (RunPod queue endpoints) or openai (load-balancing endpoints)")
        need(self.port_health is None or 1 <= self.port_health <= 65535, "PORT_HEALTH", "must be 1..65535")


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


# field -> (environment variable, default shown in docs, meaning)
# Numeric settings' bounds, declared once: validate() enforces them and .runpod/hub.json's form
# offers the same range (tests/test_runpod_hub.py holds them equal).
BOUNDS = {
    "batch_size": (1, 256),
    "max_batch_size": (1, 256),
    "concurrency": (0, 256),
    "host_threads": (0, 256),
    "max_batch_wait_ms": (0, 10_000),
    "max_audio_seconds": (1, 86_400),
    "max_download_bytes": (1, 10 * 2**30),
    "download_timeout": (1, 3600),
    "port": (1, 65535),
}

SETTINGS_DOC = {
    "model": ("WHISPER_MODEL", "large-v3", "Size alias (large-v3, turbo, distil-large-v3, medium, small, base, tiny, *.en), a Hugging Face repo id of a CTranslate2 model, or a local model directory."),
    "model_name": ("WHISPER_MODEL_NAME", "(the value of WHISPER_MODEL)", "Name jobs report as `model`, and that legacy requests may send as `model` (e.g. large-v3 for a baked-in /models/whisper)."),
    "model_revision": ("WHISPER_MODEL_REVISION", "(latest)", "Git revision (branch, tag or commit) of the Hugging Face model repo."),
    "compute_type": ("WHISPER_COMPUTE_TYPE", "auto", "CTranslate2 compute type: auto (float16 on CUDA, int8 on CPU), float16, int8_float16, int8, bfloat16, float32, ..."),
    "device": ("WHISPER_DEVICE", "auto", "auto, cuda or cpu."),
    "device_index": ("WHISPER_DEVICE_INDEX", "0", "CUDA device index."),
    "cpu_threads": ("WHISPER_CPU_THREADS", "0", "CPU threads per model call (0 = CTranslate2's default)."),
    "batch_size": ("WHISPER_BATCH_SIZE", "16", "Default `batch_size` of a request (1 = sequential long-form decoding)."),
    "model_cache_dir": ("WHISPER_CACHE_DIR", "/runpod-volume/huggingface-cache/hub when a network volume is mounted, else the Hugging Face default", "Where downloaded models are cached."),
    "local_files_only": ("WHISPER_LOCAL_FILES_ONLY", "false", "Never contact the Hugging Face hub; use cached or baked-in weights only."),
    "max_download_bytes": ("WHISPER_MAX_DOWNLOAD_BYTES", "1073741824", "Largest audio download or base64 payload accepted, in bytes."),
    "max_audio_seconds": ("WHISPER_MAX_AUDIO_SECONDS", "14400", "Longest audio accepted, in seconds (checked from metadata and while decoding)."),
    "download_timeout": ("WHISPER_DOWNLOAD_TIMEOUT", "120", "Wall-clock limit for one audio download, in seconds."),
    "allow_local_files": ("WHISPER_ALLOW_LOCAL_FILES", "false", "Accept a local file path as `audio` (the demo and tests turn it on)."),
    "allow_private_urls": ("WHISPER_ALLOW_PRIVATE_URLS", "false", "Allow URLs that resolve to loopback/private/link-local addresses (tests only; never in production)."),
    "concurrency": ("WHISPER_CONCURRENCY", "0", "Jobs one worker serves at once (RunPod concurrency_modifier); 0 = one per usable CPU core, at least 4."),
    "host_threads": ("WHISPER_HOST_THREADS", "0", "Threads computing batched jobs' window features, shared by all jobs (0 = the cores this process may use)."),
    "max_batch_size": ("WHISPER_MAX_BATCH_SIZE", "16", "Most 30-second windows the scheduler sends to the model in one batch, across jobs."),
    "max_batch_wait_ms": ("WHISPER_MAX_BATCH_WAIT_MS", "10", "How long the scheduler waits for more windows before running a partial batch."),
    "streaming": ("WHISPER_STREAMING", "false", "Register the generator handler so `stream: true` jobs yield segments live; outputs then become lists (see README)."),
    "temp_dir": ("WHISPER_TEMP_DIR", "(system default)", "Directory for per-job temporary files (always removed after the job)."),
    "log_level": ("WHISPER_LOG_LEVEL", "INFO", "Python logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL."),
    "mode": ("WHISPER_MODE", "queue", "queue: the RunPod handler (queue endpoints); openai: OpenAI's audio API over HTTP on PORT (load-balancing endpoints; see README)."),
    "port": ("PORT", "80", "The openai mode's HTTP port (RunPod's load-balancing convention)."),
    "port_health": ("PORT_HEALTH", "(the value of PORT)", "The openai mode's /ping port: 204 while the model loads, 200 once it can serve."),
    "image_revision": ("WHISPER_IMAGE_REVISION", "(set by the image build: the git commit)", "Reported by every job as `metrics.image_revision`, so a release test can tell which image answered."),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(name: str, raw: str, type_name: str):
    kind = type_name.replace("Optional[", "").rstrip("]")
    try:
        if kind == "bool":
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(raw)
        if kind == "int":
            # the Hub's form may send a whole number as "16.0"
            number = float(raw) if "." in raw or "e" in raw.lower() else int(raw)
            if isinstance(number, float) and not (math.isfinite(number) and number.is_integer()):
                raise ValueError(raw)
            return int(number)
        if kind == "float":
            number = float(raw)
            if not math.isfinite(number):  # inf would fail every job, or silently lift a limit
                raise ValueError(raw)
            return number
    except ValueError:
        raise SettingsError(f"{name}: cannot read {raw!r} as {kind}") from None
    return raw
