// What the CUDA engine (native/engine/cuda_engine.cu) needs beyond engine_emu.h and attention_emu.h: streams
// (everything runs at once, in order, so a stream is a name), async and device-to-device copies, and the device
// min/max of CUDA's math library.
#pragma once
#include "attention_emu.h"

using std::max;
using std::min;
constexpr cudaMemcpyKind cudaMemcpyDeviceToDevice = static_cast<cudaMemcpyKind>(2);
inline cudaError_t cudaStreamCreate(cudaStream_t* s) {
  static int token;
  *s = &token;
  return 0;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return 0; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return 0; }
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t = nullptr) {
  std::memcpy(d, s, n);
  return 0;
}
