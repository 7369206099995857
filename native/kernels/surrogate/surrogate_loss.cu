// CUDA twin of the fused surrogate loss (same math and conventions as surrogate_loss.cpp; see surrogate_loss.h).
//
// One or two launches on one stream, nothing copied to the host:
//   1. countKernel   one block per response: n_i = sum_t M_it; N and Bv by integer atomics (exact, order-free).
//                    Reads 1 byte per token; every weight w_i depends on these global counts. Skipped when the
//                    caller passes N and Bv (Params::knownTokens/knownSequences): the row kernel then finds n_i
//                    itself where a weight or a mean needs it (seq-mean-token-mean; the sequence modes' first sweep).
//   2. rowKernel     a group of 32..256 threads per response, 256 / group responses per block: (sequence /
//                    geo_mean: a first sweep for sum_t M delta_t, whose re-read in the second sweep hits L1/L2) one
//                    sweep over logp, oldLogp, refLogp, mask that writes d loss / d logp for every token (0 where
//                    masked) and the row's partial sums. The group shrinks as B grows so that every block is
//                    resident at once: with one block per response, B = 2048 ran in 3.1 waves, the last one a tenth
//                    full, and the streaming stalled at 55-60% of the copy bandwidth (H200).
//                    The last block to finish (a counter in the workspace, reset by that block) sums the B row
//                    partials in a fixed order in double -> Result: deterministic, and no third launch.
// Loads are float4 / uchar4 when T % 4 == 0 (and the pointers are 16-byte aligned), else scalar.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/cuda_common.cuh"
#include "kernels/surrogate/surrogate_loss.h"

