// The CUDA engine's glue between its training forward/backward (one log-prob, entropy and gradient per scored row)
// and the surrogate kernel ([B*T] layout): see policy_loss.h. Three small launches around the kernel, all linear in
// the micro-batch's response tokens (a few microseconds against the forward's milliseconds):
//   scatter   one thread per row: logpBT[out[r]] = logp[r], maskBT[out[r]] = inLoss[b]
//   sums      one block: the in-loss entropies in double and the non-finite log-probs, in a fixed order
//   gather    one thread per row: the weighted gradient back to rows, the entropy bonus's gradient, a count of
//             non-finite gradients (an integer atomic: the count is the same in any order)
#include <cuda_runtime.h>

#include <cstdint>

#include "common/cuda_common.cuh"
#include "engine/cuda_util.cuh"
#include "engine/policy_loss.h"

namespace clipo::engine {

namespace {

using namespace cudatwin;

constexpr int kThreads = 256;

__global__ void scatterKernel(const float* __restrict__ logpRows, const int32_t* __restrict__ out, int64_t R,
                              const int32_t* __restrict__ inLoss, int64_t T, float* __restrict__ logpBT,
                              uint8_t* __restrict__ maskBT) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < R;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = out[r];
    logpBT[k] = logpRows[r];
    maskBT[k] = inLoss[k / T] != 0 ? 1 : 0;
  }
}

// one block: each thread sums rows r = tid, tid + blockDim, ... in order, then the block's fixed tree
__global__ void sumsKernel(const float* __restrict__ logpRows, const float* __restrict__ entRows,
                           const int32_t* __restrict__ out, int64_t R, const int32_t* __restrict__ inLoss, int64_t T,
                           PolicyLossDeviceSums* sums) {
  __shared__ double dscratch[kThreads / 32];
  __shared__ int iscratch[kThreads / 32];
  double ent = 0.0;
  int bad = 0;
  for (int64_t r = threadIdx.x; r < R; r += blockDim.x) {
    bad += nonFinite(logpRows[r]) ? 1 : 0;
    if (inLoss[out[r] / T] != 0) ent += static_cast<double>(entRows[r]);
  }
  ent = cuda::blockSum(ent, dscratch);
  bad = cuda::blockSum(bad, iscratch);
  if (threadIdx.x == 0) {
    sums->entropySum = ent;
    sums->nonFiniteLogp = static_cast<unsigned int>(bad);
    sums->nonFiniteGrad = 0u;
  }
}

__global__ void gatherKernel(const float* __restrict__ gradBT, const int32_t* __restrict__ out, int64_t R,
                             const int32_t* __restrict__ inLoss, int64_t T, double weight, float entGrad,
                             float* __restrict__ gradRows, float* __restrict__ entGradRows,
                             PolicyLossDeviceSums* sums) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < R;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = out[r];
    const float g = scaledGradient(gradBT[k], weight);
    gradRows[r] = g;
    if (entGradRows) entGradRows[r] = inLoss[k / T] != 0 ? entGrad : 0.f;
    if (nonFinite(g)) atomicAdd(&sums->nonFiniteGrad, 1u);
  }
}

}  // namespace

const char* policyLossScatterCuda(const float* logpRows, const float* entRows, const int32_t* out, int64_t R,
                                  const int32_t* inLoss, int64_t B, int64_t T, float* logpBT, uint8_t* maskBT,
                                  PolicyLossDeviceSums* sums, void* stream) {
  if (B <= 0 || T <= 0 || R < 0 || R > B * T) return failMsg("policyLossScatterCuda: bad shape");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const size_t n = static_cast<size_t>(B * T);
  cudaError_t e = cudaMemsetAsync(logpBT, 0, n * sizeof(float), s);
  if (e == cudaSuccess) e = cudaMemsetAsync(maskBT, 0, n, s);
  if (e != cudaSuccess) return fail("policyLossScatterCuda: cudaMemsetAsync", e);
  if (R > 0) {
    scatterKernel<<<gridFor(R, kThreads), kThreads, 0, s>>>(logpRows, out, R, inLoss, T, logpBT, maskBT);
    const char* err = launched("policyLossScatterCuda");
    if (*err) return err;
  }
  sumsKernel<<<1, kThreads, 0, s>>>(logpRows, entRows, out, R, inLoss, T, sums);
  return launched("policyLossScatterCuda (sums)");
}

const char* policyLossGatherCuda(const float* gradBT, const int32_t* out, int64_t R, const int32_t* inLoss, int64_t T,
                                 double weight, float entGrad, float* gradRows, float* entGradRows,
                                 PolicyLossDeviceSums* sums, void* stream) {
  if (R <= 0) return "";
  if (T <= 0) return failMsg("policyLossGatherCuda: bad shape");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  gatherKernel<<<gridFor(R, kThreads), kThreads, 0, s>>>(gradBT, out, R, inLoss, T, weight, entGrad, gradRows,
                                                         entGradRows, sums);
  return launched("policyLossGatherCuda");
}

}  // namespace clipo::engine
