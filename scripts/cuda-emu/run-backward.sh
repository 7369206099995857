#!/usr/bin/env bash
# Checks the logic of the engine's backward CUDA twins on a machine without a GPU: native/engine/{norm_rope,mlp,head}.cu
# are rewritten for host emulation (launch_to_emu.py, cuda_emu.h + engine_emu.h: one std::thread per CUDA thread,
# blocks in turn) and compared, in both storages (bf16 and fp32), with the CPU twins the CPU engine's backward calls,
# on fresh random inputs (backward_check.cpp). Blind to timing, to the memory model and to --use_fast_math's exp;
# the GPU test (test/engine-cuda-backward.test.ts) remains the real check. Usage: scripts/cuda-emu/run-backward.sh [seed]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for k in gemm norm_rope mlp head; do
  python3 "$here/launch_to_emu.py" "$root/native/engine/$k.cu" "$tmp/${k}_emu.cpp"
  sed -i 's|#include "cuda_emu.h"|#include "engine_emu.h"|' "$tmp/${k}_emu.cpp"
done
e="$root/native/engine"
g++ -std=c++20 -O1 -march=native -DCLIPO_WITH_CUDA -I"$here" -I"$root/native" -fopenmp \
  "$here/backward_check.cpp" "$tmp/norm_rope_emu.cpp" "$tmp/mlp_emu.cpp" "$tmp/head_emu.cpp" "$tmp/gemm_emu.cpp" \
  "$e/norm_rope.cpp" "$e/mlp.cpp" "$e/head.cpp" "$e/gemm.cpp" "$e/config.cpp" \
  -o "$tmp/check" -lpthread
OMP_NUM_THREADS=1 "$tmp/check" "$@"
