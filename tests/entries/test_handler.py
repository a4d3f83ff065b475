"""The handler in-process: every input path, every output shape, every error, nothing left behind."""

import asyncio
import base64
import dataclasses
import http.server
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
import srt
import webvtt

from helpers import LocalServer, encode_audio, references, wer
from worker.entries.runpod import JobRunner
from worker.service import Service


@pytest.fixture
def service(tiny_service, tmp_path):
    """The session's tiny.en service with its own temp dir, so leftovers can be counted."""
    settings = dataclasses.replace(tiny_service.settings, temp_dir=str(tmp_path))
    return JobRunner(Service(settings, tiny_service.engine))


@pytest.fixture(scope="module")
def server():
    with LocalServer() as srv:
        yield srv


JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def test_default_output_is_verbose_json_with_metrics(service, run_job, data_dir, tmp_path):
    out = run_job(service, {"audio": str(data_dir / "jfk.flac"), "word_timestamps": True})
    assert wer(JFK, out["text"]) < 0.1
    assert out["language"] == "en" and out["duration"] == 11.0
    assert out["words"] and all(w["end"] >= w["start"] for w in out["words"])
    assert all("words" in s for s in out["segments"])
    metrics = out["metrics"]
    assert metrics["audio_seconds"] == 11.0 and 0 < metrics["real_time_factor"] < 5
    assert metrics["inference_seconds"] > 0 and metrics["decode_seconds"] > 0
    assert (metrics["model"], metrics["compute_type"], metrics["device"]) == (service.settings.model, "int8", "cpu")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt"])
def test_response_formats(service, run_job, data_dir, fmt):
    out = run_job(service, {"audio": str(data_dir / "jfk.flac"), "response_format": fmt})
    assert wer(JFK, out["text"]) < 0.1
    if fmt == "srt":
        assert len(list(srt.parse(out["srt"]))) == len(out["segments"])
    if fmt == "vtt":
        assert out["vtt"].startswith("WEBVTT")
        assert len(webvtt.from_buffer(io.StringIO(out["vtt"])).captions) == len(out["segments"])


def test_url_input_from_a_local_server(service, run_job, server, tmp_path):
    out = run_job(service, {"audio": server.url("/data/jfk.flac?X-Signature=secret")})
    assert wer(JFK, out["text"]) < 0.1
    assert out["metrics"]["download_seconds"] > 0
    assert os.listdir(tmp_path) == []


def test_base64_input(service, run_job, data_dir):
    encoded = base64.b64encode((data_dir / "jfk.flac").read_bytes()).decode()
    assert wer(JFK, run_job(service, {"audio_base64": encoded})["text"]) < 0.1


def test_worker_faster_whisper_clients_get_that_workers_output(service, run_job, data_dir):
    out = run_job(service, {"audio": str(data_dir / "jfk.flac"), "transcription": "vtt", "word_timestamps": True,
                            "enable_vad": True, "temperature": 0, "temperature_increment_on_fallback": 0.2})
    assert {"segments", "detected_language", "transcription", "translation", "device", "model", "word_timestamps"} <= set(out)
    assert out["transcription"].startswith("WEBVTT")
    assert out["detected_language"] == "en" and out["translation"] is None
    assert out["metrics"]["mode"] == "sequential"


def test_legacy_translation_pass(base_service, run_job, data_dir):
    out = run_job(base_service, {"audio": str(data_dir / "fleurs/fleurs-de-000.ogg"), "translate": True, "language": "de"})
    assert out["detected_language"] == "de"
    assert "hong kong" in out["translation"].lower()
    assert "hongkong" in out["transcription"].lower().replace(" ", "")


def test_sequential_and_batched_agree_on_the_words(service, run_job, data_dir):
    refs = references(data_dir / "harvard")
    for name, ref in list(refs.items())[:3]:
        texts = {}
        for batch_size in (1, 4):
            out = run_job(service, {"audio": str(data_dir / "harvard" / name), "batch_size": batch_size})
            assert wer(ref, out["text"]) < 0.25, (name, batch_size, out["text"])
            texts[batch_size] = out["text"]
        # the two modes against each other, not only each against the reference
        assert wer(texts[1], texts[4]) < 0.1, (name, texts)


def silent_wav() -> str:
    import numpy as np

    return base64.b64encode(encode_audio(np.zeros(16000), 16000)).decode()


