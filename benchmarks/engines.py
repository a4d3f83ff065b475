"""The two engines behind one interface: load once, then transcribe(samples) -> text.

faster-whisper is driven through the worker's own `Engine` (worker/decoding/engine.py) with a request
built by the worker's `TranscriptionRequest`, so the numbers are those of the deployed code path
(sequential decoding for batch_size 1, the scheduler-backed batched pipeline above 1).
transformers runs WhisperForConditionalGeneration at its fastest plain setup for the device:
float16 + SDPA attention on CUDA, float32 on CPU; batch size 1 is `model.generate` on the full
input features (long-form sequential decoding), larger sizes are the chunked ASR pipeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from worker.audio.decode import SAMPLE_RATE

FASTER_WHISPER = "faster-whisper"
TRANSFORMERS = "transformers"
ENGINES = (FASTER_WHISPER, TRANSFORMERS)


@dataclass(frozen=True)
class DecodeOptions:
    """Decoding settings shared by both engines; temperature 0 (no fallback) keeps runs deterministic."""

    language: Optional[str] = None
    task: str = "transcribe"
    beam_size: int = 5
    without_timestamps: bool = False
    condition_on_previous_text: bool = True
    vad_filter: bool = False  # faster-whisper only; transformers has no VAD


@dataclass(frozen=True)
class RunSpec:
    """One engine setting to measure; plain data so it can cross into the child process."""

    engine: str
    precision: str  # CTranslate2 compute type, or the torch dtype name for transformers
    batch_size: int
    device: str
    ct2_dir: str
    hf_dir: str
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    cpu_threads: int = 0

    @property
    def mode(self) -> str:
        if self.engine == TRANSFORMERS:
            return "generate (sequential)" if self.batch_size == 1 else "pipeline (chunked, batched)"
        mode = "sequential" if self.batch_size == 1 else "batched"
        return mode + (" + VAD" if self.vad_filter else "")

    @property
    def vad_filter(self) -> bool:
        """Off unless --vad: transformers has no VAD, so both engines then decode the same audio
        (the worker's batched mode without VAD decodes fixed 30 s windows)."""
        return self.engine == FASTER_WHISPER and self.decode.vad_filter

    @property
    def label(self) -> str:
        """Short name for tables and charts, e.g. "faster-whisper int8 batched bs=8 +VAD"."""
        if self.engine == TRANSFORMERS:
            how = "generate" if self.batch_size == 1 else f"pipeline bs={self.batch_size}"
        else:
            how = "sequential" if self.batch_size == 1 else f"batched bs={self.batch_size}"
        return f"{self.engine} {self.precision} {how}" + (" +VAD" if self.vad_filter else "")

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(mode=self.mode, label=self.label, vad_filter=self.vad_filter)
        return out


@dataclass
class Output:
    text: str
    language: Optional[str] = None


class FasterWhisperEngine:
    """The worker's Engine on a model loaded by the worker's load_model."""

    def __init__(self, spec: RunSpec):
        from worker.config import Settings
        from worker.decoding.engine import Engine
        from worker.decoding.models import load_model
        from worker.request.schema import TranscriptionRequest

        self.settings = Settings(
            model=spec.ct2_dir,
            compute_type=spec.precision,
            device=spec.device,
            cpu_threads=spec.cpu_threads,
            batch_size=spec.batch_size,
            max_batch_size=spec.batch_size,
            local_files_only=True,
        )
        self.engine = Engine(load_model(self.settings), self.settings)
        self.request = TranscriptionRequest.model_validate(request_fields(spec))

    def transcribe(self, samples: np.ndarray) -> Output:
        transcript = self.engine.transcribe(samples, self.request)
        return Output(text=transcript.text, language=transcript.language)

    def close(self) -> None:
        self.engine.close()


def request_fields(spec: RunSpec) -> dict:
    """The worker request for a setting; batched requests may not carry sequential-only options."""
    decode = spec.decode
    fields = {
        "language": decode.language,
        "task": decode.task,
        "beam_size": decode.beam_size,
        "without_timestamps": decode.without_timestamps,
        "batch_size": spec.batch_size,
        "temperature": 0.0,
        "vad_filter": spec.vad_filter,
        "word_timestamps": False,
    }
    from worker.request.schema import SEQUENTIAL_ONLY

    if spec.batch_size == 1 or "condition_on_previous_text" not in SEQUENTIAL_ONLY:  # the schema's rule, not a copy
        fields["condition_on_previous_text"] = decode.condition_on_previous_text
    return fields


class TransformersEngine:
    """WhisperForConditionalGeneration: generate() for batch size 1, the chunked pipeline above."""

    def __init__(self, spec: RunSpec):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # its deprecation chatter would break the progress bar
        hf_logging.disable_progress_bar()
        self.spec = spec
        self.torch = torch
        self.dtype = getattr(torch, spec.precision)
        self.device = torch.device("cuda" if spec.device == "cuda" else "cpu")
        if spec.device == "cpu" and spec.cpu_threads:
            torch.set_num_threads(spec.cpu_threads)
        self.processor = WhisperProcessor.from_pretrained(spec.hf_dir)
        self.model = WhisperForConditionalGeneration.from_pretrained(spec.hf_dir, dtype=self.dtype, attn_implementation="sdpa")
        self.model.to(self.device).eval()
        self.pipeline = None
        if spec.batch_size > 1:
            from transformers import pipeline

            self.pipeline = pipeline(
                "automatic-speech-recognition",
                model=self.model,
                tokenizer=self.processor.tokenizer,
                feature_extractor=self.processor.feature_extractor,
                chunk_length_s=30,
                batch_size=spec.batch_size,
                device=self.device,
                dtype=self.dtype,
                ignore_warning=True,  # the "chunking is experimental" notice: chunking is what we measure
            )

    def _generate_kwargs(self) -> dict:
        decode = self.spec.decode
        kwargs = {"task": decode.task, "num_beams": decode.beam_size}
        if decode.language:
            kwargs["language"] = decode.language
        if not self.model.generation_config.is_multilingual:
            kwargs.pop("task")
            kwargs.pop("language", None)
        return kwargs

    def transcribe(self, samples: np.ndarray) -> Output:
        with self.torch.inference_mode():
            if self.pipeline is not None:
                return self._pipeline(samples)
            return self._generate(samples)

    def _generate(self, samples: np.ndarray) -> Output:
        """Long-form sequential decoding as transformers documents it (timestamps are required past 30 s)."""
        decode = self.spec.decode
        features = self.processor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt", truncation=False,
                                  padding="longest", return_attention_mask=True)
        long_form = features.input_features.shape[-1] > 3000
        if not long_form:
            features = self.processor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
        inputs = {
            "input_features": features.input_features.to(self.device, self.dtype),
            "attention_mask": features.attention_mask.to(self.device),
        }
        kwargs = self._generate_kwargs()
        kwargs["return_timestamps"] = long_form or not decode.without_timestamps
        if long_form:
            kwargs["condition_on_prev_tokens"] = decode.condition_on_previous_text
            kwargs["temperature"] = 0.0
        ids = self.model.generate(**inputs, **kwargs)
        sequences = ids["sequences"] if isinstance(ids, dict) else ids
        text = self.processor.batch_decode(sequences, skip_special_tokens=True)[0]
        return Output(text=text.strip())

    def _pipeline(self, samples: np.ndarray) -> Output:
        decode = self.spec.decode
        # The pipeline may modify its input in place; give it a copy.
        result = self.pipeline(
            {"raw": samples.copy(), "sampling_rate": SAMPLE_RATE},
            return_timestamps=True if not decode.without_timestamps else None,
            generate_kwargs=self._generate_kwargs(),
        )
        return Output(text=result["text"].strip())

    def close(self) -> None:
        self.pipeline = None
        self.model = None
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


def import_engine(spec: RunSpec) -> None:
    """Import an engine's libraries up front, so the memory baseline excludes import overhead."""
    if spec.engine == FASTER_WHISPER:
        import worker.decoding.engine  # noqa: F401  (imports faster_whisper and ctranslate2)
    else:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        from transformers import WhisperForConditionalGeneration, pipeline  # noqa: F401


def load_engine(spec: RunSpec):
    if spec.engine == FASTER_WHISPER:
        return FasterWhisperEngine(spec)
    if spec.engine == TRANSFORMERS:
        return TransformersEngine(spec)
    raise ValueError(f"unknown engine {spec.engine!r}; expected one of {', '.join(ENGINES)}")


def thread_facts(spec: RunSpec) -> dict:
    """Threads each engine uses, since on CPU that decides throughput more than anything else."""
    if spec.engine == TRANSFORMERS:
        import torch

        return {"torch_threads": torch.get_num_threads()}
    return {"ctranslate2_cpu_threads": spec.cpu_threads or "default"}
