"""`python -m benchmarks diarization`: who-said-what accuracy and cost of `diarize` jobs.

Runs each conversation of benchmarks/conversations.py (constructed from real voices, turns
exact by construction; a stereo call; the AMI meeting excerpts with human turns) through the
worker's job path (Service.process: decode, transcription beside diarization, speaker merge)
and reports per conversation:
- DER: pyannote.metrics' diarization error rate of the job's `speaker_turns` (who spoke when),
  with a 0.25 s collar (pyannote's `collar`, half on each side of a reference boundary), overlap
  scored; and the same for its speaker-labelled segments (Whisper's segment times), beside it;
- words to the right speaker: the share of transcribed words whose speaker, under the best
  one-to-one mapping of labels to reference speakers, is the reference speaker at the word's
  middle (words in no reference turn are not counted);
- the speaker count found without `num_speakers`, against the true count;
- the wall time of the job with and without `diarize` (same job otherwise; best of two runs),
  the share diarization adds, and the real-time factor of diarization itself.
On AMI, senko's own pipeline (`senko.Diarizer.diarize_samples`: its clustering and merged turns)
is scored beside the worker's on the same files, as the off-the-shelf reference.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import io
import time
import wave
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from . import conversations, facts, report

ROOT = Path(__file__).resolve().parent.parent
COLLAR = 0.25
TARGET_DER = 0.05
TARGET_WORDS = 0.97
TARGET_ADDED = 0.30


def wav_base64(audio: np.ndarray) -> str:
    """16-bit WAV (mono, or channels x samples), base64: what a client would send."""
    data = np.atleast_2d(np.clip(audio, -1.0, 1.0))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(data.shape[0])
        out.setsampwidth(2)
        out.setframerate(conversations.SAMPLE_RATE)
        out.writeframes((data.T * 32767).astype("<i2").tobytes())
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def turns_of(output: dict) -> List[tuple]:
    """(start, end, speaker): the job's speaker_turns (diarize), else its segments (multichannel)."""
    if "speaker_turns" in output:
        return [(t["start"], t["end"], t["speaker"]) for t in output["speaker_turns"]]
    return segment_turns(output)


def segment_turns(output: dict) -> List[tuple]:
    return [(s["start"], s["end"], s["speaker"]) for s in output.get("segments", [])]


def der(reference: Sequence[tuple], hypothesis: Sequence[tuple], collar: float = COLLAR) -> float:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns):
        result = Annotation()
        for index, (start, end, speaker) in enumerate(turns):
            if end > start:
                result[Segment(start, end), index] = speaker
        return result

    return float(DiarizationErrorRate(collar=collar)(annotation(reference), annotation(hypothesis)))


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


def evaluate(service, items: List[conversations.Conversation], repeats: int = 2, log=print) -> List[dict]:
    rows = []
    for conversation in items:
        stereo = conversation.audio.ndim == 2
        asked = {"multichannel": True} if stereo else {"diarize": True}
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
    filterbanks are the worker's (its CPU library needs AVX-512, see worker/diarize.py)."""
    from worker.diarize import Diarizer

    senko = Diarizer("cpu")._senko
    scores = {}
    for conversation in items:
        result = senko.diarize_samples(np.clip(conversation.audio, -1.0, 1.0)) or {"merged_segments": []}
        hypothesis = [(s["start"], s["end"], s["speaker"]) for s in result["merged_segments"]]
        scores[conversation.name] = {"der": round(der(conversation.turns, hypothesis), 4),
                                     "speakers_found": len({t[2] for t in hypothesis})}
        log(f"  senko's own pipeline {conversation.name:16s} DER={scores[conversation.name]['der']:.3f}")
    return scores


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


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def chart(path: str, data: dict) -> str:
    rows = [{"label": r["conversation"], "engine": "worker", "rtfx": round(1 / r["diarize_rtf"], 1) if r["diarize_rtf"] else None,
             "memory_mb": 100 * r["der"]} for r in data["results"]]
    return report.write_chart(path, rows, f"Diarization on {data['machine']['cpu']}", "DER (%)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="bundled:base", help="CTranslate2 model dir, worker alias, or bundled:tiny.en / bundled:base [%(default)s]")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cpu-threads", type=int, default=0)
    parser.add_argument("--sets", default="constructed,ami", help="constructed, ami, or both [%(default)s]")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each job, best taken for timing [%(default)s]")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default=None, help="output directory [benchmarks/results/diarization-<device>-<date>]")


def run(args) -> int:
    from worker.config import Settings
    from worker.handler import Service

    from .weights import resolve_ct2

    cache = args.cache_dir or str(ROOT / ".cache" / "benchmarks")
    settings = Settings(model=resolve_ct2(args.model, cache), device=args.device, compute_type=args.compute_type,
                        cpu_threads=args.cpu_threads, batch_size=args.batch_size, max_batch_size=max(args.batch_size, 1))
    service = Service.from_settings(settings)
    sets = {s.strip() for s in args.sets.split(",")}
    items = (conversations.constructed() if "constructed" in sets else []) + (conversations.ami() if "ami" in sets else [])
    machine = facts.machine()
    data = {
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(getattr(args, "argv", None) or ["diarization"]),
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

