// CUDA twin of the fused contrastive kernel (contrastive_loss.h; the CPU version is the reference).
//
// Launch sequence for one call (all on one stream, no host synchronization inside the device entry):
//   pool      the only pass over the token hidden states (bf16 or fp32 in, fp32 accumulate): grid (H chunks, B,
//             L splits), 16-byte loads, eight tokens in flight per thread; partial sums per L split
//   poolSum   sums the splits and divides by the response length            -> h [B x H]
//   gemm      u = W h (split-K: B is a micro-batch of 16..64, so the K = H dimension gives the parallelism)
//   normalize z = u / max(|u|, 1e-12)
//   gemm      z z^T, then one block per anchor computes its row of logits, masks, positive draw, loss and dL/d(dot)
//   finalize  batch loss and valid count; symmetrize + scale; gemm dZ = (G + G^T) Z; normalize backward;
//   gemm      gradW = dU^T h  (and the mlp's extra layer)
// No cuBLAS: the GEMMs here are small (B x D x H) next to the pass over the tokens, and a tiled kernel suffices.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/cuda_common.cuh"
#include "contrastive_loss.h"

namespace clipo::contrastive {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxBatchCuda = 4096;  // the per-anchor kernel keeps two rows of B floats in shared memory

using cuda::blockMax;
using cuda::blockSum;
using cuda::DeviceBuffers;
using cuda::smCount;

// ---------------------------------------------------------------- pooling
template <typename T> struct Vec;
template <> struct Vec<float> { static constexpr int N = 4; };     // float4
template <> struct Vec<uint16_t> { static constexpr int N = 8; };  // 8 bf16 in 16 bytes

// 16 raw bytes per load, converted to fp32 only as they are added: eight loads in flight then hold 32 registers,
// not 64. (Converting at the load, the bf16 kernel needed 88 registers, fitted 2 blocks per SM, and pooled at
// 1.8 TB/s where fp32, at 34 registers, reached 4.2 TB/s on an H200.)
__device__ inline uint4 loadRaw(const void* p) { return *reinterpret_cast<const uint4*>(p); }
__device__ inline void addRaw(const float*, const uint4& a, float* acc) {
  acc[0] += __uint_as_float(a.x), acc[1] += __uint_as_float(a.y), acc[2] += __uint_as_float(a.z), acc[3] += __uint_as_float(a.w);
}
__device__ inline void addRaw(const uint16_t*, const uint4& a, float* acc) {  // bf16 = the high half of an fp32
  const uint32_t w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    acc[2 * k] += __uint_as_float(w[k] << 16);
    acc[2 * k + 1] += __uint_as_float(w[k] & 0xffff0000u);
  }
}
__device__ inline float loadOne(const float* p) { return *p; }
__device__ inline float loadOne(const uint16_t* p) { return __uint_as_float(static_cast<uint32_t>(*p) << 16); }

// partial[s][i][h] = sum over tokens t of split s of response i with mask 1 of x[i][t][h].
// VEC > 1 needs H % VEC == 0 (16-byte aligned rows); VEC == 1 is the fallback for odd H.
template <typename T, int VEC>
__global__ void poolPartialKernel(const T* __restrict__ X, const uint8_t* __restrict__ mask, int64_t L, int64_t H,
                                  int splits, int B, float* __restrict__ partial) {
  const int i = blockIdx.y, s = blockIdx.z;
  const int64_t h0 = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
  if (h0 >= H) return;
  const int64_t t0 = L * s / splits, t1 = L * (s + 1) / splits;
  const uint8_t* m = mask + static_cast<int64_t>(i) * L;
  const T* x = X + static_cast<int64_t>(i) * L * H + h0;
  float acc[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) acc[k] = 0.f;
  constexpr int U = 8;  // tokens in flight per thread
  int64_t t = t0;
  for (; t + U <= t1; t += U) {
    // the U mask bytes first (one wait for all of them), then up to U independent 16-byte loads in flight
    uint8_t mk[U];
#pragma unroll
    for (int u = 0; u < U; ++u) mk[u] = m[t + u];
    if constexpr (VEC == 1) {
      float v[U];
#pragma unroll
      for (int u = 0; u < U; ++u) v[u] = mk[u] ? loadOne(x + (t + u) * H) : 0.f;
#pragma unroll
      for (int u = 0; u < U; ++u) acc[0] += v[u];
    } else {
      uint4 v[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (mk[u]) v[u] = loadRaw(x + (t + u) * H);
        else v[u] = uint4{0u, 0u, 0u, 0u};  // +0.0 in fp32 and in bf16
      }
#pragma unroll
      for (int u = 0; u < U; ++u) addRaw(x, v[u], acc);
    }
  }
  for (; t < t1; ++t) {
    if (!m[t]) continue;
    if constexpr (VEC == 1) acc[0] += loadOne(x + t * H);
    else addRaw(x, loadRaw(x + t * H), acc);
  }
  float* out = partial + (static_cast<int64_t>(s) * B + i) * H + h0;
#pragma unroll
  for (int k = 0; k < VEC; ++k) out[k] = acc[k];
}

