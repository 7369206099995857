// CUDA twins of attention.h: causal grouped-query attention over the spans of packed [q | k | v] rows (forward and
// a deterministic flash backward), the paged KV cache write and split decoding over that cache. One template per
// kernel behind two storages: bf16 (uint16_t, formulas.h) and fp32 (float); arithmetic fp32 in both.
//
// Tiles (FMA, shared memory; 128 threads a block): a thread group of kLanes = 8 threads owns one row of a tile and
// the head dimensions d = lane + 8 j of it, so the running output of a row never leaves registers, and the [L x L]
// scores exist only one [16 x 32] tile at a time.
//   forward:      a block = (query tile of kRows = 16 rows, query head, span); key tiles of kCols = 32 keys up to the
//                 diagonal, online softmax per row: m' = max(m, max_j s_j), p_j = exp(s_j - m'),
//                 acc = acc e^(m - m') + sum_j p_j v_j, l = l e^(m - m') + sum_j p_j; o = acc / l, lse = m + log l.
//   backward dQ:  a block = (query tile, query head, span): D = rowsum(dO * o) of its rows (to the workspace), then
//                 over the key tiles up to the diagonal: P = exp(S - lse), dS = P (dO.V - D) / sqrt(d), dQ += dS K.
//   backward dKV: a block = (key tile of 16 keys, kv head, span), launched after the dQ kernel (it reads D): over
//                 the query heads of its group and the query tiles of 32 from the diagonal on: dV += P^T dO,
//                 dK += dS^T Q.
//   Each output element is written by exactly one thread after loops in a fixed order: no atomics, and the result
//   does not depend on timing (the same bits on every run).
//   decoding:     a block = (split of the context, kv head, sequence) serving the kv head's query heads together
//                 (each key/value row read once for the group): 128 positions at a time, one a thread for the scores
//                 (16-byte loads of the key row); the partial states (m, l, unnormalized acc) go to the workspace,
//                 and a second kernel combines them in split order. The split count fills the device twice over
//                 (cuda::smCount) with splits of at least 32 positions.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/attention.h"
#include "engine/cuda_util.cuh"
#include "engine/formulas.h"

