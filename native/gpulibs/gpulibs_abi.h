// The C interface of clipo_gpulibs.so, the optional shared library that links cuBLASLt and NCCL. The addon never
// links it: gpulibs_napi.cpp opens it with dlopen on first use, so a CPU-only or CUDA-only addon loads and runs on a
// machine without these libraries, and says why the GPU libraries are not usable. Plain C types only (both sides
// are compiled by different compilers: g++ for the addon, nvcc for the library). Bump CLIPO_GPULIBS_ABI whenever
// a struct or signature below changes; the loader refuses a library of another version.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define CLIPO_GPULIBS_ABI 2

extern "C" {

struct ClipoGpuLibsInfo {
  int abi;               // CLIPO_GPULIBS_ABI of the library
  int cublasLtCompiled;  // 1 when the library was built against cuBLASLt
  int ncclCompiled;      // 1 when the library was built against NCCL
  int64_t cublasLtVersion;  // cublasLtGetVersion() at run time (0 when not compiled)
  int ncclVersion;       // ncclGetVersion() at run time (0 when not compiled)
  int cudaRuntimeVersion;
  int cudaDriverVersion;  // 0 without a driver
  int deviceCount;        // 0 without a GPU
};

// Fills *out; never fails (versions stay 0 when a call is not possible).
typedef void (*ClipoGpuLibsInfoFn)(ClipoGpuLibsInfo* out);

// bf16 GEMM Y[M x N] = X[M x K] . W[N x K]^T (a linear layer, torch's [out, in] weight), bf16 out, fp32 accumulate,
// through cublasLtMatmul with the heuristic's first algorithm. X and W are filled on the device with uniform
// random values; `checkSamples` output elements are compared with an fp32 dot product computed by a plain kernel.
struct ClipoGemmArgs {
  int64_t m, n, k;
  int repeats;       // timed calls (CUDA events, one per call)
  int warmup;        // untimed calls first
  int checkSamples;  // output elements checked against the reference kernel
  uint64_t seed;
};
struct ClipoGemmResult {
  double msMedian, msMin;
  double tflops;          // 2*M*N*K / median time
  double maxScaledError;  // max |y - ref| / (|ref| + sqrt(sum_k (x_k w_k)^2)) over the checked elements
  int checked;
  double workspaceBytes;
};
// Returns 0, or non-zero with a message in err[errLen]. msSamples has room for args->repeats values.
typedef int (*ClipoGemmBf16Fn)(const ClipoGemmArgs* args, double* msSamples, ClipoGemmResult* out, char* err,
                               size_t errLen);

// ncclAllReduce (sum, float32) over one rank on device 0, in place on `bytes` of random data; the result is
// checked against the input (one rank: the sum is the input itself).
struct ClipoAllReduceArgs {
  int64_t bytes;
  int repeats;
  int warmup;
};
struct ClipoAllReduceResult {
  double msMedian, msMin;
  double algGBs;  // bytes / median time
  double maxAbsError;
  int nranks;
};
typedef int (*ClipoAllReduceFn)(const ClipoAllReduceArgs* args, double* msSamples, ClipoAllReduceResult* out,
                                char* err, size_t errLen);

// ---- The engine's GEMM through cuBLASLt (ABI 2) ----
// One entry for the three products of a linear layer, on the caller's device pointers and stream (the call only
// enqueues work; nothing synchronizes). Row-major, the meaning of gemm.h's matmulNT / matmulNN / matmulTN:
//   CLIPO_LT_NT  D[M x N] (+)= A[M x K] . B[N x K]^T (+ bias[N])   forward: Y = X W^T + b        (fixed: N, K)
//   CLIPO_LT_NN  D[M x N] (+)= A[M x K] . B[K x N]                 input gradient: dX = dY W     (fixed: N, K)
//   CLIPO_LT_TN  D[M x N] (+)= A[K x M]^T . B[K x N]               weight gradient: dW += dY^T X (fixed: M, N)
// The token count is the free dimension (M, or K for TN). Types: A and B share `inType`; D (and C = D when
// accumulating, and the bias) are `outType`; arithmetic is fp32 (CUBLAS_COMPUTE_32F; for fp32 inputs only
// algorithms with fp32 inputs to the multiply are accepted: no TF32, no bf16 emulation). bf16 outputs are rounded
// once (split-K partial sums, where an algorithm splits K, are kept in fp32).
//
// The algorithm is chosen once per plan key: (device, op, types, bias present, accumulate, the fixed dimensions,
// the pointers' alignment, shape class) by the heuristic at the class's reference size of the free dimension
// (CLIPO_LT_WIDE: 4096 tokens, prefill, scoring, training; CLIPO_LT_ROWS: 128, decoding steps), and then used for
// every size of the free dimension. So one output row's arithmetic (its split of K, its order of additions) does
// not depend on how many other rows are in the call: results do not depend on the batch's composition within a
// class. Calls of different classes may differ in the last bits.
enum { CLIPO_LT_NT = 0, CLIPO_LT_NN = 1, CLIPO_LT_TN = 2 };
enum { CLIPO_LT_BF16 = 0, CLIPO_LT_F32 = 1 };
enum { CLIPO_LT_WIDE = 0, CLIPO_LT_ROWS = 1 };
struct ClipoLtMatmulArgs {
  int op;          // CLIPO_LT_NT / NN / TN
  int inType;      // CLIPO_LT_BF16 / CLIPO_LT_F32 (A and B)
  int outType;     // D, C, bias
  int shapeClass;  // CLIPO_LT_WIDE / CLIPO_LT_ROWS
  int accumulate;  // 0: D = product (+ bias); 1: D = D + product (+ bias)
  int device;      // the CUDA device of the pointers and the stream
  int64_t m, n, k;
  const void* a;
  const void* b;
  const void* bias;  // NT only; may be null
  void* d;
  void* stream;  // cudaStream_t (null: the default stream)
};
// Returns 0 (enqueued), CLIPO_LT_UNSUPPORTED (no cuBLASLt algorithm for this plan key: the caller runs its own
// kernel, and will get the same answer for every call of that key), or 1 with a message in err[errLen].
#define CLIPO_LT_UNSUPPORTED 2
typedef int (*ClipoLtMatmulFn)(const ClipoLtMatmulArgs* args, char* err, size_t errLen);
// Frees the cuBLASLt workspace of `stream` on `device` (after waiting for the stream): call before destroying the
// stream. A workspace (32 MiB) is made per stream on its first product, so streams never share one.
typedef void (*ClipoLtReleaseFn)(int device, void* stream);

// What a plan chose (for reports): the key and the algorithm's configuration.
struct ClipoLtPlanInfo {
  int op, inType, outType, shapeClass, bias, accumulate, device;
  int64_t fixed0, fixed1;  // (N, K) for NT and NN, (M, N) for TN
  int supported;           // 0: no algorithm: the caller's kernel runs
  int algoId, tile, stages, splitK, reductionScheme, candidates;
  double wavesCount;       // at the reference size
  double workspaceBytes;
  int64_t calls;
};
// Writes up to `max` plans into out; returns how many plans exist.
typedef int (*ClipoLtPlansFn)(ClipoLtPlanInfo* out, int max);

// exported names
#define CLIPO_GPULIBS_SYM_ABI "clipo_gpulibs_abi"
#define CLIPO_GPULIBS_SYM_INFO "clipo_gpulibs_info"
#define CLIPO_GPULIBS_SYM_GEMM "clipo_gpulibs_gemm_bf16"
#define CLIPO_GPULIBS_SYM_ALLREDUCE "clipo_gpulibs_allreduce"
#define CLIPO_GPULIBS_SYM_LT_MATMUL "clipo_gpulibs_lt_matmul"
#define CLIPO_GPULIBS_SYM_LT_RELEASE "clipo_gpulibs_lt_release"
#define CLIPO_GPULIBS_SYM_LT_PLANS "clipo_gpulibs_lt_plans"
typedef int (*ClipoGpuLibsAbiFn)(void);

}  // extern "C"
