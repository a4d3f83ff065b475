"""`python -m benchmarks longform`: the worker's decoding modes on long audio, held against human
references and against what sequential decoding hears.

Long files with references are built from the real clips in tests/data: the clips of one set
(one speaker or one language), joined with short pauses of 0.4-1.2 s, so every reference word is
known and in order. `tests/data/long/columbia.wma` (199 s, a real recording with no reference) is
scored by words kept only. Each mode runs through the worker's Engine, as a job would:
- default: the default request (batched, VAD, segment timestamps)
- batched-words: the same with word timestamps
- batched-no-vad: batched over the whole file without VAD
- sequential: batch_size=1 (faster-whisper's sequential long-form decoding)

Per file and mode: WER, words kept against sequential decoding, segment lengths, speed, peak RSS
increase. `--memory-hours H` adds the memory check on an H-hour recording (columbia tiled).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from worker.audio.decode import SAMPLE_RATE

from . import facts, report
from .command import Command, add_shared
from .audio_files import DATA, ROOT, read_transcripts, write_audio
from .metrics import MB, PeakSampler, error_rates, normalizer, rss_reader

MODES: Dict[str, dict] = {
    "default": {},
    "batched-words": {"word_timestamps": True},
    "batched-no-vad": {"vad_filter": False},
    "sequential": {"batch_size": 1},
}
# (name, language, folder, clip-name prefix): one long file per entry, clips in name order.
SETS = [
    ("ljspeech-en", "en", "ljspeech", "LJ"),
    ("harvard-en", "en", "harvard", "spk"),
    ("fleurs-en", "en", "fleurs", "fleurs-en-"),
    ("fleurs-de", "de", "fleurs", "fleurs-de-"),
    ("fleurs-es", "es", "fleurs", "fleurs-es-"),
    ("fleurs-fr", "fr", "fleurs", "fleurs-fr-"),
    ("fleurs-pt", "pt", "fleurs", "fleurs-pt-"),
]
TARGET_KEPT = 0.98
MAX_SEGMENT_S = 30.0


@dataclass
class LongFile:
    name: str
    language: str
    samples: np.ndarray
    reference: Optional[str]
    clip_starts: List[float]  # where each clip begins (s): the joins a window may cut

    @property
    def duration(self) -> float:
        return self.samples.size / SAMPLE_RATE


def join_clips(folder: Path, prefix: str, seed: int = 0) -> tuple:
    """The clips of one set in name order with pauses of 0.4-1.2 s: (samples, reference, starts)."""
    from worker.audio.decode import decode_audio

    refs = read_transcripts(folder)
    names = sorted(n for n in refs if n.startswith(prefix))
    rng = np.random.default_rng(seed)
    parts, starts, position = [], [], 0
    for name in names:
        clip = decode_audio(str(folder / name), 600.0)
        starts.append(position / SAMPLE_RATE)
        pause = np.zeros(int(rng.uniform(0.4, 1.2) * SAMPLE_RATE), dtype=np.float32)
        parts += [clip, pause]
        position += clip.size + pause.size
    return np.concatenate(parts), " ".join(refs[n] for n in names), starts


def long_files(data: Path = DATA, names: Optional[List[str]] = None) -> List[LongFile]:
    from worker.audio.decode import decode_audio

    files = []
    for name, language, folder, prefix in SETS:
        if names and name not in names:
            continue
        samples, reference, starts = join_clips(data / folder, prefix)
        files.append(LongFile(name, language, samples, reference, starts))
    if not names or "columbia" in names:
        files.append(LongFile("columbia", "en", decode_audio(str(data / "long" / "columbia.wma"), 600.0), None, []))
    return files


def words(text: str, language: str) -> int:
    return len(normalizer(language)(text).split())


def segment_stats(segments) -> dict:
    lengths = [s.end - s.start for s in segments] or [0.0]
    ordered = all(b.start >= a.start for a, b in zip(segments, segments[1:]))
    return {
        "segments": len(segments),
        "segment_max_s": round(max(lengths), 2),
        "segment_median_s": round(statistics.median(lengths), 2),
        "segment_p95_s": round(float(np.percentile(lengths, 95)), 2),
        "in_order": ordered,
    }


def run_mode(service, samples: np.ndarray, mode: dict) -> tuple:
    from worker.request.schema import parse_request

    request = parse_request({"audio": "long", **mode}, service.settings)
    sampler = PeakSampler(rss_reader(), 0.01)
    started = time.perf_counter()
    with sampler:
        transcript = service.engine.transcribe(samples, request)
    return transcript, time.perf_counter() - started, sampler.increase / MB


def evaluate(service, files: List[LongFile], modes: List[str], log=print) -> List[dict]:
    rows = []
    for file in files:
        seq_words = None
        results = {}
        for mode in sorted(modes, key=lambda m: m != "sequential"):  # sequential first: the words-kept base
            transcript, seconds, memory = run_mode(service, file.samples, MODES[mode])
            count = words(transcript.text, file.language)
            if mode == "sequential":
                seq_words = count
            row = {
                "file": file.name, "language": file.language, "mode": mode,
                "audio_seconds": round(file.duration, 2), "detected_language": transcript.language,
                "words": count, "seconds": round(seconds, 3), "rtfx": round(file.duration / seconds, 2),
                "rss_increase_mb": round(memory, 1), **segment_stats(transcript.segments),
                "text": transcript.text,
            }
            if file.reference is not None:
                row["reference_words"] = words(file.reference, file.language)
                row["wer"] = round(error_rates([file.reference], [transcript.text], file.language)["wer"], 4)
            results[mode] = row
            log(f"  {file.name:12s} {mode:15s} words={count:4d} wer={row.get('wer', '-')} max_seg={row['segment_max_s']}s rtfx={row['rtfx']}")
        for row in results.values():
            row["kept_vs_sequential"] = round(row["words"] / seq_words, 4) if seq_words else None
            rows.append(row)
    return rows


def corpus(rows: List[dict], files: List[LongFile]) -> Dict[str, dict]:
    """Per mode: corpus WER (errors summed over files, per-language normalisers), min words kept."""
    out = {}
    by_name = {f.name: f for f in files}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode]
        scored = [r for r in mine if "wer" in r]
        ref_words = sum(r["reference_words"] for r in scored)
        errors = sum(r["wer"] * r["reference_words"] for r in scored)
        kept = [r["kept_vs_sequential"] for r in mine if r["kept_vs_sequential"] is not None]
        out[mode] = {
            "corpus_wer": round(errors / ref_words, 4) if ref_words else None,
            "min_kept_vs_sequential": min(kept) if kept else None,
            "max_segment_s": max(r["segment_max_s"] for r in mine),
            "all_in_order": all(r["in_order"] for r in mine),
            "audio_seconds": round(sum(by_name[r["file"]].duration for r in mine), 1),
            "seconds": round(sum(r["seconds"] for r in mine), 2),
        }
    return out


def targets(summary: Dict[str, dict]) -> List[dict]:
    default, sequential = summary.get("default"), summary.get("sequential")
    checks = []
    if default and sequential:
        checks.append({"target": f"default keeps >= {TARGET_KEPT:.0%} of sequential words on every file",
                       "value": default["min_kept_vs_sequential"], "met": default["min_kept_vs_sequential"] >= TARGET_KEPT})
        checks.append({"target": "default corpus WER below sequential", "value": [default["corpus_wer"], sequential["corpus_wer"]],
                       "met": default["corpus_wer"] < sequential["corpus_wer"]})
    for mode, item in summary.items():
        if mode != "sequential":
            checks.append({"target": f"{mode}: no segment over {MAX_SEGMENT_S:g} s, times in order",
                           "value": item["max_segment_s"], "met": item["max_segment_s"] <= MAX_SEGMENT_S and item["all_in_order"]})
    return checks


def memory_check(service, hours: float, modes: List[str], log=print) -> List[dict]:
    """Peak RSS increase for decoding + transcribing an `hours`-long file (columbia tiled), as a
    ratio to its decoded float32 samples."""
    from worker.audio.decode import decode_audio
    from worker.request.schema import parse_request

    clip = decode_audio(str(DATA / "long" / "columbia.wma"), 600.0)
    repeats = int(np.ceil(hours * 3600 * SAMPLE_RATE / clip.size))
    rows = []
    with tempfile.TemporaryDirectory(prefix="longform-memory-") as folder:
        path = os.path.join(folder, "long.wav")
        write_audio(path, np.tile(clip, repeats)[: int(hours * 3600 * SAMPLE_RATE)], SAMPLE_RATE)
        for mode in modes:
            request = parse_request({"audio": "long", **MODES[mode]}, service.settings)
            service.engine.transcribe(clip, request)  # one-time allocations (VAD session, buffers) are not the job's
            sampler = PeakSampler(rss_reader(), 0.02)
            started = time.perf_counter()
            with sampler:
                samples = decode_audio(path, service.settings.max_audio_seconds)
                transcript = service.engine.transcribe(samples, request)
            seconds = time.perf_counter() - started
            sample_mb = samples.nbytes / MB
            del samples
            row = {"mode": mode, "audio_hours": hours, "samples_mb": round(sample_mb, 1),
                   "rss_increase_mb": round(sampler.increase / MB, 1), "ratio_to_samples": round(sampler.increase / MB / sample_mb, 2),
                   "seconds": round(seconds, 1), "segments": len(transcript.segments)}
            rows.append(row)
            log(f"  memory {hours:g} h {mode:15s} +{row['rss_increase_mb']:.0f} MB = {row['ratio_to_samples']}x samples ({row['seconds']} s)")
    return rows


def markdown(data: dict) -> str:
    s = data["settings"]
    lines = [f"# Long-form evaluation — {data['created']}", "", f"`{data['command']}`", "",
             f"Model `{s['model']}` ({s['compute_type']}, {s['device']}), batch size {s['batch_size']}.", ""]
    lines += report.machine_lines(data["machine"], data["versions"])
    if data["summary"]:
        lines += _evaluation_lines(data)
    if data.get("memory"):
        lines += ["", "## Memory on a long recording (decode + transcribe, peak RSS increase)", ""]
        lines.append(report.markdown_table(["mode", "hours", "samples MB", "RSS +MB", "x samples", "seconds"],
                                           [[r["mode"], r["audio_hours"], r["samples_mb"], r["rss_increase_mb"], r["ratio_to_samples"], r["seconds"]] for r in data["memory"]]))
    return "\n".join(lines) + "\n"


def _evaluation_lines(data: dict) -> List[str]:
    lines = ["", "## Per mode (corpus)", ""]
    lines.append(report.markdown_table(
        ["mode", "corpus WER", "min words kept vs sequential", "max segment (s)", "in order", "RTFx"],
        [[m, _pct(v["corpus_wer"]), _pct(v["min_kept_vs_sequential"]), v["max_segment_s"], v["all_in_order"],
          round(v["audio_seconds"] / v["seconds"], 1) if v["seconds"] else "–"] for m, v in data["summary"].items()]))
    lines += ["", "## Targets", ""]
    lines += [f"- {'met' if t['met'] else 'NOT met'}: {t['target']} ({t['value']})" for t in data["targets"]]
    lines += ["", "## Per file", ""]
    lines.append(report.markdown_table(
        ["file", "s", "mode", "WER", "words", "kept", "segments", "median / p95 / max seg (s)", "RTFx", "RSS +MB"],
        [[r["file"], r["audio_seconds"], r["mode"], _pct(r.get("wer")), r["words"], _pct(r["kept_vs_sequential"]), r["segments"],
          f"{r['segment_median_s']} / {r['segment_p95_s']} / {r['segment_max_s']}", r["rtfx"], r["rss_increase_mb"]] for r in data["results"]]))
    return lines


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def chart(path: str, data: dict) -> str:
    rows = [{"label": f"{mode}", "engine": "faster-whisper", "rtfx": round(v["audio_seconds"] / v["seconds"], 2) if v["seconds"] else None,
             "memory_mb": 100 * v["corpus_wer"] if v["corpus_wer"] is not None else None} for mode, v in data["summary"].items()]
    return report.write_chart(path, rows, f"Long-form: {data['settings']['model']} on {data['machine']['cpu']}", "corpus WER (%)")


def configure(parser: argparse.ArgumentParser) -> None:
    add_shared(parser, "model", "device", "compute_type", "batch_size", notes={"batch_size": "of the batched modes"})
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ",".join(MODES))
    parser.add_argument("--files", default=None, help="comma-separated subset of " + ",".join([s[0] for s in SETS] + ["columbia"]))
    add_shared(parser, "cpu_threads")
    parser.add_argument("--memory-hours", type=float, default=0.0, help="also measure memory on a recording this many hours long (columbia tiled)")
    parser.add_argument("--memory-only", action="store_true", help="skip the evaluation, only the memory check")
    add_shared(parser, "cache_dir", "out", notes={"out": "default benchmarks/results/longform-<device>-<date>"})


def run(args) -> int:
    from worker.config import Settings
    from worker.entries.runpod import JobRunner

    from .weights import resolve_ct2

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"unknown mode(s) {', '.join(unknown)}; expected {', '.join(MODES)}")
    cache = args.cache_dir or str(ROOT / ".cache" / "benchmarks")
    model_dir = resolve_ct2(args.model, cache)
    settings = Settings(model=model_dir, device=args.device, compute_type=args.compute_type, cpu_threads=args.cpu_threads,
                        batch_size=args.batch_size, max_batch_size=max(args.batch_size, 1), allow_local_files=True)
    service = JobRunner.from_settings(settings)
    machine = facts.machine()
    data = {
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(getattr(args, "argv", None) or ["longform"]),
        "settings": {"model": args.model, "compute_type": service.engine.model.compute_type, "device": service.engine.model.device,
                     "batch_size": args.batch_size, "modes": modes},
        "machine": machine, "versions": facts.versions(), "results": [], "summary": {}, "targets": [],
    }
    if not args.memory_only:
        files = long_files(DATA, [f.strip() for f in args.files.split(",")] if args.files else None)
        data["results"] = evaluate(service, files, modes)
        data["summary"] = corpus(data["results"], files)
        data["targets"] = targets(data["summary"])
    if args.memory_hours:
        data["memory"] = memory_check(service, args.memory_hours, [m for m in modes if m in ("default", "sequential")] or modes)
    service.engine.close()
    machine["load_average_at_start"], machine["load_average"] = machine["load_average"], facts.load_average()
    device = data["settings"]["device"]
    out = args.out or str(ROOT / "benchmarks" / "results" / f"longform-{device}-{dt.date.today().isoformat()}")
    os.makedirs(out, exist_ok=True)
    report.write_json(os.path.join(out, "results.json"), data)
    report.write_markdown(os.path.join(out, "results.md"), markdown(data))
    if data["summary"]:
        chart(os.path.join(out, "chart.png"), data)
    for check in data["targets"]:
        print(f"{'met' if check['met'] else 'NOT MET'}: {check['target']} ({check['value']})")
    print(f"wrote {out}/results.json, results.md" + (", chart.png" if data["summary"] else ""))
    return 0 if all(t["met"] for t in data["targets"]) else 1


COMMAND = Command("longform", "the worker's modes on long audio: WER against human references, words kept, segment lengths, memory", configure, run)