// h[i][:] = sum_s partial[s][i][:] / n_i  (n_i = 0 gives 0: the API rejects such responses before calling).
// Grid (H / blockDim chunks, B): one block per response left 64 blocks on 132 SMs, each reading splits x H floats
// one dependent load after another.
__global__ void poolSumKernel(const float* __restrict__ partial, const uint8_t* __restrict__ mask, int64_t L, int64_t H,
                              int splits, int B, float* __restrict__ Hm) {
  __shared__ float scratch[32];
  const int i = blockIdx.y;
  float c = 0.f;
  for (int64_t t = threadIdx.x; t < L; t += blockDim.x) c += mask[static_cast<int64_t>(i) * L + t] ? 1.f : 0.f;
  const float n = blockSum(c, scratch);
  const float inv = n > 0.f ? 1.f / n : 0.f;
  const int64_t h = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (h >= H) return;
  float acc = 0.f;
  for (int s = 0; s < splits; ++s) acc += partial[(static_cast<int64_t>(s) * B + i) * H + h];
  Hm[static_cast<int64_t>(i) * H + h] = acc * inv;
}

struct PoolPlan {
  int vec = 1, hChunks = 1, splits = 1;
};
// `tokens` (when given) decides whether 16-byte loads are possible: the engine may pass an offset pointer. A plan
// for an unaligned pointer never has more splits than the aligned one, so the workspace (sized aligned) fits.
PoolPlan planPool(const Params& p, DType type, const void* tokens = nullptr) {
  PoolPlan pl;
  const int v = type == DType::BF16 ? 8 : 4;
  const bool aligned = tokens == nullptr || reinterpret_cast<uintptr_t>(tokens) % 16 == 0;
  pl.vec = p.hidden % v == 0 && aligned ? v : 1;
  pl.hChunks = static_cast<int>((p.hidden / pl.vec + kThreads - 1) / kThreads);
  const int64_t target = 8LL * smCount();  // enough blocks to keep every SM streaming
  const int64_t base = p.batch * pl.hChunks;
  int64_t splits = (target + base - 1) / base;
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, p.length / 16));
  pl.splits = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(splits, 65535)));
  return pl;
}

template <typename T>
void launchPool(const Params& p, const PoolPlan& pl, const T* X, const uint8_t* mask, float* partial, cudaStream_t st) {
  dim3 grid(pl.hChunks, static_cast<unsigned>(p.batch), pl.splits);
  constexpr int V = Vec<T>::N;
  if (pl.vec == V)
    poolPartialKernel<T, V><<<grid, kThreads, 0, st>>>(X, mask, p.length, p.hidden, pl.splits, static_cast<int>(p.batch), partial);
  else
    poolPartialKernel<T, 1><<<grid, kThreads, 0, st>>>(X, mask, p.length, p.hidden, pl.splits, static_cast<int>(p.batch), partial);
}

// ---------------------------------------------------------------- GEMM
// C[M x N] = sum_k A(m, k) B(k, n), A(m, k) = A[m*sam + k*sak], B(k, n) = B[k*sbk + n*sbn]. Tiles of
// (16*RM) x 64 with 16-deep k steps through shared memory, RM x 4 outputs per thread (RM = 4 normally; 1 or 2 when
// M is a micro-batch of 16 or 32, so no thread computes rows that do not exist). gridDim.z splits K; split z
// writes C + z*M*N.
constexpr int TN = 64, TK = 16;
template <int RM>
__global__ void __launch_bounds__(256) gemmKernel(int64_t M, int64_t N, int64_t K, const float* __restrict__ A,
                                                  int64_t sam, int64_t sak, const float* __restrict__ Bm, int64_t sbk,
                                                  int64_t sbn, float* __restrict__ C, int64_t kPerSplit) {
  constexpr int TM = 16 * RM;
  __shared__ __align__(16) float As[TK][TM + 4];  // +4: rows stay 16-byte aligned, stores spread over banks
  __shared__ __align__(16) float Bs[TK][TN + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * TM, n0 = static_cast<int64_t>(blockIdx.x) * TN;
  const int64_t kBegin = blockIdx.z * kPerSplit, kEnd = K < kBegin + kPerSplit ? K : kBegin + kPerSplit;
  float acc[RM][4] = {};
  // The next tile's global loads are issued before this tile's products (register prefetch): the k loop of a
  // micro-batch GEMM is long and its blocks few, so a load -> sync -> compute loop would wait for memory each step.
  float ra[RM], rb[4];
  auto loadTiles = [&](int64_t k0) {
    // the fastest-varying index of each load follows the unit stride, for coalescing
#pragma unroll
    for (int r = 0; r < RM; ++r) {  // A tile: TM * 16 elements, RM per thread
      const int e = tid + r * 256;
      int mm, kk;
      if (sak == 1) { kk = e % TK; mm = e / TK; } else { mm = e % TM; kk = e / TM; }
      const int64_t gm = m0 + mm, gk = k0 + kk;
      ra[r] = (gm < M && gk < kEnd) ? A[gm * sam + gk * sak] : 0.f;
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {  // B tile: 16 * 64 elements, 4 per thread
      const int e = tid + r * 256;
      int nn, kk;
      if (sbk == 1) { kk = e % TK; nn = e / TK; } else { nn = e % TN; kk = e / TN; }
      const int64_t gn = n0 + nn, gk = k0 + kk;
      rb[r] = (gn < N && gk < kEnd) ? Bm[gk * sbk + gn * sbn] : 0.f;
    }
  };
  auto storeTiles = [&]() {
#pragma unroll
    for (int r = 0; r < RM; ++r) {
      const int e = tid + r * 256;
      if (sak == 1) As[e % TK][e / TK] = ra[r];
      else As[e / TM][e % TM] = ra[r];
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int e = tid + r * 256;
      if (sbk == 1) Bs[e % TK][e / TK] = rb[r];
      else Bs[e / TN][e % TN] = rb[r];
    }
  };
  if (kBegin < kEnd) loadTiles(kBegin);
  for (int64_t k0 = kBegin; k0 < kEnd; k0 += TK) {
    storeTiles();
    __syncthreads();
    if (k0 + TK < kEnd) loadTiles(k0 + TK);
#pragma unroll
    for (int kk = 0; kk < TK; ++kk) {
      // each thread owns rows RM*ty .. RM*ty+RM-1 and columns 4*tx .. 4*tx+3
      float a[RM];
      if constexpr (RM == 4) {
        const float4 a4 = *reinterpret_cast<const float4*>(&As[kk][4 * ty]);
        a[0] = a4.x, a[1] = a4.y, a[2] = a4.z, a[3] = a4.w;
      } else {
#pragma unroll
        for (int r = 0; r < RM; ++r) a[r] = As[kk][RM * ty + r];
      }
      const float4 b4 = *reinterpret_cast<const float4*>(&Bs[kk][4 * tx]);
      const float b[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
      for (int r = 0; r < RM; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
    }
    __syncthreads();
  }
  float* Cz = C + static_cast<int64_t>(blockIdx.z) * M * N;
#pragma unroll
  for (int r = 0; r < RM; ++r)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int64_t gm = m0 + RM * ty + r, gn = n0 + 4 * tx + c;
      if (gm < M && gn < N) Cz[gm * N + gn] = acc[r][c];
    }
}

// rows per thread for a GEMM with M rows: the smallest tile height (16, 32, 64) that covers M, capped at 64
int gemmRows(int64_t M) { return M <= 16 ? 1 : M <= 32 ? 2 : 4; }

__global__ void sumSplitsKernel(const float* __restrict__ parts, int splits, int64_t n, float* __restrict__ C) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n; k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int z = 0; z < splits; ++z) s += parts[z * n + k];
    C[k] = s;
  }
}

