#!/usr/bin/env bash
# Checks the CUDA contrastive kernel's logic on a machine without a GPU: the .cu source is rewritten so that every
# `kernel<<<grid, block, smem, stream>>>(args)` becomes a host emulation (one std::thread per CUDA thread, blocks
# in turn, __syncthreads as a barrier, warp shuffles through a buffer; cuda_emu.h), compiled with g++ and compared
# with the CPU kernel on random inputs: all loss types and levels, both distances and heads, pooled / fp32 / bf16
# tokens, odd hidden sizes (scalar loads), split-K and split-L paths. Slow (minutes: thousands of threads per
# call), and blind to what only hardware shows (timing, memory-model races): the GPU tests remain the real check.
# Usage: scripts/cuda-emu/run.sh [quick]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 "$here/launch_to_emu.py" "$root/native/kernels/contrastive/contrastive_loss.cu" "$tmp/contrastive_loss_emu.cpp"
g++ -std=c++20 -O1 -DCLIPO_WITH_CUDA -I"$here" -I"$root/native/kernels/contrastive" -I"$root/native" -fopenmp \
  "$here/contrastive_check.cpp" "$tmp/contrastive_loss_emu.cpp" "$root/native/kernels/contrastive/contrastive_loss.cpp" \
  -o "$tmp/check" -lpthread
export OMP_NUM_THREADS=1
"$tmp/check"                      # every loss type x level x input, small shapes
[ "${1:-}" = quick ] && exit 0
"$tmp/check" big                  # several tiles, odd sizes, mlp
EMU_SM=40 "$tmp/check" split      # as many "SMs" as it takes to split K and L
