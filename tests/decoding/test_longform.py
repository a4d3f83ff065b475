"""Long-form decoding judged by the audio: human references, words kept against sequential
decoding, segment lengths, non-speech; plus the rules of the batched loop one by one (segments,
windows, the batching key) and faster-whisper's parts re-run in bounded memory."""

import dataclasses

import numpy as np
import pytest

from benchmarks.longform import join_clips, words
from helpers import DATA, references, wer
from worker.audio.decode import SAMPLE_RATE, decode_audio
from worker.config import Settings
from worker.decoding.batched import BatchedJob
from worker.decoding.segments import is_hallucination, is_silent, split_window
from worker.decoding.whisper import vad
from worker.decoding.whisper.device import WindowOutput
from worker.decoding.whisper.features import log_mel
from worker.decoding.whisper.options import batched_options, batching_key, tokenizer_for
from worker.decoding.windows import MAX_WINDOW_S, Window, plan_windows, quietest_point
from worker.request.schema import parse_request

SR = SAMPLE_RATE
TS = 50363  # tiny.en's <|0.00|>
EOT = 50256


def request(**fields):
    return parse_request({"audio": "x", **fields}, Settings(batch_size=8))


def ts(seconds):
    return TS + int(round(seconds / 0.02))


# -- segment rules ------------------------------------------------------------------------

def test_text_after_the_last_timestamp_becomes_a_segment_to_the_window_end():
    tokens = [ts(0), 10, 11, ts(4.0), ts(4.0), 12, 13]  # the second sentence has no closing timestamp
    pieces = split_window(tokens, TS, EOT, offset=100.0, duration=12.5)
    assert [(p["start"], p["end"]) for p in pieces] == [(100.0, 104.0), (104.0, 112.5)]
    assert [t for p in pieces for t in p["tokens"] if t < EOT] == [10, 11, 12, 13]


def test_every_text_token_is_kept_exactly_once_whatever_the_timestamps():
    rng = np.random.default_rng(1)
    for _ in range(300):
        tokens = [int(t) for t in rng.choice([ts(rng.uniform(0, 40)), 5, 6, 7, EOT + 3], size=rng.integers(0, 30))]
        pieces = split_window(tokens, TS, EOT, offset=7.0, duration=25.0)
        assert [t for p in pieces for t in p["tokens"] if t < EOT] == [t for t in tokens if t < EOT]
        for piece in pieces:  # inside the window, never backwards
            assert 7.0 <= piece["start"] <= piece["end"] <= 32.0
        assert all(b["start"] >= a["end"] for a, b in zip(pieces, pieces[1:]))


def test_no_timestamps_gives_one_segment_for_the_window():
    pieces = split_window([10, 11, 12], TS, EOT, offset=30.0, duration=20.0)
    assert [(p["start"], p["end"]) for p in pieces] == [(30.0, 50.0)]


def test_silence_and_hallucination_rules():
    quiet = WindowOutput(tokens=[], avg_logprob=-1.5, no_speech_prob=0.9)
    speech = WindowOutput(tokens=[], avg_logprob=-0.2, no_speech_prob=0.9)
    assert is_silent(quiet, 0.6, -1.0) and not is_silent(speech, 0.6, -1.0)
    assert not is_silent(quiet, None, -1.0)
    loop = " I'm going to take a look at how" * 20
    assert is_hallucination(speech, loop, 2.4, 0.6)
    assert not is_hallucination(speech, "An ordinary sentence about a shuttle.", 2.4, 0.6)
    assert not is_hallucination(dataclasses.replace(speech, no_speech_prob=0.1), loop, 2.4, 0.6)


# -- windows ------------------------------------------------------------------------------

