// The CUDA engine's backward products (gemm.h gemmStridedCuda, gemmNNCuda, gemmTNCuda): C (=|+=) A . B with arbitrary
// row and column strides of A and B, in the built-in kernel's style (gemm.cu: 16 x 16 output tiles staged through
// shared memory, 16-wide K steps, one thread per output element). It gives the two products the backward pass needs
// beyond gemm.cu's X W^T: dX = dY . W (NN) and dW += dY^T . X (TN, accumulated into the fp32 gradient). fp32
// accumulation; every output element is summed over p in ascending order (zero padding past K adds nothing) and, when
// accumulating, added to C once: deterministic, no atomics. Runs where cuBLASLt is not wired in and under the host
// emulation of scripts/cuda-emu/.
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda_storage.cuh"
#include "engine/cuda_util.cuh"
#include "engine/gemm_backward.h"

namespace clipo::engine {

namespace {

using namespace cudatwin;

constexpr int kTile = 16;

// a 1-D block of 256 threads (ty = t / 16, tx = t % 16); as[i][p] holds A(r0 + i, k0 + p), bs[j][p] holds B(k0 + p, c0 + j)
template <typename TI, typename TO>
__global__ void gemmStridedKernel(int64_t M, int64_t N, int64_t K, const TI* __restrict__ A, int64_t rsa, int64_t csa,
                                  const TI* __restrict__ B, int64_t rsb, int64_t csb, TO* C, int64_t ldc,
                                  bool accumulate) {
  __shared__ float as[kTile][kTile + 1];
  __shared__ float bs[kTile][kTile + 1];
  const int tx = static_cast<int>(threadIdx.x) % kTile, ty = static_cast<int>(threadIdx.x) / kTile;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kTile, c0 = static_cast<int64_t>(blockIdx.x) * kTile;
  float acc = 0.f;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    const int64_t k = k0 + tx;
    as[ty][tx] = (r0 + ty < M && k < K) ? toF(A[(r0 + ty) * rsa + k * csa]) : 0.f;
    bs[ty][tx] = (c0 + ty < N && k < K) ? toF(B[k * rsb + (c0 + ty) * csb]) : 0.f;
    __syncthreads();
    for (int j = 0; j < kTile; ++j) acc += as[ty][j] * bs[tx][j];
    __syncthreads();
  }
  const int64_t r = r0 + ty, c = c0 + tx;
  if (r < M && c < N) {
    TO* out = C + r * ldc + c;
    *out = fromF<TO>(accumulate ? toF(*out) + acc : acc);
  }
}

template <typename TI, typename TO>
const char* gemmStridedT(int64_t M, int64_t N, int64_t K, const TI* A, int64_t rsa, int64_t csa, const TI* B,
                         int64_t rsb, int64_t csb, TO* C, int64_t ldc, bool accumulate, void* stream) {
  if (M <= 0 || N <= 0) return "";
  if (K <= 0) {
    if (accumulate) return "";  // C + (an empty sum)
    return failMsg("gemmStridedCuda: K must be positive");
  }
  if ((M + kTile - 1) / kTile > 65535) return failMsg("gemmStridedCuda: too many rows for one call (at most 1048560)");
  const dim3 grid(static_cast<unsigned>((N + kTile - 1) / kTile), static_cast<unsigned>((M + kTile - 1) / kTile));
  gemmStridedKernel<<<grid, kTile * kTile, 0, static_cast<cudaStream_t>(stream)>>>(M, N, K, A, rsa, csa, B, rsb, csb,
                                                                                   C, ldc, accumulate);
  return launched("gemmStridedCuda");
}

}  // namespace

const char* gemmStridedCuda(int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t rsa, int64_t csa,
                            const uint16_t* B, int64_t rsb, int64_t csb, uint16_t* C, int64_t ldc, bool accumulate,
                            void* stream) {
  return gemmStridedT(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, stream);
}
const char* gemmStridedCuda(int64_t M, int64_t N, int64_t K, const float* A, int64_t rsa, int64_t csa, const float* B,
                            int64_t rsb, int64_t csb, float* C, int64_t ldc, bool accumulate, void* stream) {
  return gemmStridedT(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, stream);
}
const char* gemmStridedCuda(int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t rsa, int64_t csa,
                            const uint16_t* B, int64_t rsb, int64_t csb, float* C, int64_t ldc, bool accumulate,
                            void* stream) {
  return gemmStridedT(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, stream);
}

}  // namespace clipo::engine
