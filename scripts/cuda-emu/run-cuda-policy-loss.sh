#!/usr/bin/env bash
# Checks the CUDA engine's policy-loss micro-batch on the device (Engine::policyLossBackward: native/engine/
# cuda_policy_loss.cuh, the glue kernels of policy_loss.cu and the surrogate kernel of kernels/surrogate/) on a
# machine without a GPU: the engine and every kernel it runs are rewritten for host emulation (launch_to_emu.py;
# cuda_emu.h + engine_emu.h + cuda_engine_emu.h: one std::thread per CUDA thread, blocks in turn) and compared, in
# fp32, with the CPU engine and (without quick) the same engine through its host methods (cuda_policy_loss_check.cpp).
# Blind to timing, to the memory model and to --use_fast_math's exp; test/engine-cuda-policy-loss.test.ts on a GPU
# machine remains the real check.
# Usage: scripts/cuda-emu/run-cuda-policy-loss.sh [seed] [quick]  (quick: GRPO with KL and the entropy bonus, DAPO
# with a filtered response, against the CPU engine only; the jest run)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
e="$root/native/engine"
emu=()
for k in "$e/gemm" "$e/norm_rope" "$e/attention" "$e/mlp" "$e/head" "$e/optim" "$e/sampling" "$e/cuda_engine" \
  "$e/policy_loss" "$root/native/kernels/surrogate/surrogate_loss"; do
  n="$(basename "$k")"
  python3 "$here/launch_to_emu.py" "$k.cu" "$tmp/${n}_emu.cpp"
  sed -i 's|#include "cuda_emu.h"|#include "cuda_engine_emu.h"|' "$tmp/${n}_emu.cpp"
  emu+=("$tmp/${n}_emu.cpp")
done
# one object per source, two compilers at a time (the emulated kernels' speed is the threads', not the code's: -O0)
srcs=("$here/cuda_policy_loss_check.cpp" "${emu[@]}"
  "$e/cpu_forward.cpp" "$e/cpu_decode.cpp" "$e/cpu_train.cpp" "$e/norm_rope.cpp" "$e/attention.cpp" "$e/mlp.cpp"
  "$e/head.cpp" "$e/sampling.cpp" "$e/optim.cpp" "$e/gemm.cpp" "$e/config.cpp" "$e/policy_loss.cpp"
  "$root/native/kernels/surrogate/surrogate_loss.cpp")
mkdir -p "$tmp/obj"
i=0
for f in "${srcs[@]}"; do printf '%s\0%s\0' "$f" "$tmp/obj/$i.o"; i=$((i + 1)); done |
  xargs -0 -n 2 -P "${CLIPO_EMU_JOBS:-2}" sh -c 'g++ -std=c++20 -O0 -march=native -DCLIPO_WITH_CUDA -I"$0" -I"$1" -fopenmp -c "$2" -o "$3"' "$here" "$root/native"
g++ -fopenmp "$tmp"/obj/*.o -o "$tmp/check" -lpthread
OMP_NUM_THREADS=1 "$tmp/check" "$@"
