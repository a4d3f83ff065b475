"""The input schema: defaults, aliases, and a clear error naming the field for every mistake."""

import pytest

from worker.config import Settings
from worker.errors import RequestError
from worker.request import DEFAULT_TEMPERATURES, parse_request

SETTINGS = Settings(model="large-v3", batch_size=8)


def refused(job_input, settings=SETTINGS) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_request(job_input, settings)
    return info.value


def test_defaults_take_batch_size_from_settings_and_the_fallback_temperatures():
    request = parse_request({"audio": "https://example.com/a.wav"}, SETTINGS)
    assert request.batch_size == 8
    assert request.is_batched
    assert request.temperatures == list(DEFAULT_TEMPERATURES)  # batched windows fall back too
    assert request.vad_filter is True
    assert request.response_format == "verbose_json"


def test_sequential_keeps_the_full_temperature_fallback():
    request = parse_request({"audio": "x.wav", "batch_size": 1}, SETTINGS)
    assert request.temperatures == list(DEFAULT_TEMPERATURES)
    options = request.decoding_options()
    assert options["condition_on_previous_text"] is True
    assert "batch_size" not in options


@pytest.mark.parametrize(
    "job_input, field",
    [
        ({"audio": "a", "colour": "blue"}, "colour"),
        ({"audio": 5}, "audio"),
        ({"audio": "a", "beam_size": "5"}, "beam_size"),
        ({"audio": "a", "beam_size": True}, "beam_size"),
        ({"audio": "a", "beam_size": 0}, "beam_size"),
        ({"audio": "a", "word_timestamps": "yes"}, "word_timestamps"),
        ({"audio": "a", "task": "summarise"}, "task"),
        ({"audio": "a", "response_format": "docx"}, "response_format"),
        ({"audio": "a", "language": "klingon"}, "language"),
        ({"audio": "a", "temperature": [0.0, 9.0], "batch_size": 1}, "temperature"),
        ({"audio": "a", "temperature": "hot"}, "temperature"),
        ({"audio": "a", "vad_parameters": {"threshold": 2}}, "vad_parameters.threshold"),
        ({"audio": "a", "vad_parameters": {"window": 3}}, "vad_parameters.window"),
        ({"audio": "a", "batch_size": 1000}, "batch_size"),
        ({}, "audio"),
        ({"audio": "a", "audio_base64": "AAAA"}, "audio_base64"),
        ({"audio_base64": ""}, "audio_base64"),
        ({"audio": "a", "condition_on_previous_text": True}, "condition_on_previous_text"),
        ({"audio": "a", "batch_size": 1, "hallucination_silence_threshold": 2.0}, "hallucination_silence_threshold"),
        ({"audio": "a", "vad_filter": False, "vad_parameters": {"threshold": 0.4}}, "vad_parameters"),
        ({"audio": "a", "stream": True}, "stream"),
        ({"audio": "a", "model": "tiny"}, "model"),
        ({"audio": "a", "transcription": "pdf"}, "transcription"),
        ({"audio": "a", "enable_vad": True, "vad_filter": True}, "enable_vad"),
        ({"audio": "a", "suppress_tokens": "1,x"}, "suppress_tokens"),
    ],
)
def test_every_mistake_names_its_field(job_input, field):
    error = refused(job_input)
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    assert error.to_response()["error"] == str(error)


@pytest.mark.parametrize("job_input", [None, [], "audio.wav", 3])
def test_input_must_be_an_object(job_input):
    assert refused(job_input).field == "input"


def test_batched_accepts_sequential_options_that_ask_for_what_it_does_anyway():
    request = parse_request({"audio": "a", "condition_on_previous_text": False, "no_speech_threshold": None,
                             "compression_ratio_threshold": None, "temperature": [0.0]}, SETTINGS)
    assert request.is_batched and request.temperatures == [0.0]


def test_streaming_allowed_when_the_endpoint_enables_it():
    request = parse_request({"audio": "a", "stream": True}, Settings(streaming=True))
    assert request.stream


