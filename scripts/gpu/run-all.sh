#!/usr/bin/env bash
# One call on a GPU machine: build the CUDA addon, check CUDA against CPU (jest), run compute-sanitizer on a small
# run, benchmark the kernels (`clipo bench --backend cuda`) and PyTorch eager code of the same math, and merge all
# of it into results/<device>.json. Everything goes to $OUT (default ./gpu-out). See docs/gpu.md.
#
# Needs: nvcc + CMake (+ ninja or make), Python 3 with PyTorch, and either a `node` on PATH or .devnode/ from
# scripts/gpu/pack.sh (node binary, node_modules, compiled TypeScript) carried along.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
OUT="${OUT:-$ROOT/gpu-out}"
mkdir -p "$OUT"
LOG="$OUT/run-all.log"
exec > >(tee -a "$LOG") 2>&1
step() { echo; echo "=== $(date -u +%H:%M:%S) $*"; }
status() { echo "$1=$2" >> "$OUT/status.txt"; }
: > "$OUT/status.txt"

step "environment"
export PATH="/usr/local/cuda/bin:$PATH"
if ! command -v node >/dev/null && [ -s .devnode/node.xz ]; then
  mkdir -p .devnode/bin && xz -dc .devnode/node.xz > .devnode/bin/node && chmod +x .devnode/bin/node
  export PATH="$ROOT/.devnode/bin:$PATH"
fi
[ -d node_modules ] || { [ -s .devnode/node_modules.tar.xz ] && tar -xJf .devnode/node_modules.tar.xz; }
DIST=dist
if [ -s .devnode/dist.tar.xz ]; then
  rm -rf dist-gpu && mkdir -p dist-gpu && tar -C dist-gpu -xJf .devnode/dist.tar.xz && DIST=dist-gpu
fi
export CLIPO_DIST_DIR="$DIST"
command -v node >/dev/null || { echo "no node: run scripts/gpu/pack.sh first and carry .devnode"; exit 1; }
node --version; nvcc --version | tail -2; cmake --version | head -1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv 2>/dev/null | tee "$OUT/nvidia-smi.csv"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1

step "build the CUDA addon (cmake-js, CLIPO_CUDA=ON) into build-gpu/"
BUILD_OK=0
if node node_modules/cmake-js/bin/cmake-js compile --log-level warn --out build-gpu --CDCLIPO_CUDA=ON > "$OUT/build.log" 2>&1; then
  BUILD_OK=1
else
  echo "full build failed (tail of build.log below); retrying with the kernels only"
  tail -30 "$OUT/build.log"
  rm -rf build-gpu
  node node_modules/cmake-js/bin/cmake-js compile --log-level warn --out build-gpu --CDCLIPO_CUDA=ON \
    --CDCLIPO_NATIVE_DIRS="common;bench;kernels" >> "$OUT/build.log" 2>&1 && BUILD_OK=2
fi
status build "$BUILD_OK"
[ "$BUILD_OK" != 0 ] || { tail -40 "$OUT/build.log"; exit 1; }
export CLIPO_NATIVE_ADDON="$ROOT/build-gpu/Release/clipo.node"
node -e 'const a=require(process.env.CLIPO_NATIVE_ADDON); console.log(JSON.stringify({build:a.buildInfo(), cuda:a.cudaDeviceInfo()}))' \
  | tee "$OUT/addon-info.json"

step "CUDA against CPU (jest: surrogate and contrastive tests)"
node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --roots "$DIST/test" \
  --json --outputFile="$OUT/jest-kernels.json" -- surrogate contrastive > "$OUT/jest-kernels.log" 2>&1
status jest_kernels $?
grep -E '^(Tests|Test Suites):' "$OUT/jest-kernels.log" || tail -20 "$OUT/jest-kernels.log"

step "compute-sanitizer (memcheck, initcheck, racecheck) on small kernel runs"
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck initcheck racecheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 9 node scripts/gpu/sanitize-run.mjs > "$OUT/sanitizer-$tool.log" 2>&1
    rc=$?; status "sanitizer_$tool" "$rc"; echo "$tool: exit $rc"; tail -3 "$OUT/sanitizer-$tool.log"
  done
else
  echo "compute-sanitizer not found"; status sanitizer missing
fi

step "clipo bench --backend cuda"
for suite in backends surrogate contrastive; do
  node bin/clipo bench "$suite" --backend cuda --json --out "$OUT/bench-$suite.json" > "$OUT/bench-$suite.stdout" 2> "$OUT/bench-$suite.log"
  rc=$?; status "bench_$suite" "$rc"; echo "$suite: exit $rc"; [ $rc = 0 ] || tail -5 "$OUT/bench-$suite.log"
done
node bin/clipo bench surrogate --backend cpu --json --out "$OUT/bench-surrogate-cpu.json" > /dev/null 2> "$OUT/bench-surrogate-cpu.log"
status bench_surrogate_cpu $?

step "PyTorch eager, same math, same GPU"
for k in surrogate contrastive; do
  if [ -f "scripts/gpu/torch_$k.py" ]; then
    python3 "scripts/gpu/torch_$k.py" > "$OUT/torch_$k.json" 2> "$OUT/torch_$k.log"
    rc=$?; status "torch_$k" "$rc"; echo "torch_$k: exit $rc"; [ $rc = 0 ] || tail -5 "$OUT/torch_$k.log"
  fi
done

step "merge into results/<device>.json"
node scripts/gpu/merge-results.mjs "$OUT" 2>&1
status merge $?
cat "$OUT/status.txt"
