// The GPU libraries (cuBLASLt, NCCL): built into their own shared library, clipo_gpulibs.so, which the addon opens
// at run time (native/gpulibs/), so the addon never depends on them. This module reports what the build found and
// what loads now, and runs the two probes the GPU engine starts from.
import { loadNative } from '../native.js';

export interface GpuLibFound {
  found: boolean;
  include?: string;
  library?: string;
  /** why it was not found (where the build looked) */
  why?: string;
}

export interface GpuLibsInfo {
  /** clipo_gpulibs.so was built with this addon */
  built: boolean;
  build: { why?: string; cublasLt: GpuLibFound; nccl: GpuLibFound; searched: string };
  /** where the addon looks for the library (CLIPO_GPULIBS_PATH overrides) */
  path?: string;
  loaded: boolean;
  /** why it did not load */
  error?: string;
  runtime?: {
    cublasLt: boolean;
    cublasLtVersion: number;
    nccl: boolean;
    ncclVersion: number;
    cudaRuntimeVersion: number;
    cudaDriverVersion: number;
    deviceCount: number;
  };
}

export interface GemmProbeResult {
  msMedian: number;
  msMin: number;
  tflops: number;
  /** max |y - ref| / (|ref| + sqrt(sum_k (x_k w_k)^2)) over the checked elements */
  maxScaledError: number;
  checked: number;
  workspaceBytes: number;
  samples: number[];
}

export interface AllReduceProbeResult {
  bytes: number;
  nranks: number;
  msMedian: number;
  msMin: number;
  algGBs: number;
  maxAbsError: number;
  samples: number[];
}

type Fn<A extends unknown[], R> = (...args: A) => R;

function native<F>(name: string): F | undefined {
  const f = loadNative()[name];
  return typeof f === 'function' ? (f as F) : undefined;
}

let cached: GpuLibsInfo | undefined;

/** What the build found and what loads now (cached: the first call opens the library). */
export function gpuLibsInfo(): GpuLibsInfo {
  if (cached) return cached;
  const f = native<Fn<[], GpuLibsInfo>>('gpuLibsInfo');
  cached = f
    ? f()
    : {
        built: false, loaded: false, error: 'this build of the addon predates the GPU libraries: rebuild with `npm run build:native`',
        build: { why: 'not in this build', cublasLt: { found: false, why: 'not searched' }, nccl: { found: false, why: 'not searched' }, searched: '' },
      };
  return cached;
}

/** Why a GPU library is not usable now, or null when it is (compiled into the loaded library and a GPU is there). */
export function gpuLibUnusable(lib: 'cublasLt' | 'nccl', info = gpuLibsInfo()): string | null {
  if (!info.built) return `clipo_gpulibs was not built: ${info.build.why ?? 'unknown'}`;
  if (!info.build[lib].found) return `not found at build time: ${info.build[lib].why ?? ''}`;
  if (!info.loaded || !info.runtime) return info.error ?? 'clipo_gpulibs did not load';
  if (!info.runtime[lib]) return 'not compiled into clipo_gpulibs';
  if (info.runtime.deviceCount === 0) return 'no usable GPU (CUDA driver ' + (info.runtime.cudaDriverVersion || 'absent') + ')';
  return null;
}

/** bf16 Y[M x N] = X[M x K] W[N x K]^T through cuBLASLt: checked against an fp32 reference kernel, then timed. */
export function gemmProbe(opts: { m: number; n: number; k: number; repeats?: number; warmup?: number; checkSamples?: number; seed?: number }): GemmProbeResult {
  const f = native<Fn<[object], GemmProbeResult>>('gpuLibsGemmBf16');
  if (!f) throw new Error(gpuLibsInfo().error ?? 'gpuLibsGemmBf16 is not in this build');
  return f(opts);
}

/** ncclAllReduce over one rank (sum, float32, in place): checked, then timed. */
export function allReduceProbe(opts: { megabytes?: number; repeats?: number; warmup?: number } = {}): AllReduceProbeResult {
  const f = native<Fn<[object], AllReduceProbeResult>>('gpuLibsAllReduce');
  if (!f) throw new Error(gpuLibsInfo().error ?? 'gpuLibsAllReduce is not in this build');
  return f(opts);
}

/** A cuBLASLt plan the CUDA engine's GEMM made in this process (native/gpulibs/gpulibs_abi.h, ClipoLtPlanInfo). */
export interface LtPlan {
  op: 'nt' | 'nn' | 'tn';
  inType: 'bf16' | 'fp32';
  outType: 'bf16' | 'fp32';
  shapeClass: 'wide' | 'rows';
  bias: boolean;
  accumulate: boolean;
  device: number;
  /** the fixed dimensions: [N, K] for nt and nn, [M, N] for tn */
  fixed: [number, number];
  /** false: no cuBLASLt algorithm, the built-in kernel runs this plan's calls */
  supported: boolean;
  algoId: number;
  tile: number;
  stages: number;
  splitK: number;
  reductionScheme: number;
  candidates: number;
  wavesCount: number;
  workspaceBytes: number;
  calls: number;
}

/** The cuBLASLt plans made so far (empty where the library is not loaded or an older addon has no such call). */
export function ltPlans(): LtPlan[] {
  const f = native<Fn<[], LtPlan[]>>('gpuLibsLtPlans');
  return f ? f() : [];
}

/** The GEMM the CUDA engine's products take in this process: 'cublaslt' or 'builtin' ('none' without CUDA), the
 *  CLIPO_CUDA_GEMM setting, why, and an error when the setting cannot be honoured. */
export interface EngineGemmInfo {
  mode: string;
  impl: 'cublaslt' | 'builtin' | 'none';
  why: string;
  error?: string;
}

export function engineGemmInfo(): EngineGemmInfo {
  const f = native<Fn<[], EngineGemmInfo>>('engineCudaGemmInfo');
  return f ? f() : { mode: process.env.CLIPO_CUDA_GEMM || 'auto', impl: 'none', why: 'this build of the addon predates the engine GEMM report' };
}
