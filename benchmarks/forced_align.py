"""Word edges from a forced alignment: pocketsphinx (CMU Sphinx, `pip install pocketsphinx`) told
the words an English recording says, over its 16 kHz samples.

pocketsphinx's en-us acoustic model and CMU pronouncing dictionary (both in its wheel) align the
word sequence with optional silence between words (`Decoder.set_align_text`, what its own
`pocketsphinx align` command does: `bestpath` off, no language model; one pass over the whole
recording, cepstral mean over all of it), its defaults but for the beams: no pruning (BEAMS), so
the search finds the best path through the text. At the default beams (1e-48) it found no path on
one of the timing benchmark's 25 English sequences (and at 1e-80 on a third of the draws of the
noise padding one Harvard clip); on the 24 others, 2 words of one sequence moved without pruning.
A word's edges are its segment's frames: start = first frame x 10 ms, end = (last frame + 1) x
10 ms. (`get_alignment()` holds phone and state durations only after a second pass with
`set_alignment()`; on the test clips its word edges were the first pass's, so one pass is run.)

This is an independent reference, not ground truth: pocketsphinx is itself an aligner with its own
error. Its edges fall on a 10 ms frame grid (frames of 25.6 ms analysis windows), its HMMs have a
minimum duration of three frames a phone, and it is a 16 kHz model (8 kHz recordings resampled to
16 kHz give it no energy over 4 kHz). It owes nothing to a level threshold, which is what makes it
useful beside the timing benchmark's trimmed edges.

Text is normalised to the dictionary's spelling: lower case; hyphens, dashes and slashes split
words; other punctuation dropped (an apostrophe inside a word kept: "don't"); a number spelled out
as a cardinal ("25" -> "twenty five", "4,096" -> "four thousand ninety six", "3.5" -> "three point
five"; a year is not read as one: "1455" -> "one thousand four hundred fifty five"). A word the
dictionary lacks is not guessed: `align` raises `OutOfDictionary` naming every such word, unless the
caller gives its pronunciation (`pronunciations`, ARPAbet phones as in the dictionary).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Union

import numpy as np

SAMPLE_RATE = 16000  # pocketsphinx's en-us model
FRAME_SECONDS = 0.01  # pocketsphinx's default frame rate: 100 a second
BEAMS = {"beam": 0.0, "pbeam": 0.0, "wbeam": 0.0}  # no pruning; pocketsphinx's defaults: 1e-48, 1e-48, 7e-29
NOT_WORDS = ("<s>", "</s>", "<sil>", "(NULL)")  # segments that are not the text's words (fillers: "[...]")


class AlignerMissing(RuntimeError):
    """pocketsphinx is not installed."""


class OutOfDictionary(ValueError):
    """Words of the text that pocketsphinx's dictionary does not have (and no pronunciation was given)."""

    def __init__(self, words: Sequence[str]):
        self.words = list(dict.fromkeys(words))
        super().__init__(f"not in pocketsphinx's dictionary: {', '.join(self.words)} (give their pronunciations, or leave them out)")


class AlignmentFailed(RuntimeError):
    """pocketsphinx found no path through the text over the audio (its search ended off the text)."""


@dataclass(frozen=True)
class AlignedWord:
    text: str  # the normalised word, as in the dictionary
    start: float  # seconds from the start of the samples
    end: float


def available() -> bool:
    """Whether pocketsphinx imports."""
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return False
    return True


def _pocketsphinx():
    try:
        import pocketsphinx
    except ImportError as error:
        raise AlignerMissing("forced alignment needs pocketsphinx: pip install 'pocketsphinx>=5.0,<6' "
                             "(or the project's bench extra: pip install -e '.[bench]')") from error
    return pocketsphinx


# -- text -> dictionary words --------------------------------------------------------------------------

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"), (100, "hundred"))


def spell_number(n: int) -> List[str]:
    """A non-negative integer as cardinal words: 25 -> ["twenty", "five"]; 1000 and over in
    thousands, millions, billions; past 10^12 digit by digit."""
    if n < 0:
        raise ValueError(f"{n} is negative")
    if n >= 10 ** 12:
        return [_ONES[int(c)] for c in str(n)]
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    for size, name in _SCALES:
        if n >= size:
            return spell_number(n // size) + [name] + (spell_number(n % size) if n % size else [])
    raise AssertionError(n)  # unreachable: n >= 100 meets "hundred"


_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])\d+(?:\.\d+)?(?![\w])")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # letters and digits, with apostrophes inside


