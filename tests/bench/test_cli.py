"""`python -m benchmarks`: every command declared the same way (one Command per module), the
shared flags added from one table with the names and defaults the READMEs document, and every
command's --help working."""

from __future__ import annotations

import pytest

from benchmarks import cli
from benchmarks.command import SHARED, Command, add_shared


def test_every_command_is_one_declaration_in_its_own_module():
    assert list(cli.COMMANDS) == ["compare", "export-hf", "longform", "diarization", "pipeline", "load", "gpu", "timing", "realtime"]
    for module in cli.MODULES:
        command = module.COMMAND
        assert isinstance(command, Command) and cli.COMMANDS[command.name] is command
        assert command.configure.__module__ == command.run.__module__ == module.__name__
        assert command.help and "\n" not in command.help


@pytest.mark.parametrize("name", ["", "compare", "export-hf", "longform", "diarization", "pipeline", "load", "gpu", "timing", "realtime"])
def test_every_command_has_a_help(name, capsys):
    with pytest.raises(SystemExit) as done:
        cli.build_parser().parse_args([name, "--help"] if name else ["--help"])
    assert done.value.code == 0
    assert "usage: python -m benchmarks" in capsys.readouterr().out


def _parse(*argv):
    return vars(cli.build_parser().parse_args(list(argv)))


def test_the_shared_flags_keep_each_commands_names_and_defaults():
    expected = {
        ("compare",): dict(model="bundled:base", device="auto", cpu_threads=0, cache_dir=None, out=None, quiet=False, limit=None, repeats=3),
        ("longform",): dict(model="bundled:base", device="auto", compute_type="int8", batch_size=8, cpu_threads=0, cache_dir=None, out=None),
        ("diarization",): dict(model="bundled:base", device="auto", compute_type="int8", batch_size=8, cpu_threads=0, cache_dir=None,
                               out=None, repeats=2, jobs=False),
        ("pipeline",): dict(concurrency=4, batch_size=16, max_batch_size=16, hours=1.0, out=None, baseline=None, gpu_preset="h100-large-v3-fp16"),
        ("load", "--url", "http://x"): dict(concurrency=4, batch_size=8, max_batch_size=None, cpu_threads=0, out=None, quiet=False, jobs=32),
        ("gpu",): dict(out=None, rehearse=False),
    }
    for argv, defaults in expected.items():
        args = _parse(*argv)
        assert {key: args[key] for key in defaults} == defaults, argv
    assert _parse("longform", "--cpu-threads", "2", "--out", "x")["cpu_threads"] == 2


def test_a_shared_flag_has_one_help_wherever_it_appears():
    parser = cli.build_parser()
    helps = {}
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            for key, shared in SHARED.items():
                if shared["flag"] in action.option_strings:
                    assert action.help.startswith(shared["help"]), (name, action.help)
                    helps.setdefault(key, set()).add(name)
    assert helps["out"] == {"compare", "longform", "diarization", "pipeline", "load", "gpu", "timing", "realtime"}
    assert helps["model"] == {"compare", "longform", "diarization", "timing", "realtime"}


def test_add_shared_refuses_a_flag_it_does_not_declare():
    import argparse

    with pytest.raises(ValueError, match="not shared flags: --jobs"):
        add_shared(argparse.ArgumentParser(), "--jobs")
    with pytest.raises(ValueError, match="not shared flags: moddel"):
        add_shared(argparse.ArgumentParser(), "model", notes={"moddel": "typo"})
