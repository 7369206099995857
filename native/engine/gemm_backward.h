// The CUDA engine's backward products on the built-in kernel (gemm_backward.cu): dX = dY . W (NN) and dW += dY^T . X
// (TN), the two products the backward pass needs beyond gemm.h's gemmNTCuda, in the built-in kernel's style.
// Declared apart from gemm.h so that a device GEMM dispatch offering the same products (non-template gemmNNCuda /
// gemmTNCuda overloads there, e.g. through cuBLASLt) takes precedence over these templates at the same call sites.
#pragma once
#include <cstdint>

namespace clipo::engine {

// ---- CUDA (gemm_backward.cu): the strided products of the CUDA engine's backward pass, the built-in kernel's style ----
// C[M x N] (=|+=) A . B with A(i,p) = A[i*rsa + p*csa], B(p,j) = B[p*rsb + j*csb] (gemm.h sgemm's convention), C
// row-major with stride ldc; accumulate: C = C + sum (the sum over p first, in ascending p, then added once).
// fp32 accumulation; one thread per output element, 16 x 16 tiles: each element's sum depends only on K, never on the
// other rows or on timing (deterministic, no atomics). Storages: bf16 in and out, fp32 in and out, bf16 in with fp32
// out (weight gradients of the bf16 engine, accumulated into its fp32 gradient buffer).
const char* gemmStridedCuda(int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t rsa, int64_t csa,
                            const uint16_t* B, int64_t rsb, int64_t csb, uint16_t* C, int64_t ldc, bool accumulate,
                            void* stream);
const char* gemmStridedCuda(int64_t M, int64_t N, int64_t K, const float* A, int64_t rsa, int64_t csa, const float* B,
                            int64_t rsb, int64_t csb, float* C, int64_t ldc, bool accumulate, void* stream);
const char* gemmStridedCuda(int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t rsa, int64_t csa,
                            const uint16_t* B, int64_t rsb, int64_t csb, float* C, int64_t ldc, bool accumulate,
                            void* stream);
// C[M x N] (=|+=) A[M x K] . B[K x N]  (input gradient dX = dY . W; matmulNN's twin)
template <typename TI, typename TO>
inline const char* gemmNNCuda(int64_t M, int64_t N, int64_t K, const TI* A, const TI* B, TO* C, bool acc, void* stream) {
  return gemmStridedCuda(M, N, K, A, K, 1, B, N, 1, C, N, acc, stream);
}
// C[M x N] (=|+=) A[K x M]^T . B[K x N]  (weight gradient dW += dY^T . X; matmulTN's twin)
template <typename TI, typename TO>
inline const char* gemmTNCuda(int64_t M, int64_t N, int64_t K, const TI* A, const TI* B, TO* C, bool acc, void* stream) {
  return gemmStridedCuda(M, N, K, A, 1, M, B, N, 1, C, N, acc, stream);
}

}  // namespace clipo::engine