def _spelled(match: re.Match) -> str:
    whole, _, fraction = match.group(0).replace(",", "").partition(".")
    words = spell_number(int(whole)) + (["point"] + [_ONES[int(c)] for c in fraction] if fraction else [])
    return " " + " ".join(words) + " "


def normalise(text: str) -> List[str]:
    """`text` as the dictionary's words (see the module docstring): "Forty-two, in 1455!" ->
    ["forty", "two", "in", "one", "thousand", "four", "hundred", "fifty", "five"]. A token that is
    not a plain word ("1st", "café") is kept as it is, to be reported out of the dictionary."""
    text = re.sub(r"[-\u2010-\u2015/]", " ", text.lower()).replace("\u2019", "'")
    return _WORD.findall(_NUMBER.sub(_spelled, text))


# -- the alignment ---------------------------------------------------------------------------------------

def _decoder(pocketsphinx, pronunciations: Optional[Mapping[str, str]]):
    decoder = pocketsphinx.Decoder(samprate=SAMPLE_RATE, lm=None, bestpath=False, loglevel="FATAL", **BEAMS)
    for word, phones in (pronunciations or {}).items():
        if decoder.lookup_word(word) is None:
            decoder.add_word(word, phones, update=True)
    return decoder


def out_of_dictionary(words: Sequence[str], pronunciations: Optional[Mapping[str, str]] = None) -> List[str]:
    """The words (normalised) that pocketsphinx's dictionary lacks and `pronunciations` does not give."""
    decoder = _decoder(_pocketsphinx(), None)
    given = pronunciations or {}
    return list(dict.fromkeys(w for w in words if w not in given and decoder.lookup_word(w) is None))


def _pcm(samples: np.ndarray) -> bytes:
    x = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    return np.round(x * 32767).astype("<i2").tobytes()


def align(samples: np.ndarray, text: Union[str, Sequence[str]], sample_rate: int = SAMPLE_RATE,
          pronunciations: Optional[Mapping[str, str]] = None) -> List[AlignedWord]:
    """Every word of `text` (a string, normalised here, or words already normalised) with its
    start and end in `samples` (mono float, 16 kHz, full scale 1.0), in order. Raises
    `AlignerMissing` without pocketsphinx, `OutOfDictionary` for words it cannot pronounce,
    `AlignmentFailed` where it finds no alignment, ValueError for other rates or no words."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"pocketsphinx's en-us model takes {SAMPLE_RATE} Hz samples, not {sample_rate} Hz")
    words = normalise(text) if isinstance(text, str) else [w for w in text]
    if not words:
        raise ValueError("no words to align")
    pocketsphinx = _pocketsphinx()
    decoder = _decoder(pocketsphinx, pronunciations)
    missing = [w for w in words if decoder.lookup_word(w) is None]
    if missing:
        raise OutOfDictionary(missing)
    try:
        decoder.set_align_text(" ".join(words))
    except RuntimeError as error:  # e.g. a token with characters the dictionary does not spell
        raise AlignmentFailed(f"pocketsphinx refused the text: {error}") from error
    decoder.start_utt()
    decoder.process_raw(_pcm(samples), no_search=False, full_utt=True)
    decoder.end_utt()
    segments = decoder.seg() if decoder.hyp() is not None else None
    if segments is None:
        raise AlignmentFailed(f"pocketsphinx found no alignment of the {len(words)} words over {len(samples) / SAMPLE_RATE:.2f} s")
    seconds = len(samples) / SAMPLE_RATE
    out = []
    for segment in segments:
        name = re.sub(r"\(\d+\)$", "", segment.word)  # "the(2)": an alternative pronunciation
        if name in NOT_WORDS or name.startswith("["):
            continue
        out.append(AlignedWord(name, round(segment.start_frame * FRAME_SECONDS, 3),
                               round(min((segment.end_frame + 1) * FRAME_SECONDS, seconds), 3)))
    if [w.text for w in out] != words:
        raise AlignmentFailed(f"pocketsphinx aligned {len(out)} words, not the text's {len(words)}")
    return out


def pronunciation(word: str) -> Optional[str]:
    """The dictionary's (first) pronunciation of a normalised word, None if it has none."""
    return _decoder(_pocketsphinx(), None).lookup_word(word)