int gemmSplits(int64_t M, int64_t N, int64_t K) {
  const int64_t TM = 16 * gemmRows(M);
  const int64_t tiles = ((M + TM - 1) / TM) * ((N + TN - 1) / TN);
  const int64_t want = 2LL * smCount();
  if (tiles >= want) return 1;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((want + tiles - 1) / tiles, K / 128)));
}
size_t gemmScratchFloats(int64_t M, int64_t N, int64_t K) {
  const int s = gemmSplits(M, N, K);
  return s > 1 ? static_cast<size_t>(s) * M * N : 0;
}

void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak, const float* Bm, int64_t sbk,
          int64_t sbn, float* C, float* scratch, cudaStream_t st) {
  const int s = gemmSplits(M, N, K);
  int64_t kPer = (K + s - 1) / s;
  kPer = (kPer + TK - 1) / TK * TK;
  const int splits = static_cast<int>((K + kPer - 1) / kPer);
  const int rm = gemmRows(M), TM = 16 * rm;
  dim3 grid(static_cast<unsigned>((N + TN - 1) / TN), static_cast<unsigned>((M + TM - 1) / TM), splits);
  float* dst = splits > 1 ? scratch : C;
  if (rm == 1) gemmKernel<1><<<grid, 256, 0, st>>>(M, N, K, A, sam, sak, Bm, sbk, sbn, dst, kPer);
  else if (rm == 2) gemmKernel<2><<<grid, 256, 0, st>>>(M, N, K, A, sam, sak, Bm, sbk, sbn, dst, kPer);
  else gemmKernel<4><<<grid, 256, 0, st>>>(M, N, K, A, sam, sak, Bm, sbk, sbn, dst, kPer);
  if (splits > 1) sumSplitsKernel<<<std::min<int64_t>((M * N + 255) / 256, 4096), 256, 0, st>>>(scratch, splits, M * N, C);
}

// ---------------------------------------------------------------- head and normalize
__global__ void reluKernel(const float* __restrict__ a, float* __restrict__ r, int64_t n) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n; k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    r[k] = a[k] > 0.f ? a[k] : 0.f;
}
__global__ void reluBackwardKernel(const float* __restrict__ a, float* __restrict__ d, int64_t n) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n; k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    if (!(a[k] > 0.f)) d[k] = 0.f;
}

__global__ void normalizeKernel(const float* __restrict__ U, int64_t D, float* __restrict__ Z, float* __restrict__ norms) {
  __shared__ float scratch[32];
  const int64_t i = blockIdx.x;
  float ss = 0.f;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) ss += U[i * D + d] * U[i * D + d];
  const float n = sqrtf(blockSum(ss, scratch));
  const float inv = 1.f / fmaxf(n, kNormFloor);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) Z[i * D + d] = U[i * D + d] * inv;
  if (threadIdx.x == 0) norms[i] = n;
}