@pytest.mark.parametrize("job_input, needle", [
    ({}, "audio: give audio"),
    ({"audio": "a", "audio_base64": "AAAA"}, "audio_base64: give audio or audio_base64, not both"),
    ({"audio_base64": "%%%"}, "audio_base64: is not valid base64"),
    ({"audio_base64": base64.b64encode(b"definitely not audio" * 50).decode()}, "audio: cannot decode audio"),
    ({"audio_base64": silent_wav()}, "audio: is silent"),
    ({"audio": "/nonexistent/file.wav"}, "audio: no such file"),
    ({"audio": "ftp://example.com/a.wav"}, "audio: only http and https"),
    ({"audio": "jfk.flac", "beam_size": "wide"}, "beam_size: Input should be a valid integer"),
    ({"audio": "jfk.flac", "unknown_option": 1}, "unknown_option: unknown field"),
    ({"audio": "jfk.flac", "language": "de"}, "language: model"),
])
def test_bad_inputs_get_a_clear_error_and_the_next_job_is_served(service, run_job, data_dir, tmp_path, job_input, needle):
    out = run_job(service, job_input)
    assert needle in out["error"], out
    assert out["error_code"]
    assert os.listdir(tmp_path) == []
    assert wer(JFK, run_job(service, {"audio": str(data_dir / "jfk.flac")})["text"]) < 0.1


def test_url_errors(service, run_job, server, tmp_path):
    assert "HTTP 404" in run_job(service, {"audio": server.url("/data/nothing.wav")})["error"]
    guarded = JobRunner(Service(dataclasses.replace(service.settings, allow_private_urls=False), service.engine))
    out = run_job(guarded, {"audio": server.url("/data/jfk.flac")})
    assert out["error_code"] == "unsafe_url" and "not a public address" in out["error"]
    small = JobRunner(Service(dataclasses.replace(service.settings, max_download_bytes=1000), service.engine))
    assert "over the 1000-byte limit" in run_job(small, {"audio": server.url("/data/jfk.flac")})["error"]
    assert os.listdir(tmp_path) == []


def test_audio_longer_than_the_limit(service, run_job, data_dir):
    short = JobRunner(Service(dataclasses.replace(service.settings, max_audio_seconds=5), service.engine))
    out = run_job(short, {"audio": str(data_dir / "jfk.flac")})
    assert out["error_code"] == "audio_too_long" and "over the 5 s limit" in out["error"]


def test_local_paths_refused_by_default(service, run_job, data_dir):
    strict = JobRunner(Service(dataclasses.replace(service.settings, allow_local_files=False), service.engine))
    assert "local file paths are disabled" in run_job(strict, {"audio": str(data_dir / "jfk.flac")})["error"]


def test_disk_full_temp_dir_is_a_clear_error(service, run_job, server, tmp_path):
    broken = JobRunner(Service(dataclasses.replace(service.settings, temp_dir=str(tmp_path / "missing" / "dir")), service.engine))
    out = run_job(broken, {"audio": server.url("/data/jfk.flac")})
    assert out["error_code"] == "storage_failed"


def test_streaming_yields_segments_then_the_full_result(tiny_service, data_dir):
    service = JobRunner(Service(dataclasses.replace(tiny_service.settings, streaming=True), tiny_service.engine))

    async def collect(job_input):
        return [item async for item in service.stream({"id": "s1", "input": job_input})]

    items = asyncio.run(collect({"audio": str(data_dir / "long/silero_test.wav"), "stream": True, "batch_size": 1}))
    segments, final = items[:-1], items[-1]
    assert len(segments) >= 3 and all(i["type"] == "segment" for i in segments)
    assert [i["progress"] for i in segments] == sorted(i["progress"] for i in segments)
    assert final["type"] == "result"
    assert [s["text"] for s in final["segments"]] == [i["segment"]["text"] for i in segments]
    plain = asyncio.run(collect({"audio": str(data_dir / "jfk.flac")}))
    assert len(plain) == 1 and "type" not in plain[0] and plain[0]["text"]
    error = asyncio.run(collect({"audio": 1, "stream": True}))
    assert len(error) == 1 and "error" in error[0]


