"""The cross-job batcher's plumbing, with a fake backend: fairness, limits, cancellation, OOM retry."""

import logging
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from helpers import ROOT, wait_until
from worker.errors import ResourceExhausted
from worker.decoding.scheduler import BatchScheduler, Cancelled


class RecordingBackend:
    """Returns each row's first feature value, records batch compositions, can fail on demand."""

    def __init__(self, fail=None, delay=0.0):
        self.batches = []
        self.fail = fail
        self.delay = delay

    def __call__(self, features, context):
        self.batches.append([float(row[0, 0]) for row in features])
        if self.fail:
            self.fail(features)
        time.sleep(self.delay)
        return [float(row[0, 0]) for row in features]


def windows(job: int, count: int) -> np.ndarray:
    return np.stack([np.full((2, 3), job * 1000 + i, dtype=np.float32) for i in range(count)])


def queued_jobs(scheduler) -> set:
    return {request.job_id for request in list(scheduler._queue)}


def run_jobs(scheduler, jobs, key=lambda job: "k"):
    results, errors = {}, {}

    def run(job, count):
        try:
            results[job] = scheduler.run(key(job), windows(job, count), None, f"job{job}", threading.Event()).results
        except Exception as exc:  # noqa: BLE001 - recorded for the assertions
            errors[job] = exc

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results, errors


def test_each_job_gets_its_own_rows_in_order():
    backend = RecordingBackend()
    scheduler = BatchScheduler(backend, max_batch_size=4, max_wait_s=0.05)
    results, errors = run_jobs(scheduler, [(1, 5), (2, 3), (3, 1)])
    assert not errors
    assert results == {1: [1000, 1001, 1002, 1003, 1004], 2: [2000, 2001, 2002], 3: [3000]}
    assert all(len(batch) <= 4 for batch in backend.batches)
    scheduler.close()


def test_short_jobs_are_not_starved_by_a_long_one():
    first_batch_running, release = threading.Event(), threading.Event()

    def hold_first_batch(features):
        if not first_batch_running.is_set():
            first_batch_running.set()
            release.wait(5)

    backend = RecordingBackend(fail=hold_first_batch)
    scheduler = BatchScheduler(backend, max_batch_size=4, max_wait_s=0.2)
    results = {}
    long_job = threading.Thread(target=lambda: results.update(long=scheduler.run("k", windows(1, 40), None, "long", threading.Event()).results))
    long_job.start()
    assert first_batch_running.wait(5)  # the long job's first 4 windows are in the model now
    short_jobs = [threading.Thread(target=lambda j=j: results.update({j: scheduler.run("k", windows(j, 1), None, f"short{j}", threading.Event()).results}))
                  for j in (2, 3)]
    for thread in short_jobs:
        thread.start()
    assert wait_until(lambda: {"short2", "short3"} <= queued_jobs(scheduler))  # both queued behind 36 windows of the long one
    release.set()
    for thread in [long_job, *short_jobs]:
        thread.join(timeout=30)
    second_batch = backend.batches[1]
    assert 2000 in second_batch and 3000 in second_batch  # round-robin: one window per job per turn
    assert len(results["long"]) == 40 and results[2] == [2000] and results[3] == [3000]
    scheduler.close()


