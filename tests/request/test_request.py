"""The input schema: defaults, aliases, and a clear error naming the field for every mistake."""

import pytest

from worker.config import Settings
from worker.errors import RequestError
from worker.request.schema import DECODING_FIELDS, DEFAULT_TEMPERATURES, SEQUENTIAL_ONLY, SPEAKER_OPTIONS, TranscriptionRequest, parse_request

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


def test_every_field_faster_whisper_takes_by_name_is_handed_to_it():
    """A field named like a transcribe() argument but not marked Option(decoding=True) would be accepted and ignored."""
    import inspect

    from faster_whisper import WhisperModel

    accepted = set(inspect.signature(WhisperModel.transcribe).parameters)
    assert set(TranscriptionRequest.model_fields) & accepted == set(DECODING_FIELDS) | {"audio", "vad_parameters"}
    batched = parse_request({"audio": "a"}, SETTINGS).decoding_options()
    assert set(batched) == (set(DECODING_FIELDS) - set(SEQUENTIAL_ONLY)) | {"vad_parameters", "batch_size"}


@pytest.mark.parametrize("name", sorted(SEQUENTIAL_ONLY))
def test_a_sequential_only_option_is_refused_batched_with_its_reason(name):
    value = True if TranscriptionRequest.model_fields[name].annotation is bool else 2.0
    assert str(refused({"audio": "a", name: value})) == f"{name}: {SEQUENTIAL_ONLY[name]}; send batch_size=1 for sequential decoding"


@pytest.mark.parametrize("name", SPEAKER_OPTIONS)
def test_every_speaker_option_needs_diarize(name):
    value = {"known_speakers": [{"name": "Ann", "audio": "https://example.com/ann.wav"}], "diarization_model": "meeting"}.get(name, 2)
    assert str(refused({"audio": "a", name: value})) == f"{name}: needs diarize=true"


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


