"""`python -m benchmarks gpu` (or `python -m benchmarks.gpu`): the whole GPU evaluation in one call.

Stages, each in its own process with its own time budget (a failure or a timeout is recorded with
its error and the next stage still runs, so one call always leaves a results folder):
  setup      install the carried wheels (--wheels), then find a cuBLAS CTranslate2 can use: as
             the machine is, else a libcublas.so.12 symlink to CUDA 13's cuBLAS in a temp folder
             on LD_LIBRARY_PATH (never in the image); what was tried and what worked is recorded
  model      large-v3-shaped random weights from the bundled config, transformers -> CTranslate2
             (benchmarks/gpu_model.py), decoding a fixed number of tokens per window
  load_time  the worker's model load and first window, cold (fresh process, empty kernel cache:
             CTranslate2 ships no sm_90 code, so its PTX is JIT-compiled) and warm
  engines    CTranslate2 float16 / int8_float16 / int8 and transformers fp16 + SDPA on the same
             audio, sequential and batched (batch sizes upwards until throughput stops rising):
             latency, RTFx, NVML peak memory (benchmarks/engines.py's engines)
  pipeline   benchmarks/pipeline.py's job path with the real device: device busy share, windows
             per batch, host CPU per audio hour, and the measured per-batch / per-window costs
             that replace the SIMULATED preset (0.367 s + 0.0726 s per window)
  load       load_jobs' jobs at rising concurrency: p50 / p95 latency where the device saturates
  tests      tests/decoding/test_gpu.py with WHISPER_REQUIRE_GPU=1
Writes results.json, results.md, engines.png / pipeline.png / load.png (matplotlib; skipped and
said so without it) and stages.log to benchmarks/results/<gpu>-<date>/.

`--rehearse` runs the same flow on CPU with a tiny random Whisper, few tokens and little audio
(CTranslate2 float16 / int8_float16 become float32 / int8_float32 there, transformers float32),
writing the same files under .cache/gpu-eval/results/; `--quick` shrinks it further (the test:
one CTranslate2 compute type, one batch size, fewer jobs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import report
from .command import Command, add_shared

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "gpu-eval"
RESULTS = ROOT / "benchmarks" / "results"
SCHEMA = "whisper-gpu-eval/1"
STAGE_ORDER = ("setup", "model", "load_time", "engines", "pipeline", "load", "tests")
CPU_PRECISION = {"float16": "float32", "int8_float16": "int8_float32", "int8": "int8", "bfloat16": "float32"}


# -- the plan ----------------------------------------------------------------------------------

def make_plan(args) -> dict:
    """Every size and budget of the run; GPU figures are sized to fit 8 minutes on an H100."""
    if args.rehearse:
        plan = {
            "shape": "rehearsal", "tokens_per_window": 8, "beam_size": 2, "device": "cpu", "init_device": "cpu", "hf_dtype": "float32",
            "worker_compute_type": "int8", "cpu_threads": 2,
            "sequential_seconds": 35, "batched_seconds": 65, "batch_sizes": [2, 4], "repeats": 1, "saturation_gain": 0.05,
            "warm_each_batch_size": True,
            "pipeline": {"hours": 0.02, "short_jobs": 3, "mixes": ["mix"], "concurrency": 2, "batch_size": 4},
            "load": {"concurrency": [1, 2, 4], "batch_size": 4, "max_batch_size": 4, "jobs_per_slot": 2, "min_jobs": 3, "duration_limit": 20},
            "budgets": {"setup": 60, "model": 60, "load_time": 60, "engines": 120, "pipeline": 60, "load": 45, "tests": 60},
            "time_limit": 170,
        }
        if args.quick:
            plan.update(sequential_seconds=30, batched_seconds=45, batch_sizes=[2], warm_each_batch_size=False)
            plan["pipeline"].update(short_jobs=1)
            plan["load"].update(concurrency=[1, 2], min_jobs=2)
    else:
        plan = {
            "shape": "large-v3", "tokens_per_window": 128, "beam_size": 5, "device": "cuda", "init_device": "cuda", "hf_dtype": "float16",
            "worker_compute_type": "float16", "cpu_threads": 0,
            "sequential_seconds": 120, "batched_seconds": 960, "batch_sizes": [8, 16, 32], "repeats": 1, "saturation_gain": 0.05,
            "warm_each_batch_size": False,  # kernels are compiled by the first warm-up; larger batches reuse them
            "pipeline": {"hours": 0.25, "short_jobs": 28, "mixes": ["mix"], "concurrency": 4, "batch_size": 16},
            "load": {"concurrency": [1, 4, 8, 16, 32], "batch_size": 8, "max_batch_size": 16, "jobs_per_slot": 3, "min_jobs": 8, "duration_limit": 12},
            "budgets": {"setup": 60, "model": 100, "load_time": 60, "engines": 140, "pipeline": 50, "load": 40, "tests": 40},
            "time_limit": 470,
        }
    compute_types = ["int8_float16"] if args.quick else ["float16", "int8_float16", "int8"]
    # CTranslate2's deployed precision and transformers first: if time runs short, the int8 rows go
    fw = [f"faster-whisper:{_precision(plan, ct)}" for ct in compute_types]
    plan["settings"] = fw[:1] + [f"transformers:{'float16' if plan['device'] == 'cuda' else 'float32'}"] + fw[1:]
    plan["precision_asked"] = {_precision(plan, ct): ct for ct in compute_types}
    if args.tokens:
        plan["tokens_per_window"] = args.tokens
    if args.batch_sizes:
        plan["batch_sizes"] = args.batch_sizes
    if args.time_limit:
        plan["time_limit"] = args.time_limit
    plan["model_dir"] = str(CACHE / f"model-{plan['shape']}")
    plan["rehearsal"] = bool(args.rehearse)
    plan["quick"] = bool(args.quick)
    return plan


def _precision(plan: dict, compute_type: str) -> str:
    return compute_type if plan["device"] == "cuda" else CPU_PRECISION[compute_type]


# -- running a stage -------------------------------------------------------------------------

class Runner:
    """Child processes with a deadline each and for the whole call; output goes to stages.log."""

    def __init__(self, out_dir: Path, time_limit: float):
        self.out_dir = out_dir
        self.deadline = time.monotonic() + time_limit
        self.log_path = out_dir / "stages.log"
        self.work = Path(tempfile.mkdtemp(prefix="gpu-eval-"))

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, label: str, command: List[str], env: Dict[str, str], timeout: float) -> Tuple[Optional[int], float, str]:
        """(exit code or None on timeout, seconds, the output's tail)."""
        timeout = max(1.0, min(timeout, self.left()))
        started = time.monotonic()
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"\n===== {label}: {' '.join(command)} (limit {timeout:.0f} s)\n")
            log.flush()
            start = log.tell()
            proc = subprocess.Popen(command, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code: Optional[int] = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = None
        seconds = time.monotonic() - started
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            log.seek(start)
            tail = log.read()[-4000:]
        return code, seconds, tail

    def stage(self, name: str, plan_path: Path, env: Dict[str, str], timeout: float, arg: str = "") -> dict:
        """A benchmarks.gpu_stages stage: its status, seconds, result (partial on timeout) and error."""
        result_path = self.work / f"{name}-{arg.replace(':', '-') or 'main'}.json"
        result_path.unlink(missing_ok=True)
        command = [sys.executable, "-m", "benchmarks.gpu_stages", name, str(plan_path), str(result_path)] + ([arg] if arg else [])
        code, seconds, tail = self.run(f"{name} {arg}".strip(), command, env, timeout)
        result = json.loads(result_path.read_text()) if result_path.is_file() else {}
        error = result.pop("error", None)
        if code is None:
            status, error = "timeout", f"stopped at its {timeout:.0f} s limit" + (f"\n{error}" if error else "")
        elif code != 0:
            status, error = "error", error or tail or f"exit code {code}"
        else:
            status = "ok"
        out = {"status": status, "seconds": round(seconds, 2), "limit_seconds": round(timeout, 1), "result": result}
        if error:
            out["error"] = error.strip()[-4000:]
        return out


def child_env(python_path: List[str], extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISPER_")}
    env["PYTHONPATH"] = os.pathsep.join(python_path + [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONDONTWRITEBYTECODE="1")
    env.update(extra or {})
    return env


# -- setup: wheels and cuBLAS ------------------------------------------------------------------

def install_wheels(wheels: Path, site: Path, runner: Runner, timeout: float) -> dict:
    manifest = json.loads((wheels / "manifest.json").read_text())
    names = [f"{name}=={version}" for name, version in manifest["packages"].items()]
    shutil.rmtree(site, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels), "--no-deps", "--no-compile",
               "--disable-pip-version-check", "--target", str(site)] + names
    code, seconds, tail = runner.run("setup: pip install", command, child_env([]), timeout)
    out = {"command": " ".join(command), "seconds": round(seconds, 2), "ok": code == 0, "packages": manifest["packages"],
           "wheel_bytes": manifest.get("total_bytes"), "how": "pip"}
    if code != 0:
        out["pip_error"] = tail.strip()[-2000:] or ("timeout" if code is None else f"exit code {code}")
        try:  # the wheels hold no scripts or data folders: unpacking them is an install too
            shutil.rmtree(site, ignore_errors=True)
            for wheel in sorted(wheels.glob("*.whl")):
                with zipfile.ZipFile(wheel) as archive:
                    archive.extractall(site)
            out.update(ok=True, how="unzip (pip failed)")
        except (OSError, zipfile.BadZipFile) as exc:
            out["error"] = f"pip failed and unzip failed: {exc}"
    tokenizer = wheels / manifest.get("tokenizer", "tokenizer-base.json.gz")
    if tokenizer.is_file():
        target = CACHE / "tokenizer-base.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(tokenizer, "rb") as source, open(target, "wb") as handle:
            shutil.copyfileobj(source, handle)
        out["tokenizer"] = str(target)
    return out


def cublas_candidates(search: Optional[List[str]] = None) -> Dict[str, List[str]]:
    """libcublas / libcublasLt files by soname version, from pip's nvidia packages on sys.path,
    the CUDA toolkit folders and ldconfig's cache."""
    folders = list(search) if search is not None else _library_folders()
    found: Dict[str, List[str]] = {}
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "libcublas*.so.*"))):
            match = re.match(r"(libcublas(?:Lt)?)\.so\.(\d+)$", os.path.basename(path))
            if match:
                found.setdefault(f"{match.group(1)}.so.{match.group(2)}", [])
                if path not in found[f"{match.group(1)}.so.{match.group(2)}"]:
                    found[f"{match.group(1)}.so.{match.group(2)}"].append(path)
    return found