def test_progress_updates_are_sent_for_long_jobs(tiny_service, run_job, data_dir):
    updates = []
    service = JobRunner(Service(tiny_service.settings, tiny_service.engine), progress=lambda job, payload: updates.append((job["id"], payload)))
    run_job(service, {"audio": str(data_dir / "long/silero_test.wav"), "batch_size": 1}, job_id="p1")
    assert updates and all(job_id == "p1" for job_id, _ in updates)
    shares = [p["progress"] for _, p in updates]
    assert shares == sorted(shares) and 0 < shares[-1] <= 1


def test_one_log_line_per_job_without_secrets(service, run_job, server, caplog):
    encoded = base64.b64encode(b"not audio" * 100).decode()
    with caplog.at_level(logging.INFO, logger="worker.jobs"):
        run_job(service, {"audio": server.url("/data/jfk.flac?token=hunter2")}, job_id="j-url")
        run_job(service, {"audio_base64": encoded}, job_id="j-b64")
    lines = [r.getMessage() for r in caplog.records if r.name == "worker.jobs"]
    assert len(lines) == 2
    assert "job=j-url outcome=ok" in lines[0] and "/data/jfk.flac" in lines[0]
    assert "job=j-b64 outcome=invalid_audio" in lines[1]
    assert not any("hunter2" in line or encoded[:40] in line for line in lines)


def test_subtitles_laid_out_for_reading_on_real_speech(tiny_service, run_job, data_dir):
    import srt

    out = run_job(tiny_service, {"audio": str(data_dir / "long/columbia.wma"), "response_format": "srt", "word_timestamps": True,
                                 "max_line_width": 42, "max_line_count": 2})
    cues = list(srt.parse(out["srt"]))
    lines = [line for cue in cues for line in cue.content.split("\n")]
    assert max(len(line) for line in lines) <= 42 and max(len(c.content.split("\n")) for c in cues) <= 2
    assert len(" ".join(lines).split()) == len(out["text"].split())  # every word in a cue
    assert all(b.start >= a.start for a, b in zip(cues, cues[1:]))


@pytest.mark.parametrize("how", ["task cancelled", "generator closed"])
def test_a_streaming_job_stopped_midway_stops_decoding(tiny_service, data_dir, monkeypatch, how):
    """The SDK cancels a streaming job's task (stop signal, timeout), or stops reading it: the
    job's thread stops at its next segment instead of decoding the whole file."""
    from helpers import wait_until

    service = JobRunner(Service(dataclasses.replace(tiny_service.settings, streaming=True), tiny_service.engine))
    returned = {}
    real_process = service.process
    monkeypatch.setattr(service, "process", lambda *args: returned.setdefault("output", real_process(*args)))
    job = {"id": "s-stop", "input": {"audio": str(data_dir / "long/columbia.wma"), "stream": True, "batch_size": 1}}

    async def stop_after_the_first_segment():
        items, first = [], asyncio.Event()

        async def consume():
            stream = service.stream(job)
            async for item in stream:
                items.append(item)
                first.set()
                if how == "generator closed":
                    await stream.aclose()
                    return

        task = asyncio.ensure_future(consume())
        await asyncio.wait_for(first.wait(), 120)
        if how == "task cancelled":
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return items

    items = asyncio.run(stop_after_the_first_segment())
    stopped_at = time.monotonic()
    assert items and items[0]["type"] == "segment" and items[0]["progress"] < 0.5
    assert wait_until(lambda: "output" in returned, timeout=30)
    assert time.monotonic() - stopped_at < 15  # far less than decoding 199 s of speech
    assert returned["output"] == {"error": "job cancelled", "error_code": "cancelled"}


