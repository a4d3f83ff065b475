"""Faults injected into a real engine and handler: each job gets an answer, the next job is served."""

import asyncio
import dataclasses
import errno
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import LocalServer, wait_until, wer
from worker.decoding.engine import Engine, model_backend
from worker.entries.runpod import JobRunner
from worker.service import Service

JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


class Device:
    """The scheduler's backend for these tests: the real model until a test swaps in a fault."""

    def __init__(self, whisper):
        self.real = self.run = model_backend(whisper)

    def __call__(self, windows, context):
        return self.run(windows, context)


@pytest.fixture
def device(tiny_service):
    return Device(tiny_service.engine.model.whisper)


@pytest.fixture
def service(tiny_service, tmp_path, device):
    settings = dataclasses.replace(tiny_service.settings, temp_dir=str(tmp_path))
    engine = Engine(tiny_service.engine.model, settings, backend=device)
    yield JobRunner(Service(settings, engine))
    engine.close()


def test_out_of_memory_mid_batch_retries_smaller_and_gives_the_same_text(service, device, run_job, data_dir, monkeypatch):
    clean = run_job(service, {"audio": str(data_dir / "long/columbia.wma"), "batch_size": 8})
    real = device.real
    sizes = []

    def oom_above_two(features, context):
        sizes.append(len(features))
        if len(features) > 2:
            raise RuntimeError("CUDA failed with error out of memory")
        return real(features, context)

    device.run = oom_above_two
    retried = run_job(service, {"audio": str(data_dir / "long/columbia.wma"), "batch_size": 8})
    assert max(sizes) > 2 and retried["text"] == clean["text"]
    assert [s["start"] for s in retried["segments"]] == [s["start"] for s in clean["segments"]]


def test_out_of_memory_at_batch_size_one_is_a_clear_error_then_serving_resumes(service, device, run_job, data_dir, monkeypatch):
    real = device.real

    def always_oom(features, context):
        raise RuntimeError("CUDA failed with error out of memory")

    device.run = always_oom
    out = run_job(service, {"audio": str(data_dir / "jfk.flac"), "batch_size": 4})
    assert out["error_code"] == "out_of_memory" and out["refresh_worker"] is True
    device.run = real
    assert wer(JFK, run_job(service, {"audio": str(data_dir / "jfk.flac"), "batch_size": 4})["text"]) < 0.1


def test_sequential_out_of_memory_is_a_clear_error(service, run_job, data_dir, monkeypatch):
    def oom(*args, **kwargs):
        raise RuntimeError("CUDA failed with error out of memory")

    monkeypatch.setattr(service.engine.model.whisper, "generate_segments", oom)
    out = run_job(service, {"audio": str(data_dir / "jfk.flac"), "batch_size": 1})
    assert out["error_code"] == "out_of_memory"


def test_model_raising_mid_batch_fails_that_job_only(service, device, run_job, data_dir, monkeypatch):
    real = device.real

    def explode(features, context):
        raise ValueError("simulated CTranslate2 failure")

    device.run = explode
    # a sequential job (its own model calls, not the failing batches) runs at the same time
    beside = ThreadPoolExecutor(1).submit(run_job, service, {"audio": str(data_dir / "jfk.flac"), "batch_size": 1}, "beside")
    with pytest.raises(ValueError, match="simulated"):  # a real bug: the SDK reports it with its trace
        run_job(service, {"audio": str(data_dir / "jfk.flac"), "batch_size": 4})
    assert wer(JFK, beside.result(timeout=300)["text"]) < 0.1
    device.run = real
    assert wer(JFK, run_job(service, {"audio": str(data_dir / "jfk.flac"), "batch_size": 4})["text"]) < 0.1


def test_download_dropped_halfway(service, run_job, tmp_path):
    with LocalServer() as server:
        out = run_job(service, {"audio": server.url("/lying-length")})
    assert out["error_code"] == "download_failed" and "dropped" in out["error"]
    assert os.listdir(tmp_path) == []


def test_disk_full_while_downloading(service, run_job, data_dir, monkeypatch, tmp_path):
    import builtins

    real_open = builtins.open

    def full_disk_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "w" in mode and str(path).startswith(str(tmp_path)):
            def no_space(data):
                raise OSError(errno.ENOSPC, "No space left on device")
            handle.write = no_space
        return handle

    monkeypatch.setattr(builtins, "open", full_disk_open)
    with LocalServer() as server:
        out = run_job(service, {"audio": server.url("/data/jfk.flac")})
    monkeypatch.setattr(builtins, "open", real_open)
    assert out["error_code"] == "storage_failed" and "No space left" in out["error"]
    assert os.listdir(tmp_path) == []
    assert wer(JFK, run_job(service, {"audio": str(data_dir / "jfk.flac")})["text"]) < 0.1


