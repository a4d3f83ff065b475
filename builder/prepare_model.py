"""Put a ready, verified CTranslate2 Whisper model directory at a fixed path.

Run at image build time (`python -m builder.prepare_model`) so that a worker starts from baked
weights instead of downloading 3 GB on every cold start. Two ways in:

* download: a pre-converted CTranslate2 repo (default Systran/faster-whisper-large-v3, pinned) via
  `snapshot_download`, or a local CTranslate2 directory, copied;
* convert: a transformers Whisper checkpoint (openai/whisper-large-v3, a fine-tune, or a local
  folder) through `ctranslate2.converters.TransformersConverter` at a chosen quantization.

The result is built in a temporary sibling directory, checked by loading it through
`worker.decoding.models.load_model` and transcribing a bundled clip, stamped with a manifest, and only
then renamed into place: a failed build never leaves a half model behind, and a second run with
the same inputs finds the manifest and does nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

DEFAULT_OUTPUT = "/models/whisper"
DEFAULT_SOURCE = "Systran/faster-whisper-large-v3"
# Commit of Systran/faster-whisper-large-v3 on the Hugging Face hub, pinned so that a rebuild bakes
# the same bytes. Override with --revision (or the Dockerfile's MODEL_REVISION build arg).
DEFAULT_REVISION = "edaa852ec7e145841d8ffdb056a99866b5f0a478"
QUANTIZATIONS = ("float16", "int8_float16", "int8", "bfloat16", "float32")
DOWNLOAD_PATTERNS = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]
MANIFEST = "prepare_model.json"
VERIFY_CLIP = Path(__file__).with_name("assets") / "verify.flac"


class PrepareError(RuntimeError):
    """A user-facing failure: bad source, unreachable hub, model that does not load."""


@dataclass(frozen=True)
class Request:
    """What to build; two runs with equal requests produce the same directory."""

    source: str
    method: str  # "download" or "convert"
    revision: Optional[str]
    quantization: Optional[str]


def choose_method(source: str, method: str, quantization: Optional[str]) -> str:
    """`auto`: a local CTranslate2 dir or a hub id without quantization downloads; else converts."""
    if method != "auto":
        return method
    if os.path.isdir(source):
        return "download" if os.path.isfile(os.path.join(source, "model.bin")) else "convert"
    return "convert" if quantization else "download"


def manifest_matches(output: Path, request: Request) -> bool:
    from worker.decoding.models import is_model_dir

    path = output / MANIFEST
    if not (path.is_file() and is_model_dir(str(output))):
        return False
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if recorded.get("request") != asdict(request):
        return False
    files = recorded.get("files", {})
    return all((output / name).is_file() and (output / name).stat().st_size == size for name, size in files.items())


def download(request: Request, dest: Path) -> None:
    """Copy a local CTranslate2 dir, or fetch the allowed files of a hub repo into `dest`."""
    if os.path.isdir(request.source):
        for name in os.listdir(request.source):
            src = os.path.join(request.source, name)
            if os.path.isfile(src) and not name.startswith("."):
                shutil.copy2(src, dest / name)
    else:
        _reject_missing_local_path(request.source)
        from huggingface_hub import snapshot_download

        try:
            snapshot_download(request.source, revision=request.revision, local_dir=str(dest), allow_patterns=DOWNLOAD_PATTERNS)
        except Exception as exc:  # hub errors come in many types; all mean "cannot get it"
            raise PrepareError(f"cannot download {request.source!r} at revision {request.revision or 'main'}: {_short(exc)}") from exc
        shutil.rmtree(dest / ".cache", ignore_errors=True)
    if not (dest / "model.bin").is_file():
        raise PrepareError(
            f"{request.source!r} is not a CTranslate2 model (no model.bin); "
            "for a transformers checkpoint use --method convert --quantization float16"
        )


def convert(request: Request, dest: Path) -> None:
    """Convert a transformers Whisper checkpoint into `dest` and write its tokenizer and features."""
    _reject_missing_local_path(request.source)
    try:
        from ctranslate2.converters import TransformersConverter
        from transformers import AutoFeatureExtractor, AutoTokenizer
    except ImportError as exc:
        raise PrepareError(f"converting needs transformers and torch (pip install -r builder/requirements-convert.txt): {exc}") from exc
    kwargs = {"revision": request.revision} if request.revision else {}
    try:
        # The tokenizer and feature extractor are loaded first: they fail fast on a bad source.
        tokenizer = AutoTokenizer.from_pretrained(request.source, **kwargs)
        features = AutoFeatureExtractor.from_pretrained(request.source, **kwargs)
        converter = TransformersConverter(
            request.source,
            revision=request.revision,
            load_as_float16=request.quantization in ("float16", "int8_float16"),
        )
        converter.convert(str(dest), quantization=request.quantization, force=True)
    except Exception as exc:  # transformers/hub/converter errors: all mean "cannot convert this"
        raise PrepareError(f"cannot convert {request.source!r} (revision {request.revision or 'main'}): {_short(exc)}") from exc
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise PrepareError(f"{request.source!r} has no fast tokenizer; faster-whisper needs tokenizer.json")
    # faster-whisper reads tokenizer.json (else it fetches one from the hub at run time) and
    # preprocessor_config.json (else it assumes 80 mel bins, wrong for large-v3's 128).
    tokenizer.backend_tokenizer.save(str(dest / "tokenizer.json"))
    features.to_json_file(str(dest / "preprocessor_config.json"))


def verify(model_dir: Path, device: str = "cpu") -> str:
    """Load through the worker's own loader and transcribe the bundled clip; return the text."""
    from worker.config import Settings
    from worker.decoding.models import ModelError, load_model

    compute_type = "int8" if device == "cpu" else "auto"
    settings = Settings(model=str(model_dir), device=device, compute_type=compute_type, local_files_only=True)
    try:
        loaded = load_model(settings)
        segments, _info = loaded.whisper.transcribe(
            str(VERIFY_CLIP), beam_size=1, temperature=0.0, condition_on_previous_text=False
        )
        return "".join(segment.text for segment in segments).strip()
    except (ModelError, RuntimeError, ValueError, OSError) as exc:
        raise PrepareError(f"the prepared model does not load or transcribe: {_short(exc)}") from exc


