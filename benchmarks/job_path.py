"""The worker's job path as the benchmarks drive it (`pipeline`, and the GPU evaluation's pipeline
and load stages): the Service, an Engine with a device of the
benchmark's choosing behind its scheduler, jobs sent through the public RunPod entry, and host CPU
per stage from the worker's own StageMeter (worker/stages.py). Nothing is patched.

Names are looked up in whichever worker is importable: this tree's, or an older commit's for
`pipeline --baseline` (the flat layout before the stage packages). A name found in none of the
places listed raises at once, saying where it was looked for; a worker that declares no stages
reports its stage times as unavailable, never as zero. This module imports no worker code itself
until asked, so the baseline's worker can be put first on sys.path after it is imported.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import os
import sys
from types import ModuleType
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

# Where each name lives, newest layout first: the stage packages (issue #29), then the flat
# modules of the commits before them.
PLACES: Dict[str, Tuple[str, ...]] = {
    "Settings": ("worker.config",),
    "load_model": ("worker.decoding.models", "worker.models"),
    "Engine": ("worker.decoding.engine", "worker.engine"),
    "model_backend": ("worker.decoding.engine",),
    "Service": ("worker.service", "worker.entries.runpod", "worker.handler"),
    "WindowOutput": ("worker.decoding.whisper.device", "worker.decoding.whisper.parts", "worker.whisper_parts"),
    "run_windows": ("worker.decoding.whisper.device", "worker.decoding.whisper.parts", "worker.whisper_parts"),
    "batching_key": ("worker.decoding.whisper.options", "worker.decoding.whisper.parts", "worker.whisper_parts"),
    "decode_audio": ("worker.audio.decode", "worker.audio"),
}
ENTRIES = ("worker.entries.runpod", "worker.handler")  # the RunPod entry: handler(job)
STAGES_MODULE = "worker.stages"


def _module(name: str) -> Optional[ModuleType]:
    """The module, or None when it (or a package above it) does not exist in the worker that
    `import worker` gives; any other import error (a missing dependency, a bug) is raised. Each
    package on the way is checked before it is imported: one found outside that worker's folder
    is not its (an editable install's finder offers this tree's modules for names the baseline's
    worker lacks)."""
    parts = name.split(".")
    top = importlib.import_module(parts[0])
    home = os.path.dirname(os.path.abspath(top.__file__)) + os.sep
    for end in range(2, len(parts) + 1):
        prefix = ".".join(parts[:end])
        parent = sys.modules[".".join(parts[:end - 1])]
        if not hasattr(parent, "__path__"):  # a module where a package was expected: an older layout
            return None
        spec = importlib.util.find_spec(prefix)
        if spec is None or not spec.origin or not os.path.abspath(spec.origin).startswith(home):
            return None
        importlib.import_module(prefix)
    return sys.modules[name]


def find(name: str, places: Optional[Iterable[str]] = None) -> Any:
    """`name` from the first of its PLACES that has it."""
    places = tuple(places or PLACES[name])
    for place in places:
        module = _module(place)
        if module is not None and hasattr(module, name):
            return getattr(module, name)
    raise LookupError(f"the worker has no {name} in any of {', '.join(places)}")


def entry_module() -> ModuleType:
    for place in ENTRIES:
        module = _module(place)
        if module is not None and hasattr(module, "handler"):
            return module
    raise LookupError(f"the worker has no RunPod handler in any of {', '.join(ENTRIES)}")


def make_service(settings, engine=None):
    """The worker's Service on `engine` (built from the settings when None)."""
    service_class = find("Service")
    return service_class.from_settings(settings) if engine is None else service_class(settings, engine)


def close_service(service) -> None:
    service.engine.close()
    if hasattr(service, "close"):  # the job threads (workers before issue #29 left them to exit)
        service.close()


def run_windows_on(whisper) -> Callable:
    """The real device: one encode + generate (+ align) call for a batch of windows, as the
    Engine's scheduler calls its backend, `backend(windows, (tokenizer, options))`: the worker's
    own default backend (`model_backend`), or for an older worker the same call made here."""
    try:
        return find("model_backend")(whisper)
    except LookupError:
        pass
    run_windows = find("run_windows")

    def backend(windows, context):
        tokenizer, options = context
        return run_windows(whisper, windows, tokenizer, options)

    return backend


