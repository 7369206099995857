#!/usr/bin/env bash
# The whole GPU check in one call (docs/gpu.md): environment probe, CUDA build (addon + clipo_gpulibs), CUDA-vs-CPU
# tests, compute-sanitizer, `clipo bench --backend cuda`, the PyTorch side-by-sides, and a summary. Every step runs
# under `timeout`, the whole run keeps to CLIPO_GPU_BUDGET_S seconds (default 285), and $OUT (default ./gpu-out)
# receives exactly four files:
#   summary.json    device, each step's status and time, the headline figures and targets (commit it under
#                   bench/results/)
#   status.txt      one line per step: name=ok|failed(rc)|timeout|skipped(why)
#   log-tail.txt    the last 300 lines of the run's log
#   gpu-run.tar.gz  everything else (every step's log and JSON output)
#
# usage: bash scripts/gpu/run-all.sh [--dry-run]
#   --dry-run, or no GPU visible to nvidia-smi: the GPU steps are marked skipped; the probe, the summary and the
#   packing still run, so the same four files appear (the test suite checks this).
# CLIPO_GPU_STEPS=a,b,...: run only these steps (and env, node, build, addon_info, which they need): a second call
# on the same machine finishes what the first had no time for, e.g. CLIPO_GPU_STEPS=torch_gemm,sanitizer_initcheck.
# CLIPO_GPU_ENGINE_BENCH=1 adds bench_engine (the CUDA engine beside transformers, about 3 minutes; off by default),
# e.g. CLIPO_GPU_STEPS=bench_engine CLIPO_GPU_BUDGET_S=290 bash scripts/gpu/run-all.sh on a second call.
# CLIPO_GPU_TRAIN_BENCH=1 adds bench_train (a 1.5B-shaped training step beside transformers + fused AdamW, and one RL
# step by phase; about 3 minutes; off by default), e.g. CLIPO_GPU_STEPS=bench_train on a call of its own.
# CLIPO_GPU_TRAIN_RUN=1 adds train_gpu (clipo train on the CUDA engine: run, resume, recomputation; bf16 gradients
# against PyTorch autograd at 0.5B; the nano recipes' learning check; a few minutes; off by default).
# Exit status: 0 when no step failed or timed out (and, without --dry-run, a GPU was there); 1 when a step failed
# or timed out; 2 on a bad argument; 3 when, without --dry-run, no GPU was found.
# Needs on the GPU machine: nvcc, CMake, python3 with PyTorch; node from PATH, or .devnode/ made by
# scripts/gpu/pack.sh and carried along with the working tree.
{  # the whole script is one block: bash reads it completely before running it, so editing the file mid-run is safe
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
OUT="${OUT:-$ROOT/gpu-out}"
DRY=0
for a in "$@"; do
  case "$a" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,26p' "$0" | cut -c3-; exit 0 ;;
    *) echo "run-all.sh: unknown argument '$a' (expected --dry-run)" >&2; exit 2 ;;
  esac
done
BUDGET="${CLIPO_GPU_BUDGET_S:-285}"
RESERVE=15  # seconds kept for the summary and the packing
START=$(date +%s)
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT/summary.json" "$OUT/status.txt" "$OUT/log-tail.txt" "$OUT/gpu-run.tar.gz"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/clipo-gpu.XXXXXX")"
LOG="$WORK/run-all.log"
STEPS="$WORK/steps.tsv"
: > "$STEPS"
exec 3>&1 4>&2
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!

elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "=== $(date -u +%H:%M:%S) +$(elapsed)s $*"; }
record() {  # name status rc seconds note
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5//$'\t'/ }" >> "$STEPS"
  say "$1: $2${5:+ ($5)}"
}