def _library_folders() -> List[str]:
    folders = []
    for entry in sys.path:
        folders += glob.glob(os.path.join(entry, "nvidia", "*", "lib")) + glob.glob(os.path.join(entry, "nvidia", "cu*", "lib"))
    folders += ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64"]
    folders += sorted(glob.glob("/usr/local/cuda-*/lib64"))
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
        folders += [os.path.dirname(line.split("=>")[-1].strip()) for line in listing.splitlines() if "libcublas" in line]
    except (OSError, subprocess.SubprocessError):
        pass
    seen, out = set(), []
    for folder in folders:
        if folder not in seen and os.path.isdir(folder):
            seen.add(folder)
            out.append(folder)
    return out


def cublas_link_dir(found: Dict[str, List[str]], want: str = "12") -> Optional[dict]:
    """A temp folder where libcublas.so.<want> (and libcublasLt) point at the newest cuBLAS found;
    returned with the LD_LIBRARY_PATH to use, or None when there is no cuBLAS at all."""
    versions = sorted({int(name.rsplit(".", 1)[1]) for name in found if name.startswith("libcublas.so.")}, reverse=True)
    if not versions:
        return None
    have = versions[0]
    real = found[f"libcublas.so.{have}"][0]
    folder = tempfile.mkdtemp(prefix="gpu-eval-cublas-")
    links = {f"libcublas.so.{want}": real}
    lt = found.get(f"libcublasLt.so.{have}")
    if lt:
        links[f"libcublasLt.so.{want}"] = lt[0]
        links[f"libcublasLt.so.{have}"] = lt[0]  # libcublas finds its Lt through $ORIGIN: the link's folder
    for name, target in links.items():
        os.symlink(target, os.path.join(folder, name))
    path = os.pathsep.join([folder, os.path.dirname(real)] + ([os.environ["LD_LIBRARY_PATH"]] if os.environ.get("LD_LIBRARY_PATH") else []))
    return {"folder": folder, "links": links, "cublas_version_linked": have, "LD_LIBRARY_PATH": path}