def test_cancelled_async_job_stops_its_thread(service, run_job, data_dir, monkeypatch):
    """The SDK cancels the handler's task: the job's thread returns, and its queued windows are
    never computed (the batches after the cancel hold no window of it)."""
    scheduler = service.engine.scheduler
    job_input = {"audio": str(data_dir / "long/columbia.wma"), "batch_size": 2}
    start = scheduler.batches_run
    run_job(service, job_input)
    full_run_batches = scheduler.batches_run - start
    batches = []  # the job ids of each batch the model runs, in order
    real_execute, real_process = scheduler._execute, service.process
    monkeypatch.setattr(scheduler, "_execute", lambda rows: (batches.append({r.job_id for r, _ in rows}), real_execute(rows)))
    returned = {}
    monkeypatch.setattr(service, "process", lambda *args: returned.setdefault("c1", real_process(*args)))

    async def cancel_after_its_first_batch():
        task = asyncio.ensure_future(service.run({"id": "c1", "input": job_input}))
        while not batches and not task.done():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_after_its_first_batch())
    assert wait_until(lambda: "c1" in returned, timeout=30)  # the thread noticed and returned
    assert returned["c1"]["error_code"] == "cancelled"
    assert "c1" not in {r.job_id for r in list(scheduler._queue)}
    monkeypatch.setattr(service, "process", real_process)
    assert wer(JFK, run_job(service, {"audio": str(data_dir / "jfk.flac"), "batch_size": 2}, job_id="after")["text"]) < 0.1
    after = next(i for i, ids in enumerate(batches) if "after" in ids)
    assert all("c1" not in ids for ids in batches[after:])  # nothing of it ran once the next job did
    assert 1 <= sum("c1" in ids for ids in batches) < full_run_batches  # it stopped before computing all its windows


@pytest.mark.parametrize("fault", ["CUDA failed with error an illegal memory access was encountered",
                                   "CUDA failed with error unspecified launch failure",
                                   "cuBLAS failed with status CUBLAS_STATUS_EXECUTION_FAILED"])
def test_a_cuda_fault_asks_for_a_fresh_worker_then_serving_resumes(service, device, run_job, data_dir, monkeypatch, fault):
    real = device.real

    def broken_device(windows, context):
        raise RuntimeError(fault)

    device.run = broken_device
    for fields in ({"batch_size": 4}, {"batch_size": 1}):
        if fields["batch_size"] == 1:
            monkeypatch.setattr(service.engine.model.whisper, "generate_segments", lambda *a, **k: broken_device(None, None))
        out = run_job(service, {"audio": str(data_dir / "jfk.flac"), **fields})
        assert out["error_code"] == "device_failed" and out["refresh_worker"] is True, out
    device.run = real
    monkeypatch.undo()
    assert wer(JFK, run_job(service, {"audio": str(data_dir / "jfk.flac"), "batch_size": 4})["text"]) < 0.1


def test_cancelling_a_job_stops_its_download(service, monkeypatch):
    """The RunPod SDK cancels the handler's task on timeout or client cancel: the download ends."""
    import threading
    import time

    from worker.audio import fetch
    from worker.errors import Cancelled

    ended = {}
    started = threading.Event()
    real = fetch.download

    def watched(*args, **kwargs):
        started.set()
        try:
            return real(*args, **kwargs)
        except BaseException as exc:
            ended["error"] = exc
            raise
        finally:
            ended["at"] = time.monotonic()

    monkeypatch.setattr(fetch, "download", watched)

    async def cancel_soon():
        with LocalServer() as server:  # /slow sends a byte a second for 100 s
            task = asyncio.ensure_future(service.run({"id": "c1", "input": {"audio": server.url("/slow")}}))
            while not started.is_set() and not task.done():  # the download is under way
                await asyncio.sleep(0.01)
            task.cancel()
            cancelled_at = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task
            while "at" not in ended and time.monotonic() - cancelled_at < 5:
                await asyncio.sleep(0.05)
            return cancelled_at

    cancelled_at = asyncio.run(cancel_soon())
    assert "at" in ended and ended["at"] - cancelled_at < 1.0
    assert isinstance(ended["error"], Cancelled)
    assert threading.active_count() < 50