def test_windows_with_different_settings_never_share_a_batch():
    backend = RecordingBackend()
    scheduler = BatchScheduler(backend, max_batch_size=8, max_wait_s=0.05)
    run_jobs(scheduler, [(1, 2), (2, 2)], key=lambda job: f"settings-{job}")
    assert sorted(v for batch in backend.batches for v in batch) == [1000, 1001, 2000, 2001]  # all computed
    for batch in backend.batches:
        assert len({int(v) // 1000 for v in batch}) == 1
    scheduler.close()


def test_jobs_with_equal_settings_do_share_a_batch():
    """Cross-job batching, proven: one batch holds windows of both jobs."""
    first_batch_running, release = threading.Event(), threading.Event()

    def hold_first_batch(rows):
        if not first_batch_running.is_set():
            first_batch_running.set()
            release.wait(5)

    backend = RecordingBackend(fail=hold_first_batch)
    scheduler = BatchScheduler(backend, max_batch_size=8, max_wait_s=0.0)
    blocker = threading.Thread(target=lambda: scheduler.run("k", windows(9, 1), None, "blocker", threading.Event()))
    blocker.start()
    assert first_batch_running.wait(5)  # while it runs, both jobs queue up
    jobs = threading.Thread(target=lambda: run_jobs(scheduler, [(1, 2), (2, 2)]))
    jobs.start()
    assert wait_until(lambda: sum(r.pending for r in list(scheduler._queue)) == 4)
    release.set()
    jobs.join(10)
    blocker.join(10)
    assert sorted(backend.batches[1]) == [1000, 1001, 2000, 2001]
    scheduler.close()


def test_a_lone_window_waits_for_the_max_wait_and_no_longer():
    for max_wait in (0.05, 0.3):
        backend = RecordingBackend()
        called = []
        backend.fail = lambda rows: called.append(time.monotonic())
        scheduler = BatchScheduler(backend, max_batch_size=16, max_wait_s=max_wait)
        started = time.monotonic()
        run_jobs(scheduler, [(1, 1)])
        waited = called[0] - started
        assert max_wait * 0.9 <= waited < max_wait + 0.25, (max_wait, waited)
        scheduler.close()


def test_a_backend_error_reaches_every_job_of_the_failed_batch():
    first_batch_running, release = threading.Event(), threading.Event()

    def fail_second_batch(rows):
        if not first_batch_running.is_set():
            first_batch_running.set()
            release.wait(5)
            return
        raise ValueError("simulated CTranslate2 failure")

    backend = RecordingBackend(fail=fail_second_batch)
    scheduler = BatchScheduler(backend, max_batch_size=8, max_wait_s=0.0)
    blocker = threading.Thread(target=lambda: scheduler.run("k", windows(9, 1), None, "blocker", threading.Event()))
    blocker.start()
    assert first_batch_running.wait(5)
    outcome = {}
    jobs = threading.Thread(target=lambda: outcome.update(zip(("results", "errors"), run_jobs(scheduler, [(1, 2), (2, 1)]))))
    jobs.start()
    assert wait_until(lambda: sum(r.pending for r in list(scheduler._queue)) == 3)
    release.set()
    jobs.join(10)
    blocker.join(10)
    assert sorted(backend.batches[1]) == [1000, 1001, 2000]  # one batch held both jobs
    assert set(outcome["errors"]) == {1, 2} and all(isinstance(e, ValueError) for e in outcome["errors"].values())
    scheduler.close()


def test_cancelled_job_leaves_the_queue_and_is_never_computed():
    gate, running = threading.Event(), threading.Event()
    backend = RecordingBackend(fail=lambda features: (running.set(), gate.wait(5)))
    scheduler = BatchScheduler(backend, max_batch_size=1, max_wait_s=0.0)
    blocker = threading.Thread(target=lambda: scheduler.run("k", windows(1, 1), None, "blocker", threading.Event()))
    blocker.start()
    assert running.wait(5)  # the blocker's batch is now running; job 2 has to queue
    cancelled = threading.Event()
    outcome = {}

    def victim():
        try:
            scheduler.run("k", windows(2, 3), None, "victim", cancelled)
        except Cancelled as exc:
            outcome["cancelled"] = exc

    thread = threading.Thread(target=victim)
    thread.start()
    assert wait_until(lambda: "victim" in queued_jobs(scheduler))
    cancelled.set()
    thread.join(timeout=5)
    gate.set()
    blocker.join(timeout=5)
    assert "cancelled" in outcome
    assert all(value < 2000 for batch in backend.batches for value in batch)
    scheduler.close()


def test_out_of_memory_retries_with_smaller_batches():
    def oom_above_two(features):
        if len(features) > 2:
            raise RuntimeError("CUDA failed with error out of memory")

    backend = RecordingBackend(fail=oom_above_two)
    scheduler = BatchScheduler(backend, max_batch_size=8, max_wait_s=0.05)
    results, errors = run_jobs(scheduler, [(1, 8)])
    assert not errors and results[1] == [1000 + i for i in range(8)]
    assert [len(b) for b in backend.batches] == [8, 4, 2, 2, 4, 2, 2]
    scheduler.close()


def test_out_of_memory_on_a_single_window_is_a_clear_error_and_serving_continues():
    fail = {"on": True}

    def always_oom(features):
        if fail["on"]:
            raise RuntimeError("CUDA failed with error out of memory")

    scheduler = BatchScheduler(RecordingBackend(fail=always_oom), max_batch_size=4, max_wait_s=0.01)
    _, errors = run_jobs(scheduler, [(1, 2)])
    assert isinstance(errors[1], ResourceExhausted)
    assert errors[1].to_response()["refresh_worker"] is True
    fail["on"] = False
    results, errors = run_jobs(scheduler, [(2, 2)])
    assert results[2] == [2000, 2001] and not errors
    scheduler.close()


def test_a_backend_crash_reaches_every_job_in_the_batch_and_the_next_batch_runs():
    crash = {"on": True}

    def crash_once(features):
        if crash["on"]:
            crash["on"] = False
            raise ValueError("model exploded mid-batch")

    scheduler = BatchScheduler(RecordingBackend(fail=crash_once), max_batch_size=8, max_wait_s=0.2)
    _, errors = run_jobs(scheduler, [(1, 1), (2, 1)])
    assert {type(e) for e in errors.values()} == {ValueError}
    results, errors = run_jobs(scheduler, [(3, 2)])
    assert results[3] == [3000, 3001]
    scheduler.close()


def test_empty_request_returns_at_once():
    scheduler = BatchScheduler(RecordingBackend(), max_batch_size=4, max_wait_s=0.01)
    assert scheduler.run("k", np.zeros((0, 2, 3), dtype=np.float32), None, "empty", threading.Event()).results == []
    scheduler.close()


def test_jobs_waiting_on_a_dead_batcher_get_an_error_instead_of_waiting_for_ever(monkeypatch, caplog):
    scheduler = BatchScheduler(RecordingBackend(), max_batch_size=4, max_wait_s=0.01)

    def broken_next_batch():
        raise RuntimeError("a bug in the batcher")

    monkeypatch.setattr(scheduler, "_next_batch", broken_next_batch)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="worker.decoding.scheduler"):
        with pytest.raises(RuntimeError, match="^the batcher thread stopped; this worker cannot decode$"):
            scheduler.run("k", windows(1, 2), None, "job1", threading.Event())
    assert time.monotonic() - started < 2.0
    logged = [r for r in caplog.records if r.name == "worker.decoding.scheduler"]
    assert [r.getMessage() for r in logged] == ["the batcher thread stopped"] and "a bug in the batcher" in caplog.text  # with the trace
    scheduler.close()


def test_a_cancel_racing_the_result_never_kills_the_batcher():
    """Cancel lands between the batcher's check and its set: both transitions are atomic."""
    gate, running = threading.Event(), threading.Event()

    def slow(rows):
        running.set()
        gate.wait(2)

    scheduler = BatchScheduler(RecordingBackend(fail=slow), max_batch_size=4, max_wait_s=0.0)
    for round_ in range(20):
        cancelled = threading.Event()
        outcome = []

        def job():
            try:
                outcome.append(scheduler.run("k", windows(round_, 2), None, f"job{round_}", cancelled).results)
            except Cancelled:
                outcome.append("cancelled")

        thread = threading.Thread(target=job)
        thread.start()
        assert running.wait(5)  # the job's batch is in the model
        cancelled.set()
        gate.set()  # the batch finishes while (or after) the cancel is delivered
        thread.join(5)
        gate.clear()
        running.clear()
        assert outcome and (outcome[0] == "cancelled" or len(outcome[0]) == 2)
    assert scheduler._thread.is_alive()
    scheduler.close()


def test_the_backend_gets_the_jobs_context_and_the_counts_and_times_are_the_batches():
    """The context (tokenizer, options) reaches the model; batches_run counts model calls; a
    request's inference time is the sum of its batches' and its start is its first batch's."""
    contexts = []
    backend = RecordingBackend(fail=lambda rows: None, delay=0.05)
    real = backend.__call__
    scheduler = BatchScheduler(lambda features, context: contexts.append(context) or real(features, context), max_batch_size=1, max_wait_s=0.0)
    request = scheduler.run("k", windows(1, 3), {"tokenizer": "en"}, "job1", threading.Event())
    assert request.results == [1000, 1001, 1002]
    assert contexts == [{"tokenizer": "en"}] * 3
    assert scheduler.batches_run == len(backend.batches) == 3
    assert 0.15 <= request.inference_seconds < 1.0
    assert request.enqueued_at <= request.started_at < request.enqueued_at + 0.5
    scheduler.close()


def test_a_full_batch_runs_at_once_without_waiting_for_the_max_wait():
    called = []
    scheduler = BatchScheduler(RecordingBackend(fail=lambda rows: called.append(time.monotonic())), max_batch_size=4, max_wait_s=5.0)
    started = time.monotonic()
    assert scheduler.run("k", windows(1, 4), None, "job1", threading.Event()).results == [1000, 1001, 1002, 1003]
    assert called[0] - started < 1.0
    scheduler.close()


def test_a_new_arrival_does_not_stretch_the_head_windows_wait():
    """Woken by another job's windows, the batcher still dispatches the head at its own max_wait."""
    called = []
    backend = RecordingBackend(fail=lambda rows: called.append((time.monotonic(), rows[0][0, 0])))
    scheduler = BatchScheduler(backend, max_batch_size=16, max_wait_s=0.4)
    started = time.monotonic()
    first = threading.Thread(target=lambda: scheduler.run("a", windows(1, 1), None, "job1", threading.Event()))
    first.start()
    time.sleep(0.2)  # not synchronisation: the second job must arrive halfway through the first's wait
    scheduler.run("b", windows(2, 1), None, "job2", threading.Event())
    first.join(5)
    head_at = next(at for at, value in called if value == 1000)
    assert 0.35 <= head_at - started < 0.65, head_at - started  # stretched, it would be about 0.8 s
    scheduler.close()


def test_a_job_cancelled_before_its_thread_looks_is_purged_by_the_batcher_and_others_are_served(caplog):
    cancelled = threading.Event()
    cancelled.set()  # the job thread checks only after 0.1 s; the batcher (max_wait 0) sees it first
    backend = RecordingBackend()
    scheduler = BatchScheduler(backend, max_batch_size=4, max_wait_s=0.0)
    with caplog.at_level(logging.ERROR, logger="worker.decoding.scheduler"):
        with pytest.raises(Cancelled, match="^job early cancelled$"):
            scheduler.run("k", windows(2, 3), None, "early", cancelled)
        assert all(value < 2000 or value >= 3000 for batch in backend.batches for value in batch)
        assert scheduler.run("k", windows(3, 2), None, "next", threading.Event()).results == [3000, 3001]
    assert "the batcher thread stopped" not in caplog.text  # a purge is routine, not a crash
    scheduler.close()


def test_cancelling_a_job_whose_last_window_is_in_the_model_is_a_clean_cancel():
    gate, running = threading.Event(), threading.Event()
    scheduler = BatchScheduler(RecordingBackend(fail=lambda rows: (running.set(), gate.wait(5))), max_batch_size=4, max_wait_s=0.0)
    cancelled, outcome = threading.Event(), {}

    def job():
        try:
            outcome["results"] = scheduler.run("k", windows(1, 1), None, "last", cancelled).results
        except Exception as exc:  # noqa: BLE001 - recorded for the assertions
            outcome["error"] = exc

    thread = threading.Thread(target=job)
    thread.start()
    assert running.wait(5)  # its only window has left the queue
    cancelled.set()
    thread.join(5)
    gate.set()
    assert isinstance(outcome.get("error"), Cancelled) and str(outcome["error"]) == "job last cancelled"
    scheduler.close()


def test_a_closed_scheduler_refuses_new_work():
    scheduler = BatchScheduler(RecordingBackend(), max_batch_size=4, max_wait_s=0.01)
    scheduler.close()
    with pytest.raises(RuntimeError, match="^scheduler is closed$"):
        scheduler.run("k", windows(1, 1), None, "late", threading.Event())


def test_a_batcher_thread_that_ends_quietly_still_leaves_no_job_waiting(monkeypatch):
    scheduler = BatchScheduler(RecordingBackend(), max_batch_size=4, max_wait_s=0.01)
    monkeypatch.setattr(scheduler, "_loop", lambda: None)  # the thread ends without failing anyone
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="^the batcher thread stopped; this worker cannot decode$"):
        scheduler.run("k", windows(1, 2), None, "job1", threading.Event())
    assert time.monotonic() - started < 0.6  # noticed at the job's next 0.1 s check
    scheduler.close()


