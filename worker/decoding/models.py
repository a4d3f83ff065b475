"""Where model weights come from (alias, Hugging Face repo, local directory) and loading them once.

The registry half (`resolve_model_path`) answers "which files"; the loading half (`load_model`)
answers "on which device, at which precision". Both are used by the worker at start-up and by
the builder and benchmarks, so the deployed path and the measured path are the same code.
The image's model-preparation step copies this file alone (with worker/config.py): it imports no
other worker module, and of faster-whisper only the public WhisperModel and download helpers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

from worker.config import Settings

log = logging.getLogger(__name__)

REQUIRED_FILES = ("model.bin", "config.json")


class ModelError(RuntimeError):
    """The configured model cannot be found, fetched or loaded."""


@dataclass(frozen=True)
class LoadedModel:
    """A loaded faster-whisper model and the facts a job reports about it."""

    whisper: object  # faster_whisper.WhisperModel (heavy import kept out of module import)
    name: str
    path: str
    device: str
    compute_type: str

    @property
    def is_multilingual(self) -> bool:
        return bool(self.whisper.model.is_multilingual)


def known_aliases() -> list[str]:
    from faster_whisper.utils import available_models

    return available_models()


def is_model_dir(path: str) -> bool:
    return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f)) for f in REQUIRED_FILES)


def resolve_model_path(
    name: str,
    cache_dir: Optional[str] = None,
    revision: Optional[str] = None,
    local_files_only: bool = False,
) -> str:
    """Return a local directory holding a CTranslate2 Whisper model, downloading it if needed."""
    if os.path.isdir(name):
        if not is_model_dir(name):
            raise ModelError(f"{name} is a directory but not a CTranslate2 Whisper model (needs {', '.join(REQUIRED_FILES)})")
        return name
    if name.startswith((".", "/")):
        raise ModelError(f"model directory {name} does not exist")
    if "/" not in name and name not in known_aliases():
        raise ModelError(f"unknown model alias {name!r}; expected one of {', '.join(known_aliases())}, a Hugging Face repo id or a local directory")
    from faster_whisper.utils import download_model

    try:
        return download_model(name, cache_dir=cache_dir, revision=revision, local_files_only=local_files_only)
    except Exception as exc:  # huggingface_hub raises many types; all mean "cannot get it"
        raise ModelError(f"cannot fetch model {name!r} (revision {revision or 'latest'}): {exc}") from exc


def pick_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def pick_compute_type(requested: str, device: str) -> str:
    """`auto` means float16 on CUDA and int8 on CPU; anything else must be supported there."""
    import ctranslate2

    if requested == "auto":
        return "float16" if device == "cuda" else "int8"
    supported = ctranslate2.get_supported_compute_types(device)
    if requested not in supported and requested != "default":
        raise ModelError(f"compute type {requested!r} is not supported on {device}; supported: {', '.join(sorted(supported))}")
    return requested


def load_model(settings: Settings) -> LoadedModel:
    """Resolve, then load the model once; the returned object is shared by all jobs."""
    from faster_whisper import WhisperModel

    path = resolve_model_path(settings.model, settings.model_cache_dir, settings.model_revision, settings.local_files_only)
    device = pick_device(settings.device)
    compute_type = pick_compute_type(settings.compute_type, device)
    log.info("loading model %s from %s on %s (%s)", settings.model, path, device, compute_type)
    try:
        whisper = WhisperModel(
            path,
            device=device,
            device_index=settings.device_index,
            compute_type=compute_type,
            cpu_threads=settings.cpu_threads,
        )
    except (RuntimeError, ValueError, OSError) as exc:  # CTranslate2 reports corrupt files as RuntimeError
        raise ModelError(f"cannot load the model from {path} on {device} ({compute_type}): {exc}") from exc
    return LoadedModel(whisper=whisper, name=settings.served_model_name, path=path, device=device, compute_type=compute_type)
