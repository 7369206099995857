#!/usr/bin/env bash
# Checks the logic of the engine's attention CUDA twins on a machine without a GPU: native/engine/attention.cu is
# rewritten for host emulation (launch_to_emu.py, cuda_emu.h + engine_emu.h + attention_emu.h: one std::thread per
# CUDA thread, blocks in turn) and compared with its CPU twin (attention.cpp) on fresh random inputs
# (attention_check.cpp). EMU_SM=64 makes the decoding plan split short contexts, so the split combine is exercised.
# Blind to timing, to the memory model and to --use_fast_math's exp; the GPU test
# (test/engine-cuda-attention.test.ts) remains the real check. Usage: scripts/cuda-emu/run-attention.sh [seed]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 "$here/launch_to_emu.py" "$root/native/engine/attention.cu" "$tmp/attention_emu.cpp"
sed -i 's|#include "cuda_emu.h"|#include "attention_emu.h"|' "$tmp/attention_emu.cpp"
e="$root/native/engine"
g++ -std=c++20 -O1 -march=native -DCLIPO_WITH_CUDA -I"$here" -I"$root/native" -fopenmp \
  "$here/attention_check.cpp" "$tmp/attention_emu.cpp" \
  "$e/attention.cpp" "$e/head.cpp" "$e/gemm.cpp" "$e/config.cpp" \
  -o "$tmp/check" -lpthread
EMU_SM=64 OMP_NUM_THREADS=1 "$tmp/check" "$@"
