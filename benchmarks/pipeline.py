"""`python -m benchmarks pipeline`: can the host side keep a fast GPU busy? (SIMULATED device)

The worker's real job path runs unchanged (loopback download, PyAV decode, Silero VAD, features,
the cross-job scheduler, segment splitting, word-timing bookkeeping, formatting); only the
scheduler's backend, the one encode + generate + align call per batch, is replaced by a
simulated device. It returns the outputs a real run of a small model (bundled tiny.en on this
CPU, recorded once and cached) gave for the same windows, after holding the batch for the time a
large-v3 batch takes on the chosen GPU: a fixed cost per batch plus a cost per window.

Presets (seconds), derived from published figures, and why they are never faster than the device:
- rtx3070ti-large-v2-fp16: faster-whisper's README (v1.1.0, CUDA 12.4, RTX 3070 Ti 8 GB, the
  13-minute benchmark file, fp16, beam 5): 63 s sequential, 17 s with batch_size=8. 13 min is
  26 windows of 30 s, so one window alone costs 63/26 = 2.42 s and a batch of 8 costs
  17/(26/8) = 5.23 s: fixed + 1 x per_window = 2.42, fixed + 8 x per_window = 5.23, hence
  per_window = 0.40 s, fixed = 2.02 s. The published times are whole runs (host work included),
  so as device times they are upper bounds. large-v3 has large-v2's architecture (128 mel bins
  instead of 80 in the first convolution only), so the device cost is the same.
- a100-large-v3-fp16 / h100-large-v3-fp16: the above divided by the ratio of memory bandwidth
  (A100 80 GB 2.04 TB/s, H100 SXM 3.35 TB/s, RTX 3070 Ti 0.608 TB/s: 3.36x and 5.51x). Beam
  decoding is bound by reading the weights each step, and bandwidth is the smaller of the two
  ratios (fp16 tensor throughput grows more), so the simulated device is slower than the real
  one would be, never faster.
With `--gpu-preset`, every figure is labelled SIMULATED; a real GPU run is `compare` / `load`.

Compared with `--baseline REF` (a git commit, e.g. the main before a change): the same mix runs
through that commit's worker (from a git worktree, in a child process) with the same device,
and the transcripts of both runs are compared word for word.

Nothing of the worker is patched (benchmarks/job_path.py): jobs go in through the RunPod entry,
the simulated device is the Engine's `backend`, and host CPU per stage and each job's first
window come from the worker's own StageMeter; a stage that reported nothing stops the run. A
baseline commit older than worker/stages.py has its stage times and first windows reported as
unavailable; its transcripts and throughput are still compared.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import http.server
import json
import pickle
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from . import bundled, facts, job_path, report
from .audio_files import DATA, ROOT, write_audio
from .command import Command, add_shared

CACHE = ROOT / ".cache" / "pipeline"
SAMPLE_RATE = 16000  # the worker's rate; not imported so that --baseline can pick the worker


@dataclass(frozen=True)
class DeviceCost:
    fixed: float  # seconds per batch
    per_window: float  # seconds per window in the batch

    def batch_seconds(self, windows: int) -> float:
        return self.fixed + self.per_window * windows


_3070TI = DeviceCost(fixed=2.02, per_window=0.40)
PRESETS: Dict[str, DeviceCost] = {
    "rtx3070ti-large-v2-fp16": _3070TI,
    "a100-large-v3-fp16": DeviceCost(round(_3070TI.fixed / 3.36, 3), round(_3070TI.per_window / 3.36, 4)),
    "h100-large-v3-fp16": DeviceCost(round(_3070TI.fixed / 5.51, 3), round(_3070TI.per_window / 5.51, 4)),
}


# -- the audio -------------------------------------------------------------------------------

def short_files() -> List[Path]:
    """Real speech of every length the tests carry: 1.5 s to 199 s."""
    names = sorted((DATA / "ljspeech").glob("*.wav")) + sorted((DATA / "harvard").glob("*.wav")) + sorted((DATA / "ami").glob("*.wav"))
    return names + [DATA / "jfk.flac", DATA / "long" / "columbia.wma"]


def hour_file(hours: float = 1.0) -> Path:
    """An MP3 (64 kb/s mono) of `hours` of real speech: every short file in turn, 0.8 s apart,
    repeated; made once with the worker's decoder and the shared encoder (audio_files.py), then cached."""
    path = CACHE / f"speech-{hours:g}h.mp3"
    if path.exists():
        return path
    import numpy as np

    decode_audio = job_path.find("decode_audio")
    pause = np.zeros(int(0.8 * SAMPLE_RATE), np.float32)
    one = np.concatenate([part for name in short_files() for part in (decode_audio(str(name), 1e9), pause)])
    total = int(hours * 3600 * SAMPLE_RATE)
    samples = np.tile(one, int(np.ceil(total / one.size)))[:total]
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    write_audio(partial, samples, SAMPLE_RATE, fmt="mp3", codec="mp3")
    partial.rename(path)
    return path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class FileServer:
    """The jobs' audio over loopback HTTP, so that the download is part of the path."""

    def __init__(self, root: Path):
        handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)  # noqa: E731
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, relative: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{relative}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the simulated device ----------------------------------------------------------------------