def test_an_unclosed_scheduler_does_not_keep_the_process_alive():
    code = ("import threading, numpy as np; from worker.decoding.scheduler import BatchScheduler; "
            "s = BatchScheduler(lambda w, c: [0] * len(w), 4, 0.01); "
            "print(s.run('k', np.zeros((2, 2, 3)), None, 'j', threading.Event()).results)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "[0, 0]", done.stderr


@pytest.mark.parametrize("message", ["CUDA failed with error out of memory", "cudaErrorMemoryAllocation"])
def test_out_of_memory_above_one_window_splits_down_to_single_windows(message, caplog):
    def oom_above_one(features):
        if len(features) > 1:
            raise RuntimeError(message)

    scheduler = BatchScheduler(RecordingBackend(fail=oom_above_one), max_batch_size=4, max_wait_s=0.05)
    with caplog.at_level(logging.WARNING, logger="worker.decoding.scheduler"):
        results, errors = run_jobs(scheduler, [(1, 2)])
    assert not errors and results[1] == [1000, 1001]
    assert "out of memory with 2 windows; retrying as 1 + 1" in caplog.messages
    scheduler.close()


def test_out_of_memory_on_one_window_names_the_cause():
    def oom(features):
        raise MemoryError()

    scheduler = BatchScheduler(RecordingBackend(fail=oom), max_batch_size=4, max_wait_s=0.01)
    _, errors = run_jobs(scheduler, [(1, 1)])
    assert errors[1].to_response()["error"] == "out of memory decoding a single 30 s window"
    scheduler.close()