namespace clipo {
namespace surrogate {

namespace {

constexpr int kThreads = 256;

struct RowPartialDev {
  double pg, kl, negDelta;
  long long high, low, dual;
};

struct Counters {
  unsigned long long tokens;
  unsigned long long sequences;
  unsigned int blocksDone;  // row blocks finished; the last one finalizes and sets it back to 0
};

struct Workspace {
  int32_t* counts;
  Counters* counters;
  RowPartialDev* rows;
};

size_t alignUp(size_t x) { return (x + 255) & ~static_cast<size_t>(255); }

Workspace carve(void* base, int64_t B) {
  char* p = static_cast<char*>(base);
  Workspace w;
  w.counters = reinterpret_cast<Counters*>(p);
  p += alignUp(sizeof(Counters));
  w.counts = reinterpret_cast<int32_t*>(p);
  p += alignUp(sizeof(int32_t) * B);
  w.rows = reinterpret_cast<RowPartialDev*>(p);
  return w;
}

__device__ __forceinline__ float clampNanD(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

using cuda::blockSum;
using cuda::warpSum;

// Sum over the threads of one row's group (`group` threads, a multiple of 32 dividing the block; every thread of the
// block calls it the same number of times). Fixed order: the result is the same on every run. Every thread of the
// group gets the result.
template <typename T>
__device__ T groupSum(T v, T* scratch, int group) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warpSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int first = (static_cast<int>(threadIdx.x) / group) * (group >> 5);
  T t = T(0);
  for (int k = 0; k < (group >> 5); ++k) t += scratch[first + k];
  return t;
}

__global__ void countKernel(const uint8_t* __restrict__ mask, int64_t T, int32_t* counts, Counters* counters) {
  __shared__ int scratch[kThreads / 32];
  const uint8_t* mk = mask + blockIdx.x * T;
  int c = 0;
  if ((T & 3) == 0 && (reinterpret_cast<uintptr_t>(mask) & 3) == 0) {
    const uchar4* m4 = reinterpret_cast<const uchar4*>(mk);
    for (int64_t j = threadIdx.x; j < T / 4; j += kThreads) {
      uchar4 m = m4[j];
      c += (m.x != 0) + (m.y != 0) + (m.z != 0) + (m.w != 0);
    }
  } else {
    for (int64_t t = threadIdx.x; t < T; t += kThreads) c += mk[t] != 0;
  }
  c = blockSum(c, scratch);
  if (threadIdx.x == 0) {
    counts[blockIdx.x] = c;
    atomicAdd(&counters->tokens, static_cast<unsigned long long>(c));
    if (c > 0) atomicAdd(&counters->sequences, 1ull);
  }
}

struct KernelArgs {
  Params p;
  Inputs in;
  float* grad;
  Workspace ws;
  Result* result;
  bool known;  // N and Bv are p.knownTokens / p.knownSequences (no counting launch, no ws.counts)
  int group;   // threads per response (32, 64, 128 or 256); kThreads / group responses per block
};

// low_var_kl and its derivative w.r.t. logp (clamps as in surrogate_loss.h)
__device__ __forceinline__ void lowVarKl(float ref, float lp, float* value, float* grad) {
  const float x = ref - lp;
  const float xc = clampNanD(x, -kKlLogRatioClamp, kKlLogRatioClamp);
  const float e = expf(xc);
  const float k = e - xc - 1.0f;
  const bool clamped = (x < -kKlLogRatioClamp) | (x > kKlLogRatioClamp) | (k > kKlValueClamp) | (k < -kKlValueClamp);
  *value = clampNanD(k, -kKlValueClamp, kKlValueClamp);
  *grad = clamped ? 0.0f : 1.0f - e;
}

// Per-row constants, fixed before the token sweep.
struct RowConst {
  float a, w, wk;       // advantage, aggregation weight, w * klCoef
  float gpg;            // sequence / geo_mean: the row's policy gradient per token (before its own clip)
  float up, lo, c, negAc, eh, el;
};

// Accumulators of one thread.
struct Acc {
  float loss = 0, kl = 0, negDelta = 0;
  int high = 0, low = 0, dual = 0, count = 0;
};

// One token of mode token: returns d loss / d logp (0 when masked) and accumulates the row sums.
template <bool kRef>
__device__ __forceinline__ float tokenOp(const RowConst& k, float lp, float old, float ref, bool m, Acc& acc) {
  const float d = lp - old;
  const float r = expf(clampNanD(d, -kTokenLogRatioClamp, kTokenLogRatioClamp));
  const bool dOut = (d < -kTokenLogRatioClamp) | (d > kTokenLogRatioClamp);
  const bool pos = k.a > 0, neg = k.a < 0;
  const bool h = pos & (r > k.up), L = neg & (r < k.lo), du = neg & (r > k.c);
  const float inner = neg ? -k.a * (r < k.lo ? k.lo : r) : -k.a * (r > k.up ? k.up : r);
  const float l = (neg & (k.negAc < inner)) ? k.negAc : inner;
  const float gpg = (h | L | du | dOut) ? 0.0f : -k.a * r;
  float kv = 0.0f, gk = 0.0f;
  if (kRef) lowVarKl(ref, lp, &kv, &gk);
  acc.loss += m ? l : 0.0f;
  acc.kl += m ? kv : 0.0f;
  acc.negDelta += m ? -d : 0.0f;
  acc.high += m & h;
  acc.low += m & L;
  acc.dual += m & du;
  return m ? k.w * gpg + k.wk * gk : 0.0f;
}

// One token of the second sweep of sequence / geo_mean: the gradient write and the KL sum.
template <bool kRef, bool kGeo>
__device__ __forceinline__ float rowGradOp(const RowConst& k, float lp, float old, float ref, bool m, Acc& acc) {
  float g = k.gpg;
  if (kGeo) {
    const float d = lp - old;
    const bool clipped = ((k.a > 0) & (d > k.eh)) | ((k.a < 0) & (d < -k.el));
    g = clipped ? 0.0f : g;
  }
  float kv = 0.0f, gk = 0.0f;
  if (kRef) lowVarKl(ref, lp, &kv, &gk);
  acc.kl += m ? kv : 0.0f;
  return m ? g + k.wk * gk : 0.0f;
}

// First sweep of sequence / geo_mean: sum of delta (sequence) or of the log-space-clipped delta (geo_mean).
template <bool kGeo>
__device__ __forceinline__ void sumOp(const RowConst& k, float lp, float old, bool m, float& s, Acc& acc) {
  const float d = lp - old;
  if (kGeo) {
    const bool pos = k.a > 0, neg = k.a < 0;
    const bool h = pos & (d > k.eh), L = neg & (d < -k.el);
    const float dt = pos ? (h ? k.eh : d) : (neg ? (L ? -k.el : d) : 0.0f);
    s += m ? dt : 0.0f;
    acc.high += m & h;
    acc.low += m & L;
  } else {
    s += m ? d : 0.0f;
  }
  acc.negDelta += m ? -d : 0.0f;
  acc.count += m;
}

// Sweeps a row calling op(lp, old, ref, m) -> optional gradient, with float4 loads where possible; thread `lane`
// of the row's group of `stride` threads takes every stride-th element.
template <bool kRef, bool kWrite, typename Op>
__device__ __forceinline__ void sweep(const KernelArgs& A, int64_t row, bool vec4, int lane, int stride, Op op) {
  const int64_t T = A.p.length;
  const size_t off = static_cast<size_t>(row) * T;
  const float* lp = A.in.logp + off;
  const float* old = A.in.oldLogp + off;
  const float* ref = kRef ? A.in.refLogp + off : nullptr;
  const uint8_t* mk = A.in.mask + off;
  float* g = A.grad + off;
  if (vec4) {
    const float4* lp4 = reinterpret_cast<const float4*>(lp);
    const float4* old4 = reinterpret_cast<const float4*>(old);
    const float4* ref4 = reinterpret_cast<const float4*>(ref);
    const uchar4* mk4 = reinterpret_cast<const uchar4*>(mk);
    float4* g4 = reinterpret_cast<float4*>(g);
#pragma unroll 4
    for (int64_t j = lane; j < T / 4; j += stride) {
      const float4 x = __ldg(lp4 + j), o = __ldg(old4 + j);
      const float4 r = kRef ? __ldg(ref4 + j) : make_float4(0.f, 0.f, 0.f, 0.f);
      const uchar4 m = mk4[j];
      float4 out;
      out.x = op(x.x, o.x, r.x, m.x != 0);
      out.y = op(x.y, o.y, r.y, m.y != 0);
      out.z = op(x.z, o.z, r.z, m.z != 0);
      out.w = op(x.w, o.w, r.w, m.w != 0);
      if (kWrite) g4[j] = out;
    }
  } else {
    for (int64_t t = lane; t < T; t += stride) {
      const float out = op(__ldg(lp + t), __ldg(old + t), kRef ? __ldg(ref + t) : 0.0f, mk[t] != 0);
      if (kWrite) g[t] = out;
    }
  }
}

// An empty response: gradient 0 everywhere (its partial sums stay 0).
__device__ void zeroRow(const KernelArgs& A, int64_t i, int lane, int stride) {
  float* g = A.grad + static_cast<size_t>(i) * A.p.length;
  for (int64_t t = lane; t < A.p.length; t += stride) g[t] = 0.0f;
}

// The B row partials summed in a fixed order in double (one block) -> *result.
__device__ void finalizeRows(const RowPartialDev* rows, int64_t B, long long N, long long Bv, float klCoef, bool hasRef,
                             Result* result) {
  __shared__ double dscratch[kThreads / 32];
  __shared__ long long iscratch[kThreads / 32];
  double pg = 0, kl = 0, nd = 0;
  long long hi = 0, lo = 0, du = 0;
  for (int64_t i = threadIdx.x; i < B; i += kThreads) {
    pg += __ldcg(&rows[i].pg);  // written by other blocks: read through L2, not a stale L1 line
    kl += __ldcg(&rows[i].kl);
    nd += __ldcg(&rows[i].negDelta);
    hi += __ldcg(&rows[i].high);
    lo += __ldcg(&rows[i].low);
    du += __ldcg(&rows[i].dual);
  }
  pg = blockSum(pg, dscratch);
  kl = blockSum(kl, dscratch);
  nd = blockSum(nd, dscratch);
  hi = blockSum(hi, iscratch);
  lo = blockSum(lo, iscratch);
  du = blockSum(du, iscratch);
  if (threadIdx.x == 0) {
    Result r;
    r.tokens = N;
    r.sequences = Bv;
    r.pgLoss = pg;
    r.klLoss = hasRef ? kl : 0.0;
    r.loss = pg + (hasRef ? static_cast<double>(klCoef) * kl : 0.0);
    if (N > 0) {
      r.clipFracHigh = static_cast<double>(hi) / N;
      r.clipFracLow = static_cast<double>(lo) / N;
      r.dualClipFrac = static_cast<double>(du) / N;
      r.approxKl = nd / N;
    }
    *result = r;
  }
}

template <Mode kMode, bool kRef>
__global__ void __launch_bounds__(kThreads) rowKernel(KernelArgs A, bool vec4) {
  __shared__ double dscratch[kThreads / 32];
  __shared__ long long iscratch[kThreads / 32];
  __shared__ int iscratchInt[kThreads / 32];
  __shared__ bool lastBlock;
  const int G = A.group;
  const int lane = static_cast<int>(threadIdx.x) % G;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * (kThreads / G) + threadIdx.x / G;
  const int64_t T = A.p.length;
  // rows past B (the last block's spare groups) touch no memory but join every group sum: each __syncthreads in
  // groupSum needs the whole block
  const bool live = i < A.p.batch;
  const long long N = A.known ? A.p.knownTokens : static_cast<long long>(A.ws.counters->tokens);
  const long long Bv = A.known ? A.p.knownSequences : static_cast<long long>(A.ws.counters->sequences);
  // n_i: from the counting launch; with known totals, counted here where needed (-1: not needed, the row is
  // handled the same whether or not it is empty)
  int n = -1;
  if (!A.known) {
    n = live ? A.ws.counts[i] : 0;
  } else if (kMode == Mode::Token && A.p.agg == Agg::SeqMeanTokenMean) {
    int c = 0;
    if (live) {
      const uint8_t* mk = A.in.mask + static_cast<size_t>(i) * T;
      for (int64_t t = lane; t < T; t += G) c += mk[t] != 0;
    }
    n = groupSum(c, iscratchInt, G);
  }
  // N == 0: the whole batch is masked (and 1/N must not meet a zero sum)
  bool empty = !live || n == 0 || N == 0;
  RowConst k;
  k.a = live ? A.in.advantages[i] : 0.0f;
  // token-mean and seq-mean-token-sum need no n_i; the sequence modes set w after their first sweep
  k.w = n > 0 ? static_cast<float>(aggWeight(A.p.agg, n, N, Bv))
              : static_cast<float>(A.p.agg == Agg::TokenMean ? 1.0 / static_cast<double>(N) : 1.0 / static_cast<double>(Bv));
  k.wk = k.w * A.p.klCoef;
  k.up = 1.0f + A.p.clipHigh;
  k.lo = 1.0f - A.p.clipLow;
  k.c = A.p.dualClip > 0 ? A.p.dualClip : INFINITY;
  k.negAc = k.a < 0 ? -k.a * k.c : 0.0f;
  k.eh = A.p.clipHigh;
  k.el = A.p.clipLow;
  k.gpg = 0.0f;
  Acc acc;
  double pgRow = 0;
  if (kMode == Mode::Token) {
    if (!empty)
      sweep<kRef, true>(A, i, vec4, lane, G, [&](float lp, float old, float ref, bool m) { return tokenOp<kRef>(k, lp, old, ref, m, acc); });
    pgRow = static_cast<double>(k.w) * groupSum(static_cast<double>(acc.loss), dscratch, G);
  } else {
    constexpr bool kGeo = kMode == Mode::GeoMean;
    float s = 0;
    if (!empty)
      sweep<false, false>(A, i, vec4, lane, G, [&](float lp, float old, float, bool m) { sumOp<kGeo>(k, lp, old, m, s, acc); return 0.0f; });
    const double S = groupSum(static_cast<double>(s), dscratch, G);
    if (n < 0) {  // the same for every row of the launch (known totals), so every thread takes this sum
      n = groupSum(acc.count, iscratchInt, G);
      empty = empty || n == 0;
      if (n > 0) {
        k.w = static_cast<float>(aggWeight(A.p.agg, n, N, Bv));
        k.wk = k.w * A.p.klCoef;
      }
    }
    if (!empty) {
      if (kGeo) {
        const double R = exp(S / n);
        const double invBv = 1.0 / static_cast<double>(Bv);
        k.gpg = static_cast<float>(invBv * (-k.a * R) / n);
        pgRow = invBv * (-k.a * R);
      } else {
        const double meanDelta = S / n;
        const bool sIn = !(meanDelta > kSeqLogRatioMax);
        const double sr = exp(sIn ? meanDelta : static_cast<double>(kSeqLogRatioMax));
        const double up = 1.0 + A.p.clipHigh, lo = 1.0 - A.p.clipLow;
        const bool h = k.a > 0 && sr > up, L = k.a < 0 && sr < lo;
        const double l = k.a < 0 ? -k.a * (sr < lo ? lo : sr) : -k.a * (sr > up ? up : sr);
        k.gpg = (h || L || !sIn) ? 0.0f : static_cast<float>(k.w * (-k.a * sr));
        pgRow = static_cast<double>(k.w) * n * l;
        // every token of the row shares the clip state; count them once, from the group's first thread (the
        // first sweep's counts are geo_mean's only)
        acc.high = (lane == 0 && h) ? n : 0;
        acc.low = (lane == 0 && L) ? n : 0;
      }
      sweep<kRef, true>(A, i, vec4, lane, G, [&](float lp, float old, float ref, bool m) { return rowGradOp<kRef, kGeo>(k, lp, old, ref, m, acc); });
    }
  }
  if (empty) {
    if (live) zeroRow(A, i, lane, G);
    acc = Acc{};
    pgRow = 0;
  }
  const double kl = groupSum(static_cast<double>(acc.kl), dscratch, G);
  const double nd = groupSum(static_cast<double>(acc.negDelta), dscratch, G);
  const long long hi = groupSum(static_cast<long long>(acc.high), iscratch, G);
  const long long lo = groupSum(static_cast<long long>(acc.low), iscratch, G);
  const long long du = groupSum(static_cast<long long>(acc.dual), iscratch, G);
  if (live && lane == 0) A.ws.rows[i] = empty ? RowPartialDev{0, 0, 0, 0, 0, 0} : RowPartialDev{pgRow, static_cast<double>(k.w) * kl, nd, hi, lo, du};
  // the last block to finish sums every row (threadFenceReduction: each block's partials are visible device-wide
  // before its count goes up, so the block that sees count == gridDim.x - 1 reads them all)
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) lastBlock = atomicAdd(&A.ws.counters->blocksDone, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!lastBlock) return;
  __threadfence();
  finalizeRows(A.ws.rows, A.p.batch, N, Bv, A.p.klCoef, A.in.refLogp != nullptr, A.result);
  if (threadIdx.x == 0) A.ws.counters->blocksDone = 0;  // ready for the next call on this workspace
}

template <Mode kMode, bool kRef>
int residentRowBlocks() {
  static int resident = 0;  // per kernel instance and process (one device)
  if (!resident) {
    int perSm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, rowKernel<kMode, kRef>, kThreads, 0) != cudaSuccess || perSm < 1) perSm = 1;
    resident = perSm * cuda::smCount();
  }
  return resident;
}

