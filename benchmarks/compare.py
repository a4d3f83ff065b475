"""`python -m benchmarks compare`: faster-whisper through the worker's own Engine against Hugging
Face transformers on the same machine, audio and weights: load time, latency, RTFx, peak memory,
WER/CER. Each setting runs in a child process of its own (benchmarks/runner.py); the engines are
in benchmarks/engines.py, the weights in benchmarks/weights.py, the writers in benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
from typing import Dict, List, Optional, Tuple

from . import dataset, facts, report
from .command import Command, add_shared
from .engines import ENGINES, FASTER_WHISPER, DecodeOptions, RunSpec
from .metrics import error_rates
from .progress import progress_bar

ALL_COMPUTE_TYPES = ("float16", "int8_float16", "int8", "bfloat16", "float32")


def _csv(value: str) -> List[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _int_csv(value: str) -> List[int]:
    try:
        sizes = [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError("batch sizes must be >= 1")
    return sizes


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", help="audio folders (with transcripts.txt), manifest files (`<file> <reference>` lines) or audio files; default: bundled jfk.flac + Harvard sentences")
    add_shared(parser, "model", notes={"model": "or a transformers Whisper checkpoint (dir or hub id)"})
    parser.add_argument("--hf-model", default=None, help="use this transformers checkpoint for the baseline instead of deriving one (it must hold the same weights, e.g. an earlier `export-hf` output)")
    add_shared(parser, "device")
    parser.add_argument("--engines", type=_csv, default=list(ENGINES), help=f"comma-separated subset of {','.join(ENGINES)}")
    parser.add_argument("--compute-types", type=_csv, default=list(ALL_COMPUTE_TYPES), help="faster-whisper compute types; those the device lacks are skipped [%(default)s]")
    parser.add_argument("--batch-sizes", type=_int_csv, default=[1, 8], help="1 = sequential decoding; >1 = batched (faster-whisper batched pipeline, transformers chunked pipeline) [1,8]")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--language", default=None, help="language code; default: detect (WER normaliser then follows faster-whisper's detection)")
    parser.add_argument("--task", choices=("transcribe", "translate"), default="transcribe")
    parser.add_argument("--without-timestamps", action="store_true", help="decode without timestamp tokens (transformers long-form > 30 s always uses them)")
    parser.add_argument("--no-condition-on-previous-text", dest="condition", action="store_false", help="sequential modes: do not prompt each window with the previous text")
    parser.add_argument("--vad", action="store_true", help="faster-whisper sequential runs use VAD too (batched runs always do: faster-whisper requires it past 30 s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per file (after one warm-up) [%(default)s]")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N files")
    add_shared(parser, "cpu_threads", "cache_dir", "out", "quiet",
               notes={"cpu_threads": "per engine, transformers' too", "out": "default benchmarks/results/<device>-<timestamp>"})


def plan(args, device: str, weights) -> Tuple[List[RunSpec], List[dict]]:
    """Expand the flags into the settings to measure, and the ones skipped with a reason."""
    import ctranslate2

    decode = DecodeOptions(language=args.language, task=args.task, beam_size=args.beam_size,
                           without_timestamps=args.without_timestamps, condition_on_previous_text=args.condition,
                           vad_filter=args.vad)
    supported = ctranslate2.get_supported_compute_types(device)
    specs, skipped = [], []
    for engine in args.engines:
        if engine not in ENGINES:
            raise SystemExit(f"unknown engine {engine!r}; expected {', '.join(ENGINES)}")
        precisions = args.compute_types if engine == FASTER_WHISPER else ["float16" if device == "cuda" else "float32"]
        for precision in precisions:
            if engine == FASTER_WHISPER and precision not in supported:
                skipped.append({"label": f"{engine} {precision}", "reason": f"not supported on {device}"})
                continue
            for batch_size in args.batch_sizes:
                specs.append(RunSpec(engine=engine, precision=precision, batch_size=batch_size, device=device,
                                     ct2_dir=weights.ct2_dir, hf_dir=weights.hf_dir, decode=decode, cpu_threads=args.cpu_threads))
    return specs, skipped


def _score(results: List[dict], files: List[dataset.AudioFile], language: Optional[str]) -> None:
    """Add WER/CER to each ok result; the normaliser follows --language or faster-whisper's detection."""
    detected = {}
    for r in results:
        if r["status"] == "ok" and r["engine"] == FASTER_WHISPER:
            detected = {f["name"]: f["language"] for f in r["files"]}
            break
    references = {f.name: f.reference for f in files}
    for r in results:
        if r["status"] != "ok":
            continue
        by_language: Dict[Optional[str], Tuple[list, list]] = {}
        for f in r["files"]:
            reference = references.get(f["name"])
            if reference:
                lang = language or detected.get(f["name"])
                refs, hyps = by_language.setdefault(lang, ([], []))
                refs.append(reference)
                hyps.append(f["text"])
                f["wer"] = error_rates([reference], [f["text"]], lang)["wer"]
        # Corpus-level rates: errors and reference lengths summed over all languages' files.
        words = chars = word_errors = char_errors = scored = 0
        for lang, (refs, hyps) in by_language.items():
            rates = error_rates(refs, hyps, lang)
            if rates["wer"] is None:
                continue
            n_words, n_chars = _reference_sizes(refs, lang)
            words, chars = words + n_words, chars + n_chars
            word_errors += rates["wer"] * n_words
            char_errors += rates["cer"] * n_chars
            scored += rates["scored_files"]
        r["wer"] = word_errors / words if words else None
        r["cer"] = char_errors / chars if chars else None
        r["scored_files"] = scored


