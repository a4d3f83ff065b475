"""`python -m benchmarks pipeline` on a short file: the worker's real host path runs, the
simulated device holds every batch for at least its preset's time, every figure is labelled
SIMULATED, and the transcripts equal the ones the real model gives on the same jobs."""

from __future__ import annotations

import argparse
import hashlib
import json

import pytest


@pytest.fixture()
def pipeline(monkeypatch):
    from benchmarks import pipeline

    # a cache of its own: a 72 s file and its recording, kept between runs like the real one
    monkeypatch.setattr(pipeline, "CACHE", pipeline.ROOT / ".cache" / "pipeline-test")
    return pipeline


def _args(out, **changes):
    values = dict(gpu_preset="h100-large-v3-fp16", concurrency=2, batch_size=8, max_batch_size=8, hours=0.02,
                  mixes=["long"], baseline=None, out=str(out), argv=["pipeline", "--hours", "0.02"])
    values.update(changes)
    return argparse.Namespace(**values)


def test_the_pipeline_benchmark_reports_simulated_figures_from_the_real_host_path(pipeline, tmp_path):
    args = _args(tmp_path / "out")
    assert pipeline.run(args) == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    markdown = (tmp_path / "out" / "results.md").read_text()
    long = data["results"]["long"]
    cost = pipeline.PRESETS["h100-large-v3-fp16"]

    assert data["simulated"] is True and markdown.startswith("# Pipeline benchmark: SIMULATED h100-large-v3-fp16")
    assert data["machine"]["cpu_affinity"] >= 1  # the cores it ran on are stated
    assert long["replay_misses"] == 0 and long["audio_seconds"] == pytest.approx(72, abs=0.5)
    # the simulated device is never faster than its preset: each batch held for fixed + n x per_window
    assert len(long["batch_windows"]) == long["batches"] and sum(long["batch_windows"]) == long["device_windows"]
    assert max(long["batch_windows"]) <= args.max_batch_size
    assert long["device_seconds"] >= sum(cost.batch_seconds(n) for n in long["batch_windows"]) - 0.01
    assert 0 < long["device_busy_share"] <= 1
    assert long["wall_seconds"] >= long["device_seconds"]
    stages = long["host_cpu_seconds_per_audio_hour"]
    assert {"fetch", "decode", "vad", "features", "format"} <= set(stages) and all(v >= 0 for v in stages.values())
    assert list(long["first_window_seconds"].values())[0] < long["wall_seconds"]

    # the same job with the real model as the device (no simulation): the same words and times
    real = pipeline.run_jobs(args, None, pipeline.Recording(tmp_path / "unused.pkl"), ["long"])["long"]
    digest = hashlib.sha256(json.dumps(real["transcripts"], sort_keys=True).encode()).hexdigest()[:16]
    assert digest == long["transcripts_digest"]
    words = [word for job in real["transcripts"].values() for word in job["words"]]
    assert len(words) > 100  # 72 s of real speech


def test_the_presets_are_scaled_down_from_the_published_figures_by_memory_bandwidth(pipeline):
    """Bandwidth is the smaller of the hardware ratios (tensor throughput grows more), so a
    preset device is never faster than the real one; the derivation is stated in the module."""
    base = pipeline.PRESETS["rtx3070ti-large-v2-fp16"]
    assert (base.fixed, base.per_window) == (2.02, 0.40)
    assert base.batch_seconds(1) == pytest.approx(63 / 26, abs=0.01)  # 63 s for 26 windows, one at a time
    assert base.batch_seconds(8) == pytest.approx(17 / (26 / 8), abs=0.02)  # 17 s at batch_size 8 (rounded to 0.01 s)
    for name, ratio in (("a100-large-v3-fp16", 3.36), ("h100-large-v3-fp16", 5.51)):
        preset = pipeline.PRESETS[name]
        assert preset.fixed == pytest.approx(base.fixed / ratio, abs=1e-3)
        assert preset.per_window == pytest.approx(base.per_window / ratio, abs=1e-4)


def test_a_stage_that_reported_nothing_stops_the_run_instead_of_showing_as_missing():
    from benchmarks import job_path

    stages = job_path.Stages()
    assert stages.unavailable is None and "vad" in stages.names
    for stage in stages.names:
        if stage != "vad":
            stages.meter.add(stage, 0.5)
    with pytest.raises(RuntimeError, match="stages vad reported nothing"):
        stages.check()
    stages.check([stage for stage in stages.names if stage != "vad"])  # a run that must not exercise it
    with pytest.raises(RuntimeError, match="not in worker.stages.STAGES"):
        stages.check(["fetch", "transcode"])
    stages.meter.add("vad", 0.0)
    stages.check()


def test_a_worker_without_stages_is_found_in_its_own_layout_and_reports_stage_times_unavailable(tmp_path):
    """What `pipeline --baseline <commit before worker/stages.py>` meets: the flat layout. Names
    resolve in the old worker only (never this tree's, which an editable install would offer),
    and the stage figures say unavailable instead of zero."""
    import subprocess
    import sys

    from benchmarks import pipeline

    old = tmp_path / "worker"
    old.mkdir()
    (old / "__init__.py").write_text("")
    (old / "engine.py").write_text("class Engine:\n    def __init__(self, model, settings):\n        pass\n")
    (old / "handler.py").write_text("class Service:\n    pass\n\nasync def handler(job):\n    return {}\n\ndef set_service(service):\n    pass\n")
    child = f"""
import sys
sys.path.insert(0, {str(pipeline.ROOT)!r})
from benchmarks import job_path
sys.path.insert(0, {str(tmp_path)!r})
print(job_path.find("Engine").__module__, job_path.find("Service").__module__, job_path.entry_module().__name__)
try:
    job_path.find("load_model")
except LookupError as exc:
    print(exc)
print(job_path.Stages().unavailable)
"""
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "worker.engine worker.handler worker.handler"
    assert lines[1] == "the worker has no load_model in any of worker.decoding.models, worker.models"
    assert lines[2].startswith("unavailable: this worker declares no stages")

    result = {"long": {"jobs": 1, "wall_seconds": 2.0, "throughput": 30.0, "device_busy_share": 0.5, "device_windows": 4, "batches": 2,
                       "first_window_seconds": None, "stage_times": lines[2], "host_cpu_seconds_per_audio_hour": {"all host CPU": 30.0}}}
    rows = pipeline.summary_rows("baseline old", result, "speech-1h.mp3")
    assert rows[0][-2:] == ["unavailable", "unavailable"]
