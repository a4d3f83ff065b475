"""Glimpses (a live turn's partial text): a shortened encoder input, one greedy pass, a bound on
the tokens; on real speech with the real multilingual base model, beside the whole window's
decode of the same clips. The encoder length, the features, the options and the text are also
checked without a model (a stand-in for WhisperModel with faster-whisper's own feature extractor
and Tokenizer over a byte-level vocabulary): those tests take milliseconds."""

from __future__ import annotations

import dataclasses
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from faster_whisper.feature_extractor import FeatureExtractor
from faster_whisper.tokenizer import _LANGUAGE_CODES

from helpers import DATA, references, wer
from worker.audio.decode import decode_audio
from worker.decoding.whisper import device, glimpse
from worker.decoding.whisper.features import window_features
from worker.decoding.whisper.options import batched_options, tokenizer_for
from worker.errors import Cancelled
from worker.request.schema import TranscriptionRequest

CLIPS = [(folder, name, text) for folder in ("ljspeech", "harvard") for name, text in sorted(references(DATA / folder).items())]


def test_the_encoder_reads_the_audio_and_three_seconds_more_in_whole_seconds_never_past_a_window():
    assert glimpse.glimpse_frames(0) == 300
    assert glimpse.glimpse_frames(190) == 500  # 1.9 s of audio: 5 s
    assert glimpse.glimpse_frames(200) == 500 and glimpse.glimpse_frames(201) == 600
    assert glimpse.glimpse_frames(2700) == 3000 and glimpse.glimpse_frames(3000) == 3000


class ByteVocabulary:
    """What faster-whisper's Tokenizer reads of a `tokenizers.Tokenizer`: text as its UTF-8 bytes
    (ids 0-255), and Whisper's special tokens after them, in a multilingual model's order."""

    EOT = 50257
    SPECIAL = {"<|endoftext|>": EOT, "<|startoftranscript|>": EOT + 1,
               **{f"<|{code}|>": 50259 + index for index, code in enumerate(_LANGUAGE_CODES)},
               "<|translate|>": 50358, "<|transcribe|>": 50359, "<|startoflm|>": 50360, "<|startofprev|>": 50361,
               "<|nospeech|>": 50362, "<|notimestamps|>": 50363}

    def token_to_id(self, token):
        return self.SPECIAL.get(token)

    def encode(self, text, add_special_tokens=True):
        return SimpleNamespace(ids=list(text.encode("utf-8")))

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="replace")


def stand_in(multilingual: bool):
    """What glimpse.py reads of a WhisperModel, without a model."""
    return SimpleNamespace(feature_extractor=FeatureExtractor(), hf_tokenizer=ByteVocabulary(),
                           model=SimpleNamespace(is_multilingual=multilingual))


def noise(seconds: float) -> np.ndarray:
    return (np.random.default_rng(1).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)


def test_a_glimpse_window_is_the_window_features_cut_to_the_glimpse_length_and_the_last_30_seconds_of_more():
    whisper = stand_in(multilingual=True)
    short = noise(1.9)
    window, whole = glimpse.glimpse_window(whisper, short), window_features(whisper, short)
    assert window.content_frames == whole.content_frames == 190
    assert window.features.shape == (80, 500) and np.array_equal(window.features, whole.features[:, :500])
    assert window.features.flags.c_contiguous  # the device stacks and copies the windows as they are
    long = noise(36.0)
    window = glimpse.glimpse_window(whisper, long)
    assert window.content_frames == 3000 and window.features.shape == (80, 3000)
    assert np.array_equal(window.features, window_features(whisper, long[-30 * 16000:]).features)  # the last 30 s, to the sample
    assert not np.array_equal(window.features, window_features(whisper, long[-30 * 16000 - 160:]).features)


def decoding(**fields):
    return TranscriptionRequest.model_validate(fields).decoding_options()


GREEDY = {"beam_size": 1, "best_of": 1, "patience": 1.0, "temperatures": [0.0], "without_timestamps": True, "word_timestamps": False}


def test_glimpse_options_are_one_greedy_pass_without_timestamps_bounded_and_the_requests_otherwise():
    whisper = stand_in(multilingual=True)
    asked = decoding(language="de", beam_size=3, best_of=2, patience=2.0, temperature=[0.2, 0.4], word_timestamps=True,
                     initial_prompt="Kennedy", length_penalty=0.5, repetition_penalty=1.5)
    tokenizer, options = glimpse.glimpse_options(whisper, asked, 500)
    assert (tokenizer.language_code, tokenizer.task) == ("de", ByteVocabulary.SPECIAL["<|transcribe|>"])
    assert {name: getattr(options, name) for name in GREEDY} == GREEDY and not options.multilingual
    # 12 tokens a second of a 5 s encoder input, an int as CTranslate2's max_length must be
    assert options.max_new_tokens == 60 and isinstance(options.max_new_tokens, int)
    assert glimpse.glimpse_options(whisper, asked, 3000)[1].max_new_tokens == 360
    request = batched_options(tokenizer_for(whisper, "transcribe", "de"), asked)
    kept = [item.name for item in dataclasses.fields(options) if item.name not in {*GREEDY, "multilingual", "max_new_tokens"}]
    assert {name: getattr(options, name) for name in kept} == {name: getattr(request, name) for name in kept}
    assert options.initial_prompt == "Kennedy" and options.length_penalty == 0.5 and options.suppress_tokens
    translate, _ = glimpse.glimpse_options(whisper, decoding(language="de", task="translate"), 500)
    assert (translate.language_code, translate.task) == ("de", ByteVocabulary.SPECIAL["<|translate|>"])