namespace clipo::engine {

namespace {

using namespace cudatwin;

constexpr int kThreads = 128;
constexpr int kLanes = 8;                      // threads sharing one tile row
constexpr int kRows = kThreads / kLanes;       // 16 rows of a tile owned by the threads
constexpr int kCols = 32;                      // the other side of a score tile
constexpr int kColsPerLane = kCols / kLanes;   // 4
constexpr int kMaxHeadDim = 256;
constexpr int kDecodeChunk = kThreads;         // context positions scored at once in a decoding block
constexpr int kMinSplitLen = 32;               // shortest context split of decoding

__device__ __forceinline__ float ldf(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ldf(const uint16_t* p, int64_t i) { return bf16ToFloat(p[i]); }
__device__ __forceinline__ void stf(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void stf(uint16_t* p, int64_t i, float v) { p[i] = floatToBf16(v); }

// max / sum over the kLanes threads of one row (consecutive lanes of a warp)
__device__ __forceinline__ float laneMax(float v) {
  for (int o = kLanes / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float laneSum(float v) {
  for (int o = kLanes / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Rows [r0, r0 + rows) of the part of qkv (or of a [N x stride] matrix) that starts at column col, hd values a row,
// into a tile of `rows` rows of pitch ld (fp32); rows at or past `valid` are zeroed.
template <typename T>
__device__ __forceinline__ void loadTile(float* tile, int ld, const T* src, int64_t stride, int64_t rowBase,
                                         int64_t col, int r0, int rows, int valid, int hd) {
  for (int i = threadIdx.x; i < rows * hd; i += blockDim.x) {
    const int r = i / hd, d = i - r * hd;
    tile[r * ld + d] = r0 + r < valid ? ldf(src, (rowBase + r0 + r) * stride + col + d) : 0.f;
  }
}

// ---- forward ----
// smem: Q [kRows][hd+1], K [kCols][hd+1], V [kCols][hd], P [kRows][kCols]
template <typename T, int HDMAX>
__global__ void __launch_bounds__(kThreads) spansForwardKernel(AttnShape s, const int32_t* __restrict__ spanStart,
                                                               const int32_t* __restrict__ spanLen,
                                                               const T* __restrict__ qkv, T* __restrict__ o,
                                                               float* __restrict__ lse, float scale) {
  extern __shared__ float sh[];
  const int hd = static_cast<int>(s.headDim), ld1 = hd + 1;
  float* sQ = sh;
  float* sK = sQ + kRows * ld1;
  float* sV = sK + kCols * ld1;
  float* sP = sV + kCols * hd;
  const int span = blockIdx.z, h = blockIdx.y;
  const int len = spanLen[span], q0 = blockIdx.x * kRows;
  if (q0 >= len) return;  // uniform over the block
  const int64_t start = spanStart[span], R = s.rowStride, kvd = s.kvHeads * s.headDim;
  const int g = h / static_cast<int>(s.heads / s.kvHeads);
  const int tid = threadIdx.x, r = tid / kLanes, lane = tid % kLanes, qi = q0 + r;
  const int qEnd = len < q0 + kRows ? len : q0 + kRows;  // keys [0, qEnd) reach some row of the tile
  loadTile(sQ, ld1, qkv, R, start, static_cast<int64_t>(h) * hd, q0, kRows, len, hd);
  float acc[HDMAX / kLanes];
#pragma unroll
  for (int j = 0; j < HDMAX / kLanes; ++j) acc[j] = 0.f;
  float m = -INFINITY, l = 0.f;
  for (int k0 = 0; k0 < qEnd; k0 += kCols) {
    __syncthreads();  // the previous tile's readers are done
    loadTile(sK, ld1, qkv, R, start, s.qd + static_cast<int64_t>(g) * hd, k0, kCols, qEnd, hd);
    loadTile(sV, hd, qkv, R, start, s.qd + kvd + static_cast<int64_t>(g) * hd, k0, kCols, qEnd, hd);
    __syncthreads();
    float sc[kColsPerLane];
    float mx = -INFINITY;
#pragma unroll
    for (int c = 0; c < kColsPerLane; ++c) {
      const int col = lane + kLanes * c, key = k0 + col;
      float v = -INFINITY;
      if (key <= qi && qi < len) {
        float dot = 0.f;
        for (int d = 0; d < hd; ++d) dot += sQ[r * ld1 + d] * sK[col * ld1 + d];
        v = dot * scale;
      }
      sc[c] = v;
      mx = fmaxf(mx, v);
    }
    mx = laneMax(mx);
    const float mNew = fmaxf(m, mx);
    // a row without any key so far (only rows past the span's end) keeps m = -inf, l = 0
    const float corr = m == -INFINITY ? 0.f : expf(m - mNew);
    float psum = 0.f;
#pragma unroll
    for (int c = 0; c < kColsPerLane; ++c) {
      const float p = sc[c] == -INFINITY ? 0.f : expf(sc[c] - mNew);
      sP[r * kCols + lane + kLanes * c] = p;
      psum += p;
    }
    psum = laneSum(psum);
    l = l * corr + psum;
    m = mNew;
    __syncthreads();
#pragma unroll
    for (int j = 0; j < HDMAX / kLanes; ++j) {
      const int d = lane + kLanes * j;
      if (d < hd) {
        float a = acc[j] * corr;
        for (int col = 0; col < kCols; ++col) a += sP[r * kCols + col] * sV[col * hd + d];
        acc[j] = a;
      }
    }
  }
  if (qi < len) {
    const int64_t row = start + qi;
    const float inv = 1.f / l;
#pragma unroll
    for (int j = 0; j < HDMAX / kLanes; ++j) {
      const int d = lane + kLanes * j;
      if (d < hd) stf(o, row * s.qd + static_cast<int64_t>(h) * hd + d, acc[j] * inv);
    }
    if (lane == 0) lse[row * s.heads + h] = m + logf(l);
  }
}

// ---- backward ----
// dQ of a query tile, and D = rowsum(dO * o) of its rows (written to the workspace for the dK/dV kernel, which runs
// after it). smem: Q [kRows][hd+1], dO [kRows][hd+1], K [kCols][hd+1], V [kCols][hd+1], dS [kRows][kCols]
template <typename T, int HDMAX>
__global__ void __launch_bounds__(kThreads) backwardDqKernel(AttnShape s, const int32_t* __restrict__ spanStart,
                                                             const int32_t* __restrict__ spanLen,
                                                             const T* __restrict__ qkv, const T* __restrict__ o,
                                                             const float* __restrict__ lse, const T* __restrict__ dO,
                                                             float* __restrict__ D, T* __restrict__ dqkv, float scale) {
  extern __shared__ float sh[];
  const int hd = static_cast<int>(s.headDim), ld1 = hd + 1;
  float* sQ = sh;
  float* sO = sQ + kRows * ld1;
  float* sK = sO + kRows * ld1;
  float* sV = sK + kCols * ld1;
  float* sS = sV + kCols * ld1;
  const int span = blockIdx.z, h = blockIdx.y;
  const int len = spanLen[span], q0 = blockIdx.x * kRows;
  if (q0 >= len) return;
  const int64_t start = spanStart[span], R = s.rowStride, kvd = s.kvHeads * s.headDim;
  const int g = h / static_cast<int>(s.heads / s.kvHeads);
  const int tid = threadIdx.x, r = tid / kLanes, lane = tid % kLanes, qi = q0 + r;
  const int qEnd = len < q0 + kRows ? len : q0 + kRows;
  loadTile(sQ, ld1, qkv, R, start, static_cast<int64_t>(h) * hd, q0, kRows, len, hd);
  loadTile(sO, ld1, dO, s.qd, start, static_cast<int64_t>(h) * hd, q0, kRows, len, hd);
  loadTile(sK, ld1, o, s.qd, start, static_cast<int64_t>(h) * hd, q0, kRows, len, hd);  // o, for D only
  __syncthreads();
  float rowD = 0.f;
  for (int d = lane; d < hd; d += kLanes) rowD += sO[r * ld1 + d] * sK[r * ld1 + d];
  rowD = laneSum(rowD);
  if (qi < len && lane == 0) D[(start + qi) * s.heads + h] = rowD;
  const float rowLse = qi < len ? lse[(start + qi) * s.heads + h] : 0.f;
  float acc[HDMAX / kLanes];
#pragma unroll
  for (int j = 0; j < HDMAX / kLanes; ++j) acc[j] = 0.f;
  for (int k0 = 0; k0 < qEnd; k0 += kCols) {
    __syncthreads();
    loadTile(sK, ld1, qkv, R, start, s.qd + static_cast<int64_t>(g) * hd, k0, kCols, qEnd, hd);
    loadTile(sV, ld1, qkv, R, start, s.qd + kvd + static_cast<int64_t>(g) * hd, k0, kCols, qEnd, hd);
    __syncthreads();
#pragma unroll
    for (int c = 0; c < kColsPerLane; ++c) {
      const int col = lane + kLanes * c, key = k0 + col;
      float ds = 0.f;
      if (key <= qi && qi < len) {
        float dot = 0.f, dp = 0.f;
        for (int d = 0; d < hd; ++d) {
          dot += sQ[r * ld1 + d] * sK[col * ld1 + d];
          dp += sO[r * ld1 + d] * sV[col * ld1 + d];
        }
        const float p = expf(dot * scale - rowLse);
        ds = p * (dp - rowD) * scale;
      }
      sS[r * kCols + col] = ds;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < HDMAX / kLanes; ++j) {
      const int d = lane + kLanes * j;
      if (d < hd) {
        float a = acc[j];
        for (int col = 0; col < kCols; ++col) a += sS[r * kCols + col] * sK[col * ld1 + d];
        acc[j] = a;
      }
    }
  }
  if (qi < len) {
    const int64_t base = (start + qi) * R + static_cast<int64_t>(h) * hd;
#pragma unroll
    for (int j = 0; j < HDMAX / kLanes; ++j) {
      const int d = lane + kLanes * j;
      if (d < hd) stf(dqkv, base + d, acc[j]);
    }
  }
}

// dK, dV of a key tile (kRows keys) over the query heads of its kv head and the query tiles (kCols queries) from the
// diagonal on. smem: K [kRows][hd+1], V [kRows][hd+1], Q [kCols][hd+1], dO [kCols][hd+1], P and dS [kRows][kCols],
// lse and D [kCols]. Also zeroes the row's columns past q | k | v (written by kv head 0).
template <typename T, int HDMAX>
__global__ void __launch_bounds__(kThreads) backwardDkvKernel(AttnShape s, const int32_t* __restrict__ spanStart,
                                                              const int32_t* __restrict__ spanLen,
                                                              const T* __restrict__ qkv,
                                                              const float* __restrict__ lse,
                                                              const T* __restrict__ dO, const float* __restrict__ D,
                                                              T* __restrict__ dqkv, float scale) {
  extern __shared__ float sh[];
  const int hd = static_cast<int>(s.headDim), ld1 = hd + 1;
  float* sK = sh;
  float* sV = sK + kRows * ld1;
  float* sQ = sV + kRows * ld1;
  float* sO = sQ + kCols * ld1;
  float* sP = sO + kCols * ld1;
  float* sS = sP + kRows * kCols;
  float* sL = sS + kRows * kCols;
  float* sD = sL + kCols;
  const int span = blockIdx.z, g = blockIdx.y;
  const int len = spanLen[span], k0 = blockIdx.x * kRows;
  if (k0 >= len) return;
  const int64_t start = spanStart[span], R = s.rowStride, kvd = s.kvHeads * s.headDim;
  const int group = static_cast<int>(s.heads / s.kvHeads);
  const int tid = threadIdx.x, r = tid / kLanes, lane = tid % kLanes, ki = k0 + r;
  loadTile(sK, ld1, qkv, R, start, s.qd + static_cast<int64_t>(g) * hd, k0, kRows, len, hd);
  loadTile(sV, ld1, qkv, R, start, s.qd + kvd + static_cast<int64_t>(g) * hd, k0, kRows, len, hd);
  float dk[HDMAX / kLanes], dv[HDMAX / kLanes];
#pragma unroll
  for (int j = 0; j < HDMAX / kLanes; ++j) dk[j] = dv[j] = 0.f;
  for (int h = g * group; h < (g + 1) * group; ++h)
    for (int q0 = k0; q0 < len; q0 += kCols) {
      __syncthreads();
      loadTile(sQ, ld1, qkv, R, start, static_cast<int64_t>(h) * hd, q0, kCols, len, hd);
      loadTile(sO, ld1, dO, s.qd, start, static_cast<int64_t>(h) * hd, q0, kCols, len, hd);
      for (int i = tid; i < kCols; i += kThreads) {
        const bool in = q0 + i < len;
        sL[i] = in ? lse[(start + q0 + i) * s.heads + h] : 0.f;
        sD[i] = in ? D[(start + q0 + i) * s.heads + h] : 0.f;
      }
      __syncthreads();
#pragma unroll
      for (int c = 0; c < kColsPerLane; ++c) {
        const int col = lane + kLanes * c, qi = q0 + col;
        float p = 0.f, ds = 0.f;
        if (ki <= qi && qi < len) {
          float dot = 0.f, dp = 0.f;
          for (int d = 0; d < hd; ++d) {
            dot += sQ[col * ld1 + d] * sK[r * ld1 + d];
            dp += sO[col * ld1 + d] * sV[r * ld1 + d];
          }
          p = expf(dot * scale - sL[col]);
          ds = p * (dp - sD[col]) * scale;
        }
        sP[r * kCols + col] = p;
        sS[r * kCols + col] = ds;
      }
      __syncthreads();
#pragma unroll
      for (int j = 0; j < HDMAX / kLanes; ++j) {
        const int d = lane + kLanes * j;
        if (d < hd) {
          float a = dk[j], b = dv[j];
          for (int col = 0; col < kCols; ++col) {
            a += sS[r * kCols + col] * sQ[col * ld1 + d];
            b += sP[r * kCols + col] * sO[col * ld1 + d];
          }
          dk[j] = a;
          dv[j] = b;
        }
      }
    }
  if (ki < len) {
    const int64_t rowBase = (start + ki) * R;
    const int64_t kBase = rowBase + s.qd + static_cast<int64_t>(g) * hd, vBase = kBase + kvd;
#pragma unroll
    for (int j = 0; j < HDMAX / kLanes; ++j) {
      const int d = lane + kLanes * j;
      if (d < hd) {
        stf(dqkv, kBase + d, dk[j]);
        stf(dqkv, vBase + d, dv[j]);
      }
    }
    if (g == 0)
      for (int64_t c = s.qd + 2 * kvd + lane; c < R; c += kLanes) stf(dqkv, rowBase + c, 0.f);
  }
}

// ---- paged KV cache ----
template <typename T>
__global__ void __launch_bounds__(kThreads) kvCacheWriteKernel(KvCacheShape c, AttnShape s, const T* __restrict__ qkv,
                                                               const int32_t* __restrict__ slots, T* __restrict__ kCache,
                                                               T* __restrict__ vCache) {
  const int64_t n = blockIdx.x, slot = slots[n];
  if (slot < 0 || slot >= c.numBlocks * c.blockSize) return;  // skipped row (or a slot outside the cache)
  const int64_t kvd = s.kvHeads * s.headDim;
  const T* src = qkv + n * s.rowStride + s.qd;
  for (int64_t j = threadIdx.x; j < kvd; j += blockDim.x) {
    kCache[slot * kvd + j] = src[j];
    vCache[slot * kvd + j] = src[kvd + j];
  }
}

struct DecodePlan {
  int splits;
  int64_t splitLen;
};
// Enough (sequence, kv head, split) blocks to fill the device twice, splits of at least kMinSplitLen positions.
DecodePlan decodePlan(const AttnShape& s, int64_t nSeq, int64_t maxSeqLen) {
  const int64_t blocks = nSeq * s.kvHeads, target = 2LL * cuda::smCount();
  int64_t splits = blocks >= target ? 1 : (target + blocks - 1) / blocks;
  const int64_t most = (maxSeqLen + kMinSplitLen - 1) / kMinSplitLen;
  if (splits > most) splits = most;
  if (splits < 1) splits = 1;
  int64_t splitLen = (maxSeqLen + splits - 1) / splits;
  splitLen = (splitLen + kMinSplitLen - 1) / kMinSplitLen * kMinSplitLen;
  if (splitLen < kMinSplitLen) splitLen = kMinSplitLen;
  splits = (maxSeqLen + splitLen - 1) / splitLen;
  if (splits < 1) splits = 1;
  return DecodePlan{static_cast<int>(splits), splitLen};
}

// 8 consecutive values (16-byte aligned: headDim and the row offsets are multiples of 8) as fp32, in one or two
// vector loads.
__device__ __forceinline__ void load8(const uint16_t* p, float* out) {
  const uint4 v = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = bitsFloat(w[i] << 16);  // little-endian: the lower half is the first value
    out[2 * i + 1] = bitsFloat(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void load8(const float* p, float* out) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}

constexpr int kDecodeHeadsPass = 8;  // query heads whose scores one thread forms from one read of a key row

// One split of one (sequence, kv head), for all the query heads of the kv head at once (each key and value row is
// read once for the group): positions [split * splitLen, ...) of the sequence's context, kDecodeChunk at a time, one
// position a thread for the scores; the running (m, l) of each head in shared memory, its accumulator too (a thread
// owns fixed (head, dim) entries). Workspace: acc [nSeq][heads][splits][hd] (unnormalized, relative to m), then
// m, l [nSeq][heads][splits]. Positions whose block table entry is outside the cache are skipped.
// smem: row offsets [kDecodeChunk] (int64), q [G][hd], acc [G][hd], scores [G][kDecodeChunk], m, l, corr [G]
template <typename T>
__global__ void __launch_bounds__(kThreads) decodeSplitKernel(KvCacheShape c, AttnShape s, const T* __restrict__ qkv,
                                                              const int32_t* __restrict__ blockTables,
                                                              int64_t maxBlocksPerSeq,
                                                              const int32_t* __restrict__ seqLens,
                                                              int64_t maxSeqLen, int64_t splitLen,
                                                              const T* __restrict__ kCache,
                                                              const T* __restrict__ vCache, float* __restrict__ wsAcc,
                                                              float* __restrict__ wsM, float* __restrict__ wsL,
                                                              float scale) {
  extern __shared__ float sh[];
  const int split = blockIdx.x, g = blockIdx.y, seq = blockIdx.z, splits = gridDim.x;
  const int hd = static_cast<int>(s.headDim), G = static_cast<int>(s.heads / s.kvHeads);
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  int64_t* srow = reinterpret_cast<int64_t*>(sh);
  float* sq = sh + 2 * kDecodeChunk;
  float* sAcc = sq + G * hd;
  float* se = sAcc + G * hd;
  float* sM = se + G * kDecodeChunk;
  float* sL = sM + G;
  float* sCorr = sL + G;
  const int64_t kvd = s.kvHeads * s.headDim;
  int64_t count = seqLens[seq];
  if (count > maxSeqLen) count = maxSeqLen;
  if (count > maxBlocksPerSeq * c.blockSize) count = maxBlocksPerSeq * c.blockSize;
  const int64_t begin = static_cast<int64_t>(split) * splitLen;
  const int64_t end = begin + splitLen < count ? begin + splitLen : count;
  for (int i = tid; i < G * hd; i += kThreads) {
    sq[i] = ldf(qkv, seq * s.rowStride + static_cast<int64_t>(g) * G * hd + i);  // heads g*G .. g*G+G-1, contiguous
    sAcc[i] = 0.f;
  }
  for (int h = tid; h < G; h += kThreads) {
    sM[h] = -INFINITY;
    sL[h] = 0.f;
  }
  const int32_t* table = blockTables + seq * maxBlocksPerSeq;
  for (int64_t p0 = begin; p0 < end; p0 += kDecodeChunk) {
    __syncthreads();  // q loaded / the previous chunk's readers done
    const int64_t p = p0 + tid;
    int64_t rowOff = -1;
    if (p < end) {
      const int64_t blk = table[p / c.blockSize];
      if (blk >= 0 && blk < c.numBlocks) rowOff = (blk * c.blockSize + p % c.blockSize) * kvd + static_cast<int64_t>(g) * hd;
    }
    srow[tid] = rowOff;
    for (int h0 = 0; h0 < G; h0 += kDecodeHeadsPass) {
      float dot[kDecodeHeadsPass];
#pragma unroll
      for (int k = 0; k < kDecodeHeadsPass; ++k) dot[k] = 0.f;
      if (rowOff >= 0)
        for (int d0 = 0; d0 < hd; d0 += 8) {
          float kv[8];
          load8(kCache + rowOff + d0, kv);
#pragma unroll
          for (int k = 0; k < kDecodeHeadsPass; ++k)
            if (h0 + k < G) {
              const float* q = sq + (h0 + k) * hd + d0;
#pragma unroll
              for (int t = 0; t < 8; ++t) dot[k] += q[t] * kv[t];
            }
        }
#pragma unroll
      for (int k = 0; k < kDecodeHeadsPass; ++k)
        if (h0 + k < G) se[(h0 + k) * kDecodeChunk + tid] = rowOff >= 0 ? dot[k] * scale : -INFINITY;
    }
    __syncthreads();
    // online softmax of each head over the chunk: one warp a head
    for (int h = warp; h < G; h += kThreads / 32) {
      float* e = se + h * kDecodeChunk;
      const float mOld = sM[h];
      float mx = -INFINITY;
      for (int t = lane; t < kDecodeChunk; t += 32) mx = fmaxf(mx, e[t]);
      const float mNew = fmaxf(mOld, cuda::warpMax(mx));
      float sum = 0.f;
      for (int t = lane; t < kDecodeChunk; t += 32) {
        const float v = e[t] == -INFINITY ? 0.f : expf(e[t] - mNew);
        e[t] = v;
        sum += v;
      }
      sum = cuda::warpSum(sum);  // every lane has read sM[h] before lane 0 writes it (the shuffles order them)
      if (lane == 0) {
        const float corr = mOld == -INFINITY ? 0.f : expf(mOld - mNew);
        sCorr[h] = corr;
        sL[h] = sL[h] * corr + sum;
        sM[h] = mNew;
      }
    }
    __syncthreads();
    const int n = static_cast<int>(end - p0 < kDecodeChunk ? end - p0 : kDecodeChunk);
    for (int i = tid; i < G * hd; i += kThreads) {
      const int h = i / hd, d = i - h * hd;
      const float* e = se + h * kDecodeChunk;
      float a = sAcc[i] * sCorr[h];
      for (int t = 0; t < n; ++t)
        if (srow[t] >= 0) a += e[t] * ldf(vCache, srow[t] + d);
      sAcc[i] = a;
    }
  }
  __syncthreads();
  const int64_t w0 = (seq * s.heads + static_cast<int64_t>(g) * G) * splits + split;  // head g*G's state
  for (int i = tid; i < G * hd; i += kThreads) {
    const int h = i / hd, d = i - h * hd;
    wsAcc[(w0 + static_cast<int64_t>(h) * splits) * hd + d] = sAcc[i];
  }
  for (int h = tid; h < G; h += kThreads) {
    wsM[w0 + static_cast<int64_t>(h) * splits] = sM[h];
    wsL[w0 + static_cast<int64_t>(h) * splits] = sL[h];
  }
}

// o = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M), M = max m_s, in split order. A sequence with no valid position
// gets zeros.
template <typename T>
__global__ void __launch_bounds__(kThreads) decodeCombineKernel(AttnShape s, int splits, const float* __restrict__ wsAcc,
                                                                const float* __restrict__ wsM,
                                                                const float* __restrict__ wsL, T* __restrict__ o) {
  const int h = blockIdx.x, seq = blockIdx.y, hd = static_cast<int>(s.headDim);
  const int64_t w0 = (seq * s.heads + h) * static_cast<int64_t>(splits);
  float M = -INFINITY;
  for (int k = 0; k < splits; ++k)
    if (wsL[w0 + k] > 0.f) M = fmaxf(M, wsM[w0 + k]);
  float L = 0.f;
  for (int k = 0; k < splits; ++k)
    if (wsL[w0 + k] > 0.f) L += wsL[w0 + k] * expf(wsM[w0 + k] - M);
  const float inv = L > 0.f ? 1.f / L : 0.f;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0.f;
    for (int k = 0; k < splits; ++k)
      if (wsL[w0 + k] > 0.f) a += wsAcc[(w0 + k) * hd + d] * expf(wsM[w0 + k] - M);
    stf(o, seq * s.qd + static_cast<int64_t>(h) * hd + d, a * inv);
  }
}

// ---- host side ----
const char* checkShape(const AttnShape& s, const char* what) {
  if (s.heads <= 0 || s.kvHeads <= 0 || s.heads % s.kvHeads)
    return failMsg(std::string(what) + ": heads must be a positive multiple of kvHeads");
  if (s.heads > 65535) return failMsg(std::string(what) + ": more than 65535 heads");
  if (s.headDim <= 0 || s.headDim > kMaxHeadDim || s.headDim % 8)
    return failMsg(std::string(what) + ": headDim " + std::to_string(s.headDim) +
                   " is not supported (a multiple of 8 up to 256)");
  if (s.qd != s.heads * s.headDim) return failMsg(std::string(what) + ": qd must be heads * headDim");
  if (s.rowStride < s.qd + 2 * s.kvHeads * s.headDim)
    return failMsg(std::string(what) + ": rowStride is shorter than q | k | v");
  return "";
}
const char* checkSpans(int64_t nSpans, int64_t maxLen, const char* what) {
  if (nSpans > 65535) return failMsg(std::string(what) + ": more than 65535 spans");
  if (maxLen < 0 || maxLen > (1LL << 30)) return failMsg(std::string(what) + ": maxLen out of range");
  return "";
}

int hdMaxOf(int64_t hd) { return hd <= 64 ? 64 : hd <= 128 ? 128 : 256; }

template <typename K>
const char* allowSmem(K kernel, size_t bytes, const char* what) {
  if (bytes <= 48 * 1024) return "";
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  return e == cudaSuccess ? "" : fail(what, e);
}

template <typename T, int HDMAX>
const char* launchForward(const AttnShape& s, const int32_t* spanStart, const int32_t* spanLen, int64_t nSpans,
                          int64_t maxLen, const T* qkv, T* o, float* lse, cudaStream_t st, float scale) {
  const int64_t hd = s.headDim;
  const size_t smem = sizeof(float) * static_cast<size_t>(kRows * (hd + 1) + kCols * (hd + 1) + kCols * hd + kRows * kCols);
  const char* err = allowSmem(spansForwardKernel<T, HDMAX>, smem, "attentionSpansCuda");
  if (*err) return err;
  const dim3 grid(static_cast<unsigned>((maxLen + kRows - 1) / kRows), static_cast<unsigned>(s.heads),
                  static_cast<unsigned>(nSpans));
  spansForwardKernel<T, HDMAX><<<grid, kThreads, smem, st>>>(s, spanStart, spanLen, qkv, o, lse, scale);
  return launched("attentionSpansCuda");
}

template <typename T>
const char* spansForward(const AttnShape& s, const int32_t* spanStart, const int32_t* spanLen, int64_t nSpans,
                         int64_t maxLen, const T* qkv, T* o, float* lse, void* stream) {
  const char* err = checkShape(s, "attentionSpansCuda");
  if (*err || *(err = checkSpans(nSpans, maxLen, "attentionSpansCuda"))) return err;
  if (nSpans <= 0 || maxLen <= 0) return "";
  const float scale = 1.f / sqrtf(static_cast<float>(s.headDim));
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  switch (hdMaxOf(s.headDim)) {
    case 64: return launchForward<T, 64>(s, spanStart, spanLen, nSpans, maxLen, qkv, o, lse, st, scale);
    case 128: return launchForward<T, 128>(s, spanStart, spanLen, nSpans, maxLen, qkv, o, lse, st, scale);
    default: return launchForward<T, 256>(s, spanStart, spanLen, nSpans, maxLen, qkv, o, lse, st, scale);
  }
}

template <typename T, int HDMAX>
const char* launchBackward(const AttnShape& s, const int32_t* spanStart, const int32_t* spanLen, int64_t nSpans,
                           int64_t maxLen, const T* qkv, const T* o, const float* lse, const T* dO, float* D, T* dqkv,
                           cudaStream_t st, float scale) {
  const int64_t hd = s.headDim;
  const size_t smemQ = sizeof(float) * static_cast<size_t>(2 * kRows * (hd + 1) + 2 * kCols * (hd + 1) + kRows * kCols);
  const size_t smemKV =
      sizeof(float) * static_cast<size_t>(2 * kRows * (hd + 1) + 2 * kCols * (hd + 1) + 2 * kRows * kCols + 2 * kCols);
  const char* err = allowSmem(backwardDqKernel<T, HDMAX>, smemQ, "attentionSpansBackwardCuda");
  if (*err || *(err = allowSmem(backwardDkvKernel<T, HDMAX>, smemKV, "attentionSpansBackwardCuda"))) return err;
  const unsigned tiles = static_cast<unsigned>((maxLen + kRows - 1) / kRows);
  backwardDqKernel<T, HDMAX><<<dim3(tiles, static_cast<unsigned>(s.heads), static_cast<unsigned>(nSpans)), kThreads,
                               smemQ, st>>>(s, spanStart, spanLen, qkv, o, lse, dO, D, dqkv, scale);
  if (*(err = launched("attentionSpansBackwardCuda (dQ)"))) return err;
  backwardDkvKernel<T, HDMAX><<<dim3(tiles, static_cast<unsigned>(s.kvHeads), static_cast<unsigned>(nSpans)),
                                kThreads, smemKV, st>>>(s, spanStart, spanLen, qkv, lse, dO, D, dqkv, scale);
  return launched("attentionSpansBackwardCuda (dK, dV)");
}

template <typename T>
const char* spansBackward(const AttnShape& s, const int32_t* spanStart, const int32_t* spanLen, int64_t nSpans,
                          int64_t maxLen, const T* qkv, const T* o, const float* lse, const T* dO, T* dqkv,
                          void* workspace, void* stream) {
  const char* err = checkShape(s, "attentionSpansBackwardCuda");
  if (*err || *(err = checkSpans(nSpans, maxLen, "attentionSpansBackwardCuda"))) return err;
  if (nSpans <= 0 || maxLen <= 0) return "";
  if (!workspace) return failMsg("attentionSpansBackwardCuda: no workspace");
  const float scale = 1.f / sqrtf(static_cast<float>(s.headDim));
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  float* D = static_cast<float*>(workspace);
  switch (hdMaxOf(s.headDim)) {
    case 64: return launchBackward<T, 64>(s, spanStart, spanLen, nSpans, maxLen, qkv, o, lse, dO, D, dqkv, st, scale);
    case 128: return launchBackward<T, 128>(s, spanStart, spanLen, nSpans, maxLen, qkv, o, lse, dO, D, dqkv, st, scale);
    default: return launchBackward<T, 256>(s, spanStart, spanLen, nSpans, maxLen, qkv, o, lse, dO, D, dqkv, st, scale);
  }
}

template <typename T>
const char* cacheWrite(const KvCacheShape& c, const AttnShape& s, const T* qkv, const int32_t* slots, int64_t N,
                       T* kCache, T* vCache, void* stream) {
  const char* err = checkShape(s, "kvCacheWriteCuda");
  if (*err) return err;
  if (c.kvHeads != s.kvHeads || c.headDim != s.headDim)
    return failMsg("kvCacheWriteCuda: the cache's kvHeads/headDim differ from the attention shape's");
  if (c.numBlocks <= 0 || c.blockSize <= 0) return failMsg("kvCacheWriteCuda: empty cache");
  if (N <= 0) return "";
  if (N > 0x7fffffffLL) return failMsg("kvCacheWriteCuda: too many rows");
  kvCacheWriteKernel<T><<<static_cast<unsigned>(N), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(c, s, qkv, slots,
                                                                                                     kCache, vCache);
  return launched("kvCacheWriteCuda");
}

template <typename T>
const char* decode(const KvCacheShape& c, const AttnShape& s, const T* qkv, int64_t nSeq, const int32_t* blockTables,
                   int64_t maxBlocksPerSeq, const int32_t* seqLens, int64_t maxSeqLen, const T* kCache,
                   const T* vCache, T* o, void* workspace, void* stream) {
  const char* err = checkShape(s, "attentionDecodeCuda");
  if (*err) return err;
  if (c.kvHeads != s.kvHeads || c.headDim != s.headDim)
    return failMsg("attentionDecodeCuda: the cache's kvHeads/headDim differ from the attention shape's");
  if (c.numBlocks <= 0 || c.blockSize <= 0) return failMsg("attentionDecodeCuda: empty cache");
  if (nSeq <= 0) return "";
  if (nSeq > 65535) return failMsg("attentionDecodeCuda: more than 65535 sequences");
  if (maxSeqLen <= 0) return failMsg("attentionDecodeCuda: maxSeqLen must be positive");
  if (!workspace) return failMsg("attentionDecodeCuda: no workspace");
  const DecodePlan plan = decodePlan(s, nSeq, maxSeqLen);
  float* wsAcc = static_cast<float*>(workspace);
  const int64_t states = nSeq * s.heads * plan.splits;
  float* wsM = wsAcc + states * s.headDim;
  float* wsL = wsM + states;
  const float scale = 1.f / sqrtf(static_cast<float>(s.headDim));
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  const int G = static_cast<int>(s.heads / s.kvHeads);
  const size_t smem = sizeof(float) * static_cast<size_t>(2 * kDecodeChunk + 2 * G * s.headDim + G * kDecodeChunk + 3 * G);
  if (*(err = allowSmem(decodeSplitKernel<T>, smem, "attentionDecodeCuda"))) return err;
  decodeSplitKernel<T><<<dim3(static_cast<unsigned>(plan.splits), static_cast<unsigned>(s.kvHeads),
                              static_cast<unsigned>(nSeq)),
                         kThreads, smem, st>>>(c, s, qkv, blockTables, maxBlocksPerSeq, seqLens, maxSeqLen,
                                               plan.splitLen, kCache, vCache, wsAcc, wsM, wsL, scale);
  if (*(err = launched("attentionDecodeCuda (splits)"))) return err;
  decodeCombineKernel<T><<<dim3(static_cast<unsigned>(s.heads), static_cast<unsigned>(nSeq)), kThreads, 0, st>>>(
      s, plan.splits, wsAcc, wsM, wsL, o);
  return launched("attentionDecodeCuda (combine)");
}

// ---- host wrappers ----
const char* checkHostSpans(const std::vector<Span>& spans, int64_t N, std::vector<int32_t>* start,
                           std::vector<int32_t>* len, int64_t* maxLen, const char* what) {
  *maxLen = 0;
  for (const Span& sp : spans) {
    if (sp.start < 0 || sp.length < 0 || sp.start + sp.length > N || N > 0x7fffffffLL)
      return failMsg(std::string(what) + ": a span lies outside the rows");
    start->push_back(static_cast<int32_t>(sp.start));
    len->push_back(static_cast<int32_t>(sp.length));
    if (sp.length > *maxLen) *maxLen = sp.length;
  }
  return "";
}

template <typename T>
const char* spansForwardHost(const AttnShape& s, const std::vector<Span>& spans, int64_t N, const T* qkv, T* o,
                             float* lse) {
  std::vector<int32_t> st, ln;
  int64_t maxLen;
  const char* err = checkHostSpans(spans, N, &st, &ln, &maxLen, "attentionSpansCudaHost");
  if (*err || *(err = checkShape(s, "attentionSpansCudaHost"))) return err;
  if (N <= 0) return "";
  cuda::DeviceBuffers b;
  const int32_t *dSt, *dLn;
  const T* dQkv;
  T* dO;
  float* dLse;
  cudaError_t e;
  if ((e = b.upload(&dSt, st.data(), st.size())) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dLn, ln.data(), ln.size())) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dQkv, qkv, static_cast<size_t>(N * s.rowStride))) != cudaSuccess) return fail("upload", e);
  if ((e = b.alloc(&dO, static_cast<size_t>(N * s.qd))) != cudaSuccess) return fail("cudaMalloc", e);
  if ((e = b.alloc(&dLse, static_cast<size_t>(N * s.heads))) != cudaSuccess) return fail("cudaMalloc", e);
  if ((e = cudaMemcpy(dO, o, static_cast<size_t>(N * s.qd) * sizeof(T), cudaMemcpyHostToDevice)) != cudaSuccess)
    return fail("upload", e);
  if ((e = cudaMemcpy(dLse, lse, static_cast<size_t>(N * s.heads) * sizeof(float), cudaMemcpyHostToDevice)) !=
      cudaSuccess)
    return fail("upload", e);
  err = spansForward(s, dSt, dLn, static_cast<int64_t>(st.size()), maxLen, dQkv, dO, dLse, nullptr);
  if (*err || *(err = synced("attentionSpansCuda"))) return err;
  if (*(err = download(o, static_cast<const T*>(dO), static_cast<size_t>(N * s.qd), "download"))) return err;
  return download(lse, static_cast<const float*>(dLse), static_cast<size_t>(N * s.heads), "download");
}

template <typename T>
const char* spansBackwardHost(const AttnShape& s, const std::vector<Span>& spans, int64_t N, const T* qkv, const T* o,
                              const float* lse, const T* dO, T* dqkv) {
  std::vector<int32_t> st, ln;
  int64_t maxLen;
  const char* err = checkHostSpans(spans, N, &st, &ln, &maxLen, "attentionSpansBackwardCudaHost");
  if (*err || *(err = checkShape(s, "attentionSpansBackwardCudaHost"))) return err;
  if (N <= 0) return "";
  cuda::DeviceBuffers b;
  const int32_t *dSt, *dLn;
  const T *dQkv, *dOut, *dDo;
  const float* dLse;
  T* dDqkv;
  char* ws;
  cudaError_t e;
  const size_t n = static_cast<size_t>(N * s.rowStride);
  if ((e = b.upload(&dSt, st.data(), st.size())) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dLn, ln.data(), ln.size())) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dQkv, qkv, n)) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dOut, o, static_cast<size_t>(N * s.qd))) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dDo, dO, static_cast<size_t>(N * s.qd))) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dLse, lse, static_cast<size_t>(N * s.heads))) != cudaSuccess) return fail("upload", e);
  if ((e = b.alloc(&dDqkv, n)) != cudaSuccess) return fail("cudaMalloc", e);
  if ((e = cudaMemcpy(dDqkv, dqkv, n * sizeof(T), cudaMemcpyHostToDevice)) != cudaSuccess) return fail("upload", e);
  if ((e = b.alloc(&ws, attentionBackwardCudaWorkspace(s, N))) != cudaSuccess) return fail("cudaMalloc", e);
  err = spansBackward(s, dSt, dLn, static_cast<int64_t>(st.size()), maxLen, dQkv, dOut, dLse, dDo, dDqkv, ws, nullptr);
  if (*err || *(err = synced("attentionSpansBackwardCuda"))) return err;
  return download(dqkv, static_cast<const T*>(dDqkv), n, "download");
}

