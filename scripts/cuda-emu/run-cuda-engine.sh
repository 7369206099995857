#!/usr/bin/env bash
# Checks the CUDA engine (native/engine/cuda_engine.cu) end to end on a machine without a GPU: the engine and the
# kernels it runs (gemm, norm_rope, attention, mlp, head, sampling .cu) are rewritten for host emulation (launch_to_emu.py;
# cuda_emu.h + engine_emu.h + cuda_engine_emu.h: one std::thread per CUDA thread, blocks in turn) and compared with
# the CPU engine on tiny random models (cuda_engine_check.cpp). Blind to timing, to the memory model and to
# --use_fast_math's exp; test/engine-cuda.test.ts on a GPU machine remains the real check.
# Usage: scripts/cuda-emu/run-cuda-engine.sh [seed] [quick]  (quick: one model, fewer cases; the jest run)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
e="$root/native/engine"
emu=()
for k in gemm norm_rope attention mlp head optim sampling cuda_engine; do
  python3 "$here/launch_to_emu.py" "$e/$k.cu" "$tmp/${k}_emu.cpp"
  sed -i 's|#include "cuda_emu.h"|#include "cuda_engine_emu.h"|' "$tmp/${k}_emu.cpp"
  emu+=("$tmp/${k}_emu.cpp")
done
# the engine's policy-loss step (its glue kernels and the surrogate kernel; cuda_policy_loss.cuh)
for k in "$e/policy_loss" "$root/native/kernels/surrogate/surrogate_loss"; do
  python3 "$here/launch_to_emu.py" "$k.cu" "$tmp/$(basename "$k")_emu.cpp"
  sed -i 's|#include "cuda_emu.h"|#include "cuda_engine_emu.h"|' "$tmp/$(basename "$k")_emu.cpp"
  emu+=("$tmp/$(basename "$k")_emu.cpp" "$k.cpp")
done
g++ -std=c++20 -O1 -march=native -DCLIPO_WITH_CUDA -I"$here" -I"$root/native" -fopenmp \
  "$here/cuda_engine_check.cpp" "${emu[@]}" \
  "$e/cpu_forward.cpp" "$e/cpu_decode.cpp" "$e/cpu_train.cpp" "$e/norm_rope.cpp" "$e/attention.cpp" "$e/mlp.cpp" \
  "$e/head.cpp" "$e/sampling.cpp" "$e/optim.cpp" "$e/gemm.cpp" "$e/config.cpp" \
  -o "$tmp/check" -lpthread
OMP_NUM_THREADS=1 "$tmp/check" "$@"
