"""Fixtures of the batched job's tests (see scripted_job.py): the tokenizer, real speech, and the
asynchronous scripted devices a test makes (closed after it). Each test file takes them with
`from scripted_fixtures import *`: a conftest.py here would take the name `conftest` from
tests/conftest.py, which some tests import by that name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tokenizers

from helpers import DATA, tiny_en_model_dir
from scripted_job import SR, Async, planned, without_vad
from worker.audio.decode import decode_audio

__all__ = ["hf_tokenizer", "jfk", "silero", "paused", "devices", "many_windows"]


@pytest.fixture(scope="module")
def hf_tokenizer():
    return tokenizers.Tokenizer.from_file(str(Path(tiny_en_model_dir()) / "tokenizer.json"))


@pytest.fixture(scope="module")
def jfk():
    return decode_audio(str(DATA / "jfk.flac"), 100)  # 11 s, five speech spans


@pytest.fixture(scope="module")
def silero():
    return decode_audio(str(DATA / "long" / "silero_test.wav"), 100)  # 60 s of speech, short pauses


@pytest.fixture(scope="module")
def paused(jfk):
    """jfk, 3 s of silence, jfk, 1 s, jfk, 2.5 s, jfk: pauses that end windows (over 2 s) and some that do not."""
    gap = lambda seconds: np.zeros(int(seconds * SR), np.float32)  # noqa: E731
    return np.concatenate([jfk, gap(3), jfk, gap(1), jfk, gap(2.5), jfk])


@pytest.fixture
def devices():
    made = []

    def make(*args, **kwargs):
        made.append(Async(*args, **kwargs))
        return made[-1]

    yield make
    for device in made:
        device.close()


@pytest.fixture(scope="module")
def many_windows(hf_tokenizer, paused):
    """About 40 windows (cut at 1.5 s at most)."""
    options = without_vad(1.5)
    windows = planned(hf_tokenizer, paused, options)
    assert len(windows) > 32
    return options, windows
