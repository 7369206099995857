#!/usr/bin/env bash
# Checks the CUDA engine's built-in GEMM kernel (native/engine/gemm.cu: the NT, NN and TN products, bf16 and fp32)
# on a machine without a GPU: gemm.cu is rewritten for host emulation (launch_to_emu.py, cuda_emu.h + engine_emu.h:
# one std::thread per CUDA thread, blocks in turn) and compared with a float64 reference on fresh random inputs
# (gemm_check.cpp). Under emulation the dispatch never opens clipo_gpulibs, so cuBLASLt is checked only on a GPU
# (test/engine-cuda-gemm.test.ts). Usage: scripts/cuda-emu/run-gemm.sh [seed]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 "$here/launch_to_emu.py" "$root/native/engine/gemm.cu" "$tmp/gemm_emu.cpp"
sed -i 's|#include "cuda_emu.h"|#include "engine_emu.h"|' "$tmp/gemm_emu.cpp"
g++ -std=c++20 -O1 -march=native -DCLIPO_WITH_CUDA -I"$here" -I"$root/native" \
  "$here/gemm_check.cpp" "$tmp/gemm_emu.cpp" -o "$tmp/check" -lpthread
"$tmp/check" "$@"
