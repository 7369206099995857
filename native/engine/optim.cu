// CUDA twin of optim.cpp's AdamW (optim.h): fp32 master weights and moments, a deterministic global gradient norm
// (fixed-order block partials in double, then one block adding them in index order; no atomics), and one fused
// kernel per tensor that scales the gradient by the clip factor, updates m, v and the master weights, and writes
// the bf16 working copy (formulas.h: adamwElement, floatToBf16).
#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <string>

#include "engine/cuda_util.cuh"
#include "engine/formulas.h"
#include "engine/optim.h"

namespace clipo::engine {

namespace {

using namespace cudatwin;

constexpr int kThreads = 256;

// scratch: [0] norm, [1] clip scale, [2 ..] kAdamwNormBlocks partial sums of squares
__global__ void gradSquaresKernel(const float* __restrict__ g, int64_t n, double* __restrict__ partial) {
  __shared__ double scratch[kThreads / 32];
  double s = 0.0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double x = g[i];
    s += x * x;
  }
  s = cuda::blockSum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void gradNormKernel(double* scratchD, int nPartials, double maxGradNorm) {
  if (threadIdx.x != 0) return;
  double sq = 0.0;
  for (int b = 0; b < nPartials; ++b) sq += scratchD[2 + b];
  const double norm = sqrt(sq);
  scratchD[0] = norm;
  scratchD[1] = adamwClipScale(norm, maxGradNorm);
}

__global__ void adamwKernel(float* __restrict__ w, float* __restrict__ m, float* __restrict__ v,
                            const float* __restrict__ g, uint16_t* __restrict__ wBf16, int64_t size,
                            const double* __restrict__ scratchD, float decay, AdamwScalars s) {
  const double norm = scratchD[0];
  if (!(norm <= DBL_MAX)) return;  // NaN or inf: the host side reports it; nothing is written
  const float c = static_cast<float>(scratchD[1]);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < size;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float p = w[i], mi = m[i], vi = v[i];
    adamwElement(g[i] * c, decay, s, &p, &mi, &vi);
    w[i] = p;
    m[i] = mi;
    v[i] = vi;
    if (wBf16) wBf16[i] = floatToBf16(p);
  }
}

// bf16 master weights (AdamwHyper::bf16Master): the bf16 copy is the master, read, updated in fp32 and written back
// rounded stochastically with the bits of its flat index (offset + i), as the CPU twin does.
__global__ void adamwBf16MasterKernel(uint16_t* __restrict__ wBf16, float* __restrict__ m, float* __restrict__ v,
                                      const float* __restrict__ g, int64_t size, int64_t offset,
                                      const double* __restrict__ scratchD, float decay, AdamwScalars s, uint64_t seed,
                                      uint64_t step) {
  const double norm = scratchD[0];
  if (!(norm <= DBL_MAX)) return;
  const float c = static_cast<float>(scratchD[1]);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < size;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float p = bf16ToFloat(wBf16[i]), mi = m[i], vi = v[i];
    adamwElement(g[i] * c, decay, s, &p, &mi, &vi);
    const float r = stochasticRoundBf16(p, roundingBits(seed, step, static_cast<uint64_t>(offset + i)));
    wBf16[i] = static_cast<uint16_t>(floatBits(r) >> 16);
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

size_t adamwCudaScratchBytes() { return (2 + kAdamwNormBlocks) * sizeof(double); }

const char* adamwStepCuda(float* w, float* m, float* v, const float* g, uint16_t* wBf16, int64_t n,
                          const AdamwSegment* segs, size_t nSegs, const AdamwHyper& h, int64_t step, void* scratch,
                          void* stream) {
  if (n < 0 || step < 1) return failMsg("adamwStepCuda: n must be >= 0 and step >= 1");
  if (h.bf16Master && !wBf16) return failMsg("adamwStepCuda: bf16 master weights need the bf16 buffer");
  if (!h.bf16Master && !w) return failMsg("adamwStepCuda: fp32 master weights need the fp32 buffer");
  for (size_t k = 0; k < nSegs; ++k)
    if (segs[k].offset < 0 || segs[k].size < 0 || segs[k].offset + segs[k].size > n)
      return failMsg("adamwStepCuda: segment " + std::to_string(k) + " lies outside the buffer");
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  double* sd = static_cast<double*>(scratch);
  gradSquaresKernel<<<kAdamwNormBlocks, kThreads, 0, st>>>(g, n, sd + 2);
  const char* err = launched("adamwStepCuda norm");
  if (*err) return err;
  gradNormKernel<<<1, 32, 0, st>>>(sd, kAdamwNormBlocks, h.maxGradNorm);
  if (*(err = launched("adamwStepCuda norm"))) return err;
  const AdamwScalars s = adamwScalars(h.lr, h.beta1, h.beta2, h.eps, step);
  for (size_t k = 0; k < nSegs; ++k) {
    const AdamwSegment& seg = segs[k];
    if (seg.size == 0) continue;
    const int64_t o = seg.offset;
    if (h.bf16Master) {
      adamwBf16MasterKernel<<<gridFor(seg.size, kThreads), kThreads, 0, st>>>(
          wBf16 + o, m + o, v + o, g + o, seg.size, o, sd, adamwDecay(h.lr, h.weightDecay, seg.decay), s, h.seed,
          static_cast<uint64_t>(step));
      if (*(err = launched("adamwStepCuda update"))) return err;
      continue;
    }
    adamwKernel<<<gridFor(seg.size, kThreads), kThreads, 0, st>>>(w + o, m + o, v + o, g + o, wBf16 ? wBf16 + o : nullptr,
                                                                 seg.size, sd, adamwDecay(h.lr, h.weightDecay, seg.decay), s);
    if (*(err = launched("adamwStepCuda update"))) return err;
  }
  return "";
}

const char* adamwStepCudaHost(float* w, float* m, float* v, const float* g, uint16_t* wBf16, int64_t n,
                              const AdamwSegment* segs, size_t nSegs, const AdamwHyper& h, int64_t step, double* norm) {
  cuda::DeviceBuffers b;
  float *dW, *dM, *dV;
  const float* dG;
  uint16_t* dB = nullptr;
  double* dS;
  const size_t cnt = static_cast<size_t>(n);
  cudaError_t e;
  dW = nullptr;
  if ((w && (e = b.alloc(&dW, cnt)) != cudaSuccess) || (e = b.alloc(&dM, cnt)) != cudaSuccess ||
      (e = b.alloc(&dV, cnt)) != cudaSuccess || (wBf16 && (e = b.alloc(&dB, cnt)) != cudaSuccess) ||
      (e = b.alloc(&dS, adamwCudaScratchBytes() / sizeof(double))) != cudaSuccess)
    return fail("cudaMalloc", e);
  if ((e = b.upload(&dG, g, cnt)) != cudaSuccess || (w && (e = cudaMemcpy(dW, w, cnt * 4, cudaMemcpyHostToDevice)) != cudaSuccess) ||
      (e = cudaMemcpy(dM, m, cnt * 4, cudaMemcpyHostToDevice)) != cudaSuccess ||
      (e = cudaMemcpy(dV, v, cnt * 4, cudaMemcpyHostToDevice)) != cudaSuccess ||
      (wBf16 && (e = cudaMemcpy(dB, wBf16, cnt * 2, cudaMemcpyHostToDevice)) != cudaSuccess))
    return fail("upload", e);
  const char* err = adamwStepCuda(dW, dM, dV, dG, dB, n, segs, nSegs, h, step, dS, nullptr);
  if (*err || *(err = synced("adamwStepCuda"))) return err;
  double nrm = NAN;
  if (*(err = download(&nrm, static_cast<const double*>(dS), 1, "download"))) return err;
  *norm = nrm;
  if (!std::isfinite(nrm))
    return failMsg("adamwStep: the gradient is not finite (norm " + std::to_string(nrm) + ")");
  if ((w && *(err = download(w, static_cast<const float*>(dW), cnt, "download"))) ||
      *(err = download(m, static_cast<const float*>(dM), cnt, "download")) ||
      *(err = download(v, static_cast<const float*>(dV), cnt, "download")))
    return err;
  return wBf16 ? download(wBf16, static_cast<const uint16_t*>(dB), cnt, "download") : "";
}

}  // namespace clipo::engine