__global__ void normalizeBackwardKernel(const float* __restrict__ Z, const float* __restrict__ norms,
                                        const float* __restrict__ dZ, int64_t D, float* __restrict__ dU) {
  __shared__ float scratch[32];
  const int64_t i = blockIdx.x;
  float zg = 0.f;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) zg += Z[i * D + d] * dZ[i * D + d];
  const float c = blockSum(zg, scratch);
  const float n = norms[i];
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
    dU[i * D + d] = n > kNormFloor ? (dZ[i * D + d] - Z[i * D + d] * c) / n : dZ[i * D + d] / kNormFloor;
}

// ---------------------------------------------------------------- loss
struct LossArgs {
  Params p;
  const float* dot;       // [B x B] z_i . z_j
  const float* norms;     // [B]
  const uint8_t* correct;
  const int32_t* group;
  const int32_t* given;   // optional positives
  float* perSample;
  int32_t* positives;
  float* G;               // [B x B] dL_i / d dot_ij (unscaled)
  int32_t* validFlag;     // [B]
};

// One block per anchor i: its row of logits (shared memory), counts, validity, positive, loss and gradient row.
__global__ void lossRowKernel(LossArgs a) {
  extern __shared__ float sh[];
  const int B = static_cast<int>(a.p.batch);
  float* logit = sh;
  float* ex = sh + B;
  __shared__ float scratch[32];
  __shared__ int sPos, sOk;
  const int i = blockIdx.x;
  const int32_t gi = a.group[i];
  const uint8_t yi = a.correct[i];
  const float invT = 1.f / a.p.temperature, eps = a.p.eps;
  const bool l2 = a.p.distance == Distance::L2;

  float mx = -INFINITY, cA = 0.f, cP = 0.f;
  for (int j = threadIdx.x; j < B; j += blockDim.x) {
    const float d = j == i ? static_cast<float>(selfDot(a.norms[i])) : a.dot[static_cast<int64_t>(i) * B + j];
    const float s = l2 ? 1.f - sqrtf(fmaxf(2.f - 2.f * d, eps)) : d;
    logit[j] = s * invT;
    mx = fmaxf(mx, logit[j]);
    if (j != i && inAll(a.p.level, gi, a.group[j])) {
      cA += 1.f;
      if (inPos(a.p.level, gi, a.group[j], yi, a.correct[j])) cP += 1.f;
    }
  }
  const float m = blockMax(mx, scratch);
  const int nA = static_cast<int>(blockSum(cA, scratch) + 0.5f);
  const int nP = static_cast<int>(blockSum(cP, scratch) + 0.5f);
  if (threadIdx.x == 0) {
    bool ok = anchorValid(a.p, yi, nP, nA);
    int pos = -1;
    if (ok && a.p.loss == LossType::InfoNCE) {
      if (a.given) {
        pos = a.given[i];
      } else if (nP > 0) {
        uint32_t k = positiveHash(a.p.seed, static_cast<uint32_t>(i)) % static_cast<uint32_t>(nP);
        for (int j = 0; j < B; ++j)
          if (j != i && inAll(a.p.level, gi, a.group[j]) && inPos(a.p.level, gi, a.group[j], yi, a.correct[j]) && k-- == 0) {
            pos = j;
            break;
          }
      }
      ok = infoNceKeepsAnchor(a.p, pos);
    }
    sPos = pos;
    sOk = ok ? 1 : 0;
  }
  __syncthreads();
  const int pos = sPos;
  const bool ok = sOk != 0;
  float sa = 0.f, sp = 0.f, sl = 0.f;
  for (int j = threadIdx.x; j < B; j += blockDim.x) {
    float e = 0.f;
    if (ok && j != i && inAll(a.p.level, gi, a.group[j])) {
      e = expf(logit[j] - m);
      sa += e;
      if (inPos(a.p.level, gi, a.group[j], yi, a.correct[j])) {
        sp += e;
        sl += logit[j] - m;
      }
    }
    ex[j] = e;
  }
  const float SA = blockSum(sa, scratch), SP = blockSum(sp, scratch), sumP = blockSum(sl, scratch);
  const float logSA = logf(SA + eps);
  float Li = 0.f, kA = 0.f, kP = 0.f, kPexp = 0.f;
  if (ok) {
    switch (a.p.loss) {
      case LossType::InfoNCE:
        if (pos >= 0) {  // no positive: the empty sum, 0 with no gradient
          Li = -((logit[pos] - m) - logSA);
          kA = 1.f;
        }
        break;
      case LossType::SupConIn: Li = -(logf(SP + eps) - logSA - logf(static_cast<float>(nP) + eps)); kA = 1.f; kPexp = -1.f / (SP + eps); break;
      case LossType::SupConOut: {
        const float w = 1.f / (static_cast<float>(nP) + eps);
        Li = -w * (sumP - static_cast<float>(nP) * logSA);
        kA = static_cast<float>(nP) * w;
        kP = -w;
        break;
      }
      case LossType::SoftNN: Li = -(logf(SP + eps) - logSA); kA = 1.f; kPexp = -1.f / (SP + eps); break;
    }
  }
  if (threadIdx.x == 0) {
    a.perSample[i] = Li;
    a.positives[i] = ok && a.p.loss == LossType::InfoNCE ? pos : -1;
    a.validFlag[i] = ok ? 1 : 0;
  }
  if (!a.G) return;
  for (int j = threadIdx.x; j < B; j += blockDim.x) {
    float g = 0.f;
    if (ok && j != i && inAll(a.p.level, gi, a.group[j])) {
      g = kA * ex[j] / (SA + eps);
      if (inPos(a.p.level, gi, a.group[j], yi, a.correct[j])) g += kP + kPexp * ex[j];
      if (a.p.loss == LossType::InfoNCE && j == pos) g -= 1.f;
      float ds = 1.f;
      if (l2) {
        const float r = 2.f - 2.f * a.dot[static_cast<int64_t>(i) * B + j];
        ds = r > eps ? rsqrtf(r) : 0.f;
      }
      g *= invT * ds;
    }
    a.G[static_cast<int64_t>(i) * B + j] = g;
  }
}

