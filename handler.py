"""RunPod Hub entry point. The Hub looks for a `handler.py` at the repository root (or in .runpod/);
the worker itself lives in the `worker` package, so this file only re-exports it.

`python handler.py` is the same as `python -m worker` (the image's CMD).
"""

import sys

from worker.__main__ import main
from worker.entries.runpod import concurrency_modifier, handler, stream_handler

__all__ = ["concurrency_modifier", "handler", "main", "stream_handler"]

if __name__ == "__main__":
    sys.exit(main())
