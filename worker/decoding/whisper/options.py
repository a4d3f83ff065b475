"""A request's decoding options as faster-whisper's own decoding functions read them: the tokenizer,
the TranscriptionOptions object, the prompt, and the checks that keep CTranslate2 from reading
what it cannot (prompts that overflow the decoder, token ids outside the vocabulary)."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Hashable, Iterable, List, Optional

from faster_whisper import WhisperModel
from faster_whisper.tokenizer import _LANGUAGE_CODES, Tokenizer
from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

from worker.errors import RequestError

if TYPE_CHECKING:
    from worker.request.schema import DecodingOptions

TIMESTAMP_TOKENS = 1501  # <|0.00|> .. <|30.00|>: the last ids of every Whisper vocabulary
LANGUAGE_CODES = frozenset(_LANGUAGE_CODES)  # what the tokenizer has a language token for


def tokenizer_for(whisper: WhisperModel, task: str, language: Optional[str]) -> Tokenizer:
    return Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task=task, language=language)


@functools.lru_cache(maxsize=4)
def vocabulary_size(whisper: WhisperModel) -> int:
    """Ids the model can take: text and special tokens, then the timestamp tokens last (a fact of
    the loaded model: computed once, not on every job's check)."""
    tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task="transcribe",
                          language="en" if whisper.model.is_multilingual else None)
    return tokenizer.timestamp_begin + TIMESTAMP_TOKENS


def batched_options(tokenizer: Tokenizer, decoding: DecodingOptions) -> TranscriptionOptions:
    """faster-whisper's options object for one batched job (the fields its helpers read): the
    request's values, and the library's own for what a request cannot set."""
    suppress = decoding.suppress_tokens
    return TranscriptionOptions(
        beam_size=decoding.beam_size,
        best_of=decoding.best_of,
        patience=decoding.patience,
        length_penalty=decoding.length_penalty,
        repetition_penalty=decoding.repetition_penalty,
        no_repeat_ngram_size=decoding.no_repeat_ngram_size,
        log_prob_threshold=decoding.log_prob_threshold,
        no_speech_threshold=decoding.no_speech_threshold,
        compression_ratio_threshold=decoding.compression_ratio_threshold,
        condition_on_previous_text=False,
        prompt_reset_on_temperature=0.5,
        temperatures=[float(t) for t in decoding.temperatures],
        initial_prompt=decoding.initial_prompt,
        prefix=None,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, suppress) if suppress else suppress,
        without_timestamps=decoding.without_timestamps,
        max_initial_timestamp=0.0,
        word_timestamps=decoding.word_timestamps,
        prepend_punctuations="\"'“¿([{-",
        append_punctuations="\"'.。,，!！?？:：”)]}、",
        multilingual=decoding.multilingual,
        max_new_tokens=None,
        clip_timestamps="0",
        hallucination_silence_threshold=None,
        hotwords=decoding.hotwords,
    )


def at_temperature(options: TranscriptionOptions, temperature: float) -> TranscriptionOptions:
    """The options of one decoding pass (the first temperature of the list is the one used)."""
    return dataclasses.replace(options, temperatures=[temperature])


def batching_key(tokenizer: Tokenizer, options: TranscriptionOptions) -> Hashable:
    """Windows with equal keys may share one generate() call. Every field of the options object is
    part of it, so an option added to faster-whisper can never let different requests mix."""
    values = []
    for item in dataclasses.fields(options):
        value = getattr(options, item.name)
        values.append((item.name, tuple(value) if isinstance(value, list) else value))
    return (tuple(tokenizer.sot_sequence), tokenizer.task, tuple(values))


def prompt_for(whisper: WhisperModel, tokenizer: Tokenizer, options: TranscriptionOptions) -> List[int]:
    previous = tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else []
    return whisper.get_prompt(tokenizer, previous, without_timestamps=options.without_timestamps, hotwords=options.hotwords)


def check_prompt_length(whisper: WhisperModel, tokenizer: Tokenizer, initial_prompt: Optional[str], hotwords: Optional[str]) -> None:
    """The decoder holds 448 positions; prompt and hotwords together may take at most half (as
    Whisper itself allows), so the text has room. faster-whisper would truncate each to 223
    tokens, overflow with both, and fail inside CTranslate2."""
    limit = whisper.max_length // 2 - 1
    used = 0
    for field, text in (("hotwords", hotwords), ("initial_prompt", initial_prompt)):
        if text:
            used += len(tokenizer.encode(" " + text.strip()))
            if used > limit:
                raise RequestError(f"too long: initial_prompt and hotwords together are {used}+ tokens; at most {limit} fit the decoder", field=field)


def check_token_ids(whisper: WhisperModel, ids: Iterable[int], field: str) -> None:
    """CTranslate2 indexes with these ids unchecked: out of range is out-of-bounds memory."""
    size = vocabulary_size(whisper)
    for token in ids:
        if token != -1 and not 0 <= token < size:
            raise RequestError(f"token id {token} is outside this model's vocabulary (0..{size - 1}, or -1 for the default set)", field=field)