// Batch loss = sum L_i / (valid + eps) (0 without a valid anchor); the gradient scale goes to *scale.
__global__ void lossFinalizeKernel(const float* __restrict__ perSample, const int32_t* __restrict__ validFlag, int B,
                                   float eps, float* loss, int32_t* validAnchors, float* scale) {
  __shared__ float scratch[32];
  float s = 0.f, v = 0.f;
  for (int i = threadIdx.x; i < B; i += blockDim.x) {
    s += perSample[i];
    v += static_cast<float>(validFlag[i]);
  }
  const float total = blockSum(s, scratch), valid = blockSum(v, scratch);
  if (threadIdx.x == 0) {
    *loss = valid > 0.f ? total / (valid + eps) : 0.f;
    *validAnchors = static_cast<int32_t>(valid + 0.5f);
    *scale = valid > 0.f ? 1.f / (valid + eps) : 0.f;
  }
}

// Gs = (G + G^T) * scale
__global__ void symmetrizeKernel(const float* __restrict__ G, int B, const float* __restrict__ scale, float* __restrict__ Gs) {
  const int64_t n = static_cast<int64_t>(B) * B;
  const float c = *scale;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n; k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = k / B, j = k % B;
    Gs[k] = (G[k] + G[j * B + i]) * c;
  }
}

// ---------------------------------------------------------------- workspace layout
struct Workspace {
  float* partial = nullptr;  // pool splits
  float* Hm = nullptr;       // [B x H]
  float* A1 = nullptr;       // mlp [B x H]
  float* R = nullptr;        // mlp [B x H]
  float* dA = nullptr;       // mlp [B x H]
  float* U = nullptr;        // [B x D]
  float* norms = nullptr;    // [B]
  float* dot = nullptr;      // [B x B]
  float* G = nullptr;        // [B x B]
  float* Gs = nullptr;       // [B x B]
  float* dZ = nullptr;       // [B x D]
  float* dU = nullptr;       // [B x D]
  float* scale = nullptr;    // [1]
  int32_t* validFlag = nullptr;  // [B]
  float* gemmScratch = nullptr;
};

// Lays out (or, with base == nullptr, only sizes) the workspace. Every piece 256-byte aligned.
size_t layout(const Params& p, bool tokens, DType type, char* base, Workspace* w) {
  const int64_t B = p.batch, H = p.hidden, D = p.out;
  size_t off = 0;
  auto take = [&](size_t floats) -> float* {
    float* ptr = base ? reinterpret_cast<float*>(base + off) : nullptr;
    off += (floats * sizeof(float) + 255) / 256 * 256;
    return ptr;
  };
  if (tokens) {
    const PoolPlan pl = planPool(p, type);
    w->partial = take(static_cast<size_t>(pl.splits) * B * H);
    w->Hm = take(B * H);
  }
  if (p.head == Head::Mlp) {
    w->A1 = take(B * H);
    w->R = take(B * H);
    w->dA = take(B * H);
  }
  w->U = take(B * D);
  w->norms = take(B);
  w->dot = take(B * B);
  w->G = take(B * B);
  w->Gs = take(B * B);
  w->dZ = take(B * D);
  w->dU = take(B * D);
  w->scale = take(1);
  w->validFlag = reinterpret_cast<int32_t*>(take(B));
  size_t g = 0;
  g = std::max(g, gemmScratchFloats(B, D, H));  // u = W h (and W2 r)
  g = std::max(g, gemmScratchFloats(B, B, D));  // z z^T
  g = std::max(g, gemmScratchFloats(B, D, B));  // dZ
  g = std::max(g, gemmScratchFloats(D, H, B));  // gradW
  if (p.head == Head::Mlp) {
    g = std::max(g, gemmScratchFloats(B, H, H));
    g = std::max(g, gemmScratchFloats(B, H, D));
    g = std::max(g, gemmScratchFloats(H, H, B));
  }
  w->gemmScratch = take(g);
  return off;
}

int gridFor(int64_t n) { return static_cast<int>(std::min<int64_t>((n + 255) / 256, 4096)); }

}  // namespace

size_t contrastiveCudaWorkspaceBytes(const Params& p) {
  // token input when p.length > 0 (the pool splits depend on the dtype: take the larger); pooled input otherwise
  Workspace w;
  const bool tokens = p.length > 0;
  return std::max(layout(p, tokens, DType::F32, nullptr, &w), layout(p, tokens, DType::BF16, nullptr, &w));
}

