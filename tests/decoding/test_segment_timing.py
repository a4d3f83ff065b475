"""Segment times judged by the audio: a segment never starts before its speech, in every mode; a
request's max_speech_duration_s leaves batched windows (and so the words) as they are; a job
leaves nothing in its temp directories, its libraries' files included."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import DATA, ROOT, LocalServer, wer
from worker.audio.decode import SAMPLE_RATE, decode_audio
from worker.config import Settings
from worker.decoding.segments import start_at_speech
from worker.decoding.whisper.vad import SpeechOnsets
from worker.request.schema import parse_request
from worker.transcript import Segment, Word

SR = SAMPLE_RATE
JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
NOISE_S = 20.0  # faint noise before the sentence


def request(**fields):
    return parse_request({"audio": "x", **fields}, Settings(batch_size=8))


@pytest.fixture(scope="module")
def noise_then_speech():
    """20 s of noise at -50 dBFS (fixed seed), then LJ Speech "has never been surpassed." (1.8 s,
    which starts on its first word). Whisper stamps the sentence from the window's start: 0.0 s
    without VAD (the segment is said to start 20 s before its words), both modes; with word
    timing, its first word 0.56 s early."""
    noise = (0.003 * np.random.default_rng(0).standard_normal(int(NOISE_S * SR))).astype(np.float32)
    return np.concatenate([noise, decode_audio(str(DATA / "ljspeech" / "LJ001-0008.wav"), 100)])


MODES = [dict(batch_size=size, vad_filter=vad, word_timestamps=timed) for size in (8, 1) for vad in (False, True)
         for timed in (False, True)]


@pytest.mark.parametrize("fields", [dict(batch_size=size, word_timestamps=timed) for size in (8, 1) for timed in (False, True)],
                         ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_a_sentence_after_a_long_noise_is_stamped_where_it_is_spoken(tiny_service, fields):
    """Speech, 35 s of faint noise, the same sentence again, without VAD: sequential decoding
    stamped the second at 30.0-32.0 s (its window's start) while it is spoken from 36.8 s, a
    span with no speech in it to move its start to; it moves whole."""
    sentence = decode_audio(str(DATA / "ljspeech" / "LJ001-0008.wav"), 100)
    noise = (0.003 * np.random.default_rng(1).standard_normal(35 * SR)).astype(np.float32)
    audio = np.concatenate([sentence, noise, sentence])
    spoken = (sentence.size + noise.size) / SR
    transcript = tiny_service.engine.transcribe(audio, request(beam_size=1, vad_filter=False, **fields))
    second = [s for s in transcript.segments if s.end > sentence.size / SR + 1.0]
    assert second and "surpassed" in second[-1].text.lower()
    for segment in second:
        assert spoken - 0.5 <= segment.start <= segment.end <= audio.size / SR + 0.01, (fields, segment.start, segment.end)


@pytest.mark.parametrize("fields", MODES, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_a_segment_never_starts_before_its_speech(tiny_service, noise_then_speech, fields):
    transcript = tiny_service.engine.transcribe(noise_then_speech, request(beam_size=1, **fields))  # greedy: faster
    assert "never been surpassed" in transcript.text.lower()
    for segment in transcript.segments:
        assert NOISE_S - 0.5 <= segment.start <= segment.end, (fields, segment.start, segment.text)
        if fields["word_timestamps"]:
            assert segment.start <= segment.words[0].start and segment.words[0].start >= NOISE_S - 0.5


class Onsets:
    """SpeechOnsets' interface, with speech from a known sample on."""

    def __init__(self, speech_from: int):
        self.speech_from = speech_from
        self.asked = []

    def find(self, start, end):
        self.asked.append((start, end))
        onset = max(start, self.speech_from)
        return onset if onset < end else None


def segment(start, end, timed=None):
    words = [Word(start=a, end=b, word=" w", probability=0.9) for a, b in timed] if timed else None
    return Segment(id=0, seek=0, start=start, end=end, text=" w", tokens=[], temperature=0.0, avg_logprob=-0.2,
                   compression_ratio=1.0, no_speech_prob=0.1, words=words)


def test_a_start_moves_forward_to_its_speech_within_its_first_word():
    assert start_at_speech(segment(44.0, 57.2), Onsets(51 * SR)).start == pytest.approx(51 - 0.2)
    assert start_at_speech(segment(44.0, 57.2), Onsets(60 * SR)).start == 44.0  # no speech found before its end: kept
    assert start_at_speech(segment(50.9, 57.2), Onsets(51 * SR)).start == 50.9  # within the margin: kept
    # stamped wholly over non-speech: moved whole to the speech after it, when its words fit before the next segment
    moved = start_at_speech(segment(30.0, 32.0, [(30.0, 30.5), (31.0, 32.0)]), Onsets(int(36.8 * SR)), next_start=38.6)
    assert (moved.start, moved.end) == (36.6, 38.6) and [(w.start, w.end) for w in moved.words] == [(36.6, 37.1), (37.6, 38.6)]
    assert start_at_speech(segment(30.0, 32.0), Onsets(int(36.8 * SR)), next_start=37.0).start == 30.0  # the next segment's speech
    assert start_at_speech(segment(31.8, 32.0), Onsets(int(32.4 * SR)), next_start=40.0).start == 31.8  # within MOVE_WHOLE_S
    onsets = Onsets(51 * SR)
    timed = start_at_speech(segment(44.0, 57.2, [(50.0, 51.5), (51.6, 52.0)]), onsets)
    assert timed.start == timed.words[0].start == pytest.approx(50.8) and timed.words[1].start == 51.6
    assert onsets.asked == [(50 * SR, int(51.5 * SR))]  # sought from the first word's start to its end only
    onsets = Onsets(0)
    kept = start_at_speech(segment(3.0, 5.0, [(2.5, 3.5)]), onsets)
    assert kept.start == 3.0 and kept.words[0].start == 3.0 and onsets.asked == [(3 * SR, int(3.5 * SR))]
    assert start_at_speech(segment(3.0, 5.0, [(3.2, 3.5)]), Onsets(0)).start == 3.2  # no earlier than its first word


def test_silero_finds_where_speech_starts_after_noise():
    jfk = decode_audio(str(DATA / "jfk.flac"), 100)
    noise = (0.003 * np.random.default_rng(1).standard_normal(8 * SR)).astype(np.float32)
    samples = np.concatenate([noise, jfk])
    onsets = SpeechOnsets(lambda a, b: samples[a:b])
    onset = onsets.find(SR, samples.size)
    assert 8 * SR <= onset <= 8.6 * SR  # jfk's first word begins 0.3 s in
    assert onsets.find(9 * SR, samples.size) == 9 * SR  # on speech: the start itself
    assert onsets.find(SR, 7 * SR) is None and onsets.seconds > 0


def test_a_short_max_speech_duration_gives_the_words_of_the_default(tiny_service):
    """It once cut batched windows to 1 s: 68 % WER on jfk.flac (0 % by default) and ten times slower."""
    short = tiny_service.engine.transcribe(decode_audio(str(DATA / "jfk.flac"), 100), request(vad_parameters={"max_speech_duration_s": 1}))
    assert wer(JFK, short.text) == 0  # the reference's words, as the default request gives


CHILD = """
import asyncio, json, sys
from worker.config import Settings
from worker.entries.runpod import JobRunner
settings = Settings.from_env()
service = JobRunner.from_settings(settings)
result = asyncio.run(service.run({"id": "temp-check", "input": json.loads(sys.argv[1])}))
service.engine.close()
print(json.dumps(result)[:400])
"""


def test_a_job_with_vad_leaves_its_temp_directories_empty(tmp_path, tiny_en_dir):
    """A downloaded file goes through WHISPER_TEMP_DIR; onnxruntime (Silero's runtime) wrote
    `$TMPDIR/.ses` on import (its telemetry), which no job cleanup removed."""
    system, worker = tmp_path / "tmp", tmp_path / "worker-tmp"
    system.mkdir()
    worker.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHISPER_", "RUNPOD_", "ORT_"))}
    env.update(TMPDIR=str(system), WHISPER_TEMP_DIR=str(worker), WHISPER_MODEL=tiny_en_dir, WHISPER_ALLOW_PRIVATE_URLS="true",
               WHISPER_CPU_THREADS="2", HOME=str(tmp_path / "home"))
    with LocalServer() as server:
        job = {"audio": server.url("/data/jfk.flac"), "vad_filter": True}
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ask not what your country" in done.stdout.lower() and '"error"' not in done.stdout, done.stdout
    assert sorted(os.listdir(system)) == [] and sorted(os.listdir(worker)) == []
