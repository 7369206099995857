#!/usr/bin/env bash
# Checks the CUDA engine's training path (native/engine/cuda_train.cuh: forward keeping activations, backward,
# gradient accumulation, AdamW) on a machine without a GPU: the engine and every kernel it runs are rewritten for host
# emulation (launch_to_emu.py; cuda_emu.h + engine_emu.h + cuda_engine_emu.h: one std::thread per CUDA thread, blocks
# in turn) and compared with the CPU engine on tiny random models (cuda_train_check.cpp): fp32 gradients within 1e-4,
# one AdamW step within 1e-6 of the CPU kernel, bf16 gradients near the CPU's, the engine's device-memory count
# (Engine::deviceMemory) equal to the emulated allocator's. Blind to timing, to the memory model
# and to --use_fast_math's exp; test/engine-cuda-train.test.ts on a GPU machine remains the real check.
# Usage: scripts/cuda-emu/run-cuda-train.sh [seed] [quick]  (quick: one model in fp32 and bf16; the jest run)
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
# one object per source, two compilers at a time (the emulated kernels' speed is the threads', not the code's: -O0)
srcs=("$here/cuda_train_check.cpp" "${emu[@]}"
  "$e/cpu_forward.cpp" "$e/cpu_decode.cpp" "$e/cpu_train.cpp" "$e/norm_rope.cpp" "$e/attention.cpp" "$e/mlp.cpp"
  "$e/head.cpp" "$e/sampling.cpp" "$e/optim.cpp" "$e/gemm.cpp" "$e/config.cpp")
mkdir -p "$tmp/obj"
i=0
for f in "${srcs[@]}"; do printf '%s\0%s\0' "$f" "$tmp/obj/$i.o"; i=$((i + 1)); done |
  xargs -0 -n 2 -P "${CLIPO_EMU_JOBS:-2}" sh -c 'g++ -std=c++20 -O0 -march=native -DCLIPO_WITH_CUDA -I"$0" -I"$1" -fopenmp -c "$2" -o "$3"' "$here" "$root/native"
g++ -fopenmp "$tmp"/obj/*.o -o "$tmp/check" -lpthread
OMP_NUM_THREADS=1 "$tmp/check" "$@"
