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

// ---- backward twins (mlp.h): SwiGLU backward and the bias gradient's column sums ----
// Storage T: uint16_t (bf16) or float; arithmetic fp32 (formulas.h swigluGrad); no atomics.

#include "engine/backward_util.cuh"

namespace clipo::engine {

namespace {

using namespace cudatwin;

template <typename T>
__global__ void swigluBackwardKernel(const T* __restrict__ gu, const T* __restrict__ dact, T* __restrict__ dgu,
                                     int64_t N, int64_t I) {
  const int64_t total = N * I;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = k / I, i = k % I;
    const T* row = gu + n * 2 * I;
    float dg, du;
    swigluGrad(bwd::ld(row[i]), bwd::ld(row[I + i]), bwd::ld(dact[k]), &dg, &du);
    bwd::st(dgu + n * 2 * I + i, dg);
    bwd::st(dgu + n * 2 * I + I + i, du);
  }
}

template <typename T>
struct PlainTerm {
  const T* y;
  int64_t cols;
  __device__ float operator()(int64_t n, int64_t c) const { return bwd::ld(y[n * cols + c]); }
};

template <typename T>
const char* swigluBackwardT(const T* gu, const T* dact, T* dgu, int64_t N, int64_t I, void* stream) {
  if (N <= 0 || I <= 0) return "";
  swigluBackwardKernel<<<gridFor(N * I, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(gu, dact, dgu, N, I);
  return launched("swigluBackwardCuda");
}

template <typename T>
const char* colSumT(const T* dY, int64_t N, int64_t cols, float* gb, void* workspace, void* stream) {
  if (N <= 0 || cols <= 0) return "";
  if (!workspace) return failMsg("colSumAccumulateCuda: a workspace is required");
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t parts = bwd::colSumParts(N);
  float* partial = static_cast<float*>(workspace);
  const dim3 grid(static_cast<unsigned>((cols + bwd::kColThreads - 1) / bwd::kColThreads), static_cast<unsigned>(parts));
  bwd::colSumPartialKernel<<<grid, bwd::kColThreads, 0, s>>>(PlainTerm<T>{dY, cols}, N, cols, parts, partial);
  const char* err = launched("colSumAccumulateCuda");
  if (*err) return err;
  bwd::colSumFinishKernel<><<<gridFor(cols, 256), 256, 0, s>>>(partial, cols, parts, gb);
  return launched("colSumAccumulateCuda");
}

template <typename T>
const char* swigluBackwardHostT(const T* gu, const T* dact, T* dgu, int64_t N, int64_t I) {
  if (N <= 0 || I <= 0) return "";
  cuda::DeviceBuffers b;
  const T *dGu, *dA;
  T* dD;
  cudaError_t e;
  if ((e = b.upload(&dGu, gu, static_cast<size_t>(N * 2 * I))) != cudaSuccess ||
      (e = b.upload(&dA, dact, static_cast<size_t>(N * I))) != cudaSuccess)
    return fail("upload", e);
  if ((e = b.alloc(&dD, static_cast<size_t>(N * 2 * I))) != cudaSuccess) return fail("cudaMalloc", e);
  const char* err = swigluBackwardCuda(dGu, dA, dD, N, I, nullptr);
  if (*err || *(err = synced("swigluBackwardCuda"))) return err;
  return download(dgu, static_cast<const T*>(dD), static_cast<size_t>(N * 2 * I), "download");
}

template <typename T>
const char* colSumHostT(const T* dY, int64_t N, int64_t cols, float* gb) {
  if (N <= 0 || cols <= 0) return "";
  cuda::DeviceBuffers b;
  const T* dY_;
  float* dG;
  char* ws;
  cudaError_t e;
  if ((e = b.upload(&dY_, dY, static_cast<size_t>(N * cols))) != cudaSuccess) return fail("upload", e);
  if ((e = b.alloc(&dG, static_cast<size_t>(cols))) != cudaSuccess ||
      (e = cudaMemcpy(dG, gb, static_cast<size_t>(cols) * sizeof(float), cudaMemcpyHostToDevice)) != cudaSuccess ||
      (e = b.alloc(&ws, colSumAccumulateCudaWorkspace(N, cols))) != cudaSuccess)
    return fail("upload", e);
  const char* err = colSumAccumulateCuda(dY_, N, cols, dG, ws, nullptr);
  if (*err || *(err = synced("colSumAccumulateCuda"))) return err;
  return download(gb, static_cast<const float*>(dG), static_cast<size_t>(cols), "download");
}

}  // namespace

const char* swigluBackwardCuda(const uint16_t* gu, const uint16_t* dact, uint16_t* dgu, int64_t N, int64_t I,
                               void* stream) {
  return swigluBackwardT(gu, dact, dgu, N, I, stream);
}
const char* swigluBackwardCuda(const float* gu, const float* dact, float* dgu, int64_t N, int64_t I, void* stream) {
  return swigluBackwardT(gu, dact, dgu, N, I, stream);
}
size_t colSumAccumulateCudaWorkspace(int64_t N, int64_t cols) { return bwd::colSumWorkspaceBytes(N, cols); }
const char* colSumAccumulateCuda(const uint16_t* dY, int64_t N, int64_t cols, float* gb, void* workspace,
                                 void* stream) {
  return colSumT(dY, N, cols, gb, workspace, stream);
}
const char* colSumAccumulateCuda(const float* dY, int64_t N, int64_t cols, float* gb, void* workspace, void* stream) {
  return colSumT(dY, N, cols, gb, workspace, stream);
}
const char* swigluBackwardCudaHost(const uint16_t* gu, const uint16_t* dact, uint16_t* dgu, int64_t N, int64_t I) {
  return swigluBackwardHostT(gu, dact, dgu, N, I);
}
const char* swigluBackwardCudaHost(const float* gu, const float* dact, float* dgu, int64_t N, int64_t I) {
  return swigluBackwardHostT(gu, dact, dgu, N, I);
}
const char* colSumAccumulateCudaHost(const uint16_t* dY, int64_t N, int64_t cols, float* gb) {
  return colSumHostT(dY, N, cols, gb);
}
const char* colSumAccumulateCudaHost(const float* dY, int64_t N, int64_t cols, float* gb) {
  return colSumHostT(dY, N, cols, gb);
}

}  // namespace clipo::engine
