"""Partial text of a live turn that never takes back what was sent: which words of the newest
hypothesis (the open turn re-decoded from its start) may go out now as a `delta`.

The policy is LocalAgreement-2 (Machacek et al., "Turning Whisper into Real-Time Transcription
System", 2023; whisper_streaming's default): a word is stable once two consecutive hypotheses agree
on it, that is, it lies in the longest common prefix of their words, compared without case and
punctuation ("Hello," = "hello"). Each update sends the stable words beyond those already sent,
written as the newest hypothesis writes them (its spacing, case and punctuation); the first delta
has no leading space. The last word of a hypothesis is never stable on its own (the audio may end
inside it: "sto" for "store"); only the next hypothesis can confirm it.

Sent text is final: deltas are only ever appended, so what a client joins is always a prefix of
the turn's text as sent. When a later hypothesis changes a word already sent, nothing is retracted:
the new stable words are placed after the sent ones (a changed word is read as a substitution, two
words merged or split ("to day" / "today") by their letters, a word dropped or added before the
sent text's end only where its last two words are still there to hold on to), and where they cannot be placed
without repeating or skipping words, nothing more is sent until the hypotheses agree with the sent
text again or the turn ends. The `completed` event then carries the final full text (`finish()`
records it), which may differ from the joined deltas beyond the agreed words (the tail not yet
confirmed when the turn ended) or, rarely, within them (a word the model changed after it was
sent); `consistent` says whether the sent words are the start of the final text's.
"""

from __future__ import annotations

import difflib
import itertools
import re
import unicodedata
from typing import List, Optional

# Scripts written without spaces (Chinese, Japanese kana): each character is a word.
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"\s*(?:[{_UNSPACED}]|[^\s{_UNSPACED}]+)")
_UNSPACED_CHAR = re.compile(rf"[{_UNSPACED}]")


def split_words(text: str) -> List[str]:
    """The words of `text`, each with the whitespace before it: "".join() gives `text` back
    (less trailing whitespace)."""
    return _WORD.findall(text)


def join_text(*texts: str) -> str:
    """Texts of consecutive pieces of one turn as one text: a space between two pieces, except
    where either side is a script written without spaces; empty pieces left out. A piece's final
    full stop goes when the next piece begins in lower case: the sentence went on across the pause
    where the turn was cut ("the art of making books. by means" -> "books by means")."""
    joined = ""
    for text in texts:
        text = text.strip()
        if not text:
            continue
        if joined and text[0].islower() and joined.endswith(".") and not joined.endswith(".."):
            joined = joined[:-1]
        if joined and not (_UNSPACED_CHAR.match(text[0]) or _UNSPACED_CHAR.match(joined[-1])):
            joined += " "
        joined += text
    return joined


def open_ending(text: str) -> str:
    """`text` without its final full stop: the prompt of the audio that follows it in the same
    turn, which may go on with the same sentence (Whisper adds a full stop wherever its audio
    ends; left in the prompt, the next piece starts a new sentence)."""
    return text[:-1] if text.endswith(".") and not text.endswith("..") else text


def word_key(word: str) -> str:
    """What two hypotheses must share for a word to agree: its letters, digits and symbols,
    case-folded, without punctuation or spaces."""
    return "".join(ch for ch in word.casefold() if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


class Agreement:
    """LocalAgreement-2 over one turn's hypotheses. `update(hypothesis)` -> the delta to send now
    (maybe ""); `sent` is every delta joined; `finish(final)` when the turn ends; `reset()` before
    the next turn."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget the turn: nothing sent, no hypothesis seen."""
        self._previous: List[str] = []  # the last hypothesis's words' keys
        self._sent_keys: List[str] = []
        self._sent = ""
        self.final: Optional[str] = None

    @property
    def sent(self) -> str:
        """All the text sent for this turn: the deltas joined."""
        return self._sent

    @property
    def consistent(self) -> bool:
        """Whether the sent words are the first words of the final text (or, before `finish()`,
        of the newest hypothesis), compared as agreement compares them."""
        reference = [word_key(word) for word in split_words(self.final)] if self.final is not None else self._previous
        return reference[:len(self._sent_keys)] == self._sent_keys

    def update(self, hypothesis: str) -> str:
        """The text to send for the turn's newest full hypothesis: the words it and the one before
        agree on, beyond those already sent ("" when there are none)."""
        words = split_words(hypothesis)
        keys = [word_key(word) for word in words]
        stable = 0
        for mine, theirs in zip(keys, self._previous):
            if mine != theirs:
                break
            stable += 1
        self._previous = keys
        start = self._after_sent(keys[:stable])
        if start is None or start >= stable:
            return ""
        delta = "".join(words[start:stable])
        if not self._sent:
            delta = delta.lstrip()
        elif not delta[0].isspace() and not _UNSPACED_CHAR.match(delta):
            delta = " " + delta  # a hypothesis's first word (written without a space), now after sent text
        self._sent += delta
        self._sent_keys.extend(keys[start:stable])
        return delta

    def finish(self, final: str) -> str:
        """The turn ended with `final` as its full text (the `completed` event's): recorded, and
        nothing more is sent as a delta (returns "")."""
        self.final = final
        return ""

    def _after_sent(self, stable: List[str]) -> Optional[int]:
        """Where the words after the sent ones begin among the stable words; None when the sent
        words cannot be placed in them without repeating or skipping a word."""
        sent = self._sent_keys
        if stable[:len(sent)] == sent:
            return len(sent)  # the usual case: the hypotheses still begin with what was sent
        if not stable:
            return None
        # words merged or split ("to day" -> "today"): the same letters up to a word boundary
        if "".join(stable).startswith("".join(sent)):
            ends = list(itertools.accumulate(len(key) for key in stable))
            if len("".join(sent)) in ends:
                return ends.index(len("".join(sent))) + 1
        # words changed (substituted), dropped or added among those sent: align the rest
        operations = difflib.SequenceMatcher(None, sent, stable, autojunk=False).get_opcodes()
        if operations[-1][0] == "insert":
            operations.pop()  # stable words after all the sent ones: the new words
        if operations and operations[-1][0] == "replace" and operations[-1][4] - operations[-1][3] > operations[-1][2] - operations[-1][1]:
            tag, first, last, into, until = operations.pop()  # the last sent words changed, new words after them
            operations.append((tag, first, last, into, into + last - first))
        if not operations or operations[-1][2] != len(sent):
            return None  # the sent text's last words are not in the hypotheses (any more): wait
        if all(tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1) for tag, i1, i2, j1, j2 in operations):
            return operations[-1][4]  # word for word, some words changed
        tag, first, last, into, until = operations[-1]
        if tag == "equal" and last - first >= 2:
            return until  # words dropped or added before, the last two sent words still there to hold on to
        return None
