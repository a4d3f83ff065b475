"""`python -m benchmarks.gpu_wheels`: the wheels the GPU machine lacks, small enough to carry.

The lent GPU machine (Python 3.12, torch with CUDA 13, transformers, onnxruntime, tokenizers,
no network) has no ctranslate2, faster-whisper, av or pydantic. This downloads their cp312
manylinux x86_64 wheels at the versions the image pins (builder/requirements.txt), then makes
them small enough to travel with the working tree (64 MiB in all):
- debug sections are stripped from shared objects that carry them (`strip --strip-debug`:
  ctranslate2's _ext alone goes from 69 MB to 1.8 MB; av's extension modules likewise);
- every wheel is re-zipped with LZMA instead of deflate (Python's zipfile, hence pip, reads it);
- RECORD gets the new hashes and sizes, so the wheels stay valid.
It also puts the base model's tokenizer.json (gzip) beside them: the GPU run pairs the random
large-v3 weights with it (benchmarks/gpu_model.py). The GPU side installs with
`pip install --no-index --find-links DIR --no-deps --target SITE <names>` (benchmarks/gpu.py).
"""

from __future__ import annotations

import argparse
import base64
import csv
import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".whl-gpu"
REQUIREMENTS = ROOT / "builder" / "requirements.txt"
# What the GPU machine lacks for the worker's job path, the benchmarks and tests/decoding/test_gpu.py.
NEEDED = ("ctranslate2", "faster-whisper", "av", "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
LIMIT_BYTES = 60 * 1000 * 1000
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer-base.json.gz"


def pins(names=NEEDED, requirements: Path = REQUIREMENTS) -> Dict[str, str]:
    """name -> version from the image's pinned requirements."""
    found = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if match:
            found[_norm(match.group(1))] = match.group(2)
    missing = [n for n in names if _norm(n) not in found]
    if missing:
        raise SystemExit(f"not pinned in {requirements}: {', '.join(missing)}")
    return {n: found[_norm(n)] for n in names}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def download(versions: Dict[str, str], into: Path, python_version: str = "3.12") -> List[Path]:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
               "--implementation", "cp", "-d", str(into)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    command += [f"{name}=={version}" for name, version in versions.items()]
    subprocess.run(command, check=True)
    return sorted(into.glob("*.whl"))


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _has_debug_info(path: Path) -> bool:
    try:
        out = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    return ".debug_info" in out


def _strip(data: bytes) -> bytes:
    """`strip --strip-debug` on a shared object (symbols kept); unchanged where strip is missing."""
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.so", Path(tmp) / "out.so"
        source.write_bytes(data)
        if not _has_debug_info(source):
            return data
        try:
            subprocess.run(["strip", "--strip-debug", "-o", str(target), str(source)], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return data
        return target.read_bytes()


def repack(wheel: Path, out: Path) -> dict:
    """Strip debug info from its shared objects, re-zip with LZMA, rewrite RECORD."""
    with zipfile.ZipFile(wheel) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    record_name = next(info.filename for info, _ in entries if info.filename.endswith(".dist-info/RECORD"))
    stripped = 0
    rewritten = []
    for info, data in entries:
        if re.search(r"\.so(\.\d+)*$", info.filename):
            smaller = _strip(data)
            stripped += len(data) - len(smaller)
            data = smaller
        rewritten.append((info, data))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for info, data in rewritten:
        if info.filename == record_name:
            writer.writerow([record_name, "", ""])
        elif not info.is_dir():
            writer.writerow([info.filename, _record_hash(data), len(data)])
    partial = out.with_suffix(".part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_LZMA) as target:
        for info, data in rewritten:
            if info.filename == record_name:
                data = record.getvalue().encode()
            item = zipfile.ZipInfo(info.filename, info.date_time)
            item.external_attr = info.external_attr
            item.compress_type = zipfile.ZIP_LZMA
            target.writestr(item, data)
    partial.replace(out)
    return {"wheel": out.name, "downloaded_bytes": wheel.stat().st_size, "bytes": out.stat().st_size, "debug_bytes_stripped": stripped}


def prepare(out_dir: Path = DEFAULT_DIR, tokenizer_json: str = "", limit: int = LIMIT_BYTES) -> dict:
    versions = pins()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.iterdir():
        if old.is_file():
            old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        wheels = download(versions, Path(tmp))
        packed = [repack(wheel, out_dir / wheel.name) for wheel in wheels]
    if not tokenizer_json:
        from .gpu_model import tokenizer_path

        tokenizer_json = tokenizer_path()
    with open(tokenizer_json, "rb") as source, gzip.open(out_dir / TOKENIZER, "wb", compresslevel=9) as target:
        shutil.copyfileobj(source, target)
    total = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    manifest = {"packages": versions, "wheels": packed, "tokenizer": TOKENIZER, "total_bytes": total, "python": "cp312",
                "platforms": list(PLATFORMS), "install": f"python3 -m pip install --no-index --find-links {out_dir.name} --no-deps --target SITE "
                + " ".join(f"{n}=={v}" for n, v in versions.items())}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    manifest["total_bytes"] = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    if manifest["total_bytes"] > limit:
        raise SystemExit(f"{out_dir} holds {manifest['total_bytes'] / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB limit")
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_wheels", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_DIR), help="git-ignored folder for the wheels [%(default)s]")
    parser.add_argument("--tokenizer", default="", help="tokenizer.json to carry [the bundled base model's]")
    args = parser.parse_args(argv)
    manifest = prepare(Path(args.out), args.tokenizer)
    for item in manifest["wheels"]:
        print(f"{item['wheel']:<80} {item['downloaded_bytes'] / 1e6:6.1f} MB -> {item['bytes'] / 1e6:6.1f} MB")
    print(f"{args.out}: {manifest['total_bytes'] / 1e6:.1f} MB in all (limit {LIMIT_BYTES / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