def test_without_a_language_a_multilingual_glimpse_detects_it_and_an_english_only_one_reads_english():
    tokenizer, options = glimpse.glimpse_options(stand_in(multilingual=True), decoding(), 300)
    assert options.multilingual and tokenizer.language_code == "en"  # a placeholder: the device puts the detected language there
    assert {name: getattr(options, name) for name in GREEDY} == GREEDY and options.max_new_tokens == 36
    for language in (None, "en"):
        tokenizer, options = glimpse.glimpse_options(stand_in(multilingual=False), decoding(language=language), 300)
        assert not options.multilingual and tokenizer.language_code == "en" and tokenizer.sot_sequence == [ByteVocabulary.EOT + 1]


def test_a_glimpses_text_is_its_text_tokens_decoded_and_stripped():
    tokenizer = tokenizer_for(stand_in(multilingual=True), "transcribe", "en")
    tokens = list(" ask not what".encode()) + [tokenizer.eot, tokenizer.no_timestamps, tokenizer.timestamp_begin + 50]
    assert glimpse.glimpse_text(tokenizer, tokens) == "ask not what"
    assert glimpse.glimpse_text(tokenizer, [tokenizer.eot]) == ""


def test_glimpses_read_speech_as_the_whole_window_does(base_service):
    """All 26 LJ Speech and Harvard clips: the glimpses' WER within 2 points of the full decode's
    (the file endpoint's request), and cut mid-sentence (as a partial is) a glimpse never runs on
    (measured: 11.0 % against 11.4 %; with 1 s of padding instead of 3, a clip looped)."""
    service = base_service.service
    request = service.parse({"language": "en"}, "glimpse", uploaded=True)
    glimpse_errors = full_errors = 0.0
    for folder, name, text in CLIPS:
        samples = decode_audio(str(DATA / folder / name), 60)
        seen = service.engine.glimpse(samples, request)
        glimpse_errors += wer(text, seen)
        full_errors += wer(text, service.transcribe_samples(samples, request).text)
        cut = service.engine.glimpse(samples[: samples.size * 3 // 5], request)
        assert len(cut.split()) <= 0.6 * len(text.split()) * 1.5 + 3, (name, cut)
    assert glimpse_errors / len(CLIPS) <= full_errors / len(CLIPS) + 0.02, (glimpse_errors, full_errors)


def test_a_glimpse_generates_at_most_its_bound(base_service):
    whisper = base_service.service.engine.model.whisper
    request = base_service.service.parse({"language": "en"}, "glimpse", uploaded=True)
    window = glimpse.glimpse_window(whisper, decode_audio(str(DATA / "ljspeech" / "LJ001-0001.wav"), 60))
    tokenizer, options = glimpse.glimpse_options(whisper, request.decoding_options(), window.features.shape[-1])
    assert window.features.shape[-1] == glimpse.glimpse_frames(window.content_frames) < 3000
    assert options.max_new_tokens == glimpse.TOKENS_PER_SECOND * window.features.shape[-1] // 100
    assert options.beam_size == 1 and options.temperatures == [0.0] and options.without_timestamps and not options.word_timestamps
    full = device.run_windows(whisper, [window], tokenizer, options)[0].tokens
    assert len(full) > 20  # 9.7 s of speech
    bounded = device.run_windows(whisper, [window], tokenizer, dataclasses.replace(options, max_new_tokens=5))[0].tokens
    assert len(bounded) <= 5 and bounded == full[: len(bounded)]


@pytest.mark.parametrize("name, language", [("fleurs-de-000.ogg", "de"), ("fleurs-es-001.ogg", "es")])
def test_without_a_language_a_glimpse_is_read_in_the_language_it_hears(base_service, name, language):
    service = base_service.service
    samples = decode_audio(str(DATA / "fleurs" / name), 60)
    seen = service.engine.glimpse(samples, service.parse({}, "glimpse", uploaded=True))
    given = service.engine.glimpse(samples, service.parse({"language": language}, "glimpse", uploaded=True))
    text = references(DATA / "fleurs")[name]
    assert wer(text, seen, english=False) <= wer(text, given, english=False) + 0.05 and wer(text, seen, english=False) < 0.5, seen


def test_an_english_only_model_glimpses_and_a_cancelled_glimpse_stops(tiny_service):
    service = tiny_service.service
    samples = decode_audio(str(DATA / "jfk.flac"), 60)
    request = service.parse({}, "glimpse", uploaded=True)
    assert "ask not what your country can do for you" in service.engine.glimpse(samples, request).lower().replace(",", "")
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Cancelled):
        service.engine.glimpse(samples, request, "glimpse", cancelled)


def test_a_glimpse_reads_the_last_30_seconds_of_longer_audio(tiny_service):
    service = tiny_service.service
    jfk = decode_audio(str(DATA / "jfk.flac"), 60)
    long = np.concatenate([np.zeros(25 * 16000, dtype=np.float32), jfk])  # 36 s: jfk is its last 11 s
    window = glimpse.glimpse_window(service.engine.model.whisper, long)
    assert window.content_frames == 3000 and window.features.shape[-1] == 3000
    text = service.engine.glimpse(long, service.parse({}, "glimpse", uploaded=True)).lower()
    assert "your country" in text