def setup(args, plan: dict, runner: Runner, plan_path: Path) -> Tuple[dict, Dict[str, str]]:
    budget = plan["budgets"]["setup"]
    started = time.monotonic()
    record: dict = {}
    python_path: List[str] = []
    if args.wheels:
        site = Path(args.site)
        record["wheels"] = install_wheels(Path(args.wheels), site, runner, budget / 2)
        python_path.append(str(site))
        if record["wheels"].get("tokenizer"):
            plan["tokenizer"] = record["wheels"]["tokenizer"]
    elif plan["device"] == "cuda":
        record["wheels"] = {"ok": None, "note": "no --wheels: the packages installed here are used"}
    env = child_env(python_path)
    _write_plan(plan, plan_path)
    attempts = []

    def probe(label: str, probe_env: Dict[str, str], extra: dict) -> dict:
        left = budget - (time.monotonic() - started)
        outcome = runner.stage("probe", plan_path, probe_env, max(left, 5))
        attempt = {"library_path": label, "status": outcome["status"], **extra}
        generated = outcome["result"].get("generate")
        attempt["generate_ok"] = bool(generated and generated.get("ok"))
        attempt["loaded_libraries"] = outcome["result"].get("loaded_libraries")
        if outcome.get("error"):
            attempt["error"] = _last_lines(outcome["error"], 6)
        attempts.append(attempt)
        return outcome

    first = probe("as the machine is", env, {"LD_LIBRARY_PATH": env.get("LD_LIBRARY_PATH", "")})
    chosen = first
    if not attempts[-1]["generate_ok"] and plan["device"] == "cuda":
        found = cublas_candidates()
        record["cublas_found"] = found
        if "libcublas.so.12" in found:
            folder = os.path.dirname(found["libcublas.so.12"][0])
            extra_env = {"LD_LIBRARY_PATH": os.pathsep.join([folder] + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))}
            second = probe(f"the folder of {found['libcublas.so.12'][0]} on LD_LIBRARY_PATH", {**env, **extra_env}, extra_env)
        else:
            link = cublas_link_dir(found)
            second = None
            if link:
                extra_env = {"LD_LIBRARY_PATH": link["LD_LIBRARY_PATH"]}
                second = probe(f"libcublas.so.12 -> {link['links']['libcublas.so.12']} (symlink in {link['folder']})", {**env, **extra_env},
                               {"links": link["links"], "LD_LIBRARY_PATH": link["LD_LIBRARY_PATH"]})
            else:
                attempts.append({"library_path": "symlink", "status": "skipped", "error": "no libcublas.so.* found on this machine"})
        if second is not None and attempts[-1]["generate_ok"]:
            env = {**env, **extra_env}
            chosen = second
    record["cublas"] = {"attempts": attempts, "works": next((a["library_path"] for a in attempts if a.get("generate_ok")), None)}
    facts_result = chosen["result"]
    record["facts"] = {k: facts_result.get(k) for k in ("machine", "versions", "torch", "nvml", "ctranslate2_cuda_devices",
                                                       "supported_compute_types", "ld_library_path")}
    ok = attempts[-1].get("generate_ok") and (record.get("wheels", {}).get("ok") is not False)
    out = {"status": "ok" if ok else "error", "seconds": round(time.monotonic() - started, 2), "limit_seconds": budget, "result": record}
    if not ok:
        out["error"] = "; ".join(a.get("error", a["status"]) for a in attempts if not a.get("generate_ok")) or record.get("wheels", {}).get("error", "")
    return out, env


