"""Segments as text, SRT and WebVTT: the text every output shape is made of (cues follow the
request's subtitle layout when it sets one)."""

from __future__ import annotations

from typing import Iterable, List, Optional

from worker.transcript import Segment


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