def _reference_sizes(refs: List[str], language: Optional[str]) -> Tuple[int, int]:
    from .metrics import normalizer

    norm = normalizer(language)
    texts = [norm(r).strip() for r in refs]
    return sum(len(t.split()) for t in texts), sum(len(t) for t in texts)


def run(args) -> int:
    from worker.decoding.models import pick_device

    from .runner import run_isolated
    from .weights import resolve

    load_before = facts.load_average()
    device = pick_device(args.device)
    files = dataset.collect(args.inputs, args.limit)
    if not files:
        raise SystemExit("no audio files found")
    audios = dataset.load(files)
    weights = resolve(args.model, args.cache_dir, hf_override=args.hf_model)
    specs, skipped = plan(args, device, weights)
    if not specs:
        raise SystemExit("nothing to measure: " + "; ".join(f"{s['label']}: {s['reason']}" for s in skipped))
    created = dt.datetime.now().astimezone()
    out_dir = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{device}-{created:%Y%m%d-%H%M%S}")
    os.makedirs(out_dir, exist_ok=True)

    names = [a.file.name for a in audios]
    samples = [a.samples for a in audios]
    steps_per_spec = 3 + len(files) * args.repeats  # import, load, warm-up, timed runs
    results = []
    with progress_bar(len(specs) * steps_per_spec, "starting", enabled=not args.quiet) as bar:
        for spec in specs:
            done = 0

            def on_step(text: str) -> None:
                nonlocal done
                done += 1
                bar.describe(text)
                bar.update(1)

            result = run_isolated(spec, names, samples, args.repeats, on_step)
            bar.update(steps_per_spec - done)  # a failed setting still moves the bar to its end
            result["ct2_dir"], result["hf_dir"] = _display_path(spec.ct2_dir), _display_path(spec.hf_dir)
            results.append(result)
    _score(results, files, args.language)

    data = {
        "schema": "whisper-benchmark-compare/1",
        "created": created.isoformat(timespec="seconds"),
        "machine": {**facts.machine(), "load_average_at_start": load_before},
        "versions": facts.versions(),
        "settings": {
            "command": "python -m benchmarks " + " ".join(shlex.quote(a) for a in args.argv),
            "model": args.model,
            "weights_origin": weights.origin,
            "ct2_dir": _display_path(weights.ct2_dir),
            "hf_dir": _display_path(weights.hf_dir),
            "hf_origin": weights.hf_origin,
            "device": device,
            "engines": args.engines,
            "compute_types": args.compute_types,
            "batch_sizes": args.batch_sizes,
            "beam_size": args.beam_size,
            "language": args.language,
            "task": args.task,
            "without_timestamps": args.without_timestamps,
            "condition_on_previous_text": args.condition,
            "temperature": 0.0,
            "vad_filter": "all faster-whisper runs" if args.vad else "off",
            "repeats": args.repeats,
            "warmup_runs": 1,
            "files": len(files),
            "audio_seconds": sum(a.duration for a in audios),
            "cpu_threads": args.cpu_threads,
        },
        "inputs": [{"name": a.file.name, "path": _display_path(a.file.path), "duration": a.duration, "reference": a.file.reference} for a in audios],
        "skipped": skipped,
        "notes": _notes(device),
        "results": results,
    }
    report.write_json(os.path.join(out_dir, "results.json"), data)
    report.write_markdown(os.path.join(out_dir, "results.md"), report.compare_markdown(data))
    report.compare_chart(os.path.join(out_dir, "chart.png"), data)
    _print_summary(data, out_dir)
    return 0 if all(r["status"] == "ok" for r in results) else 1


def _display_path(path: str) -> str:
    """Paths inside the working directory are shown relative, so committed results hold no home paths."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _notes(device: str) -> List[str]:
    notes = [
        "Both engines decode with temperature 0 (no fallback), the same beam size and language.",
        "No VAD unless --vad (transformers has none), so both engines decode the same audio; without VAD the"
        " worker's batched mode decodes fixed 30 s windows.",
        "faster-whisper runs through the worker's Engine (worker/decoding/engine.py); batch size > 1 uses its scheduler-backed batched pipeline.",
        "transformers batch size 1 is model.generate on the full input (sequential long-form);"
        " batch size > 1 is pipeline('automatic-speech-recognition', chunk_length_s=30).",
    ]
    if device == "cpu":
        notes.append("CPU run: transformers in float32 (its fastest plain CPU setup); no GPU figures.")
    return notes


def _print_summary(data: dict, out_dir: str) -> None:
    for r in data["results"]:
        if r["status"] == "ok":
            wer = "–" if r.get("wer") is None else f"{100 * r['wer']:.1f}%"
            print(f"{r['label']:<40} RTFx {r['rtfx']:7.1f}  load {r['load_seconds']:5.1f}s  WER {wer}")
        else:
            print(f"{r['label']:<40} {r['status']}: {r.get('error', '').strip().splitlines()[-1:]}")
    print(f"results written to {out_dir}")


COMMAND = Command("compare", "faster-whisper (worker Engine) vs transformers: latency, RTFx, memory, WER", configure, run)
