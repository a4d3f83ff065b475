"""The engine on real weights and real speech: accurate, multilingual, batched across jobs; its
sequential mode equal to faster-whisper's own (plumbing; the long-form tests judge the words)."""

import dataclasses
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import record_sampling, references, wer
from worker.audio.decode import decode_audio
from worker.config import Settings
from worker.decoding.engine import Engine, model_backend
from worker.decoding.whisper import sequential
from worker.decoding.whisper.vad import speech_spans
from worker.errors import Cancelled, RequestError
from worker.request.schema import DECODING_FIELDS, parse_request


def request(**fields):
    fields.setdefault("audio", "x")
    return parse_request(fields, Settings(batch_size=8))


def audio(data_dir, name):
    return decode_audio(str(data_dir / name), 3600)


def as_dicts(fw_segments):
    return [(round(s.start, 3), round(s.end, 3), s.text, s.tokens, [(w.word, w.start, w.end) for w in s.words or []]) for s in fw_segments]


def ours(transcript):
    return [(round(s.start, 3), round(s.end, 3), s.text, s.tokens, [(w.word, w.start, w.end) for w in s.words or []]) for s in transcript.segments]


def test_sequential_equals_faster_whisper_directly(tiny_service, data_dir, monkeypatch):
    """Plumbing: the same segments, tokens and words as the library's; word times are compared
    before the worker refines them against the audio (worker.decoding.edges moves word edges at
    pauses onto the speech, by design away from the library's; tests/decoding/test_edges.py and
    `python -m benchmarks timing` judge those against the audio), and the text after it."""
    samples = audio(data_dir, "long/silero_test.wav")
    req = request(batch_size=1, word_timestamps=True)
    refined = tiny_service.engine.transcribe(samples, req)
    monkeypatch.setattr("worker.decoding.engine.EdgeRefiner", lambda read: lambda segment, following: segment)
    transcript = tiny_service.engine.transcribe(samples, req)
    segments, _ = tiny_service.engine.model.whisper.transcribe(samples, **req.decoding_options())
    library = as_dicts(segments)
    assert ours(transcript) == library
    assert [(s.text, s.tokens, [w.word for w in s.words]) for s in refined.segments] == [(s[2], s[3], [w[0] for w in s[4]]) for s in library]
    assert transcript.timings.inference > 0 and transcript.timings.vad > 0


@dataclasses.dataclass
class _Info:
    duration: float
    duration_after_vad: float


def test_sequential_decoding_hands_faster_whisper_every_decoding_option(monkeypatch):
    """faster-whisper's own transcribe() gets each decoding option of the request under its own
    name, as the request holds it, and no VAD of its own (the worker's streamed VAD ran before)."""
    given = {}

    def transcribe(model, audio, **options):
        given.update(options)
        return iter([]), _Info(0.0, 0.0)

    monkeypatch.setattr(sequential.WhisperModel, "transcribe", transcribe)
    whisper = SimpleNamespace(feature_extractor=object())
    for fields in ({}, {"word_timestamps": True, "hotwords": "ComfyUI", "temperature": [0.0, 0.5], "suppress_tokens": [],
                        "vad_parameters": {"threshold": 0.4}, "condition_on_previous_text": False, "language": "en"}):
        req = request(batch_size=1, **fields)
        given.clear()
        segments, info = sequential.transcribe_sequential(whisper, np.zeros(16000, np.float32), req.decoding_options())
        assert list(segments) == [] and (info.duration, info.duration_after_vad) == (1.0, 0.0)  # no speech in silence
        assert given == {**{name: getattr(req, name) for name in DECODING_FIELDS}, "vad_filter": False}


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


GERMAN_HALF = ("verwenden", "veröffentlichen", "verteilen", "bedingungen")  # words only the German reading has


def test_multilingual_flag_transcribes_each_language_in_its_own(base_service, data_dir):
    samples = audio(data_dir, "multilingual.mp3")  # the MIT licence in English, then in German
    text = base_service.engine.transcribe(samples, request(multilingual=True)).text.lower()
    assert "permission" in text and "software" in text  # the English half
    assert sum(word in text for word in GERMAN_HALF) >= 3, text[-400:]  # the German half, in German


@pytest.mark.xfail(strict=True, reason="faster-whisper 1.2.1's sequential multilingual mode renders the German half in English")
def test_sequential_multilingual_keeps_the_german_half_german(base_service, data_dir):
    text = base_service.engine.transcribe(audio(data_dir, "multilingual.mp3"), request(batch_size=1, multilingual=True)).text.lower()
    assert sum(word in text for word in GERMAN_HALF) >= 3


@pytest.mark.parametrize("batch_size", [1, 4])
def test_hotwords_and_prompt_reach_the_decoder(tiny_service, data_dir, batch_size):
    samples = audio(data_dir, "hotwords.mp3")  # "... your comfy eye folder ...": the tool is ComfyUI
    engine = tiny_service.engine
    assert "ComfyUI" not in engine.transcribe(samples, request(batch_size=batch_size)).text
    for fields in ({"hotwords": "ComfyUI"}, {"initial_prompt": "ComfyUI"}):
        assert "ComfyUI" in engine.transcribe(samples, request(batch_size=batch_size, **fields)).text, fields


