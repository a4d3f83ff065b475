"""The output keys of runpod-workers/worker-faster_whisper, so its clients keep working unchanged
(its input side is worker/request/legacy.py). Nothing else in the worker renders that shape."""

from __future__ import annotations

from typing import Optional

from worker.formats.subtitles import to_srt, to_text, to_vtt
from worker.transcript import Transcript

# one per format worker.request.legacy.LEGACY_FORMATS accepts (tests/formats/test_formats.py)
LEGACY_FORMATTERS = {
    "plain_text": lambda segments, layout=None: to_text(segments, " "),
    "formatted_text": lambda segments, layout=None: to_text(segments, "\n"),
    "srt": to_srt,
    "vtt": to_vtt,
}


def legacy_output(transcript: Transcript, transcription: str, translation: Optional[Transcript], translation_format: str, with_words: bool, device: str, model: str,
                  layout: Optional[dict] = None) -> dict:
    """The keys worker-faster_whisper returns, so its clients keep working unchanged."""
    output = {
        "segments": transcript.segment_dicts(with_words=False),
        "detected_language": transcript.language,
        "transcription": LEGACY_FORMATTERS[transcription](transcript.segments, layout),
        "translation": LEGACY_FORMATTERS[translation_format](translation.segments, layout) if translation else None,
        "device": device,
        "model": model,
    }
    if with_words:
        output["word_timestamps"] = [{"word": w.word, "start": w.start, "end": w.end} for w in transcript.words]
    return output
