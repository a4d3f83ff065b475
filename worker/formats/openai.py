"""Pure functions from a Transcript to the output shapes: OpenAI json/verbose_json/text/srt/vtt,
and the metrics every response carries (worker-faster_whisper's shape is worker/request/legacy.py)."""

from __future__ import annotations

from typing import Iterable, List, Optional

from worker.transcript import Segment, Timings, Transcript, word_dict


def timestamp(seconds: float, decimal: str) -> str:
    """HH:MM:SS<decimal>mmm, hours always present (both SRT and WebVTT parsers accept that)."""
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _clean(text: str) -> str:
    """One cue's text: no blank lines (a blank line ends a cue in both formats)."""
    return " ".join(text.split())


def _cues(segments: Iterable[Segment], layout: Optional[dict] = None):
    """(start, end, text, speaker) per cue: a segment each, or, with a layout, word-timed cues of at most
    max_line_count lines of at most max_line_width characters / max_words_per_line words. Cues
    never cross segments, so a cue keeps its segment's place (and speaker)."""
    layout = layout or {}
    width, count, per_line = layout.get("max_line_width"), layout.get("max_line_count"), layout.get("max_words_per_line")
    for segment in segments:
        if (width or per_line) and segment.words:
            for start, end, text in _layout(segment.words, width, count, per_line):
                yield start, end, text, segment.speaker
            continue
        text = _clean(segment.text)
        if not text:
            continue
        start = max(0.0, segment.start)
        yield start, max(start, segment.end), text, segment.speaker


def _layout(words, width: Optional[int], count: Optional[int], per_line: Optional[int]):
    lines: List[List] = [[]]

    def line_text(line) -> str:
        return "".join(word.word for word in line).strip()

    def emit():
        used = [line for line in lines if line]
        if used:
            start = max(0.0, used[0][0].start)
            yield start, max(start, used[-1][-1].end), "\n".join(_clean(line_text(line)) for line in used)

    for word in words:
        if not word.word.strip():
            continue
        line = lines[-1]
        full = bool(line) and ((width is not None and len(line_text(line + [word])) > width) or (per_line is not None and len(line) >= per_line))
        if full:
            if count is not None and len(lines) >= count:
                yield from emit()
                lines = [[]]
            else:
                lines.append([])
        lines[-1].append(word)
    yield from emit()


def to_srt(segments: Iterable[Segment], layout: Optional[dict] = None) -> str:
    blocks = []
    for index, (start, end, text, speaker) in enumerate(_cues(segments, layout), start=1):
        text = text.replace("-->", "->")
        if speaker is not None:
            text = f"{speaker}: {text}"
        blocks.append(f"{index}\n{timestamp(start, ',')} --> {timestamp(end, ',')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(segments: Iterable[Segment], layout: Optional[dict] = None) -> str:
    blocks = ["WEBVTT\n"]
    for start, end, text, speaker in _cues(segments, layout):
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if speaker is not None:
            text = f"<v {speaker}>{text}"  # a voice span; WebVTT lets it close at the cue's end
        blocks.append(f"{timestamp(start, '.')} --> {timestamp(end, '.')}\n{text}\n")
    return "\n".join(blocks)


def to_text(segments: Iterable[Segment], separator: str = " ") -> str:
    return separator.join(segment.text.strip() for segment in segments if segment.text.strip())


FORMATTERS = {"text": to_text, "srt": to_srt, "vtt": to_vtt}


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


def job_metrics(request, transcript: Transcript, timings: Timings, model, image_revision: str) -> dict:
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