int l2Bytes() {
  static int l2 = 0;
  if (!l2) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) != cudaSuccess || l2 <= 0)
      l2 = 50 << 20;
  }
  return l2;
}

// Threads per response: the largest of 256, 128, 64, 32 with which every block of the launch is resident at once
// (no tail wave), or 32 when even that is not possible (then the waves are many and the tail small). The sequence
// modes read each row twice and count on its second sweep finding the first sweep's bytes (logp, oldLogp, mask:
// 9 bytes a token) in L2: they keep groups large enough that the rows in flight hold at most half the L2 (grouping
// all 2048 rows of T = 4096 at once, 74 MB, sent the second sweep to DRAM and cost a quarter of the speed).
int rowGroup(int64_t B, int64_t T, bool twoSweeps, int resident) {
  int g = kThreads;
  while (g > 32 && (B + kThreads / g - 1) / (kThreads / g) > resident) g /= 2;
  if (twoSweeps) {
    const auto inFlight = [&](int gr) { return std::min<int64_t>(B, static_cast<int64_t>(resident) * (kThreads / gr)); };
    while (g < kThreads && inFlight(g) * T * 9 > l2Bytes() / 2) g *= 2;
  }
  return g;
}

template <Mode kMode>
void launchRows(KernelArgs& A, bool vec4, cudaStream_t s) {
  const bool ref = A.in.refLogp != nullptr;
  A.group = rowGroup(A.p.batch, A.p.length, kMode != Mode::Token,
                     ref ? residentRowBlocks<kMode, true>() : residentRowBlocks<kMode, false>());
  const int64_t rowsPerBlock = kThreads / A.group;
  const unsigned grid = static_cast<unsigned>((A.p.batch + rowsPerBlock - 1) / rowsPerBlock);
  if (ref) rowKernel<kMode, true><<<grid, kThreads, 0, s>>>(A, vec4);
  else rowKernel<kMode, false><<<grid, kThreads, 0, s>>>(A, vec4);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

thread_local std::string lastError;

const char* fail(const char* where, cudaError_t e) {
  lastError = std::string(where) + ": " + cudaGetErrorString(e);
  cudaGetLastError();
  return lastError.c_str();
}

// Device copies of one host call's arrays (freed with `buf` on every path).
struct DeviceArrays {
  cuda::DeviceBuffers buf;
  float* grad = nullptr;
  void* ws = nullptr;
  Result* result = nullptr;
};

// Allocates and uploads the inputs; returns "" or an error.
const char* upload(const Params& p, const Inputs& in, DeviceArrays& d, Inputs& dev) {
  const size_t n = static_cast<size_t>(p.batch) * p.length;
  char* ws = nullptr;
  cudaError_t e;
  if ((e = d.buf.alloc(&d.grad, n)) || (e = d.buf.alloc(&ws, cudaWorkspaceBytes(p))) || (e = d.buf.alloc(&d.result, 1)))
    return fail("cudaMalloc", e);
  d.ws = ws;
  // the row kernel's block counter starts at 0 (each call then leaves it at 0)
  if ((e = cudaMemset(ws, 0, cudaWorkspaceBytes(p)))) return fail("cudaMemset", e);
  dev = Inputs{};
  if ((e = d.buf.upload(&dev.logp, in.logp, n)) || (e = d.buf.upload(&dev.oldLogp, in.oldLogp, n)) ||
      (e = d.buf.upload(&dev.mask, in.mask, n)) || (e = d.buf.upload(&dev.advantages, in.advantages, static_cast<size_t>(p.batch))) ||
      (in.refLogp && (e = d.buf.upload(&dev.refLogp, in.refLogp, n))))
    return fail("cudaMalloc / cudaMemcpy (to device)", e);
  return "";
}

const char* download(const Params& p, const DeviceArrays& d, float* grad, Result* result) {
  const size_t n = static_cast<size_t>(p.batch) * p.length;
  cudaError_t e;
  if ((e = cudaMemcpy(grad, d.grad, n * 4, cudaMemcpyDeviceToHost)) ||
      (e = cudaMemcpy(result, d.result, sizeof(Result), cudaMemcpyDeviceToHost)))
    return fail("cudaMemcpy (to host)", e);
  return "";
}

}  // namespace

