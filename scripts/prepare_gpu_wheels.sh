#!/usr/bin/env bash
# The wheels the lent GPU machine lacks (ctranslate2, faster-whisper, av, pydantic and its three
# small dependencies: cp312 manylinux x86_64, the image's pinned versions), stripped of debug info
# and re-zipped with LZMA, plus the base model's tokenizer, into .whl-gpu/ (git-ignored, under
# 60 MB). `python3 -m benchmarks.gpu --wheels .whl-gpu` installs them there with
# `pip install --no-index --find-links`. See README "GPU evaluation".
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m benchmarks.gpu_wheels "$@"
