// Shared pieces of the engine's backward CUDA twins (norm_rope.cu, mlp.cu, head.cu): loading and storing either
// storage (bf16 as uint16_t, rounded by formulas.h; fp32 as float) with fp32 arithmetic, and the deterministic
// column sum over rows that every weight-vector gradient needs (bias gradients, the RMSNorm weight gradient).
// Column sums without atomics: the rows are cut into a number of parts that depends only on N (never on the GPU),
// one thread sums its column over one part in row order (fp32), and a second kernel adds the parts in part order
// (double) into the fp32 gradient. Same inputs, same bits, on every run and every GPU.
// Include after <cuda_runtime.h>. No launches here (the host emulation rewrites launches in the .cu files only):
// each .cu launches colSumPartialKernel over a grid (ceil(cols / kColThreads), colSumParts(N)) of kColThreads
// threads, then colSumFinishKernel.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/formulas.h"

namespace clipo::engine::bwd {

CLIPO_ENGINE_HD inline float ld(uint16_t v) { return bf16ToFloat(v); }
CLIPO_ENGINE_HD inline float ld(float v) { return v; }
CLIPO_ENGINE_HD inline void st(uint16_t* p, float v) { *p = floatToBf16(v); }
CLIPO_ENGINE_HD inline void st(float* p, float v) { *p = v; }

constexpr int kColThreads = 128;     // columns per block of the partial-sum kernel
constexpr int64_t kRowsPerPart = 64;  // rows one thread sums before its partial is written
constexpr int64_t kMaxParts = 256;

// rows of the input cut into parts: ceil(N / 64) up to 256 parts (then longer parts)
inline int64_t colSumParts(int64_t N) {
  const int64_t p = (N + kRowsPerPart - 1) / kRowsPerPart;
  return p < 1 ? 1 : (p > kMaxParts ? kMaxParts : p);
}
inline size_t colSumWorkspaceBytes(int64_t N, int64_t cols) {
  return sizeof(float) * static_cast<size_t>(colSumParts(N)) * static_cast<size_t>(cols > 0 ? cols : 1);
}

// partial[part][c] = sum over the part's rows n (in order) of term(n, c); grid (column blocks, parts)
template <typename Term>
__global__ void colSumPartialKernel(Term term, int64_t N, int64_t cols, int64_t parts, float* __restrict__ partial) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t part = blockIdx.y;
  if (c >= cols) return;
  const int64_t n0 = N * part / parts, n1 = N * (part + 1) / parts;
  float s = 0.f;
  for (int64_t n = n0; n < n1; ++n) s += term(n, c);
  partial[part * cols + c] = s;
}

// out[c] += sum over parts (in order, double) of partial[part][c]
template <int = 0>
__global__ void colSumFinishKernel(const float* __restrict__ partial, int64_t cols, int64_t parts,
                                         float* __restrict__ out) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int64_t p = 0; p < parts; ++p) s += partial[p * cols + c];
    out[c] = static_cast<float>(out[c] + s);
  }
}

}  // namespace clipo::engine::bwd