template <typename T>
const char* cacheWriteHost(const KvCacheShape& c, const AttnShape& s, const T* qkv, const int32_t* slots, int64_t N,
                           T* kCache, T* vCache) {
  const char* err = checkShape(s, "kvCacheWriteCudaHost");
  if (*err) return err;
  if (c.numBlocks <= 0 || c.blockSize <= 0 || c.kvHeads != s.kvHeads || c.headDim != s.headDim)
    return failMsg("kvCacheWriteCudaHost: the cache shape does not fit the attention shape");
  for (int64_t n = 0; n < N; ++n)
    if (slots[n] >= c.numBlocks * c.blockSize) return failMsg("kvCacheWriteCudaHost: a slot lies outside the cache");
  const size_t cn = static_cast<size_t>(c.numBlocks * c.blockSize * c.kvHeads * c.headDim);
  cuda::DeviceBuffers b;
  const T* dQkv;
  const int32_t* dSlots;
  T *dK, *dV;
  cudaError_t e;
  if ((e = b.upload(&dQkv, qkv, static_cast<size_t>(N * s.rowStride))) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dSlots, slots, static_cast<size_t>(N))) != cudaSuccess) return fail("upload", e);
  if ((e = b.alloc(&dK, cn)) != cudaSuccess || (e = b.alloc(&dV, cn)) != cudaSuccess) return fail("cudaMalloc", e);
  if ((e = cudaMemcpy(dK, kCache, cn * sizeof(T), cudaMemcpyHostToDevice)) != cudaSuccess) return fail("upload", e);
  if ((e = cudaMemcpy(dV, vCache, cn * sizeof(T), cudaMemcpyHostToDevice)) != cudaSuccess) return fail("upload", e);
  err = cacheWrite(c, s, dQkv, dSlots, N, dK, dV, nullptr);
  if (*err || *(err = synced("kvCacheWriteCuda"))) return err;
  if (*(err = download(kCache, static_cast<const T*>(dK), cn, "download"))) return err;
  return download(vCache, static_cast<const T*>(dV), cn, "download");
}