# The whole error text a client reads: the field as the client sent it, then why, and for a
# wrong type what JSON type arrived.
@pytest.mark.parametrize("job_input, error", [
    ({"audio": "a", "colour": "blue"}, "colour: unknown field"),
    ({"audio": 5}, "audio: Input should be a valid string (got number)"),
    ({"audio": {"u": 1}}, "audio: Input should be a valid string (got object)"),
    ({"audio": []}, "audio: Input should be a valid string (got array)"),
    ({"audio_base64": 1.5}, "audio_base64: Input should be a valid string (got number)"),
    ({"audio": "a", "beam_size": True}, "beam_size: Input should be a valid integer (got boolean)"),
    ({"audio": "a", "task": "summarise"}, "task: Input should be 'transcribe' or 'translate' (got string)"),
    ({}, "audio: give audio (a URL) or audio_base64"),
    ({"audio": "a", "audio_base64": "AAAA"}, "audio_base64: give audio or audio_base64, not both"),
    ({"audio": "a", "condition_on_previous_text": True},
     "condition_on_previous_text: batched decoding never conditions on previous text; send batch_size=1 for sequential decoding"),
    ({"audio": "a", "batch_size": 1, "hallucination_silence_threshold": 2.0}, "hallucination_silence_threshold: needs word_timestamps=true"),
    ({"audio": "a", "vad_filter": False, "vad_parameters": {"threshold": 0.4}}, "vad_parameters: has no effect with vad_filter=false"),
    ({"audio": "a", "stream": True}, "stream: streaming is disabled on this endpoint (set WHISPER_STREAMING=true)"),
    ({"audio": "a", "model": "tiny"}, "model: this endpoint serves 'large-v3'; it cannot load 'tiny' per request"),
    ({"audio": "a", "model": 5}, "model: must be a string"),
    ({"audio": "a", "transcription": "pdf"}, "transcription: must be one of plain_text, formatted_text, srt, vtt"),
    ({"audio": "a", "translation": "pdf"}, "translation: must be one of plain_text, formatted_text, srt, vtt"),
    ({"audio": "a", "translate": "yes"}, "translate: must be true or false"),
    ({"audio": "a", "enable_vad": True, "vad_filter": True}, "enable_vad: give either enable_vad or vad_filter, not both"),
    ({"audio": "a", "transcription": "plain_text", "suppress_tokens": "1,x"}, "suppress_tokens: must be a comma-separated list of token ids"),
    ({"audio": "a", "enable_vad": "yes"}, "enable_vad: Input should be a valid boolean (got string)"),  # named as sent
    ({"audio": "a", "logprob_threshold": "low"}, "logprob_threshold: Input should be a valid number (got string)"),
    ({"audio": "a", "temperature_increment_on_fallback": 0}, "temperature_increment_on_fallback: must be a positive number or null"),
    ({"audio": "a", "temperature_increment_on_fallback": "0.2"}, "temperature_increment_on_fallback: must be a positive number or null"),
    ({"audio": "a", "temperature_increment_on_fallback": True}, "temperature_increment_on_fallback: must be a positive number or null"),
    ({"audio": "a", "temperature_increment_on_fallback": 0.2, "temperature": 1.5},
     "temperature: must be a number from 0 to 1 when temperature_increment_on_fallback is given"),
    ({"audio": "a", "temperature_increment_on_fallback": 0.2, "temperature": "hot"},
     "temperature: must be a number from 0 to 1 when temperature_increment_on_fallback is given"),
    ({"audio": "a", "temperature_increment_on_fallback": 0.05},
     "temperature_increment_on_fallback: gives more than 20 temperatures from 0 to 1; use an increment of at least 0.05263"),
    ({"audio": "a", "temperature_increment_on_fallback": 1e-12, "temperature": 1.0},  # the stop's slack once built a million
     "temperature_increment_on_fallback: gives more than 20 temperatures from 1 to 1; use an increment of at least 1e-06"),
    ({"audio": "a", "temperature_increment_on_fallback": 5e-324, "temperature": 0.5},  # numpy raised on this one
     "temperature_increment_on_fallback: gives more than 20 temperatures from 0.5 to 1; use an increment of at least 0.02632"),
    ({"audio": "a", "temperature_increment_on_fallback": 10**400}, "temperature_increment_on_fallback: must be a positive number or null"),
    ({"audio": "a", "temperature_increment_on_fallback": 0.2, "temperature": 10**400},
     "temperature: must be a number from 0 to 1 when temperature_increment_on_fallback is given"),
    ({"audio": "a", "temperature": 10**400}, "temperature: Input should be a valid number (got number)"),  # float() once raised OverflowError
    ({"audio": "a", "log_prob_threshold": 0.0}, "log_prob_threshold: Input should be less than 0"),
    ({"audio": "a", "compression_ratio_threshold": 0.1}, "compression_ratio_threshold: Input should be greater than or equal to 1"),
    ({"audio": "a", "best_of": 32, "temperature": [0.0] + [0.5] * 19},
     "best_of: a window would cost 613 decodes when every fallback runs (beam_size x patience = 5 at temperature 0, best_of = 32 at each "
     "of 19 higher temperatures); at most 200: use fewer temperatures, a smaller best_of or beam_size"),
    ({"audio": "a", "beam_size": 32, "patience": 10.0, "batch_size": 1},
     "patience: a window would cost 345 decodes when every fallback runs (beam_size x patience = 320 at temperature 0, best_of = 5 at each "
     "of 5 higher temperatures); at most 200: use fewer temperatures, a smaller best_of or beam_size"),
    ({"audio": "a", "transcription": "srt", "response_format": "json"}, "response_format: legacy requests choose their format with `transcription`"),
    ({"audio": "a", "response_format": "json", "word_timestamps": True, "max_line_width": 42},
     "max_line_width: lays out subtitle cues; it needs response_format srt or vtt"),
    ({"audio": "a", "response_format": "srt", "max_line_width": 42}, "max_line_width: splits cues at word boundaries; it needs word_timestamps=true"),
    ({"audio": "a", "response_format": "srt", "word_timestamps": True, "max_line_count": 2},
     "max_line_count: needs max_line_width or max_words_per_line to know where a line ends"),
    ({"audio": "a", "beam_size": 1, "patience": 0.5, "batch_size": 1}, "patience: beam_size x patience must be at least 1 (got 1 x 0.5)"),
])
def test_every_refusal_says_why_in_words(job_input, error):
    assert str(refused(job_input)) == error


@pytest.mark.parametrize("job_input, kind", [(None, "null"), ([], "array"), ("audio.wav", "string"), (3, "number"), (True, "boolean"), (b"x", "bytes")])
def test_a_non_object_input_names_what_arrived(job_input, kind):
    assert str(refused(job_input)) == f"input: must be a JSON object, got {kind}"


def test_an_uploaded_file_is_the_only_audio():
    assert parse_request({"response_format": "json"}, SETTINGS, uploaded=True).audio is None
    for name, value in (("audio", "https://example.com/a.wav"), ("audio_base64", "AAAA")):
        with pytest.raises(RequestError) as info:
            parse_request({name: value}, SETTINGS, uploaded=True)
        assert str(info.value) == f"{name}: send the audio as the `file` part, not as a field"


@pytest.mark.parametrize("start, increment, temperatures", [
    (0.5, 0.05, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0]),
    (1.0, 0.2, [1.0]),
    (0, 1 / 19, [round(i / 19, 6) for i in range(20)]),  # exactly 20: the most allowed
])
def test_legacy_fallback_increments_up_to_twenty_temperatures(start, increment, temperatures):
    request = parse_request({"audio": "a", "temperature": start, "temperature_increment_on_fallback": increment}, SETTINGS)
    assert request.temperatures == pytest.approx(temperatures)


def test_legacy_suppress_tokens_are_comma_separated():
    assert parse_request({"audio": "a", "transcription": "plain_text", "suppress_tokens": "1, 2,,3"}, SETTINGS).suppress_tokens == [1, 2, 3]


