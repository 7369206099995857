// CUDA twin of sampling.cpp's sampleWith: R rows of fp32 logits [R x V], one block per row, each row's token by the
// CPU sampler's rules on the same u (sampling.h). Per row, every pass a strided sweep over the row and a block
// reduction in a fixed order (deterministic, no atomics):
//   process   repetition penalty over the row's distinct history tokens (threads in parallel), then the logit bias
//             in order (one thread), in place
//   max       mz = max z; temperature 0: the first index of mz, logprob z - (mz + log sum exp(z - mz))
//   weights   e_i = exp(z_i / T - mx) (mx = mz / T), sum e in double
//   top-k     kth = the k-th largest e, found by bisection on the float's bit pattern (positive floats order as their
//             bits): the largest b with #{e >= b} >= k is exactly the k-th value, ties kept; w_i = e_i < kth ? 0 : e_i
//   top-p     theta = the largest b with sum_{w >= b} w >= topP * sum w, by the same bisection (~31 sweeps): the
//             smallest top set holding topP of the mass, ties at the boundary kept, as the CPU's sorted walk finds it
//   min-p     theta = max(theta, minP * max w)
//   walk      the row cut into blockDim contiguous pieces in token order; each piece's kept mass, an exclusive scan
//             (one thread, fixed order), then each piece walks its tokens from its prefix: the pick is the first token
//             whose running mass exceeds u * kept (the last kept token if rounding leaves none)
//   top list  topLogprobs rounds of (max logit, then min index) over the tokens after the previous one in (logit
//             descending, index ascending) order, under log-softmax(z / T) (untempered at T = 0)
// No sort and no [R x V] scratch. Rounding: the device's exp and the order of the double sums differ from the CPU's,
// so a token can differ only where u * kept (or topP * mass) falls within ~1e-7 relative of a cumulative boundary.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/cuda_util.cuh"
#include "engine/formulas.h"
#include "engine/sampling.h"

namespace clipo::engine {

namespace {

using namespace cudatwin;

constexpr int kMaxThreads = 512;

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
  __device__ int operator()(int a, int b) const { return a > b ? a : b; }
};
struct MinOp {
  __device__ int operator()(int a, int b) const { return a < b ? a : b; }
};

// Every thread gets op over the block's values (blockDim.x a multiple of 32), formed in a fixed order.
template <typename T, typename Op>
__device__ T blockReduce(T v, T* scratch, Op op, T identity) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T t = lane < nw ? scratch[lane] : identity;
  for (int o = 16; o > 0; o >>= 1) t = op(t, __shfl_xor_sync(0xffffffffu, t, o));
  return t;
}

// The row's sampling weight of z (the CPU's expShifted: exp(z * invT - mx)).
__device__ inline float weightOf(float z, float invT, float mx) { return expf(z * invT - mx); }