size_t cudaWorkspaceBytes(const Params& p) {
  return alignUp(sizeof(Counters)) + alignUp(sizeof(int32_t) * p.batch) + alignUp(sizeof(RowPartialDev) * p.batch);
}

const char* lossCudaDevice(const Params& p, const Inputs& in, float* grad, Result* result, void* workspace,
                           void* stream) {
  if (p.batch <= 0 || p.length <= 0) return "batch and length must be positive";
  if (p.batch > 2147483647LL) return "batch exceeds the grid limit";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const bool known = p.knownTokens >= 0 && p.knownSequences >= 0;
  KernelArgs A{p, in, grad, carve(workspace, p.batch), result, known, kThreads};
  const bool vec4 = (p.length % 4 == 0) && aligned16(in.logp) && aligned16(in.oldLogp) && aligned16(grad) &&
                    (!in.refLogp || aligned16(in.refLogp)) && ((reinterpret_cast<uintptr_t>(in.mask) & 3) == 0);
  cudaError_t e;
  if (!known) {
    e = cudaMemsetAsync(A.ws.counters, 0, sizeof(Counters), s);
    if (e != cudaSuccess) return fail("cudaMemsetAsync", e);
    countKernel<<<static_cast<unsigned>(p.batch), kThreads, 0, s>>>(in.mask, p.length, A.ws.counts, A.ws.counters);
  }
  switch (p.mode) {
    case Mode::Token: launchRows<Mode::Token>(A, vec4, s); break;
    case Mode::Sequence: launchRows<Mode::Sequence>(A, vec4, s); break;
    case Mode::GeoMean: launchRows<Mode::GeoMean>(A, vec4, s); break;
  }
  e = cudaGetLastError();
  if (e != cudaSuccess) return fail("kernel launch", e);
  return "";
}