def engine_with_device(settings, make_device: Callable[[Any], Callable]) -> Tuple[Any, Callable, str]:
    """(engine, device, how): the model loaded once, `make_device(model)` as the device behind
    the Engine's batch scheduler. `how` says how it was put there: Engine's public `backend`
    parameter, or, for a worker from before that parameter (a --baseline commit), the scheduler's
    own backend attribute, which must exist (checked, never set blindly)."""
    model = find("load_model")(settings)
    device = make_device(model)
    engine_class = find("Engine")
    if "backend" in inspect.signature(engine_class).parameters:
        return engine_class(model, settings, backend=device), device, "Engine(backend=...)"
    engine = engine_class(model, settings)
    scheduler = getattr(engine, "scheduler", None)
    if scheduler is None or not callable(getattr(scheduler, "_backend", None)):
        engine.close()
        raise RuntimeError("this worker's Engine takes no backend= and has no scheduler backend to replace: "
                           "benchmarks/job_path.py does not know this layout")
    scheduler._backend = device  # only a worker older than Engine(backend=...) gets here
    return engine, device, "scheduler._backend (a worker from before Engine's backend parameter)"


class Entry:
    """Jobs through the worker's public RunPod entry, `handler(job)`, served by `service`: the
    path a deployed job takes, output dict for output dict. One at a time per process (the entry
    holds one service); `run` may be called from many threads at once."""

    def __init__(self, service):
        self.module = entry_module()
        if hasattr(self.module, "set_runner"):  # issue #29: a JobRunner of RunPod's over the Service
            self._install = self.module.set_runner
            self._install(self.module.JobRunner(service))
        elif hasattr(self.module, "set_service"):
            self._install = self.module.set_service
            self._install(service)
        else:
            raise LookupError(f"{self.module.__name__} has neither set_runner nor set_service")

    def run(self, job: dict) -> dict:
        return asyncio.run(self.module.handler(job))

    def close(self) -> None:
        self._install(None)

    def __enter__(self) -> "Entry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Stages:
    """Host CPU seconds per stage and each job's first window, from the worker's own StageMeter,
    installed for the `with` block. For a worker without worker/stages.py, `unavailable` says so
    and there are no figures (not zeros)."""

    def __init__(self):
        self.module = _module(STAGES_MODULE)
        self.meter = self.module.StageMeter() if self.module is not None else None
        self.unavailable = None if self.module is not None else (
            "unavailable: this worker declares no stages (it has no worker/stages.py)")

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(self.module.STAGES) if self.module is not None else ()

    def __enter__(self) -> "Stages":
        if self.module is not None:
            self.module.install(self.meter)
        return self

    def __exit__(self, *exc) -> None:
        if self.module is not None:
            self.module.install(None)

    def clear(self) -> None:
        if self.meter is not None:
            self.meter.clear()

    def seconds(self) -> Optional[Dict[str, float]]:
        return dict(self.meter.seconds) if self.meter is not None else None

    def first_window(self, job_id: str) -> Optional[float]:
        """When the job's first window reached the scheduler (time.monotonic), if it did."""
        return self.meter.first.get(("queued", job_id)) if self.meter is not None else None

    def check(self, required: Optional[Iterable[str]] = None) -> None:
        """Raise if a stage the run must have exercised (all of worker.stages.STAGES unless
        `required` names fewer) reported nothing: its function is no longer marked, or the
        run took another path. A worker without stages has nothing to check."""
        if self.meter is None:
            return
        required = tuple(self.names if required is None else required)
        unknown = [stage for stage in required if stage not in self.names]
        missing = [stage for stage in required if stage not in self.meter.seconds]
        if unknown or missing:
            raise RuntimeError(
                "host CPU per stage is incomplete: "
                + (f"stages {', '.join(missing)} reported nothing (no function of the job path marked @timed for them ran); " if missing else "")
                + (f"stages {', '.join(unknown)} are not in worker.stages.STAGES ({', '.join(self.names)})" if unknown else ""))