HAVE_GPU=0
GPU_WHY="dry run"
if [ "$DRY" = 0 ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then HAVE_GPU=1; GPU_WHY=""
  else GPU_WHY="no GPU (nvidia-smi lists none)"; fi
  # CLIPO_GPU_FORCE=1 runs the GPU steps anyway (to exercise this script on a machine without a GPU: they fail)
  [ "${CLIPO_GPU_FORCE:-0}" = 1 ] && { HAVE_GPU=1; GPU_WHY=""; }
fi

# step NAME MAX_SECONDS gpu|any COMMAND...: runs COMMAND under timeout with its output in $WORK/NAME.log
step() {
  local name="$1" max="$2" needs="$3"
  shift 3
  if [ "$needs" = gpu ] && [ "$HAVE_GPU" = 0 ]; then record "$name" skipped "" 0 "$GPU_WHY"; return 0; fi
  case "$name" in env|node|build|addon_info) ;; *)
    if [ -n "${CLIPO_GPU_STEPS:-}" ] && [[ ",$CLIPO_GPU_STEPS," != *",$name,"* ]]; then record "$name" skipped "" 0 "not in CLIPO_GPU_STEPS"; return 0; fi ;;
  esac
  local left=$(( BUDGET - RESERVE - $(elapsed) ))
  if [ "$left" -lt 10 ]; then record "$name" skipped "" 0 "time budget of ${BUDGET}s spent"; return 0; fi
  local t=$(( max < left ? max : left ))
  say "$name (limit ${t}s)"
  local t0; t0=$(date +%s)
  # functions of this script run in a child bash (timeout runs programs): they and their variables are exported
  timeout -k 5 "$t" bash -c '"$@"' "$name" "$@" > "$WORK/$name.log" 2>&1
  local rc=$? dt=$(( $(date +%s) - t0 ))
  if [ $rc = 0 ]; then record "$name" ok 0 "$dt" ""
  elif [ $rc = 124 ] || [ $rc = 137 ]; then record "$name" timeout "$rc" "$dt" "killed after ${t}s"; tail -n 15 "$WORK/$name.log"
  else record "$name" failed "$rc" "$dt" "exit $rc"; tail -n 15 "$WORK/$name.log"; fi
  return 0
}
ok() { awk -F'\t' -v n="$1" '$1 == n && $2 == "ok" { f = 1 } END { exit !f }' "$STEPS"; }