template <typename T>
const char* decodeHost(const KvCacheShape& c, const AttnShape& s, const T* qkv, int64_t nSeq, const int32_t* blockTables,
                       int64_t maxBlocksPerSeq, const int32_t* seqLens, const T* kCache, const T* vCache, T* o) {
  const char* err = checkShape(s, "attentionDecodeCudaHost");
  if (*err) return err;
  if (c.numBlocks <= 0 || c.blockSize <= 0 || c.kvHeads != s.kvHeads || c.headDim != s.headDim)
    return failMsg("attentionDecodeCudaHost: the cache shape does not fit the attention shape");
  if (nSeq <= 0) return "";
  int64_t maxSeqLen = 0;
  for (int64_t i = 0; i < nSeq; ++i) {
    if (seqLens[i] <= 0 || seqLens[i] > maxBlocksPerSeq * c.blockSize)
      return failMsg("attentionDecodeCudaHost: a sequence length is outside [1, maxBlocksPerSeq * blockSize]");
    for (int64_t k = 0; k < (seqLens[i] + c.blockSize - 1) / c.blockSize; ++k) {
      const int32_t blk = blockTables[i * maxBlocksPerSeq + k];
      if (blk < 0 || blk >= c.numBlocks) return failMsg("attentionDecodeCudaHost: a block table entry lies outside the cache");
    }
    if (seqLens[i] > maxSeqLen) maxSeqLen = seqLens[i];
  }
  const size_t cn = static_cast<size_t>(c.numBlocks * c.blockSize * c.kvHeads * c.headDim);
  cuda::DeviceBuffers b;
  const T *dQkv, *dK, *dV;
  const int32_t *dTables, *dLens;
  T* dO;
  char* ws;
  cudaError_t e;
  if ((e = b.upload(&dQkv, qkv, static_cast<size_t>(nSeq * s.rowStride))) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dTables, blockTables, static_cast<size_t>(nSeq * maxBlocksPerSeq))) != cudaSuccess)
    return fail("upload", e);
  if ((e = b.upload(&dLens, seqLens, static_cast<size_t>(nSeq))) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dK, kCache, cn)) != cudaSuccess || (e = b.upload(&dV, vCache, cn)) != cudaSuccess)
    return fail("upload", e);
  if ((e = b.alloc(&dO, static_cast<size_t>(nSeq * s.qd))) != cudaSuccess) return fail("cudaMalloc", e);
  if ((e = b.alloc(&ws, attentionDecodeCudaWorkspace(s, nSeq, maxSeqLen))) != cudaSuccess) return fail("cudaMalloc", e);
  err = decode(c, s, dQkv, nSeq, dTables, maxBlocksPerSeq, dLens, maxSeqLen, dK, dV, dO, ws, nullptr);
  if (*err || *(err = synced("attentionDecodeCuda"))) return err;
  return download(o, static_cast<const T*>(dO), static_cast<size_t>(nSeq * s.qd), "download");
}

}  // namespace

