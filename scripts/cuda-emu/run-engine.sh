#!/usr/bin/env bash
# Checks the logic of the engine's CUDA twins on a machine without a GPU: native/engine/{norm_rope,mlp,head,optim}.cu
# (and gemm.cu, whose built-in kernel makes the head's chunk products; CLIPO_HEAD_PASS_LOGITS=2048 cuts the head's rows
# into small passes so that several run) are
# rewritten for host emulation (launch_to_emu.py, cuda_emu.h + engine_emu.h: one std::thread per CUDA thread,
# blocks in turn) and compared with their CPU twins on fresh random inputs (engine_check.cpp). Blind to timing, to
# the memory model and to --use_fast_math's exp; the GPU test (test/engine-cuda-kernels.test.ts) remains the real
# check. Usage: scripts/cuda-emu/run-engine.sh [seed]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for k in gemm norm_rope mlp head optim; do
  python3 "$here/launch_to_emu.py" "$root/native/engine/$k.cu" "$tmp/${k}_emu.cpp"
  sed -i 's|#include "cuda_emu.h"|#include "engine_emu.h"|' "$tmp/${k}_emu.cpp"
done
e="$root/native/engine"
g++ -std=c++20 -O1 -march=native -DCLIPO_WITH_CUDA -DCLIPO_HEAD_PASS_LOGITS=2048 -I"$here" -I"$root/native" -fopenmp \
  "$here/engine_check.cpp" "$tmp/norm_rope_emu.cpp" "$tmp/mlp_emu.cpp" "$tmp/head_emu.cpp" "$tmp/gemm_emu.cpp" "$tmp/optim_emu.cpp" \
  "$e/norm_rope.cpp" "$e/mlp.cpp" "$e/head.cpp" "$e/optim.cpp" "$e/gemm.cpp" "$e/config.cpp" \
  -o "$tmp/check" -lpthread
OMP_NUM_THREADS=1 "$tmp/check" "$@"
