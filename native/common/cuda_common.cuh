// Helpers shared by the CUDA kernels (kernels/*/*.cu): the error check, an RAII set of device buffers for the host
// wrappers, warp and block reductions, and the device probe. Each .cu keeps its kernels, host wrappers and
// benchmarks. Include after <cuda_runtime.h> (the host emulation of scripts/cuda-emu/ replaces that include and
// compiles this header as plain C++).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace clipo::cuda {

// Returns the cudaError_t of `expr` from the enclosing function when it is not cudaSuccess.
#define CLIPO_CUDA_TRY(expr)          \
  do {                                \
    cudaError_t e_ = (expr);          \
    if (e_ != cudaSuccess) return e_; \
  } while (0)

// Multiprocessors of the current device (132 when it cannot be asked), probed once: the launch plans size their
// grids by it.
inline int smCount() {
  static int n = 0;
  if (!n) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) n = 132;
  }
  return n;
}

// Number of CUDA devices visible (0 when none or no driver).
inline int deviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

// Device buffers of one host call, freed on every path.
struct DeviceBuffers {
  std::vector<void*> ptrs;
  DeviceBuffers() = default;
  DeviceBuffers(const DeviceBuffers&) = delete;
  DeviceBuffers& operator=(const DeviceBuffers&) = delete;
  ~DeviceBuffers() {
    for (void* q : ptrs) cudaFree(q);
  }
  template <typename T>
  cudaError_t alloc(T** out, size_t count) {
    void* q = nullptr;
    cudaError_t e = cudaMalloc(&q, std::max<size_t>(count, 1) * sizeof(T));
    if (e == cudaSuccess) ptrs.push_back(q);
    *out = static_cast<T*>(q);
    return e;
  }
  template <typename T>
  cudaError_t upload(const T** out, const T* host, size_t count) {
    T* d = nullptr;
    cudaError_t e = alloc(&d, count);
    if (e != cudaSuccess) return e;
    *out = d;
    return cudaMemcpy(d, host, count * sizeof(T), cudaMemcpyHostToDevice);
  }
};

// ---- reductions (blockDim.x a multiple of 32, at most 1024; every thread gets the result) ----
template <typename T>
__device__ inline T warpSum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// `scratch` holds one value per warp of the block (blockDim.x / 32); the sum is formed in a fixed order, so the
// result is the same on every run.
template <typename T>
__device__ T blockSum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warpSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T t = lane < nw ? scratch[lane] : T(0);
  return warpSum(t);
}
__device__ inline float blockMax(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nw ? scratch[lane] : -INFINITY;
  return warpMax(t);
}

}  // namespace clipo::cuda