def window_key(window, context) -> str:
    """Stable across processes: the window's features and the decoding options' text."""
    tokenizer, options = context
    digest = hashlib.blake2b(window.features.tobytes(), digest_size=16)
    digest.update(repr((window.content_frames, job_path.find("batching_key")(tokenizer, options))).encode())
    return digest.hexdigest()


class Recording:
    """Outputs of the real model per window, replayed by the simulated device. Kept as plain
    field values (not pickled worker objects), so that a worker whose modules moved, this tree or
    a --baseline commit, replays the same recording into its own WindowOutput."""

    def __init__(self, path: Path):
        self.path = path
        self.outputs: Dict[str, dict] = pickle.loads(path.read_bytes()) if path.exists() else {}
        self.lock = threading.Lock()
        self._output_class = None

    def add(self, key: str, output) -> None:
        with self.lock:
            self.outputs[key] = copy.deepcopy({field.name: getattr(output, field.name) for field in dataclasses.fields(output)})

    def replay(self, key: str):
        if self._output_class is None:
            self._output_class = job_path.find("WindowOutput")
        return self._output_class(**copy.deepcopy(self.outputs[key]))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(pickle.dumps(self.outputs))


class SimulatedDevice:
    """The scheduler's backend: one batch at a time, held for the preset's time, answered from
    the recording (a window never recorded is decoded by the real model first, outside the
    held time, and counted as a miss)."""

    def __init__(self, whisper, recording: Recording, cost: Optional[DeviceCost]):
        self.real = job_path.run_windows_on(whisper)
        self.recording = recording
        self.cost = cost
        self.lock = threading.Lock()
        self.busy: List[tuple] = []
        self.misses = 0
        self.windows = 0

    def __call__(self, windows, context):
        keys = [window_key(window, context) for window in windows]
        missing = [i for i, key in enumerate(keys) if key not in self.recording.outputs]
        if missing:
            self.misses += len(missing) if self.cost else 0
            outputs = self.real([windows[i] for i in missing], context)
            for i, output in zip(missing, outputs):
                self.recording.add(keys[i], output)
        results = [self.recording.replay(key) for key in keys]
        if self.cost is None:
            return results
        with self.lock:  # one device: batches run one after another
            started = time.monotonic()
            time.sleep(self.cost.batch_seconds(len(windows)))
            self.busy.append((started, time.monotonic(), len(windows), float(context[1].temperatures[0])))
            self.windows += len(windows)
        return results


# -- one run -----------------------------------------------------------------------------------

def _digest(output: dict) -> dict:
    segments = output.get("segments") or []
    return {"text": [s["text"] for s in segments],
            "words": [[w["word"], w["start"], w["end"]] for s in segments for w in (s.get("words") or [])]}