__global__ void sampleKernel(float* __restrict__ logits, int64_t V, const SampleRowParams* __restrict__ params,
                             const int32_t* __restrict__ penaltyTokens, const int32_t* __restrict__ biasTokens,
                             const float* __restrict__ biasValues, int64_t maxTop, int32_t* __restrict__ tokens,
                             float* __restrict__ logprobs, int32_t* __restrict__ topTokens,
                             float* __restrict__ topLps) {
  __shared__ float sF[kMaxThreads / 32];
  __shared__ double sD[kMaxThreads / 32];
  __shared__ int sI[kMaxThreads / 32];
  __shared__ double prefix[kMaxThreads];
  const int64_t r = blockIdx.x;
  const int tid = threadIdx.x, nt = blockDim.x;
  float* z = logits + r * V;
  const SampleRowParams p = params[r];

  // ---- process: penalty over distinct tokens (any order), then the bias in order ----
  if (p.repetitionPenalty != 1.0) {
    const float rp = static_cast<float>(p.repetitionPenalty);
    for (int64_t j = p.penaltyBegin + tid; j < p.penaltyEnd; j += nt) {
      const int32_t t = penaltyTokens[j];
      if (t >= 0 && t < V) z[t] = repetitionPenalized(z[t], rp);
    }
  }
  __syncthreads();
  if (tid == 0)
    for (int64_t j = p.biasBegin; j < p.biasEnd; ++j) {
      const int32_t t = biasTokens[j];
      if (t >= 0 && t < V) z[t] += biasValues[j];
    }
  __syncthreads();

  float mz = -INFINITY;
  for (int64_t i = tid; i < V; i += nt) mz = fmaxf(mz, z[i]);
  mz = blockReduce(mz, sF, MaxOp(), -INFINITY);

  int32_t pick;
  float lp;
  if (p.temperature <= 0.0) {
    int first = INT_MAX;
    double s = 0.0;
    for (int64_t i = tid; i < V; i += nt) {
      if (z[i] == mz && first == INT_MAX) first = static_cast<int>(i);
      s += expf(z[i] - mz);
    }
    pick = blockReduce(first, sI, MinOp(), INT_MAX);
    const double sum = blockReduce(s, sD, SumOp(), 0.0);
    if (pick == INT_MAX) pick = 0;  // no finite maximum (NaN row): the CPU's loop also stays at 0
    lp = static_cast<float>(z[pick] - (static_cast<double>(mz) + log(sum)));
  } else {
    const float invT = static_cast<float>(1.0 / p.temperature);
    const float mx = mz * invT;
    double s = 0.0;
    float maxE = 0.f;
    for (int64_t i = tid; i < V; i += nt) {
      const float e = weightOf(z[i], invT, mx);
      s += e;
      maxE = fmaxf(maxE, e);
    }
    const double sum = blockReduce(s, sD, SumOp(), 0.0);
    maxE = blockReduce(maxE, sF, MaxOp(), 0.f);

    // top-k: the largest bit pattern b with #{e >= b} >= k (an element's value: the count drops just above it)
    float kth = 0.f;
    if (p.topK > 0 && p.topK < V) {
      uint32_t lo = 0, hi = floatBits(maxE) + 1;  // #{e >= 0} = V >= k; #{e > maxE} = 0 < k
      while (hi - lo > 1) {
        const uint32_t mid = lo + (hi - lo) / 2;
        const float b = bitsFloat(mid);
        int c = 0;
        for (int64_t i = tid; i < V; i += nt) c += weightOf(z[i], invT, mx) >= b ? 1 : 0;
        if (blockReduce(c, sI, SumOp(), 0) >= p.topK) lo = mid; else hi = mid;
      }
      kth = bitsFloat(lo);
    }
    // w_i: e_i, or 0 below the k-th value
    auto w = [&](int64_t i) {
      const float e = weightOf(z[i], invT, mx);
      return e < kth ? 0.f : e;
    };
    double km = 0.0;
    float maxW = 0.f;
    for (int64_t i = tid; i < V; i += nt) {
      const float wi = w(i);
      km += wi;
      maxW = fmaxf(maxW, wi);
    }
    const double keptMass = blockReduce(km, sD, SumOp(), 0.0);
    maxW = blockReduce(maxW, sF, MaxOp(), 0.f);

    float theta = 0.f;
    if (p.topP < 1.0) {
      const double need = p.topP * keptMass;
      uint32_t lo = 0, hi = floatBits(maxW) + 1;  // sum_{w >= 0} = keptMass >= need; sum_{w > maxW} = 0
      while (hi - lo > 1) {
        const uint32_t mid = lo + (hi - lo) / 2;
        const float b = bitsFloat(mid);
        double m = 0.0;
        for (int64_t i = tid; i < V; i += nt) {
          const float wi = w(i);
          m += wi >= b ? wi : 0.f;
        }
        if (blockReduce(m, sD, SumOp(), 0.0) >= need) lo = mid; else hi = mid;
      }
      theta = bitsFloat(lo);
    }
    if (p.minP > 0.0) theta = fmaxf(theta, static_cast<float>(p.minP * maxW));

    // the walk: contiguous pieces in token order
    const int64_t piece = (V + nt - 1) / nt;
    const int64_t a = std::min<int64_t>(V, tid * piece), bEnd = std::min<int64_t>(V, a + piece);
    double own = 0.0;
    int last = -1;
    for (int64_t i = a; i < bEnd; ++i) {
      const float wi = w(i);
      if (wi >= theta && wi > 0.f) {
        own += wi;
        last = static_cast<int>(i);
      }
    }
    prefix[tid] = own;
    __syncthreads();
    if (tid == 0) {
      double c = 0.0;
      for (int t = 0; t < nt; ++t) {
        const double o = prefix[t];
        prefix[t] = c;
        c += o;
      }
      sD[0] = c;  // the kept mass; read before blockReduce reuses sD (after the barrier below)
    }
    __syncthreads();
    const double target = p.u * sD[0];
    int found = INT_MAX;
    double c = prefix[tid];
    for (int64_t i = a; i < bEnd; ++i) {
      const float wi = w(i);
      if (wi < theta || wi <= 0.f) continue;
      c += wi;
      if (c > target) {
        found = static_cast<int>(i);
        break;
      }
    }
    pick = blockReduce(found, sI, MinOp(), INT_MAX);
    if (pick == INT_MAX) pick = blockReduce(last, sI, MaxOp(), -1);
    if (pick < 0) pick = 0;  // nothing kept (a NaN row)
    lp = static_cast<float>(static_cast<double>(z[pick] * invT - mx) - log(sum));
  }
  if (tid == 0) {
    tokens[r] = pick;
    logprobs[r] = lp;
  }

  if (maxTop > 0) {
    const int64_t K = std::min<int64_t>(std::min<int64_t>(V, p.topLogprobs > 0 ? p.topLogprobs : 0), maxTop);
    int32_t* tt = topTokens + r * maxTop;
    float* tl = topLps + r * maxTop;
    if (K > 0) {
      const double T = p.temperature > 0.0 ? p.temperature : 1.0;
      const float invT = static_cast<float>(1.0 / T);
      const float mx = mz * invT;
      double s = 0.0;
      for (int64_t i = tid; i < V; i += nt) s += exp(static_cast<double>(z[i] * invT - mx));
      const double lse = log(blockReduce(s, sD, SumOp(), 0.0));
      float pz = INFINITY;
      int pi = -1;
      for (int64_t j = 0; j < K; ++j) {
        // the next token after (pz, pi) in (logit descending, index ascending) order
        float best = -INFINITY;
        for (int64_t i = tid; i < V; i += nt)
          if (z[i] < pz || (z[i] == pz && i > pi)) best = fmaxf(best, z[i]);
        best = blockReduce(best, sF, MaxOp(), -INFINITY);
        int bi = INT_MAX;
        for (int64_t i = tid; i < V; i += nt)
          if (z[i] == best && (best < pz || i > pi)) {
            bi = static_cast<int>(i);
            break;
          }
        bi = blockReduce(bi, sI, MinOp(), INT_MAX);
        if (bi == INT_MAX) break;  // NaN logits: fewer entries
        pz = best;
        pi = bi;
        if (tid == 0) {
          tt[j] = bi;
          tl[j] = static_cast<float>(static_cast<double>(z[bi] * invT - mx) - lse);
        }
      }
    }
    __syncthreads();
    if (tid == 0)
      for (int64_t j = K; j < maxTop; ++j) {
        tt[j] = -1;
        tl[j] = 0.f;
      }
  }
}