@pytest.mark.parametrize("batch_size", [1, 4])
def test_without_timestamps_gives_window_long_segments(tiny_service, data_dir, batch_size):
    samples = audio(data_dir, "long/columbia.wma")
    plain = tiny_service.engine.transcribe(samples, request(batch_size=batch_size, without_timestamps=True))
    timed = tiny_service.engine.transcribe(samples, request(batch_size=batch_size))
    assert len(plain.segments) < len(timed.segments) / 2
    assert max(s.end - s.start for s in plain.segments) <= 30.0 + 1e-6
    assert len(plain.text.split()) >= 0.9 * len(timed.text.split())


def test_hallucination_silence_threshold_runs_end_to_end(tiny_service, data_dir):
    """Speech on both sides of 15 s of silence is kept, and nothing is placed in the silence. Two
    different clips: the same clip twice reads as a loop (compression ratio over 2.4), so the
    library samples at temperature 1.0, and one draw in five lost a "fellow Americans"."""
    samples = np.concatenate([audio(data_dir, "jfk.flac"), np.zeros(16000 * 15, np.float32), audio(data_dir / "ljspeech", "LJ001-0003.wav")])
    transcript = tiny_service.engine.transcribe(samples, request(batch_size=1, word_timestamps=True, hallucination_silence_threshold=2.0))
    text = transcript.text.lower()
    assert "my fellow americans" in text and "chinese took impressions from wood blocks" in text
    assert [s for s in transcript.segments if s.end > 11.5 and s.start < 25.5] == []


@pytest.mark.samples
def test_the_sampling_guard_sees_decoding_above_temperature_zero_in_both_modes(tiny_service, data_dir, monkeypatch):
    """What conftest's guard relies on: greedy decoding records nothing, sampling is recorded in
    the batched and the sequential mode (the transcripts themselves are left unchecked: random)."""
    sampled = record_sampling(monkeypatch)
    samples = audio(data_dir, "jfk.flac")
    for fields in ({}, {"batch_size": 1}):
        tiny_service.engine.transcribe(samples, request(temperature=0.0, **fields))
    assert sampled == []
    for fields in ({}, {"batch_size": 1}):
        tiny_service.engine.transcribe(samples, request(temperature=0.7, **fields))
    assert sorted(set(sampled)) == ["batched at 0.7", "sequential at 0.7"]


def test_concurrent_jobs_with_different_options_never_share_a_batch(tiny_service, data_dir):
    samples = audio(data_dir, "hotwords.mp3")
    real = model_backend(tiny_service.engine.model.whisper)
    batches = []

    def recording(windows, context):
        batches.append((len(windows), context[1].hotwords, context[1].beam_size, tuple(context[0].sot_sequence)))
        return real(windows, context)

    engine = Engine(tiny_service.engine.model, tiny_service.settings, backend=recording)
    jobs = {"plain": {}, "hot": {"hotwords": "ComfyUI"}, "beam1": {"beam_size": 1}}
    results = {}
    threads = [threading.Thread(target=lambda n=n, f=f: results.update({n: engine.transcribe(samples, request(batch_size=4, **f), job_id=n).text}))
               for n, f in jobs.items()]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        engine.close()
    assert "ComfyUI" in results["hot"] and "ComfyUI" not in results["plain"] and "ComfyUI" not in results["beam1"]
    assert {(hot, beam) for _, hot, beam, _ in batches} == {(None, 5), ("ComfyUI", 5), (None, 1)}
    assert all(size == 1 for size, *_ in batches)  # one window per job: no batch mixed two settings


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


def test_cancelling_mid_job_stops_its_remaining_windows(tiny_service, data_dir):
    samples = audio(data_dir, "long/columbia.wma")  # 10 windows; the first batch takes those sent first
    real = model_backend(tiny_service.engine.model.whisper)
    cancelled = threading.Event()
    calls = []

    def cancel_after_first(windows, context):
        calls.append(len(windows))
        cancelled.set()  # the client cancels while the first batch runs (later jobs are not cancelled by it)
        return real(windows, context)

    engine = Engine(tiny_service.engine.model, tiny_service.settings, backend=cancel_after_first)
    try:
        with pytest.raises(Cancelled):
            engine.transcribe(samples, request(batch_size=2), cancelled=cancelled)
        assert len(calls) == 1 and calls[0] < 10  # the first batch ran; none of the windows after it did
        assert len(engine.transcribe(samples, request(batch_size=2)).segments) > 10  # and the next job is served
    finally:
        engine.close()


def test_the_engine_finds_speech_spans_as_the_vad_does(tiny_service, data_dir):
    """The speech spans other stages ask the decoding stage for (a channel's speaker turns)."""
    samples = audio(data_dir, "jfk.flac")
    parameters = {"min_silence_duration_ms": 300, "speech_pad_ms": 0}
    spans = tiny_service.engine.speech_spans(samples, parameters)
    assert len(spans) > 1 and spans == speech_spans(samples, parameters)
    assert tiny_service.engine.speech_spans(samples) == speech_spans(samples, None) != spans


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