def _last_lines(text: str, count: int) -> str:
    return "\n".join([line for line in text.strip().splitlines() if line.strip()][-count:])


def env_stamp(setup_stage: dict, plan: dict) -> dict:
    """GPU, driver, CUDA and library versions: written beside every figure."""
    facts = setup_stage.get("result", {}).get("facts", {}) or {}
    versions = facts.get("versions") or {}
    nvml = facts.get("nvml") or {}
    torch_facts = facts.get("torch") or {}
    return {
        "gpu": nvml.get("gpu") or torch_facts.get("device") or ("none (CPU rehearsal)" if plan["rehearsal"] else "unknown"),
        "driver": nvml.get("driver"), "cuda_driver": nvml.get("cuda_driver"), "cuda_torch": torch_facts.get("cuda"),
        "cublas": setup_stage.get("result", {}).get("cublas", {}).get("works"),
        "python": versions.get("python"), "ctranslate2": versions.get("ctranslate2"), "faster-whisper": versions.get("faster-whisper"),
        "torch": versions.get("torch"), "transformers": versions.get("transformers"), "av": versions.get("av"), "numpy": versions.get("numpy"),
        "cpu": (facts.get("machine") or {}).get("cpu"), "rehearsal": plan["rehearsal"],
    }


def stamp_text(stamp: dict) -> str:
    keys = ("gpu", "driver", "cuda_driver", "cuda_torch", "cublas", "ctranslate2", "faster-whisper", "torch", "transformers", "av", "python")
    names = {"cuda_driver": "CUDA (driver)", "cuda_torch": "CUDA (torch)", "gpu": "GPU"}
    return "; ".join(f"{names.get(k, k)} {stamp.get(k)}" for k in keys) + ("; REHEARSAL on CPU, tiny random model" if stamp.get("rehearsal") else "")


def _write_plan(plan: dict, path: Path) -> None:
    path.write_text(json.dumps(plan, indent=1))


# -- the whole call ----------------------------------------------------------------------------