def test_modes_accept_what_they_can_honour():
    assert parse_request({"audio": "a", "beam_size": 1, "patience": 1.0, "batch_size": 1}, SETTINGS).patience == 1.0
    vtt = {"audio": "a", "response_format": "vtt", "word_timestamps": True, "max_line_width": 30}
    assert parse_request(vtt, SETTINGS).max_line_width == 30
    legacy = parse_request({"audio": "a", "transcription": "vtt", "word_timestamps": True, "max_line_width": 30, "response_format": "verbose_json"}, SETTINGS)
    assert legacy.legacy.transcription == "vtt"


def test_decoding_options_carry_the_vad_parameters_given_and_the_batch_size():
    batched = parse_request({"audio": "a", "vad_parameters": {"threshold": 0.3, "min_silence_duration_ms": 500}}, SETTINGS).decoding_options()
    assert batched["batch_size"] == 8
    assert batched["vad_parameters"] == {"threshold": 0.3, "min_speech_duration_ms": 0, "max_speech_duration_s": float("inf"),
                                         "min_silence_duration_ms": 500, "speech_pad_ms": 400}  # neg_threshold unset: faster-whisper's default
    assert parse_request({"audio": "a"}, SETTINGS).decoding_options()["vad_parameters"] is None


SOURCE = {"audio": "https://example.com/a.wav"}


@pytest.mark.parametrize("job_input, error", [
    ({**SOURCE, "language": "klingon"}, "language: unknown language code 'klingon'; use an ISO 639-1 code such as 'en', or omit it to detect"),
    ({**SOURCE, "temperature": [0.0, 9.0], "batch_size": 1}, "temperature: every temperature must be between 0 and 2"),
    ({**SOURCE, "num_speakers": 2}, "num_speakers: needs diarize=true"),
    ({**SOURCE, "diarize": True, "multichannel": True}, "multichannel: labels speakers by channel; send diarize or multichannel, not both"),
    ({**SOURCE, "multichannel": True, "transcription": "srt"},
     "multichannel: speaker labels need the current request names (response_format, not transcription)"),
    ({**SOURCE, "diarize": True, "without_timestamps": True},
     "without_timestamps: speaker labels need timestamps; diarize cannot be combined with without_timestamps"),
    ({**SOURCE, "multichannel": True, "stream": True}, "stream: speakers are known only once the whole file is done; multichannel cannot stream"),
    ({**SOURCE, "diarize": True, "num_speakers": 2, "max_speakers": 3}, "num_speakers: give num_speakers or min_speakers / max_speakers, not both"),
    ({**SOURCE, "diarize": True, "num_speakers": 2, "min_speakers": 1}, "num_speakers: give num_speakers or min_speakers / max_speakers, not both"),
    ({**SOURCE, "diarize": True, "min_speakers": 3, "max_speakers": 2}, "min_speakers: is more than max_speakers (3 > 2)"),
    ({**SOURCE, "diarize": True, "known_speakers": [{"name": "Ann", "audio": "x", "audio_base64": "AAAA"}]},
     "known_speakers[0].audio: give audio (a URL) or audio_base64 for the reference clip, one of them"),
    ({**SOURCE, "diarize": True, "known_speakers": [{"name": "Ann"}]},
     "known_speakers[0].audio: give audio (a URL) or audio_base64 for the reference clip, one of them"),
    ({**SOURCE, "diarize": True, "known_speakers": [{"name": "Ann", "audio": "x"}, {"name": "Ann", "audio": "y"}]}, "known_speakers[1].name: 'Ann' is named twice"),
    ({**SOURCE, "diarize": True, "known_speakers": [{"name": "SPEAKER_1", "audio": "x"}]},
     "known_speakers[0].name: looks like an anonymous label; choose another name"),
    # in any case or spacing a name could read as a generated label on a subtitle line
    ({**SOURCE, "diarize": True, "known_speakers": [{"name": "speaker 00", "audio": "x"}]},
     "known_speakers[0].name: looks like an anonymous label; choose another name"),
    ({**SOURCE, "diarize": True, "known_speakers": [{"name": "Channel-2", "audio": "x"}]},
     "known_speakers[0].name: looks like an anonymous label; choose another name"),
    ({**SOURCE, "diarize": True, "known_speakers": [{"name": "SPEAKER_00 ", "audio": "x"}]},
     "known_speakers[0].name: looks like an anonymous label; choose another name"),
    ({**SOURCE, "diarize": True, "known_speakers": [{"name": "Ann ", "audio": "x"}]}, "known_speakers[0].name: may not end with a space"),
    ({**SOURCE, "diarize": True, "known_speakers": [{"name": "<b>", "audio": "x"}]},
     "known_speakers[0].name: may hold only letters, digits, spaces and . ' - (it is written into subtitles)"),
])
def test_validator_and_speaker_refusals_say_why_in_words(job_input, error):
    assert str(refused(job_input, Settings(model="large-v3", batch_size=8, streaming=True))) == error


@pytest.mark.parametrize("speakers", [{"num_speakers": 2}, {"min_speakers": 1}, {"max_speakers": 4}, {"min_speakers": 2, "max_speakers": 2}])
def test_speaker_counts_that_agree_are_accepted(speakers):
    assert parse_request({**SOURCE, "diarize": True, **speakers}, SETTINGS).diarize