int contrastiveCudaDevice(const Params& p, const Inputs& in, const Outputs& out, void* workspace, void* stream) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const int64_t B = p.batch, H = p.hidden, D = p.out;
  if (B > kMaxBatchCuda) return static_cast<int>(cudaErrorInvalidValue);
  const bool tokens = in.pooled == nullptr;
  Workspace w;
  layout(p, tokens, in.tokenType, static_cast<char*>(workspace), &w);

  // 1. pooled h: the one pass over the tokens
  const float* Hm = in.pooled;
  if (tokens) {
    const PoolPlan pl = planPool(p, in.tokenType, in.tokens);
    if (in.tokenType == DType::BF16)
      launchPool(p, pl, static_cast<const uint16_t*>(in.tokens), in.mask, w.partial, st);
    else
      launchPool(p, pl, static_cast<const float*>(in.tokens), in.mask, w.partial, st);
    poolSumKernel<<<dim3(static_cast<unsigned>((H + kThreads - 1) / kThreads), static_cast<unsigned>(B)), kThreads, 0, st>>>(
        w.partial, in.mask, p.length, H, pl.splits, static_cast<int>(B), w.Hm);
    Hm = w.Hm;
  }
  // 2. head forward: u = W h, or W2 relu(W1 h)   (x @ W.T: A(m,k) = x[m*H + k], B(k,n) = W[n*H + k])
  const float* X = Hm;
  if (p.head == Head::Mlp) {
    gemm(B, H, H, Hm, H, 1, in.weightIn, 1, H, w.A1, w.gemmScratch, st);
    reluKernel<<<gridFor(B * H), 256, 0, st>>>(w.A1, w.R, B * H);
    X = w.R;
  }
  gemm(B, D, H, X, H, 1, in.weightOut, 1, H, w.U, w.gemmScratch, st);
  normalizeKernel<<<static_cast<unsigned>(B), kThreads, 0, st>>>(w.U, D, out.embeddings, w.norms);
  // 3. similarities and the per-anchor losses
  gemm(B, B, D, out.embeddings, D, 1, out.embeddings, 1, D, w.dot, w.gemmScratch, st);
  LossArgs la{p, w.dot, w.norms, in.correct, in.group, in.positives, out.perSample, out.positives,
              p.computeGrad ? w.G : nullptr, w.validFlag};
  lossRowKernel<<<static_cast<unsigned>(B), 128, 2 * B * sizeof(float), st>>>(la);
  lossFinalizeKernel<<<1, 1024, 0, st>>>(out.perSample, w.validFlag, static_cast<int>(B), p.eps, out.loss, out.validAnchors, w.scale);
  if (p.computeGrad) {
    // 4. backward: dZ = (G + G^T) Z * scale, through normalize, then the head
    symmetrizeKernel<<<gridFor(B * B), 256, 0, st>>>(w.G, static_cast<int>(B), w.scale, w.Gs);
    gemm(B, D, B, w.Gs, B, 1, out.embeddings, D, 1, w.dZ, w.gemmScratch, st);
    normalizeBackwardKernel<<<static_cast<unsigned>(B), kThreads, 0, st>>>(out.embeddings, w.norms, w.dZ, D, w.dU);
    // gradW[d][h] = sum_i dU[i][d] X[i][h]
    gemm(D, H, B, w.dU, 1, D, X, H, 1, out.gradWeightOut, w.gemmScratch, st);
    if (p.head == Head::Mlp) {
      gemm(B, H, D, w.dU, D, 1, in.weightOut, H, 1, w.dA, w.gemmScratch, st);  // dR = dU W2
      reluBackwardKernel<<<gridFor(B * H), 256, 0, st>>>(w.A1, w.dA, B * H);
      gemm(H, H, B, w.dA, 1, H, Hm, H, 1, out.gradWeightIn, w.gemmScratch, st);
    }
  }
  return static_cast<int>(cudaGetLastError());
}

int cudaDeviceCount() { return cuda::deviceCount(); }