class FakeRunPodAPI(http.server.BaseHTTPRequestHandler):
    """RunPod's job API as the SDK's job loop uses it: job-take(-batch), job-stop, job-done."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: bytes = b"", content_type: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        state = self.server.state
        if "/job-take" in url.path:
            wanted = int(query.get("batch_size", ["1"])[0])
            with state["lock"]:
                jobs, state["queue"] = state["queue"][:wanted], state["queue"][wanted:]
                state["takes"].append((url.path.split("/")[3], wanted, [j["id"] for j in jobs]))
            if not jobs:
                time.sleep(0.2)  # the SDK asks again at once: a long poll that ends empty
                return self._reply(204)
            body = jobs if "/job-take-batch/" in url.path else jobs[0]
            return self._reply(200, json.dumps(body).encode())
        time.sleep(0.2)  # job-stop: nothing to stop
        return self._reply(204)

    def do_POST(self):  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.state["lock"]:
            self.server.state["posts"].append((url.path.rsplit("/", 1)[1], time.monotonic(), body))
        self._reply(200, b"{}")


def test_the_production_job_loop_takes_jobs_by_the_concurrency_and_posts_progress(tiny_en_dir, data_dir, tmp_path):
    """`python -m worker` against a stand-in for RunPod's job API: the SDK's loop asks for
    WHISPER_CONCURRENCY jobs at once and runs them side by side (the short job, second in line,
    finishes first), and a long job's progress updates reach the API in order, before its result."""
    from helpers import wait_until

    jobs = [{"id": "long", "input": {"audio": str(data_dir / "long/silero_test.wav"), "batch_size": 1}},
            {"id": "short", "input": {"audio": str(data_dir / "jfk.flac"), "batch_size": 1}}]
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeRunPodAPI)  # bound before the worker learns the port
    api.daemon_threads = True
    api.state = {"lock": threading.Lock(), "queue": list(jobs), "takes": [], "posts": []}
    threading.Thread(target=api.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{api.server_address[1]}/v2/endpoint"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHISPER_", "RUNPOD_"))}
    env.update(WHISPER_MODEL=tiny_en_dir, WHISPER_DEVICE="cpu", WHISPER_COMPUTE_TYPE="int8", WHISPER_CPU_THREADS="1",
               WHISPER_ALLOW_LOCAL_FILES="true", WHISPER_LOCAL_FILES_ONLY="true", WHISPER_CONCURRENCY="2",
               RUNPOD_POD_ID="pod-1", RUNPOD_WEBHOOK_GET_JOB=f"{base}/job-take/$ID?gpu=cpu",
               RUNPOD_WEBHOOK_POST_OUTPUT=f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=cpu")
    finals = lambda: {job_id: body for job_id, _, body in list(api.state["posts"]) if body.get("status") != "IN_PROGRESS"}  # noqa: E731
    with open(tmp_path / "worker.log", "wb") as log_file:
        worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=str(data_dir.parent.parent), env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            done = wait_until(lambda: {"long", "short"} <= set(finals()) or worker.poll() is not None, timeout=300, interval=0.2)
        finally:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    api.shutdown()
    api.server_close()
    log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    assert done and {"long", "short"} <= set(finals()), log
    first_take = next(take for take in api.state["takes"] if take[2])
    assert first_take == ("job-take-batch", 2, ["long", "short"]), api.state["takes"][:3]
    posts = api.state["posts"]
    order = [job_id for job_id, _, body in posts if body.get("status") != "IN_PROGRESS"]
    assert order == ["short", "long"]  # side by side: the short job did not wait for the long one
    assert wer(JFK, finals()["short"]["output"]["text"]) < 0.1
    assert finals()["long"]["output"]["duration"] == 60.0
    # The updates leave one at a time (the SDK's progress_update had posted each from a thread of
    # its own, and they arrived out of order): they arrive in the order sent, before the result.
    arrived = [body["output"] for job_id, _, body in posts if job_id == "long" and body.get("status") == "IN_PROGRESS"]
    progress = sorted(arrived, key=lambda p: p["segments"])
    assert len(progress) >= 2 and [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)
    assert 0 < progress[-1]["progress"] <= 1 and progress[-1]["segments"] < len(finals()["long"]["output"]["segments"]) + 1
    assert arrived == progress
    result_at = next(index for index, (job_id, _, body) in enumerate(posts) if job_id == "long" and body.get("status") != "IN_PROGRESS")
    assert all(index < result_at for index, (job_id, _, body) in enumerate(posts) if job_id == "long" and body.get("status") == "IN_PROGRESS")


class _ReportingEngine:
    """An engine that reports five segments at once (no decoding), for the progress path alone."""

    model = type("Model", (), {"name": "fake", "compute_type": "int8", "device": "cpu"})()

    def __init__(self, first_taken=None):
        self.reported = threading.Event()
        self.first_taken = first_taken  # if given, set by the sink: the engine goes on once it is

    def check(self, request):
        pass

    def transcribe(self, audio, request, job_id="local", on_segment=None, cancelled=None, timings=None):
        from worker.transcript import Segment, Transcript

        segments = [Segment(id=i, seek=0, start=2.0 * i, end=2.0 * i + 2, text=f" part {i}.", tokens=[1], temperature=0.0,
                            avg_logprob=-0.1, compression_ratio=1.0, no_speech_prob=0.0) for i in range(5)]
        for segment in segments:
            on_segment(segment, (segment.id + 1) / 5)
            if self.first_taken is not None:
                assert self.first_taken.wait(10)
            time.sleep(0.02)  # the SDK's old thread per update has started before the next
        self.reported.set()
        return Transcript(language="en", language_probability=1.0, duration=10.0, duration_after_vad=10.0, segments=segments)


def test_progress_updates_reach_runpod_in_order_when_the_first_post_is_slow(data_dir, monkeypatch):
    """The production wiring (`python -m worker` on RunPod): each job's updates leave one at a
    time in the order made (while one is posted only the latest waiting is kept), so a slow first
    post cannot be overtaken by later ones, and the last update is posted before the job returns.
    The SDK's progress_update had posted each update from a thread of its own."""
    import runpod
    from runpod.serverless.modules import rp_progress

    from helpers import wait_until
    import worker.__main__ as entry_point
    from worker.entries import runpod as entry
    engine = _ReportingEngine()
    built = {}
    posts, entered, lock = [], [], threading.Lock()

    async def send_result(session, job_data, job):  # the SDK's HTTP post, the first one slow
        with lock:
            entered.append(job_data["output"])
            first = len(entered) == 1
        if first:
            await asyncio.get_running_loop().run_in_executor(None, engine.reported.wait, 10)
        with lock:
            posts.append((job["id"], job_data["status"], job_data["output"], time.monotonic()))

    monkeypatch.setattr(rp_progress, "send_result", send_result)
    monkeypatch.setattr(runpod.serverless, "start", lambda config: None)
    monkeypatch.setattr(entry_point, "configure_logging", lambda settings: None)
    monkeypatch.setattr(entry_point, "hub_follows_settings", lambda settings: None)
    monkeypatch.setattr(entry_point.Service, "from_settings",
                        staticmethod(lambda settings: built.setdefault("service", entry_point.Service(settings, engine))))
    monkeypatch.setenv("RUNPOD_WEBHOOK_POST_OUTPUT", "http://127.0.0.1:9/job-done/$RUNPOD_POD_ID/$ID")
    monkeypatch.setenv("WHISPER_ALLOW_LOCAL_FILES", "true")
    try:
        assert entry_point.main() == 0
        output = asyncio.run(entry.handler({"id": "slow-first", "input": {"audio": str(data_dir / "jfk.flac"), "batch_size": 1}}))
        returned = time.monotonic()
    finally:
        entry.set_runner(None)
        if "service" in built:
            built["service"].close()
    assert len(output["segments"]) == 5
    assert wait_until(lambda: len(posts) == len(entered), timeout=15)  # every post begun has ended
    shares = [payload["progress"] for _, _, payload, _ in posts]
    assert {(job_id, status) for job_id, status, _, _ in posts} == {("slow-first", "IN_PROGRESS")}
    assert shares == sorted(set(shares)), shares  # in the order made, none twice
    assert shares[-1] == 1.0 and posts[-1][2]["segments"] == 5  # the last update made is posted
    assert all(at <= returned for *_, at in posts)  # before the job's result


def test_a_progress_post_that_fails_loses_that_update_only(data_dir, tiny_service, caplog):
    calls, first_taken = [], threading.Event()

    def sink(job, payload):
        calls.append(payload["progress"])
        first_taken.set()
        if len(calls) == 1:
            raise ConnectionError("the job API is away")

    settings = dataclasses.replace(tiny_service.settings, allow_local_files=True)
    service = JobRunner(Service(settings, _ReportingEngine(first_taken)), progress=sink)
    with caplog.at_level(logging.WARNING, logger="worker.jobs"):
        output = service.process({"id": "p-fail", "input": {"audio": str(data_dir / "jfk.flac"), "batch_size": 1}})
    assert len(output["segments"]) == 5 and calls[0] == 0.2 and calls[-1] == 1.0 and calls == sorted(set(calls))
    assert any("job=p-fail progress update not sent" in record.getMessage() for record in caplog.records)
