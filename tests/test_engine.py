"""The engine on real weights and real speech: accurate, multilingual, batched across jobs; its
sequential mode equal to faster-whisper's own (plumbing; the long-form tests judge the words)."""

import threading

import numpy as np
import pytest

from helpers import references, wer
from worker.audio import decode_audio
from worker.config import Settings
from worker.errors import RequestError
from worker.request import parse_request
from worker.scheduler import Cancelled


def request(**fields):
    fields.setdefault("audio", "x")
    return parse_request(fields, Settings(batch_size=8))


def audio(data_dir, name):
    return decode_audio(str(data_dir / name), 3600)


def as_dicts(fw_segments):
    return [(round(s.start, 3), round(s.end, 3), s.text, s.tokens, [(w.word, w.start, w.end) for w in s.words or []]) for s in fw_segments]


def ours(transcript):
    return [(round(s.start, 3), round(s.end, 3), s.text, s.tokens, [(w.word, w.start, w.end) for w in s.words or []]) for s in transcript.segments]


def test_sequential_equals_faster_whisper_directly(tiny_service, data_dir):
    samples = audio(data_dir, "long/silero_test.wav")
    req = request(batch_size=1, word_timestamps=True)
    transcript = tiny_service.engine.transcribe(samples, req)
    segments, _ = tiny_service.engine.model.whisper.transcribe(samples, **req.decoding_options())
    assert ours(transcript) == as_dicts(segments)
    assert transcript.timings.inference > 0 and transcript.timings.vad > 0


@pytest.mark.parametrize("batch_size", [1, 8])
def test_ljspeech_word_error_rate(tiny_service, data_dir, batch_size):
    refs = references(data_dir / "ljspeech")
    errors = [wer(ref, tiny_service.engine.transcribe(audio(data_dir, f"ljspeech/{name}"), request(batch_size=batch_size)).text)
              for name, ref in list(refs.items())[:6]]
    assert np.mean(errors) < 0.12, errors


def test_jfk_transcript_matches_reference(tiny_service, data_dir):
    reference = references(data_dir)["jfk.flac"]
    transcript = tiny_service.engine.transcribe(audio(data_dir, "jfk.flac"), request(batch_size=1))
    assert wer(reference, transcript.text) < 0.1
    assert transcript.language == "en"


def test_english_only_model_refuses_other_languages(tiny_service):
    for fields, field in [({"language": "de"}, "language"), ({"task": "translate"}, "task"), ({"multilingual": True}, "multilingual")]:
        with pytest.raises(RequestError) as info:
            tiny_service.engine.check(request(**fields))
        assert info.value.field == field


@pytest.mark.parametrize("lang", ["de", "es", "fr", "pt"])
def test_base_detects_the_language_and_transcribes_it(base_service, data_dir, lang):
    refs = references(data_dir / "fleurs")
    name = f"fleurs-{lang}-000.ogg"
    transcript = base_service.engine.transcribe(audio(data_dir, f"fleurs/{name}"), request(batch_size=1))
    assert transcript.language == lang
    assert transcript.language_probability > 0.5
    assert wer(refs[name], transcript.text, english=False) < 0.6


def test_base_translates_german_to_english(base_service, data_dir):
    samples = audio(data_dir, "fleurs/fleurs-de-000.ogg")  # "... Hongkong ... Kowloon ..."
    translated = base_service.engine.transcribe(samples, request(batch_size=1, task="translate", language="de"))
    # Reference meaning: "For the best views of Hong Kong, leave the island and go to Kowloon opposite."
    assert "hong kong" in translated.text.lower() and "island" in translated.text.lower(), translated.text
    assert translated.text != base_service.engine.transcribe(samples, request(batch_size=1, language="de")).text


def test_multilingual_flag_follows_the_language_change(base_service, data_dir):
    samples = audio(data_dir, "multilingual.mp3")  # English, then German
    transcript = base_service.engine.transcribe(samples, request(batch_size=1, multilingual=True))
    text = transcript.text.lower()
    assert "permission" in text and ("erlaubnis" in text or "software" in text)


def test_concurrent_jobs_equal_the_same_jobs_alone(tiny_service, data_dir):
    names = ["long/silero_test.wav", "jfk.flac", "ljspeech/LJ001-0001.wav", "harvard/spk2_snt3.wav"]
    samples = [audio(data_dir, n) for n in names]
    req = request(batch_size=4, word_timestamps=True)
    alone = [ours(tiny_service.engine.transcribe(s, req)) for s in samples]
    before = tiny_service.engine.scheduler.batches_run
    together = [None] * len(samples)

    def run(i):
        together[i] = ours(tiny_service.engine.transcribe(samples[i], req, job_id=f"job{i}"))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(samples))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone
    assert tiny_service.engine.scheduler.batches_run > before


def test_cancelled_job_stops_and_its_windows_are_not_computed(tiny_service, data_dir):
    samples = audio(data_dir, "long/columbia.wma")
    cancelled = threading.Event()
    cancelled.set()
    before = tiny_service.engine.scheduler.batches_run
    with pytest.raises(Cancelled):
        tiny_service.engine.transcribe(samples, request(batch_size=4), cancelled=cancelled)
    assert tiny_service.engine.scheduler.batches_run == before


def test_batched_without_vad_decodes_the_whole_file(tiny_service, data_dir):
    samples = audio(data_dir, "long/silero_test.wav")  # 60 s: over faster-whisper's 30 s limit without VAD
    transcript = tiny_service.engine.transcribe(samples, request(batch_size=4, vad_filter=False))
    sequential = tiny_service.engine.transcribe(samples, request(batch_size=1, vad_filter=False))
    assert transcript.duration_after_vad == transcript.duration
    assert transcript.segments[-1].end > 50
    assert max(s.end - s.start for s in transcript.segments) <= 30
    assert len(transcript.text.split()) >= 0.95 * len(sequential.text.split())


@pytest.mark.parametrize("ids", [[51864], [2**31], [10**30], [-2], [50000, 51865]])
def test_token_ids_outside_the_vocabulary_are_refused_before_ctranslate2(tiny_service, ids):
    with pytest.raises(RequestError) as info:
        tiny_service.engine.check(request(suppress_tokens=ids))
    assert info.value.field == "suppress_tokens"
    tiny_service.engine.check(request(suppress_tokens=[-1, 0, 51863]))  # the edges of the vocabulary are fine


def test_prompt_and_hotwords_that_overflow_the_decoder_are_refused(tiny_service, data_dir):
    words = " ".join(["shuttle"] * 150)  # within the character limit, about 150 tokens each
    with pytest.raises(RequestError) as info:
        tiny_service.engine.check(request(initial_prompt=words, hotwords=words))
    assert info.value.field == "initial_prompt"
    samples = audio(data_dir, "jfk.flac")
    for fields in ({"initial_prompt": words}, {"hotwords": words}, {"batch_size": 1, "initial_prompt": words}):
        assert "country" in tiny_service.engine.transcribe(samples, request(**fields)).text
