"""`python -m worker`: read settings, load the model once, then start the RunPod serverless loop.

The SDK parses its own flags from sys.argv (`--test_input '<json>'`, `--rp_serve_api
--rp_api_port N`, ...), so they keep working unchanged.
"""

from __future__ import annotations

import logging
import os
import sys

import runpod

from worker.entries import runpod as entry
from worker.config import Settings, SettingsError
from worker.decoding.models import ModelError
from worker.service import Service


def configure_logging(settings: Settings) -> None:
    """The level applies to the worker's own loggers even when the SDK has configured logging
    first (basicConfig alone is then a no-op)."""
    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("worker").setLevel(level)


def hub_follows_settings(settings: Settings) -> None:
    """WHISPER_LOCAL_FILES_ONLY alone decides whether the hub may be contacted: an HF_HUB_OFFLINE
    left in the environment (older images set it) must not make a download preset fail for ever."""
    offline = settings.local_files_only
    os.environ["HF_HUB_OFFLINE"] = "1" if offline else "0"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # already imported: it read the variable once, at import
        constants.HF_HUB_OFFLINE = offline


def post_progress(job: dict, progress: dict) -> None:
    """One progress update posted to RunPod's job API on the caller's thread (the job's
    ProgressSender, which keeps its updates in order). The SDK's progress_update makes the same
    post from a new thread per update, and those overtake each other."""
    from runpod.serverless.modules import rp_progress

    rp_progress._thread_target(job, progress)  # progress_update's body, without its thread


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"worker: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    hub_follows_settings(settings)
    if settings.mode == "openai":
        from worker.entries import http

        try:
            http.serve(settings, lambda: Service.from_settings(settings))
        except ModelError as exc:  # the servers have stopped: exit as queue mode does
            print(f"worker: cannot load the model: {exc}", file=sys.stderr)
            return 3
        return 0
    # Progress updates post to RunPod's job API, which exists only on RunPod itself.
    progress = post_progress if os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT") else None
    try:
        runner = entry.JobRunner(Service.from_settings(settings), progress)
    except ModelError as exc:
        print(f"worker: cannot load the model: {exc}", file=sys.stderr)
        return 3
    entry.set_runner(runner)
    config = {"handler": entry.stream_handler if settings.streaming else entry.handler, "concurrency_modifier": entry.concurrency_modifier}
    if settings.streaming:
        config["return_aggregate_stream"] = True
    runpod.serverless.start(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