def gpu_name() -> Optional[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
        return line.split(",")[0].strip() or None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def evaluate(args) -> int:
    plan = make_plan(args)
    created = dt.datetime.now().astimezone()
    if args.out:
        out_dir = Path(args.out)
    elif args.rehearse:
        out_dir = CACHE / "results" / f"rehearsal-{created:%Y-%m-%d}"
    else:
        out_dir = RESULTS / f"{slug(gpu_name() or 'no-gpu')}-{created:%Y-%m-%d}"
    if out_dir.is_dir() and any(out_dir.iterdir()):
        previous = out_dir / "results.json"
        if not (previous.is_file() and json.loads(previous.read_text()).get("schema") == SCHEMA):
            raise SystemExit(f"{out_dir} holds files that no GPU evaluation wrote: choose another --out")
        shutil.rmtree(out_dir)  # an earlier evaluation's folder: replaced whole
    out_dir.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "last-results").write_text(str(out_dir) + "\n")  # for the shell that copies the folder off the machine
    runner = Runner(out_dir, plan["time_limit"])
    plan_path = runner.work / "plan.json"
    wanted = list(args.stages or STAGE_ORDER)
    if set(wanted) & {"load_time", "engines", "pipeline", "load"} and "model" not in wanted:
        wanted.append("model")  # they need the weights (reused when an earlier build finished)
    data = {"schema": SCHEMA, "created": created.isoformat(timespec="seconds"), "rehearsal": plan["rehearsal"], "quick": plan["quick"],
            "command": "python -m benchmarks gpu " + " ".join(a for a in (getattr(args, "argv", None) or [])[:] if a != "gpu"), "plan": plan, "env": {}, "stages": {},
            "charts": {}}
    print(f"GPU evaluation{' (REHEARSAL on CPU)' if plan['rehearsal'] else ''}: {out_dir} (limit {plan['time_limit']} s)", flush=True)

    def record(name: str, stage: dict) -> None:
        stage.setdefault("budget_seconds", plan["budgets"].get(name))
        data["stages"][name] = stage
        report.write_json(str(out_dir / "results.json"), data)
        print(f"  {name:<10} {stage['status']:<8} {stage.get('seconds', 0):7.1f} s" + (f"  {_last_lines(stage['error'], 1)[:150]}" if stage.get("error") else ""), flush=True)

    setup_stage, env = setup(args, plan, runner, plan_path)
    data["env"] = env_stamp(setup_stage, plan)
    plan["env"] = data["env"]
    record("setup", setup_stage)
    _write_plan(plan, plan_path)

    def budget(name: str) -> Optional[float]:
        if name not in wanted:
            return None
        left = runner.left()
        if left < 5:
            record(name, {"status": "skipped", "seconds": 0, "error": f"no time left in the {plan['time_limit']} s limit"})
            return None
        return min(plan["budgets"][name], left)

    limit = budget("model")
    if limit is not None:
        stage = runner.stage("model", plan_path, env, limit)
        record("model", stage)
        if stage["status"] == "ok":
            plan["model"] = stage["result"]
            _write_plan(plan, plan_path)
    if "model" not in plan:
        for name in ("load_time", "engines", "pipeline", "load"):
            if name in wanted:
                record(name, {"status": "skipped", "seconds": 0, "error": "no model: the model stage failed"})
    else:
        limit = budget("load_time")
        if limit is not None:
            record("load_time", load_times(runner, plan_path, env, limit))
        limit = budget("engines")
        if limit is not None:
            record("engines", engines(runner, plan, plan_path, env, limit))
        for name, stage_name in (("pipeline", "pipeline"), ("load", "load")):
            limit = budget(name)
            if limit is not None:
                record(name, runner.stage(stage_name, plan_path, env, limit))
    limit = budget("tests")
    if limit is not None:
        record("tests", gpu_tests(runner, env, limit, plan))

    data["charts"] = draw_charts(out_dir, data)
    data["wall_seconds"] = round(plan["time_limit"] - runner.left(), 1)
    report.write_json(str(out_dir / "results.json"), data)
    report.write_markdown(str(out_dir / "results.md"), markdown(data))
    shutil.rmtree(runner.work, ignore_errors=True)
    failed = [name for name, stage in data["stages"].items() if stage["status"] != "ok"]
    print(f"wrote {out_dir}: results.json, results.md, stages.log" + "".join(f", {p}" for p in data["charts"].get("files", [])))
    print(f"wall {data['wall_seconds']} s; " + (f"stages not ok: {', '.join(failed)}" if failed else "every stage ok"))
    return 1 if failed else 0


def load_times(runner: Runner, plan_path: Path, env: Dict[str, str], limit: float) -> dict:
    """Cold: a fresh process and an empty CUDA kernel cache; warm: a fresh process, the cache kept."""
    started = time.monotonic()
    cache = tempfile.mkdtemp(prefix="gpu-eval-kernels-")
    kernels = {"CUDA_CACHE_PATH": cache, "CUDA_CACHE_MAXSIZE": str(4 * 2**30)}
    out = {"status": "ok", "result": {}, "errors": []}
    for which in ("cold", "warm"):
        left = limit - (time.monotonic() - started)
        if left < 3:
            out["status"] = "timeout"
            out["errors"].append(f"{which}: no time left")
            continue
        stage = runner.stage("load_time", plan_path, {**env, **kernels}, left * (0.65 if which == "cold" else 1), which)
        out["result"][which] = stage["result"]
        if stage["status"] != "ok":
            out["status"] = stage["status"]
            out["errors"].append(f"{which}: {stage.get('error', '')}")
    shutil.rmtree(cache, ignore_errors=True)
    out.update(seconds=round(time.monotonic() - started, 2), limit_seconds=round(limit, 1))
    errors = out.pop("errors")
    if errors:
        out["error"] = "\n".join(errors)
    return out


def engines(runner: Runner, plan: dict, plan_path: Path, env: Dict[str, str], limit: float) -> dict:
    """One process per engine and precision (clean memory baseline), sharing the stage's budget."""
    started = time.monotonic()
    settings = plan["settings"]
    results, errors, status = [], [], "ok"
    for index, setting in enumerate(settings):
        left = limit - (time.monotonic() - started)
        if left < 3:
            errors.append(f"{setting}: no time left in the stage's {limit:.0f} s")
            status = "timeout"
            continue
        stage = runner.stage("engine", plan_path, env, left / (len(settings) - index), setting)
        results.append({"setting": setting, "status": stage["status"], "seconds": stage["seconds"], **stage["result"]})
        if stage["status"] != "ok":
            status = stage["status"] if status == "ok" else status
            errors.append(f"{setting}: {stage.get('error', '')}")
    out = {"status": status, "seconds": round(time.monotonic() - started, 2), "limit_seconds": round(limit, 1), "result": {"settings": results}}
    if errors:
        out["error"] = "\n".join(errors)
    return out


