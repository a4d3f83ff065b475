"""How a benchmark command is declared: one `Command` (name, help, configure, run) per command
module, and the flags several commands share, declared once here (`add_shared`).

A command module ends with

    COMMAND = Command("name", "one line of help", configure, run)

where `configure(parser)` adds the command's flags (the shared ones through `add_shared`) and
`run(args)` returns the exit code; benchmarks/cli.py collects the declarations and does nothing
else. This module imports nothing of the worker.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional


@dataclass(frozen=True)
class Command:
    name: str  # what follows `python -m benchmarks`
    help: str  # one line: the command list's entry and the command's description
    configure: Callable[[argparse.ArgumentParser], None]  # adds the command's flags
    run: Callable[[argparse.Namespace], int]  # the exit code


# The shared flags: argparse settings, and the help every command gives them. A command adds a
# note of its own to the help (what the flag means there) and may change the default.
SHARED: Dict[str, Dict[str, Any]] = {
    "model": dict(flag="--model", default="bundled:base",
                  help="CTranslate2 model dir, worker alias (large-v3, base, ...), or bundled:tiny.en / bundled:base"),
    "device": dict(flag="--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the model runs"),
    "compute_type": dict(flag="--compute-type", default="int8", help="the worker's WHISPER_COMPUTE_TYPE"),
    "batch_size": dict(flag="--batch-size", type=int, default=8, help="the jobs' batch_size, 1 = sequential decoding"),
    "max_batch_size": dict(flag="--max-batch-size", type=int, default=None, help="WHISPER_MAX_BATCH_SIZE: windows per device batch"),
    "concurrency": dict(flag="--concurrency", type=int, default=4, help="jobs in flight at once"),
    "cpu_threads": dict(flag="--cpu-threads", type=int, default=0, help="CPU threads per model, 0 = the library's default"),
    "cache_dir": dict(flag="--cache-dir", default=None, help="where converted / exported weights are cached, .cache/benchmarks by default"),
    "out": dict(flag="--out", default=None, help="output directory"),
    "quiet": dict(flag="--quiet", action="store_true", help="no progress bar"),
}


def add_shared(parser: argparse.ArgumentParser, *names: str, notes: Optional[Mapping[str, str]] = None,
               defaults: Optional[Mapping[str, Any]] = None) -> None:
    """Add the shared flags `names` (keys of SHARED) to `parser`, in that order. `notes[name]`
    is appended to the flag's help after a semicolon (what it means for this command, where
    --out writes by default); `defaults[name]` replaces the shared default. A flag's current default is shown
    unless it is None or a switch's."""
    notes, defaults = dict(notes or {}), dict(defaults or {})
    unknown = sorted((set(names) | set(notes) | set(defaults)) - set(SHARED))
    if unknown:
        raise ValueError(f"not shared flags: {', '.join(unknown)}; shared: {', '.join(SHARED)}")
    for name in names:
        settings = dict(SHARED[name])
        flag = settings.pop("flag")
        if name in defaults:
            settings["default"] = defaults[name]
        help_text = settings.pop("help")
        if name in notes:
            help_text += f"; {notes[name]}"
        if settings.get("action") != "store_true" and settings.get("default") is not None:
            help_text += " [%(default)s]"
        parser.add_argument(flag, help=help_text, **settings)
