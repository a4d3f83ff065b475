"""A transcript in OpenAI's shapes: the RunPod job's output (json / verbose_json / text / srt /
vtt as one JSON object), the bodies of the HTTP server's audio routes (OpenAI's own response per
format, diarized_json included), and the metrics every RunPod response carries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

from worker.languages import language_name
from worker.request.schema import TranscriptionRequest
from worker.transcript import Timings, Transcript, word_dict
from worker.formats.subtitles import to_srt, to_text, to_vtt

FORMATTERS = {"text": to_text, "srt": to_srt, "vtt": to_vtt}
GENERATED_LABEL = re.compile(r"SPEAKER_\d+")  # the diarizer's label of a voice no known speaker matched
VERBOSE_SEGMENT_KEYS = ("id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob")


def openai_output(transcript: Transcript, response_format: str, task: str, with_words: bool, layout: Optional[dict] = None) -> dict:
    if response_format in ("json", "text"):
        # OpenAI's `text` is the bare text; a RunPod output is a JSON object, so it comes as {"text"}.
        return {"text": transcript.text}
    output = {
        "task": task,
        "language": transcript.language,
        "language_probability": round(transcript.language_probability, 4),
        "duration": round(transcript.duration, 3),
        "duration_after_vad": round(transcript.duration_after_vad, 3),
        "text": transcript.text,
        "segments": transcript.segment_dicts(with_words),
    }
    if with_words:
        output["words"] = [word_dict(word) for word in transcript.words]
    if transcript.speakers is not None:
        output["speakers"] = [vars(speaker).copy() for speaker in transcript.speakers]
    if transcript.speaker_turns is not None:
        output["speaker_turns"] = [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in transcript.speaker_turns]
    if response_format in FORMATTERS and response_format != "text":
        output[response_format] = FORMATTERS[response_format](transcript.segments, layout)
    return output


@dataclass(frozen=True)
class HttpShape:
    """What an HTTP caller asked for beyond the typed request: OpenAI's response_format (json,
    text and diarized_json are all decoded as verbose_json), which timestamp granularities, and
    the known speakers' names (kept as they are in diarized_json)."""

    format: str
    words: bool
    segments: bool
    known: Tuple[str, ...] = ()


def http_body(transcript: Transcript, request: TranscriptionRequest, shape: HttpShape) -> Union[dict, str]:
    """The body OpenAI's audio API answers with: a JSON object, or text for text, srt and vtt."""
    if shape.format == "json":
        return {"text": transcript.text}
    if shape.format == "text":
        return transcript.text + "\n"
    if shape.format in ("srt", "vtt"):
        return FORMATTERS[shape.format](transcript.segments, request.subtitle_layout)
    duration = round(transcript.duration, 3)
    if shape.format == "diarized_json":
        letters = speaker_letters(transcript, shape.known)
        return {
            "task": request.task, "duration": duration,
            "text": " ".join(segment.text.strip() for segment in transcript.segments if segment.text.strip()),
            "segments": [{"type": "transcript.text.segment", "id": f"seg_{segment.id}", "start": segment.start, "end": segment.end,
                          "text": segment.text, "speaker": letters.get(segment.speaker, segment.speaker)} for segment in transcript.segments],
            "usage": {"type": "duration", "seconds": int(-(-duration // 1))},
        }
    translated = request.task == "translate"
    body = {"task": request.task, "language": "english" if translated else language_name(transcript.language),
            "duration": duration, "text": transcript.text}
    if shape.segments:
        body["segments"] = [{key: item[key] for key in VERBOSE_SEGMENT_KEYS} for item in transcript.segment_dicts(False)]
    if shape.words:
        body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in transcript.words]
    return body


def speaker_letters(transcript: Transcript, known: Sequence[str] = ()) -> Dict[str, str]:
    """OpenAI labels unknown speakers A, B, ...; known speakers keep their names. A letter is
    never one a known speaker's name already takes (a known "A" and an unknown voice would
    both read "A"): letters skip every name in use and every known name asked for."""
    labels = [speaker.speaker for speaker in transcript.speakers or []]
    labels += [segment.speaker for segment in transcript.segments if segment.speaker is not None]
    generated = [label for label in dict.fromkeys(labels) if GENERATED_LABEL.fullmatch(label) and label not in known]
    taken = {label for label in labels if label not in generated} | set(known)
    letters: Dict[str, str] = {}
    number = 0
    for label in generated:
        while True:
            letter = chr(ord("A") + number % 26) * (1 + number // 26)
            number += 1
            if letter not in taken:
                break
        letters[label] = letter
    return letters


def job_metrics(request: TranscriptionRequest, transcript: Transcript, timings: Timings, model, image_revision: str) -> dict:
    """The `metrics` of every response: seconds per stage and in all from the job's `timings`,
    the model and the image that answered."""
    audio_seconds = transcript.duration
    return {
        "download_seconds": round(timings.download, 4),
        "decode_seconds": round(timings.decode, 4),
        "vad_seconds": round(timings.vad, 4),
        "queue_seconds": round(timings.queue, 4),
        "inference_seconds": round(timings.inference, 4),
        "total_seconds": round(timings.total, 4),
        "audio_seconds": round(audio_seconds, 3),
        "real_time_factor": round(timings.total / audio_seconds, 5) if audio_seconds else None,
        **({"diarize_seconds": round(timings.diarize, 4)} if request.diarize else {}),
        "mode": "batched" if request.is_batched else "sequential",
        "batch_size": request.batch_size,
        "model": model.name,
        "compute_type": model.compute_type,
        "device": model.device,
        "image_revision": image_revision,
    }
