// Single-precision matrix multiply for the engine: packed panels, a register-blocked FMA micro-kernel (AVX-512 or
// AVX2, scalar fallback), OpenMP over the N panels. No BLAS library.
//
// Determinism: every C element is accumulated over K in the same order (k ascending inside a KC block, blocks in
// ascending order) whatever M, N, the tile it falls in or the thread count, so a row's result never depends on the
// other rows in the batch or on the number of threads.
#pragma once
#include <cstddef>
#include <cstdint>

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

// ---- CUDA (gemm.cu; builds with CLIPO_WITH_CUDA): the CUDA engine's built-in GEMM ----
// Y[M x N] = X[M x K] . W[N x K]^T (+ bias[N] when not null), device pointers, on `stream` (a cudaStream_t), nothing
// synchronizes; "" or an error message. fp32 accumulation, each element summed over k ascending. Storages: bf16 in
// and out (one rounding), fp32 in and out, bf16 in with fp32 out (the logits).
const char* gemmNTCuda(int64_t M, int64_t N, int64_t K, const uint16_t* X, const uint16_t* W, const uint16_t* bias,
                       uint16_t* Y, void* stream);
const char* gemmNTCuda(int64_t M, int64_t N, int64_t K, const float* X, const float* W, const float* bias, float* Y,
                       void* stream);
const char* gemmNTCuda(int64_t M, int64_t N, int64_t K, const uint16_t* X, const uint16_t* W, const uint16_t* bias,
                       float* Y, void* stream);

}  // namespace clipo::engine
