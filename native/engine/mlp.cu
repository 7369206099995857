// CUDA twin of mlp.h's SwiGLU: act = bf16(silu(gate) * up) from the fused gate/up projection's bf16 output, fp32
// arithmetic (formulas.h), a grid-stride loop over the N x I outputs.
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda_storage.cuh"
#include "engine/cuda_util.cuh"
#include "engine/formulas.h"
#include "engine/mlp.h"

namespace clipo::engine {

namespace {

using namespace cudatwin;

constexpr int kThreads = 256;

template <typename T>
__global__ void swigluKernel(const T* __restrict__ gu, T* __restrict__ act, int64_t N, int64_t I) {
  const int64_t total = N * I;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = k / I, i = k % I;
    const T* row = gu + n * 2 * I;
    act[k] = fromF<T>(swigluValue(toF(row[i]), toF(row[I + i])));
  }
}

template <typename T>
const char* swigluT(const T* gu, T* act, int64_t N, int64_t I, void* stream) {
  if (N <= 0 || I <= 0) return "";
  swigluKernel<<<gridFor(N * I, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(gu, act, N, I);
  return launched("swigluCuda");
}

}  // namespace

const char* swigluCuda(const uint16_t* gu, uint16_t* act, int64_t N, int64_t I, void* stream) {
  return swigluT(gu, act, N, I, stream);
}
const char* swigluCuda(const float* gu, float* act, int64_t N, int64_t I, void* stream) {
  return swigluT(gu, act, N, I, stream);
}

const char* swigluCudaHost(const uint16_t* gu, uint16_t* act, int64_t N, int64_t I) {
  cuda::DeviceBuffers b;
  const uint16_t* dGu;
  uint16_t* dAct;
  cudaError_t e;
  if ((e = b.upload(&dGu, gu, static_cast<size_t>(N * 2 * I))) != cudaSuccess) return fail("upload", e);
  if ((e = b.alloc(&dAct, static_cast<size_t>(N * I))) != cudaSuccess) return fail("cudaMalloc", e);
  const char* err = swigluCuda(dGu, dAct, N, I, nullptr);
  if (*err || *(err = synced("swigluCuda"))) return err;
  return download(act, static_cast<const uint16_t*>(dAct), static_cast<size_t>(N * I), "download");
}

}  // namespace clipo::engine