# ---- 1. environment probe (first, always) ----
export PATH="/usr/local/cuda/bin:$PATH"
probe() {
  echo "date: $(date -u +%FT%TZ)  host: $(hostname)  cores: $(nproc)  dry-run: $DRY"
  echo "--- nvidia-smi"
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,clocks.max.memory --format=csv 2>&1 ||
    nvidia-smi -L 2>&1 || echo "nvidia-smi: not available"
  echo "--- nvcc"; nvcc --version 2>&1 | tail -2 || echo "nvcc: not found"
  echo "--- cmake"; cmake --version 2>&1 | head -1 || echo "cmake: not found"
  echo "--- compute-sanitizer"; command -v compute-sanitizer || echo "compute-sanitizer: not found"
  echo "--- node"; command -v node && node --version || echo "node: not on PATH (scripts/gpu/pack.sh + .devnode)"
  echo "--- python3"
  python3 - "$WORK/env.json" <<'PY' || echo "python3: probe failed"
import json, sys, importlib.metadata as md
info = {"python": sys.version.split()[0]}
try:
    import nvidia
    info["nvidiaPackageRoots"] = list(nvidia.__path__)
except Exception as e:
    info["nvidiaPackageRoots"] = []
    info["nvidiaPackageError"] = f"{type(e).__name__}: {e}"
info["nvidiaPackages"] = {d.metadata["Name"]: d.version for d in md.distributions() if (d.metadata["Name"] or "").lower().startswith("nvidia-")}
try:
    import torch
    info["torch"] = torch.__version__
    info["torchCuda"] = torch.version.cuda
    info["cudaAvailable"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["device"] = {"name": p.name, "memoryBytes": p.total_memory, "computeCapability": f"{p.major}.{p.minor}",
                          "multiprocessors": p.multi_processor_count, "l2Bytes": getattr(p, "L2_cache_size", None)}
except Exception as e:
    info["torchError"] = f"{type(e).__name__}: {e}"
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
PY
}
export ROOT WORK DRY
export -f probe
say "clipo GPU check: OUT=$OUT work=$WORK budget=${BUDGET}s gpu=$HAVE_GPU${GPU_WHY:+ ($GPU_WHY)}"
step env 90 any probe  # importing torch takes seconds, more on a loaded machine
cat "$WORK/env.log"

# ---- 2. node (carried as .devnode/ where the machine has none) ----
node_setup() {
  if ! command -v node >/dev/null 2>&1; then
    [ -s .devnode/node.xz ] || { echo "no node on PATH and no .devnode/node.xz (run scripts/gpu/pack.sh and carry .devnode)"; return 1; }
    mkdir -p .devnode/bin && xz -dc .devnode/node.xz > .devnode/bin/node && chmod +x .devnode/bin/node || return 1
  fi
  if [ ! -d node_modules/jest ] && [ -s .devnode/node_modules.tar.xz ]; then tar -xJf .devnode/node_modules.tar.xz || return 1; fi
  if [ -s .devnode/dist.tar.xz ]; then rm -rf dist-gpu && mkdir -p dist-gpu && tar -C dist-gpu -xJf .devnode/dist.tar.xz || return 1; fi
  export PATH="$ROOT/.devnode/bin:$PATH"
  node --version && test -d node_modules/jest && test -f "${CLIPO_DIST_DIR:-$( [ -d dist-gpu ] && echo dist-gpu || echo dist)}/src/cli/main.js"
}
[ -x .devnode/bin/node ] && export PATH="$ROOT/.devnode/bin:$PATH"
export -f node_setup
step node 60 any node_setup
[ -x .devnode/bin/node ] && export PATH="$ROOT/.devnode/bin:$PATH"
DIST=dist; [ -d dist-gpu ] && DIST=dist-gpu
export DIST CLIPO_DIST_DIR="$DIST"
HAVE_NODE=0; ok node && HAVE_NODE=1
nodestep() {  # like step, but skipped with a reason when node is missing
  local name="$1" max="$2" needs="$3"
  if [ "$HAVE_NODE" = 0 ]; then record "$name" skipped "" 0 "no node"; return 0; fi
  step "$@"
}

# ---- 3. build: the addon with CUDA, and clipo_gpulibs against the NVIDIA wheels python3 sees ----
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
build() {
  # configure every time (cheap), so that a second call on the same machine picks up what changed
  { node node_modules/cmake-js/bin/cmake-js configure --log-level warn --out build-gpu --CDCLIPO_CUDA=ON &&
    node node_modules/cmake-js/bin/cmake-js build --log-level warn --out build-gpu; } && return 0
  echo "run-all: the full build failed; retrying with the kernels only (common;bench;kernels;gpulibs)"
  rm -rf build-gpu
  node node_modules/cmake-js/bin/cmake-js compile --log-level warn --out build-gpu --CDCLIPO_CUDA=ON \
    --CDCLIPO_NATIVE_DIRS="common;bench;kernels;gpulibs"
}
export -f build
nodestep build 170 gpu build
if ok build; then export CLIPO_NATIVE_ADDON="$ROOT/build-gpu/Release/clipo.node"; fi
BUILT=0; { ok build || { [ "$HAVE_GPU" = 0 ] && [ -f build/Release/clipo.node ]; }; } && BUILT=1
addon_info() {
  node -e '
    const a = require(process.env.CLIPO_NATIVE_ADDON || "./build/Release/clipo.node");
    const out = { build: a.buildInfo(), cuda: a.cudaDeviceInfo(), gpulibs: a.gpuLibsInfo ? a.gpuLibsInfo() : null };
    require("fs").writeFileSync(process.argv[1], JSON.stringify(out, null, 2));
    console.log(JSON.stringify(out, null, 2));' "$WORK/addon-info.json"
}
export -f addon_info
if [ "$BUILT" = 1 ]; then nodestep addon_info 30 any addon_info; else record addon_info skipped "" 0 "no addon built"; fi

# ---- 4. CUDA against CPU: the kernels' tests and the GPU-library probes' tests ----
jest_kernels() {
  node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --roots "$DIST/test" \
    --json --outputFile="$WORK/jest-kernels.json" -- surrogate contrastive gpulibs engine-cuda-kernels engine-cuda-attention engine-cuda-backward engine-cuda-sampling engine-cuda-gemm
}
export -f jest_kernels
if ok build; then nodestep jest_kernels 90 gpu jest_kernels; else record jest_kernels skipped "" 0 "${GPU_WHY:-build failed}"; fi
# the CUDA engine against the CPU engine: inference (fp32 within 1e-4, bf16 greedy decoding and log-probs) and
# training (fp32 gradients within 1e-4, AdamW within 1e-6, bf16 gradients and master/working weights)
jest_engine() {
  node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --roots "$DIST/test" \
    --json --outputFile="$WORK/jest-engine.json" -- 'engine-cuda(-train|-policy-loss)?\.test'
}
export -f jest_engine
if ok build; then nodestep jest_engine 90 gpu jest_engine; else record jest_engine skipped "" 0 "${GPU_WHY:-build failed}"; fi

# ---- 5. compute-sanitizer on small runs of every kernel variant ----
for tool in memcheck racecheck; do
  if ! ok build; then record "sanitizer_$tool" skipped "" 0 "${GPU_WHY:-build failed}"
  elif ! command -v compute-sanitizer >/dev/null 2>&1; then record "sanitizer_$tool" skipped "" 0 "compute-sanitizer not installed"
  else nodestep "sanitizer_$tool" 45 gpu compute-sanitizer --tool "$tool" --error-exitcode 9 node scripts/gpu/sanitize-run.mjs; fi
done

# ---- 6. clipo bench (CUDA), then PyTorch on the same GPU ----
bench() { node bin/clipo bench "$1" --backend "$2" --json --out "$WORK/bench-$1.json" > /dev/null; }
export -f bench
if [ "$BUILT" = 1 ]; then nodestep bench_backends 30 any bench backends auto; else record bench_backends skipped "" 0 "no addon built"; fi
for s in surrogate contrastive gpulibs; do
  if ok build; then nodestep "bench_$s" 60 gpu bench "$s" cuda; else record "bench_$s" skipped "" 0 "${GPU_WHY:-build failed}"; fi
done
# the CUDA engine beside transformers (bf16, same GPU): scoring MFU and decoding against its roofline at Qwen2.5-0.5B
# and 1.5B shapes. Off by default (about three minutes of a short GPU session): CLIPO_GPU_ENGINE_BENCH=1, or name
# bench_engine in CLIPO_GPU_STEPS.
bench_engine() { node bin/clipo bench engine --backend cuda --compare torch --json --out "$WORK/bench-engine.json" > /dev/null; }
export -f bench_engine
if ! ok build; then record bench_engine skipped "" 0 "${GPU_WHY:-build failed}"
elif [ "${CLIPO_GPU_ENGINE_BENCH:-0}" = 1 ] || [[ ",${CLIPO_GPU_STEPS:-}," == *",bench_engine,"* ]]; then nodestep bench_engine 240 gpu bench_engine
else record bench_engine skipped "" 0 "off by default: CLIPO_GPU_ENGINE_BENCH=1 or CLIPO_GPU_STEPS=bench_engine"; fi
# training on the CUDA engine beside transformers + torch.optim.AdamW(fused=True) with bf16 autocast (same GPU): a
# Qwen2.5-1.5B-shaped step's MFU and time, and one RL step broken down by phase (CLIPO's share). Off by default (about
# three minutes): CLIPO_GPU_TRAIN_BENCH=1, or name bench_train in CLIPO_GPU_STEPS.
# CLIPO_GPU_TRAIN_SHAPES (default 1.5b) picks the shapes, e.g. 0.5b,1.5b,3b,7b for each one's measured peak memory
# (a shape the plan says will not fit gets its computed figure only); each shape adds its own model build and step.
bench_train() { node bin/clipo bench train --backend cuda --compare torch --shape "${CLIPO_GPU_TRAIN_SHAPES:-1.5b}" --json --out "$WORK/bench-train.json" > /dev/null; }
export -f bench_train
if ! ok build; then record bench_train skipped "" 0 "${GPU_WHY:-build failed}"
elif [ "${CLIPO_GPU_TRAIN_BENCH:-0}" = 1 ] || [[ ",${CLIPO_GPU_STEPS:-}," == *",bench_train,"* ]]; then nodestep bench_train 240 gpu bench_train
else record bench_train skipped "" 0 "off by default: CLIPO_GPU_TRAIN_BENCH=1 or CLIPO_GPU_STEPS=bench_train"; fi
# clipo train on the CUDA engine end to end: a run, a SIGKILLed run resumed to the same bits, recomputation's same
# trajectory (test/train-cuda.test.ts), the bf16 engine's gradients against fp32 autograd in transformers on a
# Qwen2.5-0.5B-shaped model (test/engine-cuda-torch-grad.test.ts, about a minute: too long for jest_engine's 90 s),
# then the nano recipes' learning check on the GPU (scripts/nano-rl-check.mjs:
# training accuracy of the last 5 steps above the first 5). Off by default (a few minutes): CLIPO_GPU_TRAIN_RUN=1, or
# name train_gpu in CLIPO_GPU_STEPS.
train_gpu() {
  node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --roots "$DIST/test" \
    --json --outputFile="$WORK/jest-train-cuda.json" -- '/(train-cuda|engine-cuda-torch-grad)\.test' || return 1
  node scripts/nano-rl-check.mjs grpo dapo-clipo --set model.backend=cuda 2>&1 | tee "$WORK/nano-rl-cuda.txt" | tail -20
}
export -f train_gpu
if ! ok build; then record train_gpu skipped "" 0 "${GPU_WHY:-build failed}"
elif [ "${CLIPO_GPU_TRAIN_RUN:-0}" = 1 ] || [[ ",${CLIPO_GPU_STEPS:-}," == *",train_gpu,"* ]]; then nodestep train_gpu 420 gpu train_gpu
else record train_gpu skipped "" 0 "off by default: CLIPO_GPU_TRAIN_RUN=1 or CLIPO_GPU_STEPS=train_gpu"; fi
torch_run() { local s="$1"; shift; python3 "scripts/gpu/torch_$s.py" --device cuda --out "$WORK/torch_$s.json" "$@" > /dev/null; }
export -f torch_run
step torch_surrogate 50 gpu torch_run surrogate --compile-budget 15
step torch_contrastive 55 gpu torch_run contrastive --compile-budget 15
GEMM_SHAPES=(); [ -s "$WORK/bench-gpulibs.json" ] && GEMM_SHAPES=(--shapes "$WORK/bench-gpulibs.json")
step torch_gemm 35 gpu torch_run gemm "${GEMM_SHAPES[@]}"
# last, as it matters least: uninitialized reads
if ok build && command -v compute-sanitizer >/dev/null 2>&1; then
  nodestep sanitizer_initcheck 30 gpu compute-sanitizer --tool initcheck --error-exitcode 9 node scripts/gpu/sanitize-run.mjs
else record sanitizer_initcheck skipped "" 0 "${GPU_WHY:-no build or no compute-sanitizer}"; fi

# ---- 7. summary, status, log tail, archive: exactly four files in $OUT ----
failed=$(awk -F'\t' '$2 == "failed" || $2 == "timeout" { n++ } END { print n + 0 }' "$STEPS")
overall=ok; [ "$failed" -gt 0 ] && overall="failed ($failed steps)"
[ "$failed" = 0 ] && [ "$HAVE_GPU" = 0 ] && overall="$([ "$DRY" = 1 ] && echo "dry run" || echo "no GPU")"
{
  echo "overall=$overall"
  awk -F'\t' '{ s = $2; if ($2 == "failed" || $2 == "timeout") s = $2 "(" $3 ")"; else if ($2 == "skipped") s = "skipped(" $5 ")"; print $1 "=" s }' "$STEPS"
} > "$WORK/status.txt"
# a minimal summary without node; merge-results.mjs replaces it with the full one
python3 - "$STEPS" "$WORK/summary.json" "$DRY" "$(elapsed)" "$overall" <<'PY' 2>/dev/null || printf '{"schema":1,"overall":"%s","note":"python3 missing: see status.txt"}\n' "$overall" > "$WORK/summary.json"
import json, sys
steps = []
for line in open(sys.argv[1]):
    n, s, rc, sec, note = (line.rstrip("\n").split("\t") + [""] * 5)[:5]
    steps.append({"name": n, "status": s, "rc": int(rc) if rc else None, "seconds": int(sec or 0), "note": note})
json.dump({"schema": 1, "dryRun": sys.argv[3] == "1", "elapsedSeconds": int(sys.argv[4]), "overall": sys.argv[5], "steps": steps},
          open(sys.argv[2], "w"), indent=2)
PY
if [ "$HAVE_NODE" = 1 ]; then
  timeout -k 5 60 node scripts/gpu/merge-results.mjs "$WORK" "$WORK/summary.json" --dry-run="$DRY" --overall="$overall" \
    --elapsed="$(elapsed)" > "$WORK/merge.log" 2>&1 || { echo "merge-results failed (the minimal summary stays):"; tail -n 20 "$WORK/merge.log"; }
  cat "$WORK/merge.log"
fi
cp "$WORK/summary.json" "$OUT/summary.json"
cp "$WORK/status.txt" "$OUT/status.txt"
say "done in $(elapsed)s: $overall"
cat "$WORK/status.txt"
exec 1>&3 2>&4
wait "$TEE_PID" 2>/dev/null
tail -n 300 "$LOG" > "$OUT/log-tail.txt"
tar -C "$WORK" -czf "$OUT/gpu-run.tar.gz" .
if [ "$(stat -c %s "$OUT/gpu-run.tar.gz")" -gt $(( 15 * 1024 * 1024 )) ]; then  # 16 MiB is the most one file may be
  tar -C "$WORK" -czf "$OUT/gpu-run.tar.gz" --exclude='jest-*.json' --exclude='build.log' .
fi
rm -rf "$WORK"
case "$overall" in ok|"dry run") exit 0 ;; "no GPU") exit 3 ;; *) exit 1 ;; esac
}