void countMask(const Params& p, const uint8_t* mask, int64_t* tokens, int64_t* sequences) {
  int64_t N = 0, Bv = 0;
  for (int64_t i = 0; i < p.batch; ++i) {
    int64_t c = 0;
    const uint8_t* mk = mask + static_cast<size_t>(i) * p.length;
    for (int64_t t = 0; t < p.length; ++t) c += mk[t] != 0;
    N += c;
    Bv += c > 0;
  }
  *tokens = N;
  *sequences = Bv;
}

const char* lossCudaHost(const Params& pIn, const Inputs& in, float* grad, Result* result, bool poisonOutput,
                         bool countOnDevice) {
  Params p = pIn;
  if (countOnDevice) p.knownTokens = p.knownSequences = -1;
  else countMask(p, in.mask, &p.knownTokens, &p.knownSequences);
  DeviceArrays d;
  Inputs dev;
  const char* err = upload(p, in, d, dev);
  if (*err) return err;
  cudaError_t e;
  if (poisonOutput && (e = cudaMemset(d.grad, 0xFF, static_cast<size_t>(p.batch) * p.length * 4)) != cudaSuccess)
    return fail("cudaMemset", e);
  err = lossCudaDevice(p, dev, d.grad, d.result, d.ws, nullptr);
  if (*err) return err;
  if ((e = cudaDeviceSynchronize()) != cudaSuccess) return fail("kernel", e);
  return download(p, d, grad, result);
}