// ---- entries ----
const char* attentionSpansCuda(const AttnShape& s, const int32_t* spanStart, const int32_t* spanLen, int64_t nSpans,
                               int64_t maxLen, const uint16_t* qkv, uint16_t* o, float* lse, void* stream) {
  return spansForward(s, spanStart, spanLen, nSpans, maxLen, qkv, o, lse, stream);
}
const char* attentionSpansCuda(const AttnShape& s, const int32_t* spanStart, const int32_t* spanLen, int64_t nSpans,
                               int64_t maxLen, const float* qkv, float* o, float* lse, void* stream) {
  return spansForward(s, spanStart, spanLen, nSpans, maxLen, qkv, o, lse, stream);
}

size_t attentionBackwardCudaWorkspace(const AttnShape& s, int64_t N) {
  return sizeof(float) * static_cast<size_t>((N > 0 ? N : 1) * (s.heads > 0 ? s.heads : 1));
}
const char* attentionSpansBackwardCuda(const AttnShape& s, const int32_t* spanStart, const int32_t* spanLen,
                                       int64_t nSpans, int64_t maxLen, const uint16_t* qkv, const uint16_t* o,
                                       const float* lse, const uint16_t* dO, uint16_t* dqkv, void* workspace,
                                       void* stream) {
  return spansBackward(s, spanStart, spanLen, nSpans, maxLen, qkv, o, lse, dO, dqkv, workspace, stream);
}
const char* attentionSpansBackwardCuda(const AttnShape& s, const int32_t* spanStart, const int32_t* spanLen,
                                       int64_t nSpans, int64_t maxLen, const float* qkv, const float* o,
                                       const float* lse, const float* dO, float* dqkv, void* workspace, void* stream) {
  return spansBackward(s, spanStart, spanLen, nSpans, maxLen, qkv, o, lse, dO, dqkv, workspace, stream);
}

