"""A glimpse: quick, rough text of a few seconds of audio (a live turn's partial text), at about a
third of a window's cost on CPU. Whisper's encoder reads a 30 s window however little audio it
holds, and that encode is most of a short decode (base int8, 2 CPU cores: 0.46 s of 0.64 s for
1.9 s of speech; 0.06 s for a 10 s input). A glimpse gives the encoder the audio and at least
MARGIN_FRAMES of the window's padding after it, rounded up to whole seconds, not the whole window,
then decodes greedily, without timestamps, with a bound on the tokens. On the 26 LJ Speech and
Harvard clips (tests/decoding/test_glimpse.py), base int8: WER 11.0 % against 11.4 % for the
file request's decode of the same clips, in 6-8 s against 25 s; with timestamps, or with 1 s of
padding, or 5 s steps, one clip in 26 came out cut short ("men") or looping ("in being
comparatively modern," 19 times). A file job never takes this path: its windows are whole, as the
model was trained.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Tuple

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import TranscriptionOptions

from worker.decoding.whisper.features import WINDOW_FRAMES, WindowInput, window_features
from worker.decoding.whisper.options import batched_options, tokenizer_for

MARGIN_FRAMES = 300  # padding the encoder reads after the audio (3 s): with 1 s, Whisper looped
STEP_FRAMES = 100  # encoder lengths go up in steps of 1 s, so glimpses of like length share a batch
TOKENS_PER_SECOND = 12  # the most a glimpse may generate per second of its encoder input (speech has 3-8)
FRAMES_PER_SECOND = 100


def glimpse_frames(content_frames: int) -> int:
    """The encoder length for audio of `content_frames`: the audio, at least MARGIN_FRAMES after
    it, rounded up to a step; never over a window."""
    return min(WINDOW_FRAMES, math.ceil((content_frames + MARGIN_FRAMES) / STEP_FRAMES) * STEP_FRAMES)


def glimpse_window(whisper: WhisperModel, samples: np.ndarray) -> WindowInput:
    """The features of at most 30 s of audio (the last 30 s of longer audio), cut to the glimpse's
    encoder length."""
    samples = samples[-WINDOW_FRAMES * 160:]
    window = window_features(whisper, samples)
    frames = glimpse_frames(window.content_frames)
    return WindowInput(features=np.ascontiguousarray(window.features[:, :frames]), content_frames=window.content_frames)


def glimpse_options(whisper: WhisperModel, decoding, frames: int) -> Tuple[Tokenizer, TranscriptionOptions]:
    """The tokenizer and options of a glimpse: the request's (prompt, suppressed tokens...), one
    greedy pass at temperature 0, no timestamps or word timing, at most TOKENS_PER_SECOND tokens
    per second of encoder input. Without a language on a multilingual model, each glimpse's
    language is detected on its own encoder output."""
    detect = decoding.language is None and whisper.model.is_multilingual
    tokenizer = tokenizer_for(whisper, decoding.task, "en" if detect or not whisper.model.is_multilingual else decoding.language)
    options = dataclasses.replace(batched_options(tokenizer, decoding), beam_size=1, best_of=1, patience=1.0, temperatures=[0.0],
                                  without_timestamps=True, word_timestamps=False, multilingual=detect,
                                  max_new_tokens=TOKENS_PER_SECOND * frames // FRAMES_PER_SECOND)
    return tokenizer, options


def glimpse_text(tokenizer: Tokenizer, tokens) -> str:
    return tokenizer.decode([token for token in tokens if token < tokenizer.eot]).strip()
