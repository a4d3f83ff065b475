#!/bin/sh
# Container entrypoint: choose where CUDA keeps its JIT-compiled kernels, then run the CMD.
#
# ctranslate2's wheels ship machine code up to sm_86 plus PTX; on newer GPUs (H100/H200 sm_90,
# B200) the driver JIT-compiles the PTX at first use, which costs seconds to minutes on every
# cold start unless the result is cached. The cache survives workers only on the network
# volume, so it goes there when one is mounted; otherwise it stays in the container (kept by
# FlashBoot while the worker's container is reused). This is a run-time decision, hence a script.
set -eu

if [ -z "${CUDA_CACHE_PATH:-}" ]; then
    if [ -d /runpod-volume ] && [ -w /runpod-volume ]; then
        CUDA_CACHE_PATH=/runpod-volume/cuda-cache
    else
        CUDA_CACHE_PATH=/var/cache/cuda
    fi
fi
mkdir -p "$CUDA_CACHE_PATH" 2>/dev/null || CUDA_CACHE_PATH=/tmp/cuda-cache
export CUDA_CACHE_PATH
# 4 GiB is the largest size the driver accepts; one large-v3 kernel set is far smaller.
export CUDA_CACHE_MAXSIZE="${CUDA_CACHE_MAXSIZE:-4294967296}"

exec "$@"