// Threads per row: about 8 values a thread, 32 to 512.
int threadsFor(int64_t V) {
  const int64_t t = ((V / 8 + 31) / 32) * 32;
  return static_cast<int>(std::min<int64_t>(kMaxThreads, std::max<int64_t>(32, t)));
}

}  // namespace

size_t sampleRowsCudaWorkspace(int64_t, int64_t) { return 0; }

const char* sampleRowsCuda(float* logits, int64_t R, int64_t V, const SampleRowParams* params,
                           const int32_t* penaltyTokens, const int32_t* biasTokens, const float* biasValues,
                           int64_t maxTop, int32_t* tokens, float* logprobs, int32_t* topTokens, float* topLogprobs,
                           void* workspace, void* stream) {
  if (R <= 0) return "";
  if (V <= 0 || V > INT_MAX) return failMsg("sampleRowsCuda: V must be in [1, 2^31)");
  if (R > INT_MAX) return failMsg("sampleRowsCuda: too many rows");
  if (maxTop < 0) return failMsg("sampleRowsCuda: maxTop must be >= 0");
  const int nt = threadsFor(V);
  sampleKernel<<<static_cast<unsigned>(R), nt, 0, static_cast<cudaStream_t>(stream)>>>(
      logits, V, params, penaltyTokens, biasTokens, biasValues, maxTop, tokens, logprobs, topTokens, topLogprobs);
  return launched("sampleRowsCuda");
}

