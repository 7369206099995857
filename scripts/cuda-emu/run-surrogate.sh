#!/usr/bin/env bash
# Checks the surrogate CUDA kernel's logic on a machine without a GPU: surrogate_loss.cu is rewritten for host
# emulation (launch_to_emu.py, cuda_emu.h + surrogate_emu.h: one std::thread per CUDA thread, blocks in turn) and
# compared with the CPU kernel (surrogate_check.cpp). Blind to timing and to what only hardware shows (the memory
# model, --use_fast_math's exp); the GPU tests remain the real check.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 "$here/launch_to_emu.py" "$root/native/kernels/surrogate/surrogate_loss.cu" "$tmp/surrogate_emu.cpp"
sed -i 's|#include "cuda_emu.h"|#include "surrogate_emu.h"|' "$tmp/surrogate_emu.cpp"
g++ -std=c++20 -O1 -DCLIPO_WITH_CUDA -I"$here" -I"$root/native" -fopenmp \
  "$here/surrogate_check.cpp" "$tmp/surrogate_emu.cpp" "$root/native/kernels/surrogate/surrogate_loss.cpp" \
  -o "$tmp/check" -lpthread
# the row kernel groups 256 / 128 / 64 / 32 threads per response by the resident blocks (EMU_SM x EMU_OCC); the
# check's batches of 9 responses take each grouping once (32: two blocks, the second with spare groups)
for cfg in "16 16 256" "5 1 128" "3 1 64" "1 1 32"; do
  set -- $cfg
  echo "--- $3 threads per response (EMU_SM=$1 EMU_OCC=$2)"
  EMU_SM=$1 EMU_OCC=$2 OMP_NUM_THREADS=1 "$tmp/check"
done
