// Error reporting and buffer helpers of the engine's CUDA twins (norm_rope.cu, mlp.cu, head.cu, optim.cu). Include after
// <cuda_runtime.h> (the host emulation of scripts/cuda-emu/ replaces that include).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/cuda_common.cuh"

namespace clipo::engine::cudatwin {

constexpr int kRowThreads = 128;  // threads of a one-row-per-block kernel (rows of up to ~8k values)

inline thread_local std::string lastError;

// The message of a failed CUDA call (kept in a thread-local string, so the returned pointer stays valid until the
// next failure on this thread); clears the sticky error.
inline const char* fail(const char* where, cudaError_t e) {
  lastError = std::string(where) + ": " + cudaGetErrorString(e);
  cudaGetLastError();
  return lastError.c_str();
}
inline const char* failMsg(const std::string& msg) {
  lastError = msg;
  return lastError.c_str();
}
// After a launch: "" or the launch error.
inline const char* launched(const char* what) {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? "" : fail(what, e);
}
inline const char* synced(const char* what) {
  const cudaError_t e = cudaDeviceSynchronize();
  return e == cudaSuccess ? "" : fail(what, e);
}
template <typename T>
const char* download(T* host, const T* dev, size_t count, const char* what) {
  if (count == 0) return "";
  const cudaError_t e = cudaMemcpy(host, dev, count * sizeof(T), cudaMemcpyDeviceToHost);
  return e == cudaSuccess ? "" : fail(what, e);
}
inline unsigned gridFor(int64_t work, int threads, int64_t cap = 65535LL * 16) {
  int64_t g = (work + threads - 1) / threads;
  if (g < 1) g = 1;
  return static_cast<unsigned>(g < cap ? g : cap);
}

}  // namespace clipo::engine::cudatwin
