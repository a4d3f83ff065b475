"""The batched pipeline: audio decoded while it is transcribed, VAD on the samples as they
arrive, windows sent as soon as they are final. Each streamed stage must give exactly what the
whole-file stage gives, on real audio."""

from __future__ import annotations

import threading

import faster_whisper.vad as fw_vad
import numpy as np
import pytest

from worker.audio.decode import DecodingAudio, decode_audio
from worker.decoding.whisper.vad import SpanTracker, StreamingSpeech, speech_spans
from worker.decoding.scheduler import BatchScheduler

OPTION_SETS = [None, {"min_silence_duration_ms": 160}, {"max_speech_duration_s": 5, "speech_pad_ms": 200},
               {"threshold": 0.3, "min_speech_duration_ms": 500, "min_silence_duration_ms": 50}]


@pytest.mark.parametrize("options", OPTION_SETS)
def test_span_tracker_equals_the_library_on_random_probabilities(monkeypatch, options):
    """The library's span rules, re-run incrementally, on inputs chosen to hit every branch:
    runs of speech and silence of random lengths, and noise around the thresholds."""
    rng = np.random.default_rng(1234)
    vad = fw_vad.VadOptions(**options) if options else fw_vad.VadOptions()
    for _ in range(40):
        runs = rng.integers(1, 400, size=30)
        levels = np.concatenate([np.full(n, rng.uniform(0.0, 1.0)) for n in runs])
        probabilities = np.clip(levels + rng.normal(0, 0.15, levels.size), 0, 1).astype(np.float32)
        length = int(probabilities.size * 512 - rng.integers(1, 511))
        monkeypatch.setattr(fw_vad, "get_vad_model", lambda: (lambda padded: probabilities[: padded.size // 512]))
        library = [(s["start"], s["end"]) for s in fw_vad.get_speech_timestamps(np.zeros(length, np.float32), vad)]
        tracker = SpanTracker(vad)
        cut = int(rng.integers(1, probabilities.size))
        tracker.feed(probabilities[:cut])
        early = list(tracker.spans)
        tracker.feed(probabilities[cut:])
        assert tracker.finish(length) == library
        assert library[:len(early)] == early  # what it gave out early never changed


@pytest.mark.parametrize("options", OPTION_SETS[:3])
def test_streaming_vad_finds_the_spans_of_the_whole_file_vad(data_dir, options):
    path = str(data_dir / "long" / "columbia.wma")
    speech = StreamingSpeech(options)
    audio = DecodingAudio(path, 3600)
    while not audio.finished:
        speech.feed(audio)
    assert speech.finish(audio) == speech_spans(decode_audio(path, 3600), options)


def _words(transcript):
    return [(s.start, s.end, s.text, [(w.word, w.start, w.end) for w in s.words or []]) for s in transcript.segments]


def test_a_job_on_audio_still_decoding_equals_the_job_on_the_decoded_file(tiny_service, data_dir):
    from worker.request.schema import parse_request

    path = str(data_dir / "long" / "columbia.wma")
    request = parse_request({"audio": path, "word_timestamps": True, "batch_size": 4}, tiny_service.settings)
    whole = tiny_service.engine.transcribe(decode_audio(path, 3600), request)
    streamed = tiny_service.engine.transcribe(DecodingAudio(path, 3600), request)
    assert _words(streamed) == _words(whole)
    assert len(whole.segments) > 10 and streamed.duration == whole.duration
    assert streamed.duration_after_vad == whole.duration_after_vad


def test_an_urgent_request_goes_first_and_jobs_share_batches_round_robin():
    batches = []
    gate = threading.Event()

    def backend(windows, context):
        gate.wait(5)
        batches.append(list(windows))
        return windows

    scheduler = BatchScheduler(backend, max_batch_size=4, max_wait_s=0.0)
    try:
        never = threading.Event()
        blocker = scheduler.submit("k", ["x"], None, "blocker", never)  # holds the device while the rest queue
        import time

        time.sleep(0.2)
        long_job = [scheduler.submit("k", [f"L{i}a", f"L{i}b"], None, "long", never) for i in range(3)]
        short = scheduler.submit("k", ["S"], None, "short", never)
        tail = scheduler.submit("k", ["T"], None, "long", never, urgent=True)
        gate.set()
        for request in [blocker, *long_job, short, tail]:
            scheduler.wait(request)
    finally:
        scheduler.close()
    assert batches[0] == ["x"]
    assert "T" in batches[1] and "S" in batches[1]  # the urgent tail first, the short job not starved
    assert sorted(batches[1]) == ["L0a", "L0b", "S", "T"]  # the long job's first request next, in row order
    assert sorted(batches[2]) == ["L1a", "L1b", "L2a", "L2b"] and len(batches) == 3