def gpu_tests(runner: Runner, env: Dict[str, str], limit: float, plan: dict) -> dict:
    """tests/decoding/test_gpu.py, with WHISPER_REQUIRE_GPU=1 on the GPU run (on the CPU rehearsal it
    must skip cleanly: the variable would turn its skips into failures)."""
    junit = runner.work / "test_gpu.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/decoding/test_gpu.py", f"--junitxml={junit}", "-o", "addopts="]
    extra = {} if plan["rehearsal"] else {"WHISPER_REQUIRE_GPU": "1"}
    code, seconds, tail = runner.run("tests", command, {**env, **extra}, limit)
    cases = junit_cases(junit) if junit.is_file() else []
    counts: Dict[str, int] = {}
    for case in cases:
        counts[case["outcome"]] = counts.get(case["outcome"], 0) + 1
    status = "timeout" if code is None else ("ok" if code == 0 else "error")
    out = {"status": status, "seconds": round(seconds, 2), "limit_seconds": round(limit, 1),
           "result": {"command": " ".join(command[1:]), "env": extra, "exit_code": code, "counts": counts, "tests": cases,
                      "summary": _last_lines(tail, 1)}}
    if status != "ok":
        out["error"] = _last_lines(tail, 12) or f"exit code {code}"
    return out


def junit_cases(path: Path) -> List[dict]:
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome, message = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag], element.get("message", "")
                break
        cases.append({"name": case.get("name"), "outcome": outcome, "seconds": float(case.get("time") or 0), "message": message[:500]})
    return cases


# -- the report --------------------------------------------------------------------------------