def test_legacy_names_map_onto_ours_and_default_to_sequential():
    request = parse_request(
        {
            "audio": "a", "model": "large-v3", "transcription": "srt", "translate": True,
            "translation": "vtt", "enable_vad": True, "logprob_threshold": -0.5, "temperature": 0,
            "temperature_increment_on_fallback": 0.2, "suppress_tokens": "-1",
        },
        SETTINGS,
    )
    assert request.batch_size == 1
    assert request.vad_filter is True
    assert request.log_prob_threshold == -0.5
    assert request.temperatures == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert request.suppress_tokens == [-1]
    assert request.legacy.transcription == "srt"
    assert request.legacy.translate is True
    assert request.legacy.translation == "vtt"


def test_legacy_request_without_vad_flag_gets_that_workers_default():
    request = parse_request({"audio": "a", "transcription": "plain_text"}, SETTINGS)
    assert request.vad_filter is False


def test_a_user_cannot_smuggle_the_internal_legacy_marker():
    assert refused({"audio": "a", "legacy": {"transcription": "srt"}}).field == "legacy"


def test_decoding_options_are_faster_whisper_keyword_names():
    import inspect

    from faster_whisper import WhisperModel

    sequential = parse_request({"audio": "a", "batch_size": 1, "vad_parameters": {"threshold": 0.3}}, SETTINGS)
    accepted = set(inspect.signature(WhisperModel.transcribe).parameters)
    assert set(sequential.decoding_options()) <= accepted
    batched = parse_request({"audio": "a"}, SETTINGS)
    assert set(batched.decoding_options()) <= accepted | {"batch_size"}


def test_legacy_model_may_name_the_served_model():
    settings = Settings(model="/models/whisper", model_name="large-v3")
    assert parse_request({"audio": "a", "model": "large-v3"}, settings).legacy is not None
    assert parse_request({"audio": "a", "model": "/models/whisper"}, settings).legacy is not None
    assert refused({"audio": "a", "model": "tiny"}, settings).field == "model"


def test_batched_requests_take_the_silence_and_loop_thresholds():
    request = parse_request({"audio": "a", "no_speech_threshold": 0.5, "log_prob_threshold": -0.8, "compression_ratio_threshold": 2.0}, SETTINGS)
    options = request.decoding_options()
    assert request.is_batched and (options["no_speech_threshold"], options["log_prob_threshold"], options["compression_ratio_threshold"]) == (0.5, -0.8, 2.0)


def test_subtitle_layout_needs_subtitles_and_word_timestamps():
    good = {"audio": "a", "response_format": "srt", "word_timestamps": True, "max_line_width": 42, "max_line_count": 2}
    assert parse_request(good, SETTINGS).subtitle_layout == {"max_line_width": 42, "max_line_count": 2, "max_words_per_line": None}
    assert refused({**good, "response_format": "json"}).field == "max_line_width"
    assert refused({**good, "word_timestamps": False}).field == "max_line_width"
    assert refused({"audio": "a", "response_format": "vtt", "word_timestamps": True, "max_line_count": 2}).field == "max_line_count"
    assert refused({**good, "max_line_width": 0}).field == "max_line_width"
    legacy = {"audio": "a", "transcription": "srt", "word_timestamps": True, "max_words_per_line": 5}
    assert parse_request(legacy, SETTINGS).max_words_per_line == 5
    assert refused({**legacy, "transcription": "plain_text"}).field == "max_words_per_line"


@pytest.mark.parametrize("fields, field", [
    ({"patience": 0.05}, "patience"), ({"patience": 1e-9, "beam_size": 5}, "patience"),
    ({"repetition_penalty": 1e-9}, "repetition_penalty"), ({"repetition_penalty": 0.5}, "repetition_penalty"),
    ({"temperature_increment_on_fallback": float("nan")}, "temperature_increment_on_fallback"),
    ({"temperature_increment_on_fallback": 1e-300}, "temperature_increment_on_fallback"),
    ({"temperature_increment_on_fallback": 0.2, "temperature": float("nan")}, "temperature"),
])
def test_numbers_that_break_decoding_are_refused_before_anything_is_built(fields, field):
    import time

    started = time.monotonic()
    assert refused({"audio": "a", **fields}).field == field
    assert time.monotonic() - started < 0.1