def run_jobs(args, cost: Optional[DeviceCost], recording: Recording, mixes: List[str]) -> dict:
    """Run the mixes through the worker importable now (this tree, or --baseline's)."""
    env = {"WHISPER_MODEL": bundled.tiny_en_dir(), "WHISPER_DEVICE": "cpu", "WHISPER_COMPUTE_TYPE": "int8",
           "WHISPER_LOCAL_FILES_ONLY": "true", "WHISPER_ALLOW_PRIVATE_URLS": "true", "WHISPER_CONCURRENCY": str(args.concurrency),
           "WHISPER_BATCH_SIZE": str(args.batch_size), "WHISPER_MAX_BATCH_SIZE": str(args.max_batch_size),
           "WHISPER_MAX_AUDIO_SECONDS": "14400", "WHISPER_MAX_DOWNLOAD_BYTES": str(2**31), "WHISPER_LOG_LEVEL": "WARNING"}
    settings = job_path.find("Settings").from_env(env)
    engine, device, _ = job_path.engine_with_device(settings, lambda model: SimulatedDevice(model.whisper, recording, cost))
    service = job_path.make_service(settings, engine)
    server = FileServer(ROOT)
    long_path = hour_file(args.hours).relative_to(ROOT)
    shorts = [path.relative_to(ROOT) for path in short_files()]
    plans = {"mix": [long_path] + shorts, "long": [long_path]}
    results = {}
    try:
        with job_path.Entry(service) as entry, job_path.Stages() as stages:
            for mix in mixes:
                jobs = [{"id": f"{mix}-{i}-{path.name}", "input": {"audio": server.url(str(path)), "word_timestamps": True}}
                        for i, path in enumerate(plans[mix])]
                results[mix] = run_mix(entry, jobs, args.concurrency, device, stages)
    finally:
        server.close()
        job_path.close_service(service)
    return results


def run_mix(entry: job_path.Entry, jobs: List[dict], concurrency: int, device, stages: job_path.Stages,
            required_stages: Optional[List[str]] = None) -> dict:
    """The jobs through the entry, `concurrency` at a time, and what they add up to. `device`
    keeps its batches (SimulatedDevice, or the GPU evaluation's measured one); every stage in
    `required_stages` (all of worker.stages.STAGES by default) must have reported host CPU."""
    device.busy.clear()
    device.windows = device.misses = 0
    stages.clear()
    started_at: Dict[str, float] = {}
    ended_at: Dict[str, float] = {}
    outputs: Dict[str, dict] = {}

    def one(job):
        started_at[job["id"]] = time.monotonic()
        outputs[job["id"]] = entry.run(job)
        ended_at[job["id"]] = time.monotonic()

    cpu = time.process_time()
    begin = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, jobs))
    wall = time.monotonic() - begin
    cpu = time.process_time() - cpu
    errors = {name: out["error"] for name, out in outputs.items() if "error" in out}
    if errors:
        raise RuntimeError(f"jobs failed: {errors}")
    stages.check(required_stages)
    audio = sum(out["metrics"]["audio_seconds"] for out in outputs.values())
    hours = audio / 3600
    busy = sum(end - start for start, end, *_ in device.busy)
    by_temperature: Dict[str, List[int]] = {}  # temperature -> [batches, windows]: fallback rounds are batches of their own
    for _, _, size, temperature in device.busy:
        counts = by_temperature.setdefault(f"{temperature:g}", [0, 0])
        counts[0], counts[1] = counts[0] + 1, counts[1] + size
    seconds = stages.seconds()
    if seconds is None:
        waits, host = None, {}
    else:
        firsts = {name: stages.first_window(name) for name in started_at}
        waits = {name: round(at - started_at[name], 3) for name, at in sorted(firsts.items()) if at is not None}
        host = {stage: round(value / hours, 2) for stage, value in sorted(seconds.items())}
    host["all host CPU"] = round(cpu / hours, 2)
    return {
        "jobs": len(jobs), "audio_seconds": round(audio, 1), "wall_seconds": round(wall, 2),
        "throughput": round(audio / wall, 1), "device_busy_share": round(busy / wall, 3) if device.cost else None,
        "device_seconds": round(busy, 2), "device_windows": device.windows, "batches": len(device.busy),
        "batch_windows": [size for _, _, size, _ in device.busy], "batches_by_temperature": by_temperature,
        "stage_times": stages.unavailable or "measured: worker.stages.StageMeter",
        "first_window_seconds": waits,
        "job_seconds": {name: round(ended_at[name] - started_at[name], 2) for name in sorted(ended_at)},
        "host_cpu_seconds_per_audio_hour": host,
        "replay_misses": device.misses,
        "transcripts": {name: _digest(out) for name, out in sorted(outputs.items())},
    }


# -- baseline in a child process ---------------------------------------------------------------

def baseline_tree(ref: str) -> Path:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True, check=True).stdout.strip()
    tree = CACHE / f"worktree-{commit[:12]}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True, capture_output=True)
    return tree


