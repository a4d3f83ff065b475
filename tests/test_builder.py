"""builder.prepare_model: convert, download/copy, idempotence, atomicity and clear failures, offline.

The conversion test makes a tiny random-weight transformers Whisper checkpoint (real tiny.en
tokenizer) so the real converter and the worker's real loader run without the hub.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bundled

from builder import prepare_model as pm
from worker.config import Settings
from worker.decoding.models import load_model

ROOT = Path(__file__).resolve().parents[1]
JFK = ROOT / "tests" / "data" / "jfk.flac"


def tiny_en() -> Path:
    return Path(bundled.tiny_en_dir())


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A transformers Whisper checkpoint with tiny dims, random weights and the tiny.en tokenizer."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    path = tmp_path_factory.mktemp("hf-tiny")
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(tiny_en() / "tokenizer.json"))
    config = WhisperConfig(
        vocab_size=51864,  # English-only Whisper: text tokens + timestamp tokens
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=50257,
        bos_token_id=50256,
        eos_token_id=50256,
        pad_token_id=50256,
    )
    WhisperForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return path


@pytest.fixture
def no_hub(monkeypatch):
    """Fail loudly if anything tries to download from the hub."""
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError(f"the hub downloader was called: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)


def fake_hub(monkeypatch, calls: list):
    """A snapshot_download that serves tiny.en from disk, honouring allow_patterns like the hub."""
    import fnmatch

    import huggingface_hub

    def download(repo_id, *, revision=None, local_dir=None, allow_patterns=None, **kwargs):
        calls.append({"repo_id": repo_id, "revision": revision, "allow_patterns": allow_patterns})
        for name in os.listdir(tiny_en()):
            if any(fnmatch.fnmatch(name, pattern) for pattern in allow_patterns):
                shutil.copy(tiny_en() / name, Path(local_dir) / name)
        os.makedirs(Path(local_dir) / ".cache" / "huggingface", exist_ok=True)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)


def leftovers(parent: Path) -> list[str]:
    return [name for name in os.listdir(parent) if name.startswith(".")]


def test_convert_tiny_checkpoint_then_worker_loads_it(tiny_checkpoint, tmp_path, no_hub):
    out = tmp_path / "models" / "whisper"
    request = pm.Request(source=str(tiny_checkpoint), method="convert", revision=None, quantization="int8")
    assert pm.prepare(request, out) is True
    for name in ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json", pm.MANIFEST):
        assert (out / name).is_file(), name
    assert leftovers(out.parent) == []
    loaded = load_model(Settings(model=str(out), device="cpu", compute_type="int8", local_files_only=True))
    segments, info = loaded.whisper.transcribe(str(JFK), beam_size=1, temperature=0.0, max_new_tokens=20)
    list(segments)  # random weights: only "runs without error" is meaningful
    assert info.duration == pytest.approx(11.0, abs=0.1)


def test_convert_main_is_idempotent(tiny_checkpoint, tmp_path, capsys, no_hub):
    out = tmp_path / "whisper"
    argv = ["--source", str(tiny_checkpoint), "--quantization", "int8", "--output", str(out), "--verify-device", "none"]
    assert pm.main(argv) == 0
    first = (out / "model.bin").stat().st_mtime_ns
    assert pm.main(argv) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (out / "model.bin").stat().st_mtime_ns == first


def test_local_ctranslate2_dir_is_copied_and_verified(tmp_path, no_hub):
    source = tmp_path / "tiny-en"
    shutil.copytree(tiny_en(), source)
    out = tmp_path / "whisper"
    request = pm.Request(source=str(source), method=pm.choose_method(str(source), "auto", None), revision=None, quantization=None)
    assert request.method == "download"
    assert pm.prepare(request, out) is True
    assert "fellow americans" in pm.json.loads((out / pm.MANIFEST).read_text())["verified_transcript"].lower()
    assert pm.prepare(request, out) is False


def test_hub_download_uses_pin_and_patterns_then_skips(tmp_path, monkeypatch, capsys):
    calls: list = []
    fake_hub(monkeypatch, calls)
    out = tmp_path / "whisper"
    assert pm.main(["--output", str(out)]) == 0
    assert calls == [{"repo_id": pm.DEFAULT_SOURCE, "revision": pm.DEFAULT_REVISION, "allow_patterns": pm.DOWNLOAD_PATTERNS}]
    assert not (out / ".cache").exists()
    assert "ready" in capsys.readouterr().out

    def refuse(*args, **kwargs):
        raise AssertionError("downloaded again although the model is present")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    assert pm.main(["--output", str(out)]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_changed_inputs_or_damaged_files_rebuild(tmp_path, monkeypatch):
    calls: list = []
    fake_hub(monkeypatch, calls)
    out = tmp_path / "whisper"
    assert pm.main(["--output", str(out), "--verify-device", "none"]) == 0
    assert pm.main(["--output", str(out), "--verify-device", "none", "--revision", "main"]) == 0
    assert len(calls) == 2
    (out / "model.bin").write_bytes(b"truncated")
    assert pm.main(["--output", str(out), "--verify-device", "none", "--revision", "main"]) == 0
    assert len(calls) == 3
    assert (out / "model.bin").stat().st_size > 1000


def test_failed_build_keeps_the_old_model_and_no_temp_dirs(tmp_path, monkeypatch, capsys):
    good = tmp_path / "whisper"
    shutil.copytree(tiny_en(), good)
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    def missing(repo_id, **kwargs):
        raise RepositoryNotFoundError(f"404 Client Error. Repository Not Found for url: .../{repo_id}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", missing)
    assert pm.main(["--source", "nobody/no-such-model", "--output", str(good)]) == 1
    err = capsys.readouterr().err
    assert "cannot download 'nobody/no-such-model'" in err and "Traceback" not in err
    assert (good / "model.bin").is_file()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--source", "./no/such/dir"], "does not exist"),
        (["--source", "{empty}", "--method", "convert", "--quantization", "int8"], "cannot convert"),
        (["--source", "{empty}", "--method", "download"], "not a CTranslate2 model"),
    ],
)
def test_bad_sources_fail_clearly(tmp_path, capsys, no_hub, argv, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [arg.replace("{empty}", str(empty)) for arg in argv]
    assert pm.main([*argv, "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert message in err and err.startswith("prepare_model: error:")
    assert not (tmp_path / "out").exists()


def test_usage_errors(tmp_path, capsys):
    assert pm.main(["--quantization", "int8", "--method", "download", "--output", str(tmp_path / "o")]) == 2
    assert pm.main(["--source", "openai/whisper-large-v3", "--method", "convert", "--output", str(tmp_path / "o")]) == 2
    assert "--quantization" in capsys.readouterr().err


def test_command_line_has_no_traceback_for_user_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "builder.prepare_model", "--source", str(tmp_path / "missing"), "--output", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "does not exist" in result.stderr


def test_verify_clip_is_small_and_short():
    import av

    assert pm.VERIFY_CLIP.stat().st_size < 200_000
    with av.open(str(pm.VERIFY_CLIP)) as container:
        assert 2.0 < container.duration / 1e6 < 5.0


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("RUN_NETWORK_TESTS") != "1",
                    reason="needs the Hugging Face hub: opt in with RUN_NETWORK_TESTS=1 (tests never reach out on their own)")
def test_real_hub_download(tmp_path):
    out = tmp_path / "whisper"
    assert pm.main(["--source", "Systran/faster-whisper-tiny.en", "--revision", "main", "--output", str(out)]) == 0
    assert "fellow americans" in pm.json.loads((out / pm.MANIFEST).read_text())["verified_transcript"].lower()