const char* kvCacheWriteCuda(const KvCacheShape& c, const AttnShape& s, const uint16_t* qkv, const int32_t* slots,
                             int64_t N, uint16_t* kCache, uint16_t* vCache, void* stream) {
  return cacheWrite(c, s, qkv, slots, N, kCache, vCache, stream);
}
const char* kvCacheWriteCuda(const KvCacheShape& c, const AttnShape& s, const float* qkv, const int32_t* slots,
                             int64_t N, float* kCache, float* vCache, void* stream) {
  return cacheWrite(c, s, qkv, slots, N, kCache, vCache, stream);
}

size_t attentionDecodeCudaWorkspace(const AttnShape& s, int64_t nSeq, int64_t maxSeqLen) {
  if (nSeq <= 0 || maxSeqLen <= 0 || s.heads <= 0 || s.headDim <= 0) return sizeof(float);
  const DecodePlan plan = decodePlan(s, nSeq, maxSeqLen);
  return sizeof(float) * static_cast<size_t>(nSeq * s.heads * plan.splits * (s.headDim + 2));
}
const char* attentionDecodeCuda(const KvCacheShape& c, const AttnShape& s, const uint16_t* qkv, int64_t nSeq,
                                const int32_t* blockTables, int64_t maxBlocksPerSeq, const int32_t* seqLens,
                                int64_t maxSeqLen, const uint16_t* kCache, const uint16_t* vCache, uint16_t* o,
                                void* workspace, void* stream) {
  return decode(c, s, qkv, nSeq, blockTables, maxBlocksPerSeq, seqLens, maxSeqLen, kCache, vCache, o, workspace, stream);
}
const char* attentionDecodeCuda(const KvCacheShape& c, const AttnShape& s, const float* qkv, int64_t nSeq,
                                const int32_t* blockTables, int64_t maxBlocksPerSeq, const int32_t* seqLens,
                                int64_t maxSeqLen, const float* kCache, const float* vCache, float* o, void* workspace,
                                void* stream) {
  return decode(c, s, qkv, nSeq, blockTables, maxBlocksPerSeq, seqLens, maxSeqLen, kCache, vCache, o, workspace, stream);
}