def _f(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def engine_rows(data: dict) -> List[list]:
    plan = data["plan"]
    rows = []
    for setting in data["stages"].get("engines", {}).get("result", {}).get("settings", []):
        precision = setting.get("precision") or setting["setting"].split(":")[1]
        asked = plan["precision_asked"].get(precision, precision) if setting["setting"].startswith("faster") else precision
        shown = precision if asked == precision else f"{asked} (ran as {precision})"
        engine_name = setting.get("engine") or setting["setting"].split(":")[0]
        for run in setting.get("runs", []):
            memory = run["peak_memory_so_far"]
            rows.append([engine_name, shown, run["mode"], run["batch_size"], _f(run["audio_seconds"], 0), _f(run["latency_seconds"]),
                         _f(run["rtfx"], 1), _f(memory.get("gpu_peak_increase_mb", memory.get("rss_peak_increase_mb")), 0),
                         _f(setting.get("load_seconds")), ",".join(str(t) for t in run.get("tokens_per_window", [])) or "–"])
        if setting["status"] != "ok":
            rows.append([engine_name, shown, setting["status"], "–", "–", "–", "–", "–", "–", _last_lines(setting.get("error", ""), 1)[:100]])
    return rows


def markdown(data: dict) -> str:
    plan, env = data["plan"], data["env"]
    stamp = f"*Measured on: {stamp_text(env)}.*"
    title = "GPU evaluation" + (" — REHEARSAL (CPU, tiny random Whisper: shapes only, no GPU figures)" if data["rehearsal"] else f" — {env.get('gpu')}")
    lines = [f"# {title}", "", f"{data['created']}; command `{data['command']}`; wall {data.get('wall_seconds')} s of the {plan['time_limit']} s limit.", "",
             stamp, "",
             f"Weights: {plan['shape']}-shaped, random, built on the spot (benchmarks/gpu_model.py); every window decodes "
             f"{plan['tokens_per_window']} tokens (end-of-text suppressed, output steered to text), beam {plan['beam_size']}, temperature 0, English.", "",
             "## Stages", "", report.markdown_table(["stage", "status", "seconds", "budget s", "error (last line)"],
                                                     [[name, s["status"], _f(s.get("seconds"), 1), _f(s.get("budget_seconds"), 0),
                                                       _last_lines(s.get("error", ""), 1)[:160].replace("|", "/")] for name, s in data["stages"].items()]), ""]
    setup_result = data["stages"].get("setup", {}).get("result", {})
    lines += ["## Setup", ""]
    wheels = setup_result.get("wheels")
    if wheels:
        lines.append(f"- wheels: {'installed' if wheels.get('ok') else wheels.get('note') or 'FAILED'}"
                     + (f" in {wheels.get('seconds')} s ({', '.join(f'{k} {v}' for k, v in wheels.get('packages', {}).items())})" if wheels.get("ok") else ""))
    for attempt in setup_result.get("cublas", {}).get("attempts", []):
        lines.append(f"- cuBLAS, {attempt['library_path']}: {'works' if attempt.get('generate_ok') else 'fails'}"
                     + (f" — `{_last_lines(attempt.get('error', ''), 1)[:200]}`" if attempt.get("error") else ""))
    lines += ["", stamp, ""]

    model_stage = data["stages"].get("model", {})
    if model_stage.get("status") == "ok":
        m = model_stage["result"]
        lines += ["## Model", "", f"{m['parameters'] / 1e6:.0f} M parameters ({m['shape']}), init {_f(m.get('init_seconds'), 1)} s, save "
                  f"{_f(m.get('save_seconds'), 1)} s, CTranslate2 conversion {_f(m.get('convert_seconds'), 1)} s; transformers {m['hf_bytes'] / 2**20:.0f} MiB, "
                  f"CTranslate2 {m['ct2_bytes'] / 2**20:.0f} MiB.", ""]

    load = data["stages"].get("load_time", {}).get("result", {})
    if load:
        rows = [[which, _f(r.get("import_seconds")), _f(r.get("load_seconds")), _f(r.get("first_window_seconds")), _f(r.get("second_window_seconds")),
                 _f(r.get("reload_in_process_seconds")), _f(r.get("gpu_mb_after_load"), 0)] for which, r in load.items()]
        lines += ["## Model load (the worker's load_model, " + plan["worker_compute_type"] + ")", "",
                  report.markdown_table(["run", "import s", "load s", "first window s", "second window s", "reload in process s", "GPU MiB after load"], rows),
                  "", "cold = fresh process and empty CUDA kernel cache (JIT of CTranslate2's PTX on first use); warm = fresh process, cache kept.", "", stamp, ""]

    rows = engine_rows(data)
    if rows:
        memory = "peak GPU MiB (NVML, device-wide, over baseline)" if plan["device"] == "cuda" else "peak RSS MiB over baseline"
        lines += ["## Engines", "", report.markdown_table(["engine", "precision", "mode", "batch", "audio s", "latency s", "RTFx", memory, "load s", "tokens per window"], rows), "",
                  f"Sequential runs decode {plan['sequential_seconds']} s, batched runs {plan['batched_seconds']} s of the same speech; batch sizes rise until RTFx "
                  f"gains less than {100 * plan['saturation_gain']:g} %.", "", stamp, ""]

    pipe = data["stages"].get("pipeline", {}).get("result", {})
    if pipe.get("mixes"):
        rows = []
        for mix, r in pipe["mixes"].items():
            cost = r.get("measured_cost", {})
            rows.append([mix, r["jobs"], _f(r["audio_seconds"], 0), _f(r["wall_seconds"]), _f(r["throughput"], 1), _f(r["device_busy_share"], 3), r["batches"],
                         _f(r["windows_per_batch"], 1), _f(cost.get("fixed"), 4), _f(cost.get("per_window"), 4),
                         ", ".join(f"{k} {v}" for k, v in r["host_cpu_seconds_per_audio_hour"].items())])
        cost, preset = pipe.get("measured_cost", {}), pipe.get("simulated_preset", {})
        lines += ["## Pipeline (benchmarks/pipeline.py's job path, the REAL device)", "",
                  report.markdown_table(["mix", "jobs", "audio s", "wall s", "audio s / wall s", "device busy share", "batches", "windows per batch",
                                         "measured s per batch", "measured s per window", "host CPU s per audio hour"], rows), "",
                  f"Measured device cost: {_f(cost.get('fixed'), 4)} s per batch + {_f(cost.get('per_window'), 4)} s per window "
                  f"(least squares over {cost.get('batches')} batches, R² {_f(cost.get('r2'), 3)}), against the SIMULATED preset "
                  f"{preset.get('name')}: {preset.get('fixed')} s + {preset.get('per_window')} s per window.", "", stamp, ""]

    load_result = data["stages"].get("load", {}).get("result", {})
    if load_result.get("levels"):
        rows = [[lv["concurrency"], lv["jobs_sent"], _f(lv["jobs_per_second"]), _f(lv["audio_seconds_per_second"], 1), _f(lv["latency_p50"]),
                 _f(lv["latency_p95"]), _f(lv["latency_p99"]), lv["valid_failed"]] for lv in load_result["levels"]]
        sat = load_result.get("saturation") or {}
        lines += ["## Load (load_jobs' jobs through the worker's Service, in process)", "",
                  report.markdown_table(["concurrency", "jobs", "jobs/s", "audio s/s", "p50 s", "p95 s", "p99 s", "failed"], rows), "",
                  f"Saturation: concurrency {sat.get('concurrency')} (within {100 * plan['saturation_gain']:g} % of the best jobs/s): "
                  f"p50 {_f(sat.get('latency_p50'))} s, p95 {_f(sat.get('latency_p95'))} s.", "", stamp, ""]

    tests = data["stages"].get("tests", {}).get("result", {})
    if tests:
        lines += ["## tests/decoding/test_gpu.py", "", f"`{tests.get('command')}` with {tests.get('env') or 'no WHISPER_REQUIRE_GPU (rehearsal)'}: "
                  + ", ".join(f"{v} {k}" for k, v in tests.get("counts", {}).items()), ""]
        lines += [f"- {case['name']}: {case['outcome']}" + (f" — {case['message'][:160]}" if case["message"] else "") for case in tests.get("tests", [])]
        lines += ["", stamp, ""]
    charts = data.get("charts", {})
    lines += ["## Charts", "", (", ".join(charts.get("files", [])) or "none") + (f" — {charts['note']}" if charts.get("note") else ""), ""]
    return "\n".join(lines)


def draw_charts(out_dir: Path, data: dict) -> dict:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {"files": [], "note": "charts skipped: matplotlib is not installed"}
    files, errors = [], []
    footer = stamp_text(data["env"])
    for name, draw in (("engines.png", _engines_chart), ("pipeline.png", _pipeline_chart), ("load.png", _load_chart)):
        try:
            figure = draw(plt, data)
        except Exception as exc:  # a chart must never cost the results
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        if figure is None:
            continue
        figure.text(0.01, 0.005, footer, fontsize=6, ha="left", va="bottom", wrap=True)
        figure.tight_layout(rect=(0, 0.05, 1, 1))
        figure.savefig(out_dir / name, dpi=90)
        plt.close(figure)
        files.append(name)
    out = {"files": files}
    if errors:
        out["note"] = "; ".join(errors)
    elif not files:
        out["note"] = "no chart: no stage produced figures"
    return out


def _engines_chart(plt, data: dict):
    rows = []
    for setting in data["stages"].get("engines", {}).get("result", {}).get("settings", []):
        for run in setting.get("runs", []):
            memory = run["peak_memory_so_far"]
            rows.append((run["label"], run["rtfx"], memory.get("gpu_peak_increase_mb", memory.get("rss_peak_increase_mb")) or 0))
    if not rows:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(rows) + 1.6), sharey=True)
    labels = [r[0] for r in rows]
    axes[0].barh(labels, [r[1] for r in rows], color="#1f77b4")
    axes[0].set_title("RTFx (audio s / latency s), higher is better")
    axes[1].barh(labels, [r[2] for r in rows], color="#ff7f0e")
    axes[1].set_title("peak memory increase, MiB" + (" (NVML)" if data["plan"]["device"] == "cuda" else " (RSS)"))
    axes[0].invert_yaxis()
    return figure


