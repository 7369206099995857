// Minimal host emulation of the CUDA features the contrastive kernels use: one std::thread per CUDA thread,
// blocks run one after another, __syncthreads = barrier, warp shuffles through a per-warp buffer.
#pragma once
#define CLIPO_CUDA_EMU 1  // the engine's .cu files take their host-emulation paths (gemm.cu: never opens clipo_gpulibs)
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>
#include <algorithm>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
struct dim3 { unsigned x = 1, y = 1, z = 1; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
struct float4 { float x, y, z, w; };
struct uint4 { unsigned x, y, z, w; };
namespace emu {
inline thread_local dim3 tIdx, bIdx;
inline dim3 bDim, gDim;
inline std::barrier<>* blockBar = nullptr;
inline std::vector<std::unique_ptr<std::barrier<>>> warpBars;
inline float warpBuf[32][32];
inline std::vector<char> dynSmem;
template <typename F>
void launch(dim3 g, dim3 b, size_t smem, F body) {
  gDim = g; bDim = b; dynSmem.assign(smem + 16, 0);
  const unsigned nt = b.x * b.y * b.z;
  for (unsigned z = 0; z < g.z; ++z) for (unsigned y = 0; y < g.y; ++y) for (unsigned x = 0; x < g.x; ++x) {
    std::barrier<> bar(nt); blockBar = &bar;
    warpBars.clear();
    for (unsigned w = 0; w < (nt + 31) / 32; ++w) warpBars.emplace_back(new std::barrier<>(std::min(32u, nt - 32 * w)));
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < nt; ++t) ts.emplace_back([&, t, x, y, z] { tIdx = dim3(t, 0, 0); bIdx = dim3(x, y, z); body(); });
    for (auto& th : ts) th.join();
  }
}
}
#define threadIdx (emu::tIdx)
#define blockIdx (emu::bIdx)
#define blockDim (emu::bDim)
#define gridDim (emu::gDim)
inline void __syncthreads() { emu::blockBar->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int o) {
  const unsigned t = emu::tIdx.x, w = t / 32, l = t % 32;
  emu::warpBuf[w][l] = v;
  emu::warpBars[w]->arrive_and_wait();
  const float r = emu::warpBuf[w][l ^ o];
  emu::warpBars[w]->arrive_and_wait();
  return r;
}
inline float __uint_as_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t __float_as_uint(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
// runtime API
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
typedef void* cudaStream_t;
typedef int* cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount, cudaDevAttrL2CacheSize };
// device memory in use and its peak (emu::liveBytes, emu::peakBytes; each allocation in whole 256-byte units), and the
// same of the bytes asked for (emu::liveAsked, emu::peakAsked: what the engine's own count must equal)
namespace emu {
inline size_t liveBytes = 0, peakBytes = 0, liveAsked = 0, peakAsked = 0;
inline std::unordered_map<void*, std::pair<size_t, size_t>> allocSizes;
}
inline cudaError_t cudaMalloc(void** p, size_t n) {
  const size_t b = (n + 255) / 256 * 256;
  *p = std::aligned_alloc(256, b);
  std::memset(*p, 0xcd, b);
  emu::allocSizes[*p] = {b, n};
  emu::liveBytes += b;
  emu::peakBytes = std::max(emu::peakBytes, emu::liveBytes);
  emu::liveAsked += n;
  emu::peakAsked = std::max(emu::peakAsked, emu::liveAsked);
  return 0;
}
inline cudaError_t cudaFree(void* p) {
  if (auto it = emu::allocSizes.find(p); it != emu::allocSizes.end())
    emu::liveBytes -= it->second.first, emu::liveAsked -= it->second.second, emu::allocSizes.erase(it);
  std::free(p);
  return 0;
}
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) { std::memcpy(d, s, n); return 0; }
inline cudaError_t cudaMemset(void* d, int v, size_t n) { std::memset(d, v, n); return 0; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return 0; }
// multiprocessors: EMU_SM (default 3); L2: 1 GiB (large enough that no kernel changes its plan for the cache)
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrL2CacheSize ? (1 << 30) : (getenv("EMU_SM") ? atoi(getenv("EMU_SM")) : 3);
  return 0;
}
inline cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return 0; }
inline cudaError_t cudaGetLastError() { return 0; }
inline cudaError_t cudaDeviceSynchronize() { return 0; }
inline const char* cudaGetErrorName(cudaError_t) { return "emu"; }
inline const char* cudaGetErrorString(cudaError_t) { return "emu"; }
inline cudaError_t cudaEventCreate(cudaEvent_t*) { return 0; }
inline cudaError_t cudaEventDestroy(cudaEvent_t) { return 0; }
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t = nullptr) { return 0; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return 0; }
inline cudaError_t cudaEventElapsedTime(float* t, cudaEvent_t, cudaEvent_t) { *t = 1; return 0; }