// ---- host wrappers (tests) ----
const char* attentionSpansCudaHost(const AttnShape& s, const std::vector<Span>& spans, int64_t N, const uint16_t* qkv,
                                   uint16_t* o, float* lse) {
  return spansForwardHost(s, spans, N, qkv, o, lse);
}
const char* attentionSpansCudaHost(const AttnShape& s, const std::vector<Span>& spans, int64_t N, const float* qkv,
                                   float* o, float* lse) {
  return spansForwardHost(s, spans, N, qkv, o, lse);
}
const char* attentionSpansBackwardCudaHost(const AttnShape& s, const std::vector<Span>& spans, int64_t N,
                                           const uint16_t* qkv, const uint16_t* o, const float* lse,
                                           const uint16_t* dO, uint16_t* dqkv) {
  return spansBackwardHost(s, spans, N, qkv, o, lse, dO, dqkv);
}
const char* attentionSpansBackwardCudaHost(const AttnShape& s, const std::vector<Span>& spans, int64_t N,
                                           const float* qkv, const float* o, const float* lse, const float* dO,
                                           float* dqkv) {
  return spansBackwardHost(s, spans, N, qkv, o, lse, dO, dqkv);
}
const char* kvCacheWriteCudaHost(const KvCacheShape& c, const AttnShape& s, const uint16_t* qkv, const int32_t* slots,
                                 int64_t N, uint16_t* kCache, uint16_t* vCache) {
  return cacheWriteHost(c, s, qkv, slots, N, kCache, vCache);
}
const char* kvCacheWriteCudaHost(const KvCacheShape& c, const AttnShape& s, const float* qkv, const int32_t* slots,
                                 int64_t N, float* kCache, float* vCache) {
  return cacheWriteHost(c, s, qkv, slots, N, kCache, vCache);
}
const char* attentionDecodeCudaHost(const KvCacheShape& c, const AttnShape& s, const uint16_t* qkv, int64_t nSeq,
                                    const int32_t* blockTables, int64_t maxBlocksPerSeq, const int32_t* seqLens,
                                    const uint16_t* kCache, const uint16_t* vCache, uint16_t* o) {
  return decodeHost(c, s, qkv, nSeq, blockTables, maxBlocksPerSeq, seqLens, kCache, vCache, o);
}
const char* attentionDecodeCudaHost(const KvCacheShape& c, const AttnShape& s, const float* qkv, int64_t nSeq,
                                    const int32_t* blockTables, int64_t maxBlocksPerSeq, const int32_t* seqLens,
                                    const float* kCache, const float* vCache, float* o) {
  return decodeHost(c, s, qkv, nSeq, blockTables, maxBlocksPerSeq, seqLens, kCache, vCache, o);
}

}  // namespace clipo::engine
