"""The measuring stages of `python -m benchmarks gpu`, each run in a process of its own.

`python -m benchmarks.gpu_stages STAGE PLAN.json RESULT.json [ARG]`: the orchestrator
(benchmarks/gpu.py) starts one per stage with its own time limit; a stage writes RESULT.json as
it goes (`Result.save`), so a stage killed at its limit still leaves what it measured.

Every stage reuses the existing pieces: the engines of benchmarks/engines.py (the worker's own
Engine, transformers with SDPA), the memory monitor of benchmarks/metrics.py (NVML device-wide
peak on GPU), the job path and bookkeeping of benchmarks/pipeline.py (`run_mix`, FileServer,
hour_file; jobs through the RunPod entry and host CPU per stage from the worker's StageMeter, via
benchmarks/job_path.py) with the real device in place of the simulated one, and the job maker /
sender / statistics of the load benchmark (load_jobs.make_jobs, run_jobs).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "gpu-eval"
SAMPLE_RATE = 16000
PROBE_TOKENS = 8


class Result:
    """A stage's result dict, written atomically whenever it grows."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.data: dict = {}

    def save(self) -> None:
        partial = self.path.with_suffix(".part")
        partial.write_text(json.dumps(self.data, indent=1, default=_plain))
        partial.replace(self.path)


