// The CUDA engine's built-in GEMM: Y[M x N] = X[M x K] . W[N x K]^T (+ bias[N]), a plain shared-memory tiled kernel
// (16 x 16 output tiles, 16-wide K steps). It runs where clipo_gpulibs.so (cuBLASLt) is not available and under the
// host emulation of scripts/cuda-emu/. fp32 accumulation; every output element is summed over k in ascending order
// (zero padding past K adds nothing), so a row's result does not depend on M, on the tile it falls in or on timing.
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda_storage.cuh"
#include "engine/cuda_util.cuh"
#include "engine/gemm.h"

namespace clipo::engine {

namespace {

using namespace cudatwin;

constexpr int kTile = 16;

// one thread per output element of a 16 x 16 tile; a 1-D block of 256 threads (ty = t / 16, tx = t % 16)
template <typename TI, typename TO>
__global__ void gemmNTKernel(int64_t M, int64_t N, int64_t K, const TI* __restrict__ X, const TI* __restrict__ W,
                             const TI* __restrict__ bias, TO* __restrict__ Y) {
  __shared__ float xs[kTile][kTile + 1];
  __shared__ float ws[kTile][kTile + 1];
  const int tx = static_cast<int>(threadIdx.x) % kTile, ty = static_cast<int>(threadIdx.x) / kTile;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kTile, c0 = static_cast<int64_t>(blockIdx.x) * kTile;
  float acc = 0.f;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    const int64_t k = k0 + tx;
    xs[ty][tx] = (r0 + ty < M && k < K) ? toF(X[(r0 + ty) * K + k]) : 0.f;
    ws[ty][tx] = (c0 + ty < N && k < K) ? toF(W[(c0 + ty) * K + k]) : 0.f;
    __syncthreads();
    for (int j = 0; j < kTile; ++j) acc += xs[ty][j] * ws[tx][j];
    __syncthreads();
  }
  const int64_t r = r0 + ty, c = c0 + tx;
  if (r < M && c < N) {
    if (bias) acc += toF(bias[c]);
    Y[r * N + c] = fromF<TO>(acc);
  }
}

template <typename TI, typename TO>
const char* gemmT(int64_t M, int64_t N, int64_t K, const TI* X, const TI* W, const TI* bias, TO* Y, void* stream) {
  if (M <= 0 || N <= 0) return "";
  if (K <= 0) return failMsg("gemmNTCuda: K must be positive");
  if ((M + kTile - 1) / kTile > 65535) return failMsg("gemmNTCuda: too many rows for one call (at most 1048560)");
  const dim3 grid(static_cast<unsigned>((N + kTile - 1) / kTile), static_cast<unsigned>((M + kTile - 1) / kTile));
  gemmNTKernel<<<grid, kTile * kTile, 0, static_cast<cudaStream_t>(stream)>>>(M, N, K, X, W, bias, Y);
  return launched("gemmNTCuda");
}

}  // namespace

const char* gemmNTCuda(int64_t M, int64_t N, int64_t K, const uint16_t* X, const uint16_t* W, const uint16_t* bias,
                       uint16_t* Y, void* stream) {
  return gemmT(M, N, K, X, W, bias, Y, stream);
}
const char* gemmNTCuda(int64_t M, int64_t N, int64_t K, const float* X, const float* W, const float* bias, float* Y,
                       void* stream) {
  return gemmT(M, N, K, X, W, bias, Y, stream);
}
const char* gemmNTCuda(int64_t M, int64_t N, int64_t K, const uint16_t* X, const uint16_t* W, const uint16_t* bias,
                       float* Y, void* stream) {
  return gemmT(M, N, K, X, W, bias, Y, stream);
}

}  // namespace clipo::engine