_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from benchmarks import pipeline
sys.path.insert(0, {tree!r})
print(json.dumps(pipeline.child(json.loads(sys.argv[1]))))
"""


def run_baseline(args, tree: Path, recording: Recording) -> dict:
    payload = json.dumps({"args": {k: getattr(args, k) for k in ("concurrency", "batch_size", "max_batch_size", "hours", "mixes")},
                          "preset": args.gpu_preset, "recording": str(recording.path)})
    done = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT), tree=str(tree)), payload],
                          capture_output=True, text=True, cwd=str(CACHE))
    if done.returncode != 0:
        raise RuntimeError(f"baseline run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(payload: dict) -> dict:
    import worker

    assert not str(Path(worker.__file__).resolve()).startswith(str(ROOT / "worker")), "baseline imported this tree's worker"
    args = argparse.Namespace(**payload["args"])
    return run_jobs(args, PRESETS[payload["preset"]], Recording(Path(payload["recording"])), args.mixes)


# -- report ------------------------------------------------------------------------------------

def compare_transcripts(ours: dict, theirs: dict) -> dict:
    same = [name for name in ours if ours[name] == theirs.get(name)]
    return {"jobs": len(ours), "identical": len(same), "different": sorted(set(ours) - set(same))}


def summary_rows(label: str, result: dict, long_name: Optional[str]) -> List[list]:
    rows = []
    for mix, data in result.items():
        waits = data.get("first_window_seconds")
        per_batch = round(data["device_windows"] / data["batches"], 1) if data["batches"] else None
        if waits is None:  # a worker without worker/stages.py: not measured, not zero
            long_wait = short_wait = "unavailable"
        else:
            long_wait = next((v for k, v in waits.items() if long_name and k.endswith(long_name)), None)
            short = sorted(v for k, v in waits.items() if not (long_name and k.endswith(long_name)))
            short_wait = short[len(short) // 2] if short else None
        rows.append([label, mix, data["jobs"], data["wall_seconds"], data["throughput"], data["device_busy_share"], data["batches"],
                     per_batch, long_wait, short_wait])
    return rows


def markdown(data: dict) -> str:
    lines = [f"# Pipeline benchmark: SIMULATED {data['preset']} device ({data['cost']['fixed']} s per batch + "
             f"{data['cost']['per_window']} s per window), host work real", ""]
    lines += report.machine_lines(data["machine"], data["versions"])
    lines += ["", f"Command: `{data['command']}`", "",
              f"Concurrency {data['concurrency']}, batch_size {data['batch_size']}, max_batch_size {data['max_batch_size']}; "
              f"mix = one {data['hours']:g} h MP3 + {data['short_jobs']} short files; long = the {data['hours']:g} h file alone.", ""]
    long_name = data["long_file"]
    rows = summary_rows("this tree", data["results"], long_name)
    if data.get("baseline"):
        rows += summary_rows(f"baseline {data['baseline_ref']}", data["baseline"], long_name)
    lines.append(report.markdown_table(["worker", "run", "jobs", "wall s", "audio s / wall s (SIMULATED)", "device busy share",
                                        "batches", "windows per batch", "long file: first window s",
                                        "short files: median first window s"], rows))
    lines += ["", "Host CPU seconds per audio hour, by stage:", ""]
    stage_rows = []
    for label, result in (("this tree", data["results"]), (f"baseline {data.get('baseline_ref')}", data.get("baseline") or {})):
        for mix, values in result.items():
            unavailable = values.get("stage_times", "").startswith("unavailable")
            stage_rows.append([label, mix] + ([f"stages {values['stage_times']}"] if unavailable else [])
                              + [f"{k} {v}" for k, v in values["host_cpu_seconds_per_audio_hour"].items()])
    width = max(len(r) for r in stage_rows)
    lines.append(report.markdown_table(["worker", "run"] + ["stage"] * (width - 2), [r + [""] * (width - len(r)) for r in stage_rows]))
    for name, value in data.get("ratios", {}).items():
        lines.append(f"- {name}: {value}")
    for mix, check in (data.get("transcripts_vs_baseline") or {}).items():
        lines.append(f"- transcripts vs baseline ({mix}): {check['identical']}/{check['jobs']} identical word for word"
                     + (f"; different: {', '.join(check['different'])}" if check["different"] else ""))
    return "\n".join(lines) + "\n"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu-preset", choices=sorted(PRESETS), default="h100-large-v3-fp16", help="simulated device speed [%(default)s]")
    add_shared(parser, "concurrency", "batch_size", "max_batch_size", defaults={"batch_size": 16, "max_batch_size": 16},
               notes={"batch_size": "WHISPER_BATCH_SIZE"})
    parser.add_argument("--hours", type=float, default=1.0, help="length of the long file [%(default)s]")
    parser.add_argument("--mixes", type=lambda v: [m for m in v.split(",") if m], default=["mix", "long"], help="mix,long [%(default)s]")
    parser.add_argument("--baseline", default=None, help="also run this git commit's worker (e.g. main before a change) and compare")
    add_shared(parser, "out", notes={"out": "default benchmarks/results/pipeline-<preset>"})


def run(args) -> int:
    recording = Recording(CACHE / f"replay-tiny.en-{args.hours:g}h-fields.pkl")
    hour_file(args.hours)
    if len(recording.outputs) == 0 or getattr(args, "record", False):
        print("recording the real model's outputs once (tiny.en on this CPU) ...", flush=True)
        run_jobs(args, None, recording, args.mixes[:1])
        recording.save()
    cost = PRESETS[args.gpu_preset]
    print(f"running with the SIMULATED {args.gpu_preset} device ...", flush=True)
    results = run_jobs(args, cost, recording, args.mixes)
    data = {"preset": args.gpu_preset, "cost": vars(cost), "simulated": True, "machine": facts.machine(), "versions": facts.versions(),
            "command": "python -m benchmarks " + " ".join(getattr(args, "argv", []) or ["pipeline"]),
            "concurrency": args.concurrency, "batch_size": args.batch_size, "max_batch_size": args.max_batch_size, "hours": args.hours,
            "short_jobs": len(short_files()), "long_file": hour_file(args.hours).name, "results": results}
    if args.baseline:
        print(f"running baseline {args.baseline} with the same device ...", flush=True)
        data["baseline_ref"] = args.baseline
        data["baseline"] = run_baseline(args, baseline_tree(args.baseline), recording)
        data["transcripts_vs_baseline"] = {mix: compare_transcripts(results[mix]["transcripts"], data["baseline"][mix]["transcripts"])
                                           for mix in results if mix in data["baseline"]}
        ratios = {}
        for mix in results:
            ours, theirs = results[mix], data["baseline"].get(mix)
            if theirs:
                ratios[f"{mix}: device busy share, this tree / baseline"] = round(ours["device_busy_share"] / theirs["device_busy_share"], 2)
                ratios[f"{mix}: wall time, this tree / baseline"] = round(ours["wall_seconds"] / theirs["wall_seconds"], 2)
        data["ratios"] = ratios
    out = args.out or str(ROOT / "benchmarks" / "results" / f"pipeline-{args.gpu_preset}")
    for result in [results] + ([data["baseline"]] if args.baseline else []):
        for mix in result.values():
            mix["transcripts_digest"] = hashlib.sha256(json.dumps(mix.pop("transcripts"), sort_keys=True).encode()).hexdigest()[:16]
    report.write_results(out, data, markdown(data), chart)
    return 0


COMMAND = Command("pipeline", "can the host keep a fast GPU busy? the real job path with a SIMULATED device: throughput, "
                              "device-busy share, first window, host CPU per stage", configure, run)


def chart(path: str, data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [("this tree", data["results"])] + ([(f"baseline {data['baseline_ref']}", data["baseline"])] if data.get("baseline") else [])
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for offset, (label, result) in enumerate(runs):
        mixes = list(result)
        positions = [i + offset * 0.4 for i in range(len(mixes))]
        axes[0].bar(positions, [result[m]["device_busy_share"] for m in mixes], width=0.4, label=label)
        axes[1].bar(positions, [result[m]["wall_seconds"] for m in mixes], width=0.4, label=label)
    for axis, title in zip(axes, ("device busy share (SIMULATED device)", "wall seconds")):
        axis.set_xticks([i + 0.2 for i in range(len(runs[0][1]))], list(runs[0][1]))
        axis.set_title(title)
        axis.legend()
    figure.suptitle(f"pipeline, SIMULATED {data['preset']}, {data['machine'].get('cpu_affinity', '?')} usable cores")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
