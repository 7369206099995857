// What the surrogate CUDA kernel needs beyond cuda_emu.h: uchar4/make_float4/__ldg, warp shuffles of int, long long
// and double, 64-bit atomics, async memset and typed cudaMalloc.
#pragma once
#include "cuda_emu.h"

struct uchar4 { unsigned char x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
template <typename T> inline T __ldg(const T* p) { return *p; }

namespace emu {
inline double warpBufD[32][32];
inline long long warpBufL[32][32];
template <typename T>
T shuffleXor(T (&buf)[32][32], T v, int o) {
  const unsigned t = tIdx.x, w = t / 32, l = t % 32;
  buf[w][l] = v;
  warpBars[w]->arrive_and_wait();
  const T r = buf[w][l ^ o];
  warpBars[w]->arrive_and_wait();
  return r;
}
}  // namespace emu
inline double __shfl_xor_sync(unsigned, double v, int o) { return emu::shuffleXor(emu::warpBufD, v, o); }
inline long long __shfl_xor_sync(unsigned, long long v, int o) { return emu::shuffleXor(emu::warpBufL, v, o); }
inline int __shfl_xor_sync(unsigned, int v, int o) { return static_cast<int>(emu::shuffleXor(emu::warpBufL, static_cast<long long>(v), o)); }

inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t = nullptr) { std::memset(d, v, n); return 0; }
template <typename T> inline cudaError_t cudaMalloc(T** p, size_t n) { return cudaMalloc(reinterpret_cast<void**>(p), n); }
inline cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes) { *freeBytes = *totalBytes = size_t(1) << 34; return 0; }

// the row kernel's last-block finalize and its choice of threads per response
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
template <typename T> inline T __ldcg(const T* p) { return *p; }
// resident blocks per SM: EMU_OCC (default 1); with EMU_SM this picks the rows-per-block grouping under test
template <typename F>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, F, int, size_t) {
  *n = getenv("EMU_OCC") ? atoi(getenv("EMU_OCC")) : 1;
  return 0;
}