const char* sampleRowsCudaHost(const float* logits, int64_t R, int64_t V, const SampleRowParams* params,
                               const int32_t* penaltyTokens, int64_t nPenalty, const int32_t* biasTokens,
                               const float* biasValues, int64_t nBias, int64_t maxTop, int32_t* tokens,
                               float* logprobs, int32_t* topTokens, float* topLogprobs) {
  if (R <= 0) return "";
  if (V <= 0 || V > INT_MAX) return failMsg("sampleRowsCudaHost: V must be in [1, 2^31)");
  if (maxTop < 0) return failMsg("sampleRowsCudaHost: maxTop must be >= 0");
  // the rows' penalty slices, each deduped (the device entry takes distinct tokens)
  std::vector<SampleRowParams> P(params, params + R);
  std::vector<int32_t> pen;
  for (int64_t r = 0; r < R; ++r) {
    const SampleRowParams& q = params[r];
    const std::string at = "sampleRowsCudaHost: row " + std::to_string(r) + ": ";
    if (q.penaltyBegin < 0 || q.penaltyEnd < q.penaltyBegin || q.penaltyEnd > nPenalty)
      return failMsg(at + "penalty slice out of range");
    if (q.biasBegin < 0 || q.biasEnd < q.biasBegin || q.biasEnd > nBias) return failMsg(at + "bias slice out of range");
    if (!(q.u >= 0.0 && q.u < 1.0)) return failMsg(at + "u must be in [0, 1)");
    if (!(q.topP > 0.0 && q.topP <= 1.0)) return failMsg(at + "topP must be in (0, 1]");
    if (!(q.minP >= 0.0 && q.minP <= 1.0)) return failMsg(at + "minP must be in [0, 1]");
    if (!(q.repetitionPenalty > 0.0)) return failMsg(at + "repetitionPenalty must be > 0");
    if (!(q.temperature >= 0.0)) return failMsg(at + "temperature must be >= 0");
    if (q.topK < 0 || q.topLogprobs < 0) return failMsg(at + "topK and topLogprobs must be >= 0");
    std::vector<int32_t> d(penaltyTokens + q.penaltyBegin, penaltyTokens + q.penaltyEnd);
    std::sort(d.begin(), d.end());
    d.erase(std::unique(d.begin(), d.end()), d.end());
    P[r].penaltyBegin = static_cast<int64_t>(pen.size());
    pen.insert(pen.end(), d.begin(), d.end());
    P[r].penaltyEnd = static_cast<int64_t>(pen.size());
  }
  cuda::DeviceBuffers b;
  const float* dZ0;
  float *dZ, *dLp, *dTl = nullptr;
  const SampleRowParams* dP;
  const int32_t *dPen, *dBt;
  const float* dBv;
  int32_t *dTok, *dTt = nullptr;
  char* ws;
  cudaError_t e;
  if ((e = b.upload(&dZ0, logits, static_cast<size_t>(R * V))) != cudaSuccess) return fail("upload", e);
  dZ = const_cast<float*>(dZ0);  // a copy of the caller's logits: the entry processes them in place
  if ((e = b.upload(&dP, P.data(), P.size())) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dPen, pen.data(), pen.size())) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dBt, biasTokens, static_cast<size_t>(nBias))) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dBv, biasValues, static_cast<size_t>(nBias))) != cudaSuccess) return fail("upload", e);
  if ((e = b.alloc(&dTok, static_cast<size_t>(R))) != cudaSuccess) return fail("cudaMalloc", e);
  if ((e = b.alloc(&dLp, static_cast<size_t>(R))) != cudaSuccess) return fail("cudaMalloc", e);
  if (maxTop > 0) {
    if ((e = b.alloc(&dTt, static_cast<size_t>(R * maxTop))) != cudaSuccess) return fail("cudaMalloc", e);
    if ((e = b.alloc(&dTl, static_cast<size_t>(R * maxTop))) != cudaSuccess) return fail("cudaMalloc", e);
  }
  if ((e = b.alloc(&ws, sampleRowsCudaWorkspace(R, V))) != cudaSuccess) return fail("cudaMalloc", e);
  const char* err = sampleRowsCuda(dZ, R, V, dP, dPen, dBt, dBv, maxTop, dTok, dLp, dTt, dTl, ws, nullptr);
  if (*err || *(err = synced("sampleRowsCuda"))) return err;
  if (*(err = download(tokens, static_cast<const int32_t*>(dTok), static_cast<size_t>(R), "download"))) return err;
  if (*(err = download(logprobs, static_cast<const float*>(dLp), static_cast<size_t>(R), "download"))) return err;
  if (maxTop > 0) {
    if (*(err = download(topTokens, static_cast<const int32_t*>(dTt), static_cast<size_t>(R * maxTop), "download"))) return err;
    if (*(err = download(topLogprobs, static_cast<const float*>(dTl), static_cast<size_t>(R * maxTop), "download"))) return err;
  }
  return "";
}

}  // namespace clipo::engine
