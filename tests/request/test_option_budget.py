"""Every numeric option, in both request shapes, has a bounded cost: a request is either refused
with a clean `invalid_request` naming a field it sent, or the work it plans stays within the
declared budget (MAX_DECODES_PER_WINDOW hypotheses a window when every fallback runs, over the
windows batched decoding plans). The decodes are counted from the options the decoders are
actually given (faster-whisper's TranscriptionOptions, as worker.decoding.whisper.options builds them), not
from the request's own arithmetic, so a second derivation of the temperatures cannot drift.

`make test` replays fixed examples; `make fuzz` explores fresh ones.
"""

import dataclasses
import math
from types import SimpleNamespace
import os
import re

import pytest
import tokenizers
from faster_whisper.tokenizer import Tokenizer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import DATA
from helpers import tiny_en_model_dir
from worker.decoding.whisper.options import batched_options
from worker.audio.decode import SAMPLE_RATE, decode_audio
from worker.config import Settings
from worker.errors import RequestError
from worker.decoding.batched import TAIL_ROUNDS, BatchedJob
from worker.decoding.windows import MAX_PAUSE_S, MIN_WINDOW_S
from worker.request.schema import MAX_DECODES_PER_WINDOW, MAX_TEMPERATURES, parse_request

SCALE = int(os.environ.get("FUZZ_SCALE", "1"))
SETTINGS = Settings()

# Values that broke something once, or sit where arithmetic breaks: tiny, huge, beyond a float,
# not finite, negative zero, bounds and just past them.
EDGES = [0, 1, -1, 0.0, -0.0, 1e-12, 5e-324, 1e-6, 0.05, 0.2, 0.5, 1.0, 2.0, 2.4, 19, 20, 21, 32, 33, 100, 256, 257,
         1e308, 10**18, 10**400, -(10**400), float("inf"), float("-inf"), float("nan")]
# mostly values a schema may accept (so that accepted requests are common), some hostile ones
plausible = st.floats(min_value=0.0, max_value=1.0) | st.floats(min_value=1.0, max_value=64.0) | st.integers(0, 64) \
    | st.integers(1, 3000) | st.floats(min_value=-5.0, max_value=0.0)
numbers = plausible | st.sampled_from(EDGES) | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**30), 10**30)
temperatures = numbers | st.lists(numbers, max_size=25) | st.lists(st.sampled_from([0.0, 0.2, 0.5, 1.0]), min_size=1, max_size=22)

NUMERIC = ["beam_size", "best_of", "patience", "length_penalty", "repetition_penalty", "no_repeat_ngram_size",
           "compression_ratio_threshold", "log_prob_threshold", "no_speech_threshold", "hallucination_silence_threshold",
           "batch_size", "max_line_width", "max_line_count", "max_words_per_line"]
VAD = ["threshold", "neg_threshold", "min_speech_duration_ms", "max_speech_duration_s", "min_silence_duration_ms", "speech_pad_ms"]


def options_of(names):
    """A few options at a time (with many, one bad value hides the others' cost)."""
    return st.lists(st.sampled_from(names), max_size=4, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries({name: temperatures if name == "temperature" else numbers for name in chosen}))


vad_parameters = st.lists(st.sampled_from(VAD), min_size=1, max_size=3, unique=True).flatmap(
    lambda chosen: st.fixed_dictionaries({name: numbers for name in chosen}))
current_shape = st.tuples(options_of(NUMERIC + ["temperature"]), st.none() | vad_parameters).map(
    lambda drawn: {"audio": "https://example.com/a.wav", **drawn[0], **({"vad_parameters": drawn[1]} if drawn[1] else {})})
legacy_shape = st.tuples(options_of([n for n in NUMERIC if n != "log_prob_threshold"] + ["temperature", "temperature_increment_on_fallback",
                                                                                          "logprob_threshold"]),
                         st.none() | vad_parameters, st.booleans()).map(
    lambda drawn: {"audio": "https://example.com/a.wav", "transcription": "plain_text", "enable_vad": drawn[2], **drawn[0],
                   **({"vad_parameters": drawn[1]} if drawn[1] else {})})


@pytest.fixture(scope="module")
def tokenizer():
    hf = tokenizers.Tokenizer.from_file(os.path.join(tiny_en_model_dir(), "tokenizer.json"))
    return Tokenizer(hf, multilingual=False, task="transcribe", language=None)


def hypotheses(options) -> int:
    """What the decoders run for one window when every temperature is tried: beam search at
    temperature 0 (faster-whisper: beam_size, and patience x beam_size finished candidates),
    best_of samples above it."""
    beam = max(1, math.ceil(options.beam_size * options.patience))
    return sum(beam if t == 0 else options.best_of for t in options.temperatures)


class _TokenizerOnly:
    """What BatchedJob reads of a model while it plans windows for a request in English."""

    def __init__(self, hf_tokenizer):
        self.hf_tokenizer = hf_tokenizer
        self.model = SimpleNamespace(is_multilingual=False)