def _pipeline_chart(plt, data: dict):
    pipe = data["stages"].get("pipeline", {}).get("result", {})
    if not pipe.get("mixes"):
        return None
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for mix, result in pipe["mixes"].items():
        axis.scatter(result["batch_windows"], result["batch_seconds"], s=14, label=f"{mix}: batches")
    top = max(max(r["batch_windows"] or [1]) for r in pipe["mixes"].values())
    cost, preset = pipe.get("measured_cost", {}), pipe.get("simulated_preset", {})
    xs = [0, top]
    if cost.get("fixed") is not None:
        axis.plot(xs, [cost["fixed"] + cost["per_window"] * x for x in xs], label=f"measured: {cost['fixed']:.3f} + {cost['per_window']:.4f} x windows")
    if preset:
        axis.plot(xs, [preset["fixed"] + preset["per_window"] * x for x in xs], "--", label=f"SIMULATED preset: {preset['fixed']} + {preset['per_window']} x windows")
    axis.set_xlabel("windows in the batch")
    axis.set_ylabel("seconds per batch (device call)")
    axis.set_title("pipeline: device time per batch")
    axis.legend(fontsize=7)
    return figure


def _load_chart(plt, data: dict):
    levels = data["stages"].get("load", {}).get("result", {}).get("levels") or []
    if not levels:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    xs = [lv["concurrency"] for lv in levels]
    axes[0].plot(xs, [lv["latency_p50"] for lv in levels], "o-", label="p50")
    axes[0].plot(xs, [lv["latency_p95"] for lv in levels], "o-", label="p95")
    axes[0].set_xlabel("concurrency")
    axes[0].set_ylabel("job latency, s")
    axes[0].legend()
    axes[1].plot(xs, [lv["jobs_per_second"] for lv in levels], "o-")
    axes[1].set_xlabel("concurrency")
    axes[1].set_ylabel("jobs / s")
    for axis in axes:
        axis.set_xscale("log", base=2)
    figure.suptitle("load: latency and throughput as concurrency rises")
    return figure


# -- command line ------------------------------------------------------------------------------

def _int_list(value: str) -> List[int]:
    return [int(v) for v in value.split(",") if v.strip()]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rehearse", action="store_true", help="the whole flow on CPU with a tiny random model (no GPU needed)")
    parser.add_argument("--quick", action="store_true", help="with --rehearse: the smallest run (what make test runs)")
    parser.add_argument("--wheels", default=None, help="folder of carried wheels (scripts/prepare_gpu_wheels.sh) to install first, e.g. .whl-gpu")
    parser.add_argument("--site", default=os.path.join(tempfile.gettempdir(), "gpu-eval-site"), help="where --wheels are installed [%(default)s]")
    add_shared(parser, "out", notes={"out": "default benchmarks/results/<gpu>-<date>, rehearsal .cache/gpu-eval/results/rehearsal-<date>"})
    parser.add_argument("--time-limit", type=float, default=None, help="seconds for the whole call [470 on GPU, 170 rehearsal]")
    parser.add_argument("--tokens", type=int, default=None, help="tokens decoded per 30 s window [128 on GPU, 8 rehearsal]")
    parser.add_argument("--batch-sizes", type=_int_list, default=None, help="batched sizes to try, rising [8,16,32 on GPU]")
    parser.add_argument("--stages", type=lambda v: [s for s in v.split(",") if s], default=None, help=f"subset of {','.join(STAGE_ORDER[1:])} (setup always runs)")


def run(args) -> int:
    return evaluate(args)


COMMAND = Command("gpu", "the whole GPU evaluation in one call (engines, pipeline and load on the real device, load times, "
                         "tests/decoding/test_gpu.py); --rehearse runs it on CPU", configure, run)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    configure(parser)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.argv = argv
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