def write_manifest(dest: Path, request: Request, transcript: Optional[str]) -> None:
    import ctranslate2

    files = {p.name: p.stat().st_size for p in sorted(dest.iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {
        "request": asdict(request),
        "files": files,
        "verified_transcript": transcript,
        "ctranslate2": ctranslate2.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def install(staging: Path, output: Path) -> None:
    """Swap `staging` into `output` with renames, so readers see the old or the new model."""
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.rename(output, old)
    os.rename(staging, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prepare(request: Request, output: Path, verify_device: Optional[str] = "cpu", force: bool = False) -> bool:
    """Build `output` for `request`; return False when it was already there (nothing done)."""
    if not force and manifest_matches(output, request):
        return False
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        (download if request.method == "download" else convert)(request, staging)
        transcript = verify(staging, verify_device) if verify_device else None
        write_manifest(staging, request, transcript)
        staging.chmod(0o755)  # mkdtemp makes it 0700; the worker may run as another user
        install(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _reject_missing_local_path(source: str) -> None:
    if source.startswith((".", "/", "~")) and not os.path.isdir(os.path.expanduser(source)):
        raise PrepareError(f"local model directory {source} does not exist")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m builder.prepare_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=env.get("PREPARE_MODEL_SOURCE", DEFAULT_SOURCE), help="hub repo id or local directory (default: %(default)s)")
    parser.add_argument("--method", choices=("auto", "download", "convert"), default=env.get("PREPARE_MODEL_METHOD", "auto"), help="download a CTranslate2 model or convert a transformers one (default: auto)")
    parser.add_argument("--revision", default=env.get("PREPARE_MODEL_REVISION"), help="hub branch, tag or commit (default: the pinned commit for the default source, else main)")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default=env.get("PREPARE_MODEL_QUANTIZATION") or None, help="weights precision when converting")
    parser.add_argument("--output", default=env.get("PREPARE_MODEL_OUTPUT", DEFAULT_OUTPUT), help="model directory to create (default: %(default)s)")
    parser.add_argument("--verify-device", default=env.get("PREPARE_MODEL_VERIFY_DEVICE", "cpu"), choices=("cpu", "cuda", "none"), help="where to test-transcribe the result (default: cpu)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the manifest matches")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    revision = args.revision or (DEFAULT_REVISION if args.source == DEFAULT_SOURCE else None)
    method = choose_method(args.source, args.method, args.quantization)
    if method == "download" and args.quantization:
        print("prepare_model: error: --quantization applies to --method convert; a downloaded model keeps its "
              "stored precision and WHISPER_COMPUTE_TYPE picks the run-time one", file=sys.stderr)
        return 2
    if method == "convert" and not args.quantization:
        print("prepare_model: error: --method convert needs --quantization (float16, int8_float16, int8, bfloat16)", file=sys.stderr)
        return 2
    request = Request(source=args.source, method=method, revision=revision, quantization=args.quantization)
    output = Path(args.output).absolute()
    try:
        built = prepare(request, output, None if args.verify_device == "none" else args.verify_device, args.force)
    except PrepareError as exc:
        print(f"prepare_model: error: {exc}", file=sys.stderr)
        return 1
    if not built:
        print(f"prepare_model: {output} already holds {request.source} ({request.method}, revision {request.revision or 'main'}, "
              f"quantization {request.quantization or 'as stored'}); nothing to do")
        return 0
    transcript = json.loads((output / MANIFEST).read_text()).get("verified_transcript")
    print(f"prepare_model: {output} ready from {request.source} ({request.method}); verify transcript: {(transcript or '')[:100]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
