"""Which audio to benchmark: a folder with transcripts.txt, a manifest file, or bundled samples.

Both engines get the same decoded samples (decoded once, by the worker's own decoder, outside
any timed region), so differences come from the engines, never from audio loading.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from worker.audio.decode import SAMPLE_RATE

from .audio_files import DATA, TRANSCRIPTS, read_transcripts

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".wma", ".webm", ".aac")
BUNDLED_DATA = str(DATA)


@dataclass
class AudioFile:
    name: str
    path: str
    reference: Optional[str] = None


@dataclass
class LoadedAudio:
    file: AudioFile
    samples: np.ndarray

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def read_manifest(path: str) -> List[AudioFile]:
    """A manifest in transcripts.txt's format (audio_files.read_transcripts); file paths are relative to it."""
    base = os.path.dirname(os.path.abspath(path))
    return [AudioFile(name=name, path=os.path.join(base, name), reference=reference) for name, reference in read_transcripts(path).items()]


def read_folder(folder: str) -> List[AudioFile]:
    """Every audio file in a folder, with references from its transcripts.txt where listed."""
    references: Dict[str, Optional[str]] = {}
    manifest = os.path.join(folder, TRANSCRIPTS)
    if os.path.isfile(manifest):
        references = read_transcripts(manifest)
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(AUDIO_EXTENSIONS))
    return [AudioFile(name=n, path=os.path.join(folder, n), reference=references.get(n)) for n in names]


def bundled_samples() -> List[AudioFile]:
    """Small default set: jfk.flac and the Harvard sentences (English, with references)."""
    files = [f for f in read_manifest(os.path.join(BUNDLED_DATA, TRANSCRIPTS)) if f.name == "jfk.flac"]
    return files + read_folder(os.path.join(BUNDLED_DATA, "harvard"))


def collect(inputs: List[str], limit: Optional[int] = None) -> List[AudioFile]:
    """Resolve --inputs (folders, manifests, single files) into a de-duplicated, ordered list."""
    files: List[AudioFile] = []
    for item in inputs or []:
        if os.path.isdir(item):
            found = read_folder(item)
            prefix = os.path.basename(os.path.normpath(item))
            for f in found:
                f.name = f"{prefix}/{f.name}"
        elif item.lower().endswith(AUDIO_EXTENSIONS):
            found = [AudioFile(name=os.path.basename(item), path=item, reference=_reference_beside(item))]
        elif os.path.isfile(item):
            found = read_manifest(item)
        else:
            raise FileNotFoundError(f"no such input: {item}")
        files.extend(found)
    if not inputs:
        files = bundled_samples()
    seen, unique = set(), []
    for f in files:
        if os.path.abspath(f.path) not in seen:
            seen.add(os.path.abspath(f.path))
            unique.append(f)
    return unique[:limit] if limit else unique


def _reference_beside(path: str) -> Optional[str]:
    manifest = os.path.join(os.path.dirname(path), TRANSCRIPTS)
    if not os.path.isfile(manifest):
        return None
    return read_transcripts(manifest).get(os.path.basename(path))


def load(files: List[AudioFile], max_seconds: float = 4 * 3600.0) -> List[LoadedAudio]:
    """Decode with the worker's decoder (16 kHz mono float32, the samples the engine gets in production)."""
    from worker.audio.decode import decode_audio

    return [LoadedAudio(file=f, samples=decode_audio(f.path, max_seconds)) for f in files]
