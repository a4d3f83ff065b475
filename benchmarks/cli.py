"""`python -m benchmarks <command>`: collects the commands and dispatches to one.

Every command module declares itself with one `COMMAND = Command(name, help, configure, run)`
(benchmarks/command.py); adding a command means writing that module and naming it in MODULES.
"""

from __future__ import annotations

import argparse
import sys
from typing import Dict, List, Optional

from . import compare, diarization, gpu, load, longform, pipeline, realtime, timing, weights
from .command import Command

MODULES = (compare, weights, longform, diarization, pipeline, load, gpu, timing, realtime)  # in the order `--help` lists them
COMMANDS: Dict[str, Command] = {module.COMMAND.name: module.COMMAND for module in MODULES}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for command in COMMANDS.values():
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.run(args)
