#!/usr/bin/env bash
# Checks the logic of the CUDA sampler on a machine without a GPU: native/engine/sampling.cu is rewritten for host
# emulation (launch_to_emu.py, cuda_emu.h + engine_emu.h: one std::thread per CUDA thread, blocks in turn) and
# compared with the CPU sampler (sampling.cpp) on fresh random rows and settings (sampling_check.cpp). Blind to
# timing, to the memory model and to the device's exp; the GPU test (test/engine-cuda-sampling.test.ts) remains the
# real check. Usage: scripts/cuda-emu/run-sampling.sh [seed] [rows] [inject]   (inject: a deliberate error, must fail)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 "$here/launch_to_emu.py" "$root/native/engine/sampling.cu" "$tmp/sampling_emu.cpp"
sed -i 's|#include "cuda_emu.h"|#include "engine_emu.h"|' "$tmp/sampling_emu.cpp"
e="$root/native/engine"
g++ -std=c++20 -O1 -march=native -DCLIPO_WITH_CUDA -I"$here" -I"$root/native" -fopenmp \
  "$here/sampling_check.cpp" "$tmp/sampling_emu.cpp" "$e/sampling.cpp" "$e/head.cpp" "$e/gemm.cpp" "$e/config.cpp" \
  -o "$tmp/check" -lpthread
OMP_NUM_THREADS=1 "$tmp/check" "$@"
