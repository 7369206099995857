// Single-precision matrix multiply for the engine: packed panels, a register-blocked FMA micro-kernel (AVX-512 or
// AVX2, scalar fallback), OpenMP over the N panels. No BLAS library.
//
// Determinism: every C element is accumulated over K in the same order (k ascending inside a KC block, blocks in
// ascending order) whatever M, N, the tile it falls in or the thread count, so a row's result never depends on the
// other rows in the batch or on the number of threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace clipo::engine {

// C[M x N] (=|+=) A . B with A(i,p) = A[i*rsa + p*csa] and B(p,j) = B[p*rsb + j*csb]; C row-major with stride ldc.
void sgemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t rsa, int64_t csa, const float* B, int64_t rsb,
           int64_t csb, float* C, int64_t ldc, bool accumulate, int threads);

// Y[M x N] (=|+=) X[M x K] . W[N x K]^T  (a linear layer with torch's [out, in] weight)
inline void matmulNT(int64_t M, int64_t N, int64_t K, const float* X, const float* W, float* Y, bool acc, int threads) {
  sgemm(M, N, K, X, K, 1, W, 1, K, Y, N, acc, threads);
}
// C[M x N] (=|+=) A[M x K] . B[K x N]  (input gradient: dX = dY . W)
inline void matmulNN(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C, bool acc, int threads) {
  sgemm(M, N, K, A, K, 1, B, N, 1, C, N, acc, threads);
}
// C[M x N] (=|+=) A[K x M]^T . B[K x N]  (weight gradient: dW += dY^T . X)
inline void matmulTN(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C, bool acc, int threads) {
  sgemm(M, N, K, A, 1, M, B, N, 1, C, N, acc, threads);
}

// Y[M x N] = X[M x K] . W[N x K]^T by dot products, for few rows (decoding): W is streamed once, nothing is packed.
// Each element's summation order depends only on K, so a row's result is independent of M and of the thread count.
void matmulNTRows(int64_t M, int64_t N, int64_t K, const float* X, const float* W, float* Y, int threads);

// The machine's fp32 FMA peak with `threads` threads: independent FMA chains on registers only; best of repeated
// runs for `seconds`. gflops: by wall clock (all threads); gflopsPerCpuSecond: per second of thread CPU time (one
// core's peak, unaffected by other processes taking the cores).
struct FmaPeak {
  double gflops = 0.0, gflopsPerCpuSecond = 0.0;
};
FmaPeak measureFmaPeak(int threads, double seconds);

// Which micro-kernel was compiled in ("avx512 12x32", "avx2 6x16", "scalar").
const char* gemmKernelName();

// ---- CUDA (gemm.cu; builds with CLIPO_WITH_CUDA): the CUDA engine's device GEMM ----
// Device pointers, on `stream` (a cudaStream_t); nothing synchronizes; "" or an error message. fp32 accumulation.
// Each product runs through cuBLASLt (clipo_gpulibs.so) when the library loads and has an algorithm for the plan
// (below), else through the built-in tiled kernel (16 x 16 tiles, each output summed over k ascending).
// CLIPO_CUDA_GEMM=builtin forces the built-in kernel (for comparisons), =cublaslt makes a missing library an error;
// the default, auto, takes cuBLASLt where it can.
//
// Batch independence: cuBLASLt's algorithm is fixed per plan key (product, types, bias, the fixed dimensions, the
// pointers' alignment, and the shape class), never chosen per row count, so a row's result does not depend on how
// many rows share the call. The shape class says which of two cached algorithms a call takes: GemmClass::Rows for
// decoding steps (a few to a few hundred rows, heuristic at 128), GemmClass::Wide for everything else (prefill,
// scoring, logits, training; heuristic at 4096). The two classes may differ in the last bits; within one class the
// results are the same whatever the batch. The built-in kernel's results depend on neither.
enum class GemmClass { Wide = 0, Rows = 1 };
enum class GemmImpl { Auto = 0, Builtin = 1, CublasLt = 2 };
enum class GemmType { Bf16 = 0, F32 = 1 };
enum class GemmOp { NT = 0, NN = 1, TN = 2 };  // gemm.h's matmulNT / matmulNN / matmulTN on the device