@pytest.fixture(scope="module")
def speech():
    return decode_audio(str(DATA / "jfk.flac"), 60)


def planned_windows(request, samples, tokenizer) -> int:
    """The windows (and their possible tails) BatchedJob plans for this request over real speech."""
    job = BatchedJob(_TokenizerOnly(tokenizer.tokenizer), samples, dataclasses.replace(request.decoding_options(), language="en"), device=None, cancelled=None)
    assert job.planned_all  # decoded audio is planned at once
    return len(job.windows) * (1 + TAIL_ROUNDS)


def check(job_input: dict, tokenizer) -> None:
    try:
        request = parse_request(job_input, SETTINGS)
    except RequestError as exc:
        assert exc.code == "invalid_request" and exc.field, exc
        assert re.split(r"[.\[]", exc.field)[0] in job_input, f"{exc.field!r} was not sent: {exc}"
        return None
    # accepted: the cost of a window, counted from what the decoders are given
    options = batched_options(tokenizer, request.decoding_options())
    assert len(options.temperatures) <= MAX_TEMPERATURES
    assert all(0.0 <= t <= 2.0 for t in options.temperatures)
    assert hypotheses(options) <= MAX_DECODES_PER_WINDOW, job_input
    assert hypotheses(options) == request.decodes_per_window()
    for name in ("compression_ratio_threshold", "log_prob_threshold", "no_speech_threshold", "patience", "length_penalty"):
        value = getattr(options, name)
        assert value is None or math.isfinite(value), name
    return request


def window_budget(seconds: float) -> int:
    """The most windows, tails included, batched decoding may plan for `seconds` of audio: a window
    either holds MIN_WINDOW_S of audio or is followed by a pause over MAX_PAUSE_S."""
    return (math.floor(seconds / min(MIN_WINDOW_S, MAX_PAUSE_S)) + 1) * (1 + TAIL_ROUNDS)


@settings(max_examples=600 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(current_shape)
@example({"audio": "a", "temperature": [0.0] + [0.2] * 19, "best_of": 32, "log_prob_threshold": -0.01, "compression_ratio_threshold": 1.0})
def test_every_numeric_option_is_bounded_or_refused_by_name(tokenizer, job_input):
    check(job_input, tokenizer)


@settings(max_examples=600 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(legacy_shape)
@example({"audio": "a", "temperature": 1.0, "temperature_increment_on_fallback": 1e-12})
def test_every_numeric_legacy_option_is_bounded_or_refused_by_name(tokenizer, job_input):
    check(job_input, tokenizer)


@settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(vad_parameters)
@example({"max_speech_duration_s": 1.0})  # once cut batched windows to 1 s: 64 % WER, 11 windows on an 11 s clip
@example({"min_silence_duration_ms": 0, "min_speech_duration_ms": 0, "threshold": 0.3})
def test_the_work_a_request_plans_over_real_speech_stays_within_the_budget(tokenizer, speech, vad_parameters):
    request = check({"audio": "https://example.com/a.wav", "vad_parameters": vad_parameters}, tokenizer)
    if request is None:
        return
    windows = planned_windows(request, speech, tokenizer)
    assert windows <= window_budget(speech.size / SAMPLE_RATE), vad_parameters
    assert request.decodes_per_window() * windows <= MAX_DECODES_PER_WINDOW * window_budget(speech.size / SAMPLE_RATE)


def test_the_worst_accepted_request_is_within_the_budget(tokenizer):
    """The largest accepted combination of the defaults' shape: 20 temperatures and the most samples."""
    request = parse_request({"audio": "a", "temperature": [0.0] + [0.5] * 19, "best_of": 10, "beam_size": 10}, SETTINGS)
    assert hypotheses(batched_options(tokenizer, request.decoding_options())) == 200 == MAX_DECODES_PER_WINDOW
    with pytest.raises(RequestError) as refused:
        parse_request({"audio": "a", "temperature": [0.0] + [0.5] * 19, "best_of": 10, "beam_size": 11}, SETTINGS)
    assert refused.value.field == "best_of"


def test_a_value_no_validator_can_read_is_refused_by_name(monkeypatch):
    """The net under the schema: whatever a validator raises besides a field error (an int too big
    for a float, nesting deeper than Python recurses) is refused naming the field that caused it."""
    import worker.request.schema as request_module

    real = request_module.temperature_list

    def deep(value):
        if value == [0.125]:
            raise RecursionError("maximum recursion depth exceeded")
        return real(value)

    monkeypatch.setattr(request_module, "temperature_list", deep)
    with pytest.raises(RequestError) as refused:
        parse_request({"audio": "a", "beam_size": 2, "temperature": [0.125]}, SETTINGS)
    assert str(refused.value) == "temperature: cannot be read (RecursionError)"
