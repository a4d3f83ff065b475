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


@dataclass
class Timings:
    """Seconds spent in each stage of one job (wall clock)."""

    download: float = 0.0
    decode: float = 0.0
    vad: float = 0.0
    queue: float = 0.0
    inference: float = 0.0
    total: float = 0.0


@dataclass
class Transcript:
    language: str
    language_probability: float
    duration: float
    duration_after_vad: float
    segments: List[Segment] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments).strip()

    @property
    def words(self) -> List[Word]:
        return [word for segment in self.segments for word in (segment.words or [])]

    def segment_dicts(self, with_words: bool) -> List[dict]:
        out = []
        for segment in self.segments:
            item = asdict(segment)
            if not with_words:
                item.pop("words")
            out.append(item)
        return out
