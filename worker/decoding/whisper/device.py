"""The device call: one encode + generate (+ word alignment) for windows of many jobs that share
tokenizer and options, and the word timing faster-whisper computes from the alignment, without
the encoder output ever leaving the device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import TranscriptionOptions

from worker.decoding.whisper.features import WindowInput
from worker.decoding.whisper.options import prompt_for
from worker.stages import timed


@dataclass
class WindowOutput:
    """What the device returns for one window."""

    tokens: List[int]  # generated ids, timestamps included, prompt and end-of-text excluded
    avg_logprob: float
    no_speech_prob: float
    alignment: Optional[List[dict]] = None  # faster-whisper's word alignment, with word timestamps
    temperature: float = 0.0


def run_windows(whisper: WhisperModel, windows: Sequence[WindowInput], tokenizer: Tokenizer, options: TranscriptionOptions) -> List[WindowOutput]:
    """One encode + generate (+ align) for windows that share tokenizer and options."""
    features = np.stack([window.features for window in windows])
    prompt = prompt_for(whisper, tokenizer, options)
    encoder_output = whisper.encode(features)
    prompts = [list(prompt) for _ in windows]
    if options.multilingual:
        position = prompt.index(tokenizer.language)
        for row, detected in enumerate(whisper.model.detect_language(encoder_output)):
            prompts[row][position] = tokenizer.tokenizer.token_to_id(detected[0][0])
    temperature = options.temperatures[0]
    # as faster-whisper's fallback decodes: beam search at 0, best_of samples above
    search = {"beam_size": options.beam_size, "patience": options.patience} if temperature == 0 else \
        {"beam_size": 1, "num_hypotheses": options.best_of, "sampling_topk": 0}
    # max_new_tokens: set only by glimpses (glimpse.py); file jobs read up to the decoder's end
    max_length = whisper.max_length if options.max_new_tokens is None else min(whisper.max_length, len(prompt) + options.max_new_tokens)
    results = whisper.model.generate(
        encoder_output, prompts, length_penalty=options.length_penalty, max_length=max_length,
        suppress_blank=options.suppress_blank, suppress_tokens=options.suppress_tokens,
        return_scores=True, return_no_speech_prob=True, sampling_temperature=temperature,
        repetition_penalty=options.repetition_penalty, no_repeat_ngram_size=options.no_repeat_ngram_size, **search,
    )
    outputs = []
    for result in results:
        tokens = list(result.sequences_ids[0])
        cumulative = result.scores[0] * (len(tokens) ** options.length_penalty)
        outputs.append(WindowOutput(tokens=tokens, avg_logprob=cumulative / (len(tokens) + 1), no_speech_prob=result.no_speech_prob))
    if options.word_timestamps:
        text = [[t for t in output.tokens if t < tokenizer.eot] for output in outputs]
        frames = [window.content_frames for window in windows]
        for output, alignment in zip(outputs, whisper.find_alignment(tokenizer, text, encoder_output, frames)):
            output.alignment = alignment
    return outputs


class _AlignedModel:
    """What add_word_timestamps reads of the model, with the alignment already computed on the
    device by run_windows (the encoder output never leaves the device)."""

    def __init__(self, whisper: WhisperModel, alignments: List[List[dict]]):
        self.frames_per_second = whisper.frames_per_second
        self._alignments = alignments

    def find_alignment(self, *_args, **_kwargs):
        return self._alignments


@timed("words")
def add_word_timestamps(whisper: WhisperModel, windows: List[List[dict]], alignments: List[List[dict]], tokenizer: Tokenizer,
                        options: TranscriptionOptions, last_speech: float) -> float:
    """Put `words` on every segment dict of each window (each dict: tokens, start, end, seek in
    frames of the window's start), with faster-whisper's timing rules; returns the new last speech
    time."""
    if not windows:
        return last_speech
    proxy = _AlignedModel(whisper, alignments)
    frames = [0] * len(windows)  # read only by find_alignment, which the proxy answers
    result = WhisperModel.add_word_timestamps(proxy, windows, tokenizer, None, frames, options.prepend_punctuations,
                                              options.append_punctuations, last_speech)
    return last_speech if result is None else result


def detect_language(whisper: WhisperModel, window: WindowInput) -> Tuple[str, float]:
    language, probability, _ = whisper.detect_language(features=window.features[:, : max(window.content_frames, 1)])
    return language, float(probability)