// One product; every typed entry below goes through it. A, B of `in` storage; C (and bias) of `out` storage, except
// that the built-in kernel reads an NT bias in the `in` storage (the only bias the engine has: bf16 -> bf16 or fp32
// -> fp32, where both agree).
//   NT: C[M x N] (+)= A[M x K] . B[N x K]^T (+ bias[N])    NN: C[M x N] (+)= A[M x K] . B[K x N]
//   TN: C[M x N] (+)= A[K x M]^T . B[K x N]
struct GemmCall {
  GemmOp op = GemmOp::NT;
  GemmType in = GemmType::Bf16, out = GemmType::Bf16;
  GemmClass cls = GemmClass::Wide;
  bool accumulate = false;
  int64_t M = 0, N = 0, K = 0;
  const void* A = nullptr;
  const void* B = nullptr;
  const void* bias = nullptr;
  void* C = nullptr;
  void* stream = nullptr;
};
// `impl` forces an implementation (Auto: CLIPO_CUDA_GEMM's choice); *used (when not null) names the one that ran:
// "cublaslt", "builtin", or "builtin (no cuBLASLt algorithm)".
const char* gemmCuda(const GemmCall& call, GemmImpl impl = GemmImpl::Auto, const char** used = nullptr);

// Y[M x N] = X[M x K] . W[N x K]^T (+ bias[N] when not null): bf16 in and out (one rounding), fp32 in and out, bf16
// in with fp32 out (the logits).
const char* gemmNTCuda(int64_t M, int64_t N, int64_t K, const uint16_t* X, const uint16_t* W, const uint16_t* bias,
                       uint16_t* Y, void* stream, GemmClass cls = GemmClass::Wide);
const char* gemmNTCuda(int64_t M, int64_t N, int64_t K, const float* X, const float* W, const float* bias, float* Y,
                       void* stream, GemmClass cls = GemmClass::Wide);
const char* gemmNTCuda(int64_t M, int64_t N, int64_t K, const uint16_t* X, const uint16_t* W, const uint16_t* bias,
                       float* Y, void* stream, GemmClass cls = GemmClass::Wide);
// C[M x N] (=|+=) A[M x K] . B[K x N]: the input gradient dX = dY . W (M tokens, K = out features, N = in features)
const char* gemmNNCuda(int64_t M, int64_t N, int64_t K, const uint16_t* A, const uint16_t* B, uint16_t* C,
                       bool accumulate, void* stream, GemmClass cls = GemmClass::Wide);
const char* gemmNNCuda(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C, bool accumulate,
                       void* stream, GemmClass cls = GemmClass::Wide);
// C[M x N] (=|+=) A[K x M]^T . B[K x N] in fp32: the weight gradient dW += dY^T . X (M = out features, N = in
// features, K tokens), accumulated over micro-batches in fp32
const char* gemmTNCuda(int64_t M, int64_t N, int64_t K, const uint16_t* A, const uint16_t* B, float* C,
                       bool accumulate, void* stream);
const char* gemmTNCuda(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C, bool accumulate,
                       void* stream);

// gemmCuda on host pointers (tests): copies A, B, the bias and (when accumulating) C to the device, runs on the
// default stream, waits, copies C back. Sizes: A M*K (TN: K*M), B N*K (NN, TN: K*N), C M*N, bias N.
const char* gemmCudaHost(const GemmCall& hostCall, GemmImpl impl, const char** used);

// Frees what the GEMM holds for `stream` (cuBLASLt's workspace); call before destroying the stream.
void gemmCudaReleaseStream(void* stream);

// Which GEMM the CUDA engine's products take in this process, and why: impl "cublaslt" or "builtin"; mode is
// CLIPO_CUDA_GEMM's value (auto, builtin, cublaslt); error is set when the setting cannot be honoured.
struct CudaGemmChoice {
  std::string mode, impl, why, error;
};
CudaGemmChoice cudaGemmChoice();

}  // namespace clipo::engine