namespace {

cudaError_t runHost(const Params& p, const Inputs& in, const Outputs& out) {
  const size_t B = p.batch, H = p.hidden, D = p.out, L = p.length;
  DeviceBuffers buf;
  Inputs din = in;
  if (in.pooled) {
    CLIPO_CUDA_TRY(buf.upload(&din.pooled, in.pooled, B * H));
  } else {
    const size_t n = B * L * H;
    if (in.tokenType == DType::BF16) {
      const uint16_t* t = nullptr;
      CLIPO_CUDA_TRY(buf.upload(&t, static_cast<const uint16_t*>(in.tokens), n));
      din.tokens = t;
    } else {
      const float* t = nullptr;
      CLIPO_CUDA_TRY(buf.upload(&t, static_cast<const float*>(in.tokens), n));
      din.tokens = t;
    }
    CLIPO_CUDA_TRY(buf.upload(&din.mask, in.mask, B * L));
  }
  CLIPO_CUDA_TRY(buf.upload(&din.weightOut, in.weightOut, D * H));
  if (in.weightIn) CLIPO_CUDA_TRY(buf.upload(&din.weightIn, in.weightIn, H * H));
  CLIPO_CUDA_TRY(buf.upload(&din.correct, in.correct, B));
  CLIPO_CUDA_TRY(buf.upload(&din.group, in.group, B));
  if (in.positives) CLIPO_CUDA_TRY(buf.upload(&din.positives, in.positives, B));

  // outputs poisoned before the launch (floats: NaN; integers: 0x7f7f7f7f), so an unwritten element shows
  Outputs dout;
  CLIPO_CUDA_TRY(buf.alloc(&dout.perSample, B));
  CLIPO_CUDA_TRY(buf.alloc(&dout.embeddings, B * D));
  CLIPO_CUDA_TRY(buf.alloc(&dout.positives, B));
  CLIPO_CUDA_TRY(buf.alloc(&dout.loss, 1));
  CLIPO_CUDA_TRY(buf.alloc(&dout.validAnchors, 1));
  CLIPO_CUDA_TRY(cudaMemset(dout.perSample, 0xff, B * sizeof(float)));
  CLIPO_CUDA_TRY(cudaMemset(dout.embeddings, 0xff, B * D * sizeof(float)));
  CLIPO_CUDA_TRY(cudaMemset(dout.positives, 0x7f, B * sizeof(int32_t)));
  CLIPO_CUDA_TRY(cudaMemset(dout.loss, 0xff, sizeof(float)));
  CLIPO_CUDA_TRY(cudaMemset(dout.validAnchors, 0x7f, sizeof(int32_t)));
  if (p.computeGrad) {
    CLIPO_CUDA_TRY(buf.alloc(&dout.gradWeightOut, D * H));
    CLIPO_CUDA_TRY(cudaMemset(dout.gradWeightOut, 0xff, D * H * sizeof(float)));
    if (p.head == Head::Mlp) {
      CLIPO_CUDA_TRY(buf.alloc(&dout.gradWeightIn, H * H));
      CLIPO_CUDA_TRY(cudaMemset(dout.gradWeightIn, 0xff, H * H * sizeof(float)));
    }
  }
  char* ws = nullptr;
  Workspace tmp;
  CLIPO_CUDA_TRY(buf.alloc(&ws, layout(p, !in.pooled, in.tokenType, nullptr, &tmp)));
  CLIPO_CUDA_TRY(static_cast<cudaError_t>(contrastiveCudaDevice(p, din, dout, ws, nullptr)));
  CLIPO_CUDA_TRY(cudaDeviceSynchronize());

  CLIPO_CUDA_TRY(cudaMemcpy(out.perSample, dout.perSample, B * sizeof(float), cudaMemcpyDeviceToHost));
  CLIPO_CUDA_TRY(cudaMemcpy(out.embeddings, dout.embeddings, B * D * sizeof(float), cudaMemcpyDeviceToHost));
  CLIPO_CUDA_TRY(cudaMemcpy(out.positives, dout.positives, B * sizeof(int32_t), cudaMemcpyDeviceToHost));
  CLIPO_CUDA_TRY(cudaMemcpy(out.loss, dout.loss, sizeof(float), cudaMemcpyDeviceToHost));
  CLIPO_CUDA_TRY(cudaMemcpy(out.validAnchors, dout.validAnchors, sizeof(int32_t), cudaMemcpyDeviceToHost));
  if (p.computeGrad) {
    CLIPO_CUDA_TRY(cudaMemcpy(out.gradWeightOut, dout.gradWeightOut, D * H * sizeof(float), cudaMemcpyDeviceToHost));
    if (p.head == Head::Mlp)
      CLIPO_CUDA_TRY(cudaMemcpy(out.gradWeightIn, dout.gradWeightIn, H * H * sizeof(float), cudaMemcpyDeviceToHost));
  }
  return cudaSuccess;
}

// Deterministic pseudo-random fill for the benchmark (values in [-1, 1)), so no host buffers are needed.
__global__ void fillKernel(float* a, int64_t n, uint32_t seed, float scale) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n; k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    a[k] = scale * (static_cast<float>(positiveHash(seed, static_cast<uint32_t>(k))) * 4.656612873e-10f - 1.f);
}
__global__ void fillBf16Kernel(uint16_t* a, int64_t n, uint32_t seed) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n; k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    a[k] = static_cast<uint16_t>(__float_as_uint(static_cast<float>(positiveHash(seed, static_cast<uint32_t>(k))) * 4.656612873e-10f - 1.f) >> 16);
}

}  // namespace

const char* contrastiveCudaHost(const Params& p, const Inputs& in, const Outputs& out) {
  static thread_local std::string msg;
  const cudaError_t e = runHost(p, in, out);
  if (e == cudaSuccess) return "";
  msg = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  if (p.batch > kMaxBatchCuda) msg += " (batch above " + std::to_string(kMaxBatchCuda) + " is not supported by the CUDA kernel)";
  return msg.c_str();
}

