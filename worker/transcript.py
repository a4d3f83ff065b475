"""Plain result types: the engine's only output, the formats' only input."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float
    speaker: Optional[str] = None  # with diarization or multichannel only


@dataclass
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: List[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: Optional[List[Word]] = None
    speaker: Optional[str] = None  # with diarization or multichannel only


@dataclass(frozen=True)
class SpeakerTurn:
    """Who spoke when, from the diarizer (not from the words)."""

    start: float
    end: float
    speaker: str


@dataclass
class SpeakerTime:
    speaker: str
    speaking_time: float  # seconds


@dataclass
class Timings:
    """Seconds spent in each stage of one job (wall clock): one per job, filled as it goes
    (download and decode by its sources, vad, queue and inference by the engine, diarize beside
    them), read by the log line and the response's metrics."""

    download: float = 0.0
    decode: float = 0.0
    vad: float = 0.0
    queue: float = 0.0
    inference: float = 0.0
    diarize: float = 0.0  # beside the transcription, so not part of the sum
    total: float = 0.0  # the whole job, taken once when it ends


@dataclass
class Transcript:
    language: str
    language_probability: float
    duration: float
    duration_after_vad: float
    segments: List[Segment] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    speakers: Optional[List[SpeakerTime]] = None  # set by diarization or multichannel
    speaker_turns: Optional[List[SpeakerTurn]] = None  # set by diarization

    @property
    def text(self) -> str:
        """The whole text; with speakers, a line per speaker turn, "SPEAKER_00: ..."."""
        if self.speakers is None:
            return "".join(segment.text for segment in self.segments).strip()
        turns: List[List] = []
        for segment in self.segments:
            if turns and turns[-1][0] == segment.speaker:
                turns[-1][1].append(segment.text)
            else:
                turns.append([segment.speaker, [segment.text]])
        lines = ((speaker, "".join(texts).strip()) for speaker, texts in turns)
        return "\n".join(f"{speaker}: {text}" for speaker, text in lines if text)

    @property
    def words(self) -> List[Word]:
        return [word for segment in self.segments for word in (segment.words or [])]

    def segment_dicts(self, with_words: bool) -> List[dict]:
        out = []
        for segment in self.segments:
            item = asdict(segment)
            if with_words:
                item["words"] = [word_dict(word) for word in segment.words] if segment.words is not None else None
            else:
                item.pop("words")
            if item["speaker"] is None:
                item.pop("speaker")
            out.append(item)
        return out


def word_dict(word: Word) -> dict:
    """A word as the output carries it: `speaker` only when speakers were asked for."""
    item = vars(word).copy()
    if item["speaker"] is None:
        item.pop("speaker")
    return item