def _plain(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
    except ImportError:
        pass
    return str(value)


# -- shared helpers ----------------------------------------------------------------------------

def speech(seconds: float):
    """`seconds` of real speech (LJ Speech, Harvard, jfk in turn, 0.5 s apart, repeated), cached."""
    import numpy as np

    path = CACHE / f"speech-{seconds:g}s.npy"
    if path.is_file():
        return np.load(path)
    from worker.audio.decode import decode_audio

    data = ROOT / "tests" / "data"
    names = sorted((data / "ljspeech").glob("*.wav")) + sorted((data / "harvard").glob("*.wav")) + [data / "jfk.flac"]
    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    one = np.concatenate([part for name in names for part in (decode_audio(str(name), 600.0), pause)])
    total = int(seconds * SAMPLE_RATE)
    samples = np.tile(one, int(np.ceil(total / one.size)))[:total].astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.npy")
    np.save(partial, samples)
    partial.replace(path)
    return samples


def fixed_decode(plan: dict):
    from .gpu_model import install_fixed_decode

    return install_fixed_decode(plan["tokens_per_window"], plan["model"]["special_ids"]["eot"])


def worker_settings(plan: dict, compute_type: Optional[str] = None, **fields):
    from worker.config import Settings

    base = dict(model=plan["model"]["ct2_dir"], device=plan["device"], compute_type=compute_type or plan["worker_compute_type"],
                local_files_only=True, cpu_threads=plan.get("cpu_threads", 0), log_level="WARNING")
    base.update(fields)
    return Settings(**base)


def request_input(plan: dict, **fields) -> dict:
    """What every job of the evaluation asks: temperature 0 (one pass, no fallback), English."""
    values = {"temperature": 0.0, "language": "en", "beam_size": plan["beam_size"]}
    values.update(fields)
    return values


def gpu_reader():
    from .metrics import nvml_reader

    return nvml_reader(0)


# -- probe: can CTranslate2 run on the device with this library path? ----------------------------

def probe(plan: dict, result: Result, _arg: str = "") -> None:
    """Facts and versions as this process sees them, then a tiny model's encode + generate on
    the device (the first cuBLAS call is where a missing libcublas.so.12 shows)."""
    from . import facts

    data = result.data
    data["machine"] = facts.machine()
    data["versions"] = facts.versions()
    data["ld_library_path"] = os.environ.get("LD_LIBRARY_PATH", "")
    data["torch"] = _torch_facts()
    data["nvml"] = _nvml_facts()
    result.save()
    import ctranslate2
    import numpy as np

    from .gpu_model import build

    device = plan["device"]
    data["ctranslate2_cuda_devices"] = ctranslate2.get_cuda_device_count()
    data["supported_compute_types"] = sorted(ctranslate2.get_supported_compute_types(device))
    result.save()
    # a tiny model; on the rehearsal, the very one the model stage then finds built
    same = plan["shape"] == "rehearsal" and plan["tokens_per_window"] == PROBE_TOKENS
    tiny = build("rehearsal", plan["model_dir"] if same else str(CACHE / "probe-model"), PROBE_TOKENS, plan.get("tokenizer"))
    compute_type = "float16" if device == "cuda" else "float32"
    started = time.perf_counter()
    model = ctranslate2.models.Whisper(tiny["ct2_dir"], device=device, compute_type=compute_type)
    features = ctranslate2.StorageView.from_array(np.zeros((1, 128, 3000), np.float32))
    output = model.generate(model.encode(features), [[tiny["special_ids"]["sot"]]], max_length=16, beam_size=1)
    data["generate"] = {"ok": True, "compute_type": compute_type, "tokens": len(output[0].sequences_ids[0]), "seconds": time.perf_counter() - started}
    data["loaded_libraries"] = _loaded_libraries(("cublas", "cudart", "libcuda"))


def _torch_facts() -> dict:
    try:
        import torch

        out = {"version": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            out.update(device=props.name, capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                       memory_gib=round(props.total_memory / 2**30, 1), cudnn=torch.backends.cudnn.version())
        return out
    except Exception as exc:  # torch missing or broken: say so, measure the rest
        return {"error": f"{type(exc).__name__}: {exc}"}


def _nvml_facts() -> dict:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        return {"driver": _text(pynvml.nvmlSystemGetDriverVersion()), "cuda_driver": f"{version // 1000}.{version % 1000 // 10}",
                "gpu": _text(name), "memory_gib": round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30, 1)}
    except Exception as exc:  # no NVML / no GPU (the CPU rehearsal)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _loaded_libraries(names) -> List[str]:
    try:
        with open("/proc/self/maps", encoding="utf-8") as handle:
            paths = {line.split()[-1] for line in handle if "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if any(n in os.path.basename(p) for n in names))


# -- model: the random large-v3-shaped weights ---------------------------------------------------

def model(plan: dict, result: Result, _arg: str = "") -> None:
    from .gpu_model import build

    result.data.update(build(plan["shape"], plan["model_dir"], plan["tokens_per_window"], plan.get("tokenizer"),
                             device=plan["init_device"], dtype=plan["hf_dtype"]))


# -- load time: cold (first use in a fresh process, empty kernel cache) and warm -----------------

def load_time(plan: dict, result: Result, which: str = "cold") -> None:
    data = result.data
    data.update(which=which, compute_type=plan["worker_compute_type"], cuda_cache_path=os.environ.get("CUDA_CACHE_PATH"))
    started = time.perf_counter()
    import faster_whisper  # noqa: F401

    from worker.decoding.engine import Engine
    from worker.decoding.models import load_model
    from worker.request.schema import parse_request

    data["import_seconds"] = time.perf_counter() - started
    fixed_decode(plan)
    settings = worker_settings(plan, batch_size=1)
    read = gpu_reader() if plan["device"] == "cuda" else None
    before = read() if read else None
    started = time.perf_counter()
    loaded = load_model(settings)
    data["load_seconds"] = time.perf_counter() - started
    data["gpu_mb_after_load"] = (read() - before) / 2**20 if read else None
    engine = Engine(loaded, settings)
    window = speech(30.0)
    request = parse_request({"audio": "x", "batch_size": 1, **request_input(plan)}, settings)
    for key in ("first_window_seconds", "second_window_seconds"):
        started = time.perf_counter()
        engine.transcribe(window, request)
        data[key] = time.perf_counter() - started
        result.save()
    engine.close()
    del engine, loaded
    started = time.perf_counter()
    again = load_model(settings)
    data["reload_in_process_seconds"] = time.perf_counter() - started
    del again


# -- engines: CTranslate2 compute types and transformers, sequential and batched ----------------

def engine(plan: dict, result: Result, setting: str) -> None:
    """One engine at one precision: load once, then sequential, then batch sizes upwards until
    throughput stops rising (a gain under plan['saturation_gain'])."""
    from .engines import FASTER_WHISPER, DecodeOptions, RunSpec, import_engine, load_engine
    from .metrics import MemoryMonitor, Stopwatch

    name, precision = setting.split(":", 1)
    device = plan["device"]
    decode = DecodeOptions(language="en", beam_size=plan["beam_size"], vad_filter=False)
    spec = RunSpec(engine=name, precision=precision, batch_size=1, device=device, ct2_dir=plan["model"]["ct2_dir"],
                   hf_dir=plan["model"]["hf_dir"], decode=decode, cpu_threads=plan.get("cpu_threads", 0))
    data = result.data
    data.update(engine=name, precision=precision, device=device, runs=[])
    sequential_audio = speech(plan["sequential_seconds"])
    batched_audio = speech(plan["batched_seconds"])
    import_engine(spec)
    wrappers = fixed_decode(plan) if name == FASTER_WHISPER else []
    monitor = MemoryMonitor(device)
    with monitor:
        with Stopwatch() as load:
            base = load_engine(spec)
        data["load_seconds"] = load.seconds
        data["memory_after_load"] = _memory(monitor)
        with Stopwatch() as warm:
            base.transcribe(sequential_audio[: 30 * SAMPLE_RATE])
        data["warmup_seconds"] = warm.seconds
        result.save()
        _timed(data, result, monitor, spec, base, sequential_audio, plan, wrappers)
        best = 0.0
        for size in plan["batch_sizes"]:
            sized = _replace(spec, batch_size=size)
            variant = _variant(base, sized)
            if plan.get("warm_each_batch_size"):
                variant.transcribe(batched_audio[: size * 30 * SAMPLE_RATE])  # warm-up at this batch shape
            rtfx = _timed(data, result, monitor, sized, variant, batched_audio, plan, wrappers)
            if name == FASTER_WHISPER:
                variant.engine.close()
            if best and rtfx < best * (1 + plan["saturation_gain"]):
                data["stopped_at_batch_size"] = size
                data["stop_reason"] = f"RTFx {rtfx:.1f} is less than {100 * plan['saturation_gain']:g} % above the best so far ({best:.1f})"
                break
            best = max(best, rtfx)
        base.close()
    data["memory"] = monitor.summary()


def _replace(spec, **changes):
    import dataclasses

    return dataclasses.replace(spec, **changes)


def _memory(monitor) -> dict:
    if monitor.gpu:
        monitor.gpu.sample()
        return {"gpu_peak_increase_mb": monitor.gpu.increase / 2**20}
    monitor.rss.sample()
    return {"rss_peak_increase_mb": monitor.rss.increase / 2**20}


def _timed(data: dict, result: Result, monitor, spec, engine_object, audio, plan: dict, wrappers) -> float:
    from .metrics import Stopwatch

    seconds = len(audio) / SAMPLE_RATE
    latencies = []
    for _ in range(plan["repeats"]):
        with Stopwatch() as clock:
            output = engine_object.transcribe(audio)
        latencies.append(clock.seconds)
    latency = min(latencies)
    row = {"label": spec.label, "mode": spec.mode, "batch_size": spec.batch_size, "audio_seconds": seconds, "latencies": latencies,
           "latency_seconds": latency, "rtfx": seconds / latency, "windows": -(-int(seconds) // 30), "text_chars": len(output.text),
           "peak_memory_so_far": _memory(monitor)}
    if wrappers:
        counts = wrappers[-1].generated
        row["tokens_per_window"] = sorted(set(counts[-16:]))
    data["runs"].append(row)
    result.save()
    return row["rtfx"]


def _variant(base, spec):
    """The loaded engine at another batch size, without loading the weights again."""
    from .engines import FasterWhisperEngine, TransformersEngine, request_fields

    if isinstance(base, FasterWhisperEngine):
        from worker.decoding.engine import Engine
        from worker.request.schema import TranscriptionRequest

        variant = object.__new__(FasterWhisperEngine)
        variant.settings = _replace(base.settings, batch_size=spec.batch_size, max_batch_size=spec.batch_size)
        variant.engine = Engine(base.engine.model, variant.settings)
        variant.request = TranscriptionRequest.model_validate(request_fields(spec))
        return variant
    assert isinstance(base, TransformersEngine)
    from transformers import pipeline

    variant = copy.copy(base)
    variant.spec = spec
    variant.pipeline = pipeline("automatic-speech-recognition", model=base.model, tokenizer=base.processor.tokenizer,
                                feature_extractor=base.processor.feature_extractor, chunk_length_s=30, batch_size=spec.batch_size,
                                device=base.device, dtype=base.dtype, ignore_warning=True)
    return variant


# -- pipeline: the worker's job path with the real device ---------------------------------------

class MeasuredDevice:
    """The real device call, timed per batch; quacks like pipeline.SimulatedDevice so
    that pipeline.run_mix reports device busy share, batches and windows per batch."""

    cost = "measured"  # truthy: run_mix reports a busy share

    def __init__(self, backend: Callable):
        self.backend = backend
        self.lock = threading.Lock()
        self.busy: List[tuple] = []
        self.misses = 0
        self.windows = 0

    def __call__(self, windows, context):
        with self.lock:
            started = time.monotonic()
            outputs = self.backend(windows, context)
            self.busy.append((started, time.monotonic(), len(windows), float(context[1].temperatures[0])))
            self.windows += len(windows)
        return outputs


def fit_cost(busy: List[tuple]) -> dict:
    """Least squares: batch seconds = fixed + per_window x windows (the simulated device's model)."""
    import numpy as np

    sizes = np.array([b[2] for b in busy], float)
    seconds = np.array([b[1] - b[0] for b in busy], float)
    out = {"batches": len(busy), "mean_batch_seconds": float(seconds.mean()) if len(busy) else None,
           "sizes_seen": sorted({int(s) for s in sizes})}
    if len(set(sizes.tolist())) >= 2:
        per_window, fixed = np.polyfit(sizes, seconds, 1)
        predicted = fixed + per_window * sizes
        residual = float(((seconds - predicted) ** 2).sum())
        total = float(((seconds - seconds.mean()) ** 2).sum()) or 1e-12
        out.update(fixed=float(fixed), per_window=float(per_window), r2=1 - residual / total)
    elif len(busy):
        out.update(fixed=None, per_window=float(seconds.mean() / sizes.mean()), note="one batch size only: per_window = mean seconds / windows")
    return out


def pipeline_stage(plan: dict, result: Result, _arg: str = "") -> None:
    import hashlib

    from . import job_path
    from . import pipeline as P

    settings_plan = plan["pipeline"]
    fixed_decode(plan)
    env = {"WHISPER_MODEL": plan["model"]["ct2_dir"], "WHISPER_DEVICE": plan["device"], "WHISPER_COMPUTE_TYPE": plan["worker_compute_type"],
           "WHISPER_LOCAL_FILES_ONLY": "true", "WHISPER_ALLOW_PRIVATE_URLS": "true", "WHISPER_CONCURRENCY": str(settings_plan["concurrency"]),
           "WHISPER_BATCH_SIZE": str(settings_plan["batch_size"]), "WHISPER_MAX_BATCH_SIZE": str(settings_plan["batch_size"]),
           "WHISPER_MAX_AUDIO_SECONDS": "14400", "WHISPER_MAX_DOWNLOAD_BYTES": str(2**31), "WHISPER_LOG_LEVEL": "WARNING",
           "WHISPER_CPU_THREADS": str(plan.get("cpu_threads", 0))}
    from worker.config import Settings

    settings = Settings.from_env(env)
    engine, device, _ = job_path.engine_with_device(settings, lambda model: MeasuredDevice(job_path.run_windows_on(model.whisper)))
    service = job_path.make_service(settings, engine)
    server = P.FileServer(P.ROOT)
    data = result.data
    data.update(settings={k: v for k, v in env.items() if k != "WHISPER_MODEL"}, hours=settings_plan["hours"], mixes={})
    try:
        with job_path.Entry(service) as entry, job_path.Stages() as stages:
            long_path = P.hour_file(settings_plan["hours"]).relative_to(P.ROOT)
            shorts = [path.relative_to(P.ROOT) for path in P.short_files()][: settings_plan["short_jobs"]]
            extra = request_input(plan, word_timestamps=True)
            warm = entry.run({"id": "warm-up", "input": {"audio": server.url("tests/data/jfk.flac"), **extra}})
            if "error" in warm:
                raise RuntimeError(f"warm-up job failed: {warm['error']}")
            plans = {"mix": [long_path] + shorts, "long": [long_path]}
            for mix in settings_plan["mixes"]:
                jobs = [{"id": f"{mix}-{i}-{path.name}", "input": {"audio": server.url(str(path)), **extra}} for i, path in enumerate(plans[mix])]
                out = P.run_mix(entry, jobs, settings_plan["concurrency"], device, stages)
                out["transcripts_digest"] = hashlib.sha256(json.dumps(out.pop("transcripts"), sort_keys=True).encode()).hexdigest()[:16]
                out["windows_per_batch"] = round(out["device_windows"] / out["batches"], 2) if out["batches"] else None
                out["measured_cost"] = fit_cost(list(device.busy))
                out["batch_seconds"] = [round(b[1] - b[0], 4) for b in device.busy]
                data["mixes"][mix] = out
                result.save()
    finally:
        server.close()
        job_path.close_service(service)
    allbusy = [(0, s, n) for mix in data["mixes"].values() for s, n in zip(mix["batch_seconds"], mix["batch_windows"])]
    data["measured_cost"] = fit_cost(allbusy)
    simulated = P.PRESETS["h100-large-v3-fp16"]
    data["simulated_preset"] = {"name": "h100-large-v3-fp16", "fixed": simulated.fixed, "per_window": simulated.per_window}


# -- load: p50 / p95 job latency as concurrency rises -------------------------------------------

class InProcessTarget:
    """load_jobs.Target's interface on the worker in this process (no HTTP, no SDK): the jobs go
    through the RunPod entry's handler, without the RunPod SDK the GPU machine lacks."""

    def __init__(self, entry):
        self.entry = entry
        self.count = 0
        self.lock = threading.Lock()

    def submit(self, job_input: dict, timeout: float):
        with self.lock:
            self.count += 1
            job_id = f"load-{self.count}"
        output = self.entry.run({"id": job_id, "input": job_input})
        return output, output.get("error") if isinstance(output, dict) else "no output"


def load_stage(plan: dict, result: Result, _arg: str = "") -> None:
    from . import dataset, job_path
    from .load_jobs import make_jobs, run_jobs

    load_plan = plan["load"]
    fixed_decode(plan)
    top = max(load_plan["concurrency"])
    settings = worker_settings(plan, concurrency=top, batch_size=load_plan["batch_size"], max_batch_size=load_plan["max_batch_size"])
    service = job_path.make_service(settings)
    entry = job_path.Entry(service)
    target = InProcessTarget(entry)
    files = dataset.load(dataset.collect([os.path.join(dataset.BUNDLED_DATA, "harvard"), os.path.join(dataset.BUNDLED_DATA, "ljspeech")]))
    extra = request_input(plan)
    data = result.data
    data.update(settings={"batch_size": load_plan["batch_size"], "max_batch_size": load_plan["max_batch_size"], "files": len(files),
                          "audio_seconds_per_file_mean": sum(f.duration for f in files) / len(files)}, levels=[])
    try:
        warm = make_jobs(files, 1, load_plan["batch_size"], extra, 0)[0]["input"]
        output, error = target.submit(warm, 600)
        if error:
            raise RuntimeError(f"warm-up job failed: {error}")
        best = 0.0
        for concurrency in load_plan["concurrency"]:
            jobs = make_jobs(files, max(load_plan["min_jobs"], load_plan["jobs_per_slot"] * concurrency), load_plan["batch_size"], extra, 0)
            run = run_jobs(target, jobs, concurrency, 600.0, load_plan.get("duration_limit"), False, f"concurrency {concurrency}")
            level = {k: v for k, v in run.items() if k not in ("transcripts", "samples")}
            data["levels"].append(level)
            data["saturation"] = saturation(data["levels"], plan["saturation_gain"])
            result.save()
            rate = level["jobs_per_second"] or 0.0
            if best and rate < best * (1 + plan["saturation_gain"]):
                data["stop_reason"] = f"jobs/s {rate:.2f} is less than {100 * plan['saturation_gain']:g} % above the best so far ({best:.2f})"
                break
            best = max(best, rate)
    finally:
        entry.close()
        job_path.close_service(service)


def saturation(levels: List[dict], gain: float) -> Optional[dict]:
    """The lowest concurrency whose throughput is within `gain` of the best: where the device is full."""
    rates = [level["jobs_per_second"] or 0.0 for level in levels]
    if not rates:
        return None
    best = max(rates)
    for level, rate in zip(levels, rates):
        if rate >= best / (1 + gain):
            return {"concurrency": level["concurrency"], "jobs_per_second": rate, "latency_p50": level["latency_p50"],
                    "latency_p95": level["latency_p95"], "audio_seconds_per_second": level["audio_seconds_per_second"]}
    return None


STAGES: Dict[str, Callable] = {
    "probe": probe,
    "model": model,
    "load_time": load_time,
    "engine": engine,
    "pipeline": pipeline_stage,
    "load": load_stage,
}


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stage, plan_path, result_path = argv[:3]
    arg = argv[3] if len(argv) > 3 else ""
    plan = json.loads(Path(plan_path).read_text())
    result = Result(result_path)
    result.data["env"] = plan.get("env", {})
    try:
        STAGES[stage](plan, result, arg)
    except BaseException:
        result.data["error"] = traceback.format_exc()
        result.save()
        print(result.data["error"], file=sys.stderr)
        return 1
    result.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