def test_windows_cover_every_span_within_30_seconds():
    rng = np.random.default_rng(2)
    audio = rng.standard_normal(600 * SR).astype(np.float32) * 0.1
    for _ in range(50):
        edges = np.sort(rng.choice(600 * SR, size=2 * rng.integers(1, 30), replace=False))
        spans = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
        windows = plan_windows(audio, spans)
        assert all(0 < w.end - w.start <= MAX_WINDOW_S * SR for w in windows)
        assert all(b.start >= a.end for a, b in zip(windows, windows[1:]))
        covered = np.zeros(600 * SR // 160 + 1, bool)
        for w in windows:
            covered[w.start // 160:w.end // 160] = True
        for a, b in spans:
            assert covered[a // 160 + 1:b // 160 - 1].all()


def test_a_long_span_is_cut_at_its_quietest_moment():
    rng = np.random.default_rng(3)
    audio = rng.standard_normal(70 * SR).astype(np.float32) * 0.3
    audio[int(26.0 * SR):int(26.2 * SR)] *= 0.001  # the one pause near the 30 s limit
    windows = plan_windows(audio, [(0, audio.size)])
    assert abs(windows[0].end / SR - 26.1) < 0.1
    assert windows[-1].end == audio.size
    assert quietest_point(audio, int(20 * SR), int(30 * SR)) == windows[0].end


def test_a_pause_over_two_seconds_starts_a_new_window():
    audio = np.zeros(40 * SR, np.float32)
    windows = plan_windows(audio, [(0, 5 * SR), (6 * SR, 10 * SR), (13 * SR, 20 * SR)])
    assert windows == [Window(0, 10 * SR), Window(13 * SR, 20 * SR)]


def test_the_batching_key_changes_with_every_option_field(tiny_service):
    whisper = tiny_service.engine.model.whisper
    tokenizer = tokenizer_for(whisper, "transcribe", "en")
    options = batched_options(tokenizer, request().decoding_options())
    key = batching_key(tokenizer, options)
    for item in dataclasses.fields(options):
        value = getattr(options, item.name)
        changed = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v + 0.5, str: lambda v: v + "x",
                   list: lambda v: list(v) + [1], tuple: lambda v: tuple(v) + (1,), type(None): lambda v: "set"}[type(value)](value)
        assert batching_key(tokenizer, dataclasses.replace(options, **{item.name: changed})) != key, item.name
    assert batching_key(tokenizer_for(whisper, "transcribe", "en"), options) == key


# -- faster-whisper's parts, re-run in bounded memory: the same numbers ------------------------

def test_block_features_equal_the_whole_file_features(tiny_service):
    extractor = tiny_service.engine.model.whisper.feature_extractor
    samples = decode_audio(str(DATA / "long" / "columbia.wma"), 600)  # 199 s: four blocks, a ragged end
    whole = extractor(samples)
    blocks = log_mel(extractor, samples)
    assert blocks.shape == whole.shape
    assert np.abs(blocks - whole).max() < 1e-4


def test_streaming_vad_equals_faster_whispers_vad(monkeypatch):
    import faster_whisper.vad as fw_vad

    monkeypatch.setattr(vad, "VAD_BLOCK_WINDOWS", 1000)
    samples = decode_audio(str(DATA / "long" / "columbia.wma"), 600)
    padded = np.pad(samples, (0, 512 - samples.size % 512))  # as get_speech_timestamps pads
    vad.install_streaming_vad()
    runner = fw_vad.get_vad_model()
    assert isinstance(runner, vad.StreamingSilero)
    vad.reset_vad_clock()
    streamed = runner(padded)
    assert padded.size // 512 > 2 * vad.VAD_BLOCK_WINDOWS  # several blocks, state carried over
    assert np.allclose(streamed, runner._model(padded), atol=1e-6)
    assert vad.vad_seconds() > 0


# -- real long audio ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def ljspeech_long():
    return join_clips(DATA / "ljspeech", "LJ")


def test_default_request_keeps_the_words_on_long_english_audio(tiny_service, ljspeech_long):
    samples, reference, _ = ljspeech_long  # 16 clips, 1.9 min
    engine = tiny_service.engine
    sequential = engine.transcribe(samples, request(batch_size=1))
    default = engine.transcribe(samples, request())
    assert words(default.text, "en") >= 0.98 * words(sequential.text, "en")
    assert wer(reference, default.text) <= wer(reference, sequential.text) + 0.01
    assert wer(reference, default.text) < 0.06
    assert max(s.end - s.start for s in default.segments) <= 30.0
    assert all(b.start >= a.start for a, b in zip(default.segments, default.segments[1:]))


def test_sentences_faster_whisper_drops_at_window_ends_are_kept(tiny_service):
    samples = decode_audio(str(DATA / "long" / "columbia.wma"), 600)
    engine = tiny_service.engine
    for fields in ({}, {"word_timestamps": True}):
        text = " ".join(engine.transcribe(samples, request(**fields)).text.lower().replace(",", "").split())
        for sentence in ("board was a crew of seven", "you're not alone", "in the skies today we saw destruction and tragedy",
                         "the cause in which they died will continue"):
            assert sentence in text, (fields, sentence)
    sequential = engine.transcribe(samples, request(batch_size=1))
    default = engine.transcribe(samples, request())
    assert words(default.text, "en") >= 0.98 * words(sequential.text, "en")


def test_word_timestamps_lie_in_their_segments_and_in_order(tiny_service):
    samples = decode_audio(str(DATA / "long" / "columbia.wma"), 600)
    transcript = tiny_service.engine.transcribe(samples, request(word_timestamps=True))
    all_words = transcript.words
    assert len(all_words) > 300
    assert all(b.start >= a.start - 0.01 for a, b in zip(all_words, all_words[1:]))
    for segment in transcript.segments:
        assert segment.words and segment.words[0].start >= segment.start - 0.01 and segment.words[-1].end <= segment.end + 0.01


def test_continuous_speech_cut_by_windows_loses_and_doubles_no_words(tiny_service):
    """No pauses at all between clips: windows must cut inside speech, at its quietest moments."""
    refs = references(DATA / "ljspeech")
    names = sorted(refs)[:12]
    samples = np.concatenate([decode_audio(str(DATA / "ljspeech" / n), 100) for n in names])
    reference = " ".join(refs[n] for n in names)
    for fields in ({}, {"vad_filter": False}):
        transcript = tiny_service.engine.transcribe(samples, request(**fields))
        assert samples.size / SR > 70
        assert wer(reference, transcript.text) < 0.08, fields
        assert abs(words(transcript.text, "en") - words(reference, "en")) <= 0.03 * words(reference, "en"), fields


def test_german_long_file_keeps_its_sentences(base_service):
    samples, reference, _ = join_clips(DATA / "fleurs", "fleurs-de-")
    engine = base_service.engine
    sequential = engine.transcribe(samples, request(batch_size=1))
    default = engine.transcribe(samples, request())
    assert default.language == "de"
    assert words(default.text, "de") >= 0.95 * words(sequential.text, "de")
    assert wer(reference, default.text, english=False) < 0.25


# -- non-speech in, no text out ------------------------------------------------------------

def noises():
    rng = np.random.default_rng(0)
    t = np.arange(45 * SR) / SR
    brown = np.cumsum(rng.standard_normal(t.size))
    brown = (brown - brown.mean()) / np.abs(brown - brown.mean()).max() * 0.3
    return {
        "white": rng.standard_normal(t.size) * 0.1,
        "brown": brown,
        "hum": 0.05 * np.sin(2 * np.pi * 50 * t) + 0.01 * rng.standard_normal(t.size),
        "tones": 0.2 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0) + 0.15 * np.sin(2 * np.pi * 330 * t + 3 * np.sin(2 * np.pi * 2 * t)),
    }


@pytest.mark.parametrize("name", ["white", "brown", "hum", "tones"])
def test_noise_and_music_give_no_text(tiny_service, name):
    samples = noises()[name].astype(np.float32)
    for fields in ({}, {"vad_filter": False}, {"batch_size": 1}):
        transcript = tiny_service.engine.transcribe(samples, request(**fields))
        assert transcript.text == "", (name, fields, transcript.text[:200])


def test_a_long_silence_inside_speech_stays_empty(tiny_service, data_dir):
    rng = np.random.default_rng(4)
    jfk = decode_audio(str(data_dir / "jfk.flac"), 100)
    gap = (0.001 * rng.standard_normal(20 * SR)).astype(np.float32)
    samples = np.concatenate([jfk, gap, jfk])
    for fields in ({}, {"vad_filter": False}, {"word_timestamps": True}):
        transcript = tiny_service.engine.transcribe(samples, request(**fields))
        assert transcript.text.lower().count("fellow americans") == 2, fields
        inside = [s for s in transcript.segments if s.start > 12.0 and s.end < 30.0]
        assert inside == [], (fields, inside)


def test_a_looping_window_falls_back_to_higher_temperatures(tiny_service, monkeypatch):
    """A window whose text loops is decoded again at the next temperature, in one batch per round."""
    seen = []

    def run(key, inputs, context):
        tokenizer, options = context
        temperature = options.temperatures[0]
        seen.append((temperature, len(inputs)))
        loop = tokenizer.encode(" I don't know what I'm going to do,") * 30
        fine = tokenizer.encode(" A sentence that says something once.")
        outputs = []
        for index, _ in enumerate(inputs):
            tokens = loop if (index == 0 and temperature < 0.4) else fine
            outputs.append(WindowOutput(tokens=[TS] + tokens, avg_logprob=-0.3, no_speech_prob=0.1))
        return outputs

    samples = np.concatenate([decode_audio(str(DATA / "jfk.flac"), 100)] * 3)
    job = BatchedJob(tiny_service.engine.model.whisper, samples, request(vad_filter=False).decoding_options(), run, None)
    segments = list(job.segments())
    assert seen == [(0.0, 2), (0.2, 1), (0.4, 1)]  # text runs to each window's end: no tails
    assert "know what" not in " ".join(s.text for s in segments)
    assert segments[0].temperature == 0.4


def test_short_windows_always_make_progress():
    rng = np.random.default_rng(5)
    audio = rng.standard_normal(40 * SR).astype(np.float32)
    for longest in (1.0, 2.5, 7.0):
        windows = plan_windows(audio, [(0, audio.size)], max_window_s=longest)
        assert windows[0].start == 0 and windows[-1].end == audio.size
        assert all(0 < w.end - w.start <= longest * SR for w in windows)
        assert all(b.start == a.end for a, b in zip(windows, windows[1:]))