const char* lossCudaTimed(const Params& pIn, const Inputs& in, int repeats, double* msOut, float* grad, Result* result,
                          TimedRotation* rotation) {
  // as the engine calls it: the response lengths (hence N and Bv) are known on the host
  Params p = pIn;
  if (p.knownTokens < 0 || p.knownSequences < 0) countMask(p, in.mask, &p.knownTokens, &p.knownSequences);
  // In training each call reads freshly written log-probs, never the previous call's: cycle through enough device
  // copies of inputs and outputs that together they exceed 3x the L2 cache (50 MB on an H100), so no timed call
  // finds its data there (a B=256, T=4096 call moves 17.8 MB and would otherwise be served from L2).
  const size_t n = static_cast<size_t>(p.batch) * p.length;
  const size_t setBytes = n * (4 + 4 + 4 + 1 + (in.refLogp ? 4 : 0)) + static_cast<size_t>(p.batch) * 4 + cudaWorkspaceBytes(p);
  int device = 0, l2 = 0;
  cudaError_t e;
  if ((e = cudaGetDevice(&device)) || (e = cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device)))
    return fail("cudaDeviceGetAttribute", e);
  size_t freeBytes = 0, totalBytes = 0;
  if ((e = cudaMemGetInfo(&freeBytes, &totalBytes))) return fail("cudaMemGetInfo", e);
  const size_t want = 3 * static_cast<size_t>(l2);
  size_t sets = std::max<size_t>(1, (want + setBytes - 1) / setBytes);
  sets = std::min(sets, std::max<size_t>(1, freeBytes / 2 / std::max<size_t>(setBytes, 1)));  // leave half the memory free
  std::vector<DeviceArrays> d(sets);
  std::vector<Inputs> dev(sets);
  const char* err = "";
  for (size_t k = 0; k < sets && !*err; ++k) err = upload(p, in, d[k], dev[k]);
  if (*err) return err;
  if (rotation) {
    rotation->sets = static_cast<int>(sets);
    rotation->l2Bytes = static_cast<double>(l2);
    rotation->bytesPerSet = static_cast<double>(setBytes);
  }
  // Back to back, as in a training step: the calls are queued without waiting, with an event between consecutive
  // calls, so each interval is one call's device time. (Waiting for each call before launching the next adds the
  // launch latency, several microseconds, to every sample: a fifth of a 45 us call.)
  std::vector<cudaEvent_t> ev(static_cast<size_t>(repeats) + 1);
  for (auto& x : ev) cudaEventCreate(&x);
  size_t k = 0;
  auto next = [&]() { const size_t i = k++ % sets; return lossCudaDevice(p, dev[i], d[i].grad, d[i].result, d[i].ws, nullptr); };
  for (size_t w = 0; w < std::max<size_t>(3, sets) && !*err; ++w) err = next();  // every set touched once
  if (!*err) cudaEventRecord(ev[0], 0);
  for (int r = 0; r < repeats && !*err; ++r) {
    err = next();
    cudaEventRecord(ev[static_cast<size_t>(r) + 1], 0);
  }
  if (!*err) {
    cudaEventSynchronize(ev[static_cast<size_t>(repeats)]);
    for (int r = 0; r < repeats; ++r) {
      float ms = 0;
      cudaEventElapsedTime(&ms, ev[static_cast<size_t>(r)], ev[static_cast<size_t>(r) + 1]);
      msOut[r] = ms;
    }
  }
  for (auto& x : ev) cudaEventDestroy(x);
  if (*err) return err;
  e = cudaDeviceSynchronize();
  if (e != cudaSuccess) return fail("kernel", e);
  return download(p, d[(k - 1) % sets], grad, result);
}

}  // namespace surrogate
}  // namespace clipo