const char* contrastiveCudaBenchmark(const Params& p, DType type, int repeats, double* ms, double* poolMs) {
  static thread_local std::string msg;
  auto run = [&]() -> cudaError_t {
    const size_t B = p.batch, H = p.hidden, D = p.out, L = p.length;
    DeviceBuffers buf;
    Inputs in;
    in.tokenType = type;
    if (type == DType::BF16) {
      uint16_t* t = nullptr;
      CLIPO_CUDA_TRY(buf.alloc(&t, B * L * H));
      fillBf16Kernel<<<4096, 256>>>(t, static_cast<int64_t>(B * L * H), 1u);
      in.tokens = t;
    } else {
      float* t = nullptr;
      CLIPO_CUDA_TRY(buf.alloc(&t, B * L * H));
      fillKernel<<<4096, 256>>>(t, static_cast<int64_t>(B * L * H), 1u, 1.f);
      in.tokens = t;
    }
    uint8_t* mask = nullptr;
    CLIPO_CUDA_TRY(buf.alloc(&mask, B * L));
    CLIPO_CUDA_TRY(cudaMemset(mask, 1, B * L));
    in.mask = mask;
    float* w = nullptr;
    CLIPO_CUDA_TRY(buf.alloc(&w, D * H));
    fillKernel<<<4096, 256>>>(w, static_cast<int64_t>(D * H), 2u, 1.f / sqrtf(static_cast<float>(H)));
    in.weightOut = w;
    if (p.head == Head::Mlp) {
      float* w1 = nullptr;
      CLIPO_CUDA_TRY(buf.alloc(&w1, H * H));
      fillKernel<<<4096, 256>>>(w1, static_cast<int64_t>(H * H), 3u, 1.f / sqrtf(static_cast<float>(H)));
      in.weightIn = w1;
    }
    std::vector<uint8_t> hc(B);
    std::vector<int32_t> hg(B);
    for (size_t i = 0; i < B; ++i) {
      hc[i] = static_cast<uint8_t>((positiveHash(9u, static_cast<uint32_t>(i)) >> 7) & 1u);
      hg[i] = static_cast<int32_t>(i / 16);  // groups of 16, as in the paper
    }
    CLIPO_CUDA_TRY(buf.upload(&in.correct, hc.data(), B));
    CLIPO_CUDA_TRY(buf.upload(&in.group, hg.data(), B));
    Outputs out;
    CLIPO_CUDA_TRY(buf.alloc(&out.perSample, B));
    CLIPO_CUDA_TRY(buf.alloc(&out.embeddings, B * D));
    CLIPO_CUDA_TRY(buf.alloc(&out.positives, B));
    CLIPO_CUDA_TRY(buf.alloc(&out.loss, 1));
    CLIPO_CUDA_TRY(buf.alloc(&out.validAnchors, 1));
    CLIPO_CUDA_TRY(buf.alloc(&out.gradWeightOut, D * H));
    if (p.head == Head::Mlp) CLIPO_CUDA_TRY(buf.alloc(&out.gradWeightIn, H * H));
    char* ws = nullptr;
    Workspace tmp;
    CLIPO_CUDA_TRY(buf.alloc(&ws, layout(p, true, type, nullptr, &tmp)));
    const PoolPlan pl = planPool(p, type);
    Workspace wl;
    layout(p, true, type, ws, &wl);
    // Back to back, as in a training step: `repeats` calls queued without waiting, an event between consecutive
    // calls, so each interval is one call's device time (waiting for each call would add the launch latency of
    // its first kernel to every sample). Two untimed calls first.
    std::vector<cudaEvent_t> ev(static_cast<size_t>(repeats) + 1);
    for (auto& x : ev) CLIPO_CUDA_TRY(cudaEventCreate(&x));
    auto timeBackToBack = [&](auto call, std::vector<float>& samples) -> cudaError_t {
      for (int w = 0; w < 2; ++w) CLIPO_CUDA_TRY(call());
      CLIPO_CUDA_TRY(cudaEventRecord(ev[0]));
      for (int r = 0; r < repeats; ++r) {
        CLIPO_CUDA_TRY(call());
        CLIPO_CUDA_TRY(cudaEventRecord(ev[static_cast<size_t>(r) + 1]));
      }
      CLIPO_CUDA_TRY(cudaEventSynchronize(ev[static_cast<size_t>(repeats)]));
      for (int r = 0; r < repeats; ++r) {
        float t = 0.f;
        CLIPO_CUDA_TRY(cudaEventElapsedTime(&t, ev[static_cast<size_t>(r)], ev[static_cast<size_t>(r) + 1]));
        samples.push_back(t);
      }
      return cudaSuccess;
    };
    std::vector<float> full, pool;
    cudaError_t te = timeBackToBack([&]() { return static_cast<cudaError_t>(contrastiveCudaDevice(p, in, out, ws, nullptr)); }, full);
    // the pooling pass alone (the part bounded by memory bandwidth)
    if (te == cudaSuccess)
      te = timeBackToBack([&]() {
        if (type == DType::BF16) launchPool(p, pl, static_cast<const uint16_t*>(in.tokens), in.mask, wl.partial, nullptr);
        else launchPool(p, pl, static_cast<const float*>(in.tokens), in.mask, wl.partial, nullptr);
        return cudaGetLastError();
      }, pool);
    for (auto& x : ev) cudaEventDestroy(x);
    CLIPO_CUDA_TRY(te);
    std::sort(full.begin(), full.end());
    std::sort(pool.begin(), pool.end());
    *ms = full[full.size() / 2];
    *poolMs = pool[pool.size() / 2];
    return cudaGetLastError();
  };
  const cudaError_t e = run();
  if (e == cudaSuccess) return "";
  msg = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  return msg.c_str();
}

}  // namespace clipo::contrastive
