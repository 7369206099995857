// The C interface of clipo_gpulibs.so, the optional shared library that links cuBLASLt and NCCL. The addon never
// links it: gpulibs_napi.cpp opens it with dlopen on first use, so a CPU-only or CUDA-only addon loads and runs on a
// machine without these libraries, and says why the GPU libraries are not usable. Plain C types only (both sides
// are compiled by different compilers: g++ for the addon, nvcc for the library). Bump CLIPO_GPULIBS_ABI whenever
// a struct or signature below changes; the loader refuses a library of another version.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define CLIPO_GPULIBS_ABI 1

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

// exported names
#define CLIPO_GPULIBS_SYM_ABI "clipo_gpulibs_abi"
#define CLIPO_GPULIBS_SYM_INFO "clipo_gpulibs_info"
#define CLIPO_GPULIBS_SYM_GEMM "clipo_gpulibs_gemm_bf16"
#define CLIPO_GPULIBS_SYM_ALLREDUCE "clipo_gpulibs_allreduce"
typedef int (*ClipoGpuLibsAbiFn)(void);

}  // extern "C"
