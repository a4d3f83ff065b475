"""`python -m benchmarks gpu`: the one-command GPU evaluation, rehearsed on CPU.

The rehearsal runs the very flow the GPU run does (every stage in its own process, the same
report writers) with a tiny random Whisper, so a typo in any stage or in the report fails here,
not in the few minutes a GPU is lent. The helpers it relies on (cuBLAS symlinks, fixed-length
decoding, wheel repacking, stage failure and timeout handling) are checked on their own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks import gpu, gpu_stages, gpu_wheels
from benchmarks.gpu_model import FixedDecode

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-eval") / "results"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "gpu", "--rehearse", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    return out, done


def test_the_rehearsal_writes_every_file_and_every_stage_succeeds(rehearsal):
    out, done = rehearsal
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == gpu.SCHEMA and data["rehearsal"] is True
    assert list(data["stages"]) == list(gpu.STAGE_ORDER)
    assert all(stage["status"] == "ok" for stage in data["stages"].values()), {k: v.get("error") for k, v in data["stages"].items()}
    assert all(stage["seconds"] <= stage["limit_seconds"] + 1 for stage in data["stages"].values())
    assert {"results.json", "results.md", "stages.log"} <= {p.name for p in out.iterdir()}
    pytest.importorskip("matplotlib")
    assert data["charts"]["files"] == ["engines.png", "pipeline.png", "load.png"]
    assert all((out / name).stat().st_size > 5000 for name in data["charts"]["files"])


def test_every_figure_carries_the_gpu_driver_cuda_and_library_versions(rehearsal):
    out, _ = rehearsal
    data = json.loads((out / "results.json").read_text())
    env = data["env"]
    assert {"gpu", "driver", "cuda_driver", "cuda_torch", "cublas", "ctranslate2", "faster-whisper", "torch", "transformers", "av"} <= set(env)
    assert env["ctranslate2"] and env["torch"] and env["gpu"] == "none (CPU rehearsal)"
    stages = data["stages"]
    stamped = [stages[name]["result"]["env"] for name in ("model", "pipeline", "load")]
    stamped += [stages["load_time"]["result"][which]["env"] for which in ("cold", "warm")]
    stamped += [setting["env"] for setting in stages["engines"]["result"]["settings"]]
    assert stamped == [env] * len(stamped)
    markdown = (out / "results.md").read_text()
    assert markdown.count("*Measured on: GPU none (CPU rehearsal); driver") >= 6  # top, setup, load, engines, pipeline, load, tests
    assert "ctranslate2 4." in markdown and "REHEARSAL" in markdown


def test_the_engines_stage_measures_every_setting_with_fixed_length_windows(rehearsal):
    out, _ = rehearsal
    data = json.loads((out / "results.json").read_text())
    plan = data["plan"]
    settings = data["stages"]["engines"]["result"]["settings"]
    assert [s["setting"] for s in settings] == plan["settings"] == ["faster-whisper:int8_float32", "transformers:float32"]
    for setting in settings:
        modes = [(run["mode"], run["batch_size"]) for run in setting["runs"]]
        assert modes[0][1] == 1 and [b for _, b in modes[1:]] == plan["batch_sizes"]
        assert setting["load_seconds"] > 0 and "memory" in setting
        for run in setting["runs"]:
            assert run["rtfx"] > 0 and run["latency_seconds"] > 0 and "rss_peak_increase_mb" in run["peak_memory_so_far"]
            if setting["engine"] == "faster-whisper":
                assert run["tokens_per_window"] == [plan["tokens_per_window"]]  # every window decoded exactly N tokens
    markdown = (out / "results.md").read_text()
    assert "int8_float16 (ran as int8_float32)" in markdown and "| transformers | float32 | generate (sequential) | 1 |" in markdown


def test_model_load_time_pipeline_and_load_stages_report_their_figures(rehearsal):
    out, _ = rehearsal
    data = json.loads((out / "results.json").read_text())
    stages = data["stages"]
    model = stages["model"]["result"]
    assert model["shape"] == "rehearsal" and model["dims"]["num_mel_bins"] == 128 and model["dims"]["vocab_size"] == 51866
    for which in ("cold", "warm"):
        load = stages["load_time"]["result"][which]
        assert load["which"] == which and load["load_seconds"] > 0 and load["first_window_seconds"] > 0 and load["cuda_cache_path"]
    pipeline = stages["pipeline"]["result"]
    mix = pipeline["mixes"]["mix"]
    assert 0 < mix["device_busy_share"] <= 1 and mix["windows_per_batch"] >= 1 and mix["replay_misses"] == 0
    assert {"fetch", "decode", "vad", "features", "all host CPU"} <= set(mix["host_cpu_seconds_per_audio_hour"])
    assert len(mix["batch_seconds"]) == mix["batches"] == len(mix["batch_windows"])
    cost = pipeline["measured_cost"]
    assert cost["batches"] == mix["batches"] and cost["per_window"] is not None
    assert pipeline["simulated_preset"] == {"name": "h100-large-v3-fp16", "fixed": 0.367, "per_window": 0.0726}
    load = stages["load"]["result"]
    assert [lv["concurrency"] for lv in load["levels"]][0] == 1 and all(lv["valid_failed"] == 0 for lv in load["levels"])
    assert all(lv["latency_p50"] > 0 and lv["latency_p95"] >= lv["latency_p50"] for lv in load["levels"])
    assert load["saturation"]["concurrency"] in [lv["concurrency"] for lv in load["levels"]]
    tests = stages["tests"]["result"]
    assert tests["counts"] == {"skipped": 4} and tests["env"] == {}  # no GPU here: skipped cleanly, not failed
    setup = stages["setup"]["result"]
    assert setup["cublas"]["works"] == "as the machine is" and setup["facts"]["versions"]["ctranslate2"]


# -- the pieces, without running the flow ------------------------------------------------------

def test_a_failing_stage_is_recorded_with_its_error_and_a_slow_one_is_stopped(tmp_path):
    runner = gpu.Runner(tmp_path, time_limit=60)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"device": "cpu"}))  # no model: the engine stage must fail
    failed = runner.stage("engine", plan, gpu.child_env([]), 60, "faster-whisper:int8")
    assert failed["status"] == "error" and "KeyError" in failed["error"]
    code, seconds, _ = runner.run("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], gpu.child_env([]), 1.5)
    assert code is None and seconds < 10
    assert "===== sleeper" in (tmp_path / "stages.log").read_text()


def test_a_cublas_12_symlink_to_the_cuda_13_library_is_made_in_a_temp_folder(tmp_path):
    lib = tmp_path / "nvidia" / "cu13" / "lib"
    lib.mkdir(parents=True)
    for name in ("libcublas.so.13", "libcublasLt.so.13"):
        (lib / name).write_bytes(b"\x7fELF")
    found = gpu.cublas_candidates([str(lib)])
    assert found == {"libcublas.so.13": [str(lib / "libcublas.so.13")], "libcublasLt.so.13": [str(lib / "libcublasLt.so.13")]}
    link = gpu.cublas_link_dir(found)
    folder = Path(link["folder"])
    assert not str(folder).startswith(str(ROOT))  # never in the image or the tree
    assert (folder / "libcublas.so.12").resolve() == lib / "libcublas.so.13"
    assert (folder / "libcublasLt.so.12").resolve() == lib / "libcublasLt.so.13"
    assert link["LD_LIBRARY_PATH"].split(":")[:2] == [str(folder), str(lib)]
    assert gpu.cublas_link_dir({}) is None


def test_fixed_decode_asks_ctranslate2_for_exactly_n_tokens_whatever_the_prompt():
    class Model:
        def generate(self, features, prompts, **kwargs):
            self.kwargs = kwargs
            return []

    model = FixedDecode(Model(), tokens=128, eot=50257)
    for prompt, expected in ((3, 256), (200, 327), (400, 448)):
        model.generate(None, [[1] * prompt], suppress_tokens=[-1], max_length=448)
        # CTranslate2's Whisper stops at min(max_length // 2, max_length - len(prompt) + 1) tokens
        assert model._model.kwargs["max_length"] == expected
        assert model._model.kwargs["suppress_tokens"] == [-1, 50257]


def test_stage_helpers_fit_the_device_cost_and_find_saturation():
    busy = [(0.0, 0.2 + 0.05 * n, n) for n in (1, 4, 8, 16, 16)]
    cost = gpu_stages.fit_cost(busy)
    assert cost["fixed"] == pytest.approx(0.2) and cost["per_window"] == pytest.approx(0.05) and cost["r2"] == pytest.approx(1.0)
    levels = [{"concurrency": c, "jobs_per_second": r, "latency_p50": 1, "latency_p95": 2, "audio_seconds_per_second": 1}
              for c, r in ((1, 1.0), (4, 3.0), (8, 3.9), (16, 4.0))]
    assert gpu_stages.saturation(levels, 0.05)["concurrency"] == 8


def test_the_wheels_are_pinned_like_the_image_and_repacked_with_valid_records(tmp_path):
    versions = gpu_wheels.pins()
    assert set(versions) == set(gpu_wheels.NEEDED) and versions["ctranslate2"] and versions["av"]
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    payload = b"print('hello')\n" * 1000
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo/__init__.py", payload)
        archive.writestr("demo-1.0.dist-info/RECORD", "demo/__init__.py,sha256=stale,1\ndemo-1.0.dist-info/RECORD,,\n")
    (tmp_path / "out").mkdir()
    info = gpu_wheels.repack(wheel, tmp_path / "out" / wheel.name)
    with zipfile.ZipFile(tmp_path / "out" / wheel.name) as archive:
        assert all(item.compress_type == zipfile.ZIP_LZMA for item in archive.infolist())
        assert archive.read("demo/__init__.py") == payload
        record = archive.read("demo-1.0.dist-info/RECORD").decode().splitlines()
    digest = base64.urlsafe_b64encode(hashlib.sha256(payload).digest()).rstrip(b"=").decode()
    assert f"demo/__init__.py,sha256={digest},{len(payload)}" in record
    assert info["bytes"] < info["downloaded_bytes"]


def test_the_gpu_command_is_registered_and_documented():
    from benchmarks.cli import COMMANDS

    assert "gpu" in COMMANDS
    readme = (ROOT / "README.md").read_text()
    assert "### GPU evaluation" in readme and "--rehearse" in readme and ".whl-gpu" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert "gpu-eval:" in makefile and "gpu-wheels:" in makefile and "gpu-rehearse:" in makefile
    assert "/.whl-gpu/" in (ROOT / ".gitignore").read_text()
