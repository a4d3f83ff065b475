"""`python -m benchmarks realtime`: turns are matched to the utterances they say (a split
utterance scored on all its turns, a merged turn counted, a missed utterance all deletions), a
delta that the completed text takes back is counted, the audio is resampled to 24 kHz without
moving or losing it, and the command runs end to end (tiny.en, one session of one clip) and
reports what it says it does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import realtime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RATE = realtime.SAMPLE_RATE


def _clip(name: str, text: str, seconds: float) -> realtime.Clip:
    return realtime.Clip(name, name, text, np.full(int(seconds * RATE), 0.1, dtype=np.float32))


@pytest.fixture
def conversation():
    pool = [_clip("a.wav", "the cat sat", 2.0), _clip("b.wav", "on the mat", 2.0), _clip("c.wav", "and slept well", 2.0)]
    return realtime.build_conversation(pool, 0, 3, seed=1, picks=[0, 1, 2])


def _ms(conversation, k: int, edge: str) -> float:
    return getattr(conversation.utterances[k], edge) * 1000 / RATE


def test_a_conversation_places_its_utterances_between_pauses_of_1_5_to_2_s(conversation):
    first, second, third = conversation.utterances
    assert first.start == int(realtime.LEAD_S * RATE)
    for a, b in ((first, second), (second, third)):
        assert realtime.PAUSE_S[0] * RATE - 1 <= b.start - a.end <= realtime.PAUSE_S[1] * RATE
    assert conversation.samples.size - third.end == int(realtime.TAIL_S * RATE)
    pause = conversation.samples[first.end:second.start]
    assert 0 < np.sqrt(np.mean(pause ** 2)) < 10 ** ((realtime.NOISE_DBFS + 1) / 20)  # a quiet room, not digital zero
    assert conversation.reference == "the cat sat on the mat and slept well"


def test_turns_go_to_the_utterance_holding_their_middle_and_splits_merges_and_misses_are_scored(conversation):
    def row(start, end, text):
        return {"session": 0, "completed": True, "transcript": text, "utterance": conversation.owner(start, end),
                "overlapped": conversation.overlapped(start, end)}

    a0, a1 = _ms(conversation, 0, "start"), _ms(conversation, 0, "end")
    b0, b1 = _ms(conversation, 1, "start"), _ms(conversation, 1, "end")
    rows = [row(a0, (a0 + a1) / 2, "the cat"), row((a0 + a1) / 2, a1, "sat"),  # utterance a split in two turns
            row(b0 + 100, _ms(conversation, 2, "end") - 1900, "on the mat and slept well")]  # b and c merged, its middle in b's stretch
    assert [r["utterance"] for r in rows] == [0, 0, 1] and rows[2]["overlapped"] == [1, 2]
    files = SimpleNamespace(alone={"a.wav": "the cat sat", "b.wav": "on the mat", "c.wav": "and slept well"},
                            whole={0: "the cat sat on the mat and slept well"})
    score = realtime.accuracy([SimpleNamespace(conversation=conversation)], rows, files)
    assert (score["utterances"], score["utterances_missed"], score["utterances_split"], score["turns_merged"]) == (3, 1, 1, 1)
    assert score["wer_turns"] == pytest.approx(6 / 9)  # c's 3 words deleted, b's hypothesis 3 words too many
    assert score["wer_joined"] == 0.0 and score["wer_file_clips"] == 0.0 and score["wer_file_conversations"] == 0.0
    assert b1 < _ms(conversation, 2, "start")


def test_a_delta_taken_back_by_the_completed_text_is_counted(conversation):
    record = realtime.SessionRecord(conversation, 40, sent=[float(k) for k in range(1000)], due=[float(k) for k in range(1000)])
    item = [("input_audio_buffer.speech_started", {"audio_start_ms": 500}), ("input_audio_buffer.speech_stopped", {"audio_end_ms": 2500}),
            ("input_audio_buffer.committed", {}), (realtime.DELTA, {"delta": "The cat"}), (realtime.DELTA, {"delta": " sat!"})]
    for number, (text, final) in enumerate((("The cat", "the cat sat"), ("The dog", "the cat sat"))):
        events = [(10.0 + k, {"type": kind, "item_id": f"i{number}", **fields}) for k, (kind, fields) in enumerate(item)]
        events[3][1]["delta"] = text
        events.append((20.0, {"type": realtime.COMPLETED, "item_id": f"i{number}", "transcript": final}))
        record.events += events
    first, second = realtime.turn_rows(record, 0, 500)
    assert not first["contradicted"] and second["contradicted"] and second["out_of_order"]
    assert first["latency_s"] == 20.0 - 11.0 and first["first_delta_s"] == 13.0 - 10.0 and first["deltas"] == 2
    assert first["stopped_lag_s"] == 11.0 - (2500 + 500) // 40  # the append holding audio_end_ms + silence went out at that index's time
    assert first["words_before_stop"] == 0 and first["utterance"] == 0


def test_audio_goes_out_as_24_khz_pcm16_without_moving():
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)
    pcm = np.frombuffer(realtime.to_pcm(tone, 24000), dtype="<i2") / 32767
    assert pcm.size == 24000
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(24000) / 24000)
    assert np.max(np.abs(pcm[200:-200] - expected[200:-200])) < 0.01
    assert np.frombuffer(realtime.to_pcm(tone, 16000), dtype="<i2").size == RATE


def test_the_command_runs_one_live_session_end_to_end_and_reports_it(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmarks", "realtime", "--model", "bundled:tiny.en", "--sessions", "1", "--clips", "1",
               "--pace", "2", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 session(s): stopped->completed p50" in done.stdout and "capacity:" in done.stdout
    data = json.loads((out / "results.json").read_text())
    assert {"settings", "machine", "versions", "runs", "capacity", "targets", "file_endpoint", "conversations"} <= set(data)
    assert data["machine"]["cpu"] and data["machine"]["cpu_logical_cores"] and data["machine"]["load_average_at_start"] is not None
    (run,) = data["runs"]
    assert run["sessions"] == 1 and run["turns"] >= 1 and run["turns_completed"] == run["turns"]
    assert not run["error_events"] and not run["failures"] and run["server_idle_after"]
    assert 0 < run["latency_s"]["p50"] <= run["latency_s"]["p95"] <= run["latency_s"]["max"] < 30
    assert run["first_delta_s"]["p50"] is None or 0 < run["first_delta_s"]["p50"] < 30
    assert 0 <= run["stopped_lag_s"]["max"] < 5 and run["append_late_s"]["max"] < 5
    assert run["contradicted"] == 0.0
    accuracy = run["accuracy"]
    assert accuracy["utterances"] == 1 and accuracy["utterances_missed"] == 0
    assert 0 <= accuracy["wer_turns"] < 0.5 and 0 <= accuracy["wer_file_clips"] < 0.5 and 0 <= accuracy["wer_file_conversations"] < 0.5
    assert data["capacity"] in (0, 1) and data["capacity"] == (1 if run["kept_up"] else 0)
    assert [t["met"] in (True, False) for t in data["targets"]] == [True, True]
    markdown = (out / "results.md").read_text()
    assert "Capacity:" in markdown and "stopped→completed" in markdown and data["machine"]["cpu"] in markdown
