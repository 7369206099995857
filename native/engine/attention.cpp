// CPU attention kernels of attention.h.
#include "engine/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/gemm.h"
#include "engine/head.h"

namespace clipo::engine {

static inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

static inline void axpy(float a, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void attendRow(const float* q, const float* K, const float* V, int64_t kvStride, int64_t count, int64_t hd, float scale,
               float* out, float* lse) {
  static thread_local std::vector<float> s;
  if (static_cast<int64_t>(s.size()) < count) s.resize(count);
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < count; ++j) {
    s[j] = dot(q, K + j * kvStride, hd) * scale;
    mx = std::max(mx, s[j]);
  }
  std::memset(out, 0, hd * sizeof(float));
  double sum = 0.0;
  expShifted(s.data(), count, 1.f, mx, s.data(), &sum, nullptr);
  for (int64_t j = 0; j < count; ++j) axpy(s[j], V + j * kvStride, out, hd);
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < hd; ++i) out[i] *= inv;
  *lse = mx + static_cast<float>(std::log(sum));
}

// Attention over a span, a block of BQ query rows at a time, with the matrix multiply (single-threaded inside
// one task): S = Q K^T, P = softmax(S * scale) under the causal mask, O = P V.
constexpr int64_t kQueryBlock = 64;

void attentionSpans(const AttnShape& sh, const std::vector<Span>& spans, const float* qkv, float* o, float* lse,
                    int threads) {
  const int64_t nTasks = static_cast<int64_t>(spans.size()) * sh.heads;
  const int64_t group = sh.heads / sh.kvHeads, kvd = sh.kvHeads * sh.headDim, hd = sh.headDim, R = sh.rowStride;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for num_threads(threads) schedule(dynamic)
  for (int64_t task = 0; task < nTasks; ++task) {
    const Span& sp = spans[task / sh.heads];
    const int64_t h = task % sh.heads, g = h / group;
    const float* base = qkv + sp.start * R;
    const float* K = base + sh.qd + g * hd;
    const float* V = K + kvd;
    std::vector<float> S(std::min(kQueryBlock, sp.length) * sp.length);
    for (int64_t i0 = 0; i0 < sp.length; i0 += kQueryBlock) {
      const int64_t bq = std::min(kQueryBlock, sp.length - i0), n = i0 + bq;
      sgemm(bq, n, hd, base + i0 * R + h * hd, R, 1, K, 1, R, S.data(), n, false, 1);
      for (int64_t r = 0; r < bq; ++r) {
        float* row = S.data() + r * n;
        const int64_t cnt = i0 + r + 1;  // keys 0..i
        const float mx = maxOf(row, cnt) * scale;
        double sum = 0.0;
        expShifted(row, cnt, scale, mx, row, &sum, nullptr);
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < cnt; ++j) row[j] *= inv;
        for (int64_t j = cnt; j < n; ++j) row[j] = 0.f;
        lse[(sp.start + i0 + r) * sh.heads + h] = mx + static_cast<float>(std::log(sum));
      }
      sgemm(bq, hd, n, S.data(), n, 1, V, R, 1, o + (sp.start + i0) * sh.qd + h * hd, sh.qd, false, 1);
    }
  }
}

void attentionSpansBackward(const AttnShape& sh, const std::vector<Span>& spans, const float* qkv, const float* o,
                            const float* lse, const float* dO, float* dqkv, int threads) {
  // P = exp(S*scale - lse); dP = dO V^T; D_i = dO_i . o_i; dS = P (dP - D) * scale
  // dQ += dS K;  dK += dS^T Q;  dV += P^T dO
  // One task per (span, kv head): the key/value gradients of a kv head are written by its task only.
  const int64_t group = sh.heads / sh.kvHeads, kvd = sh.kvHeads * sh.headDim, hd = sh.headDim, R = sh.rowStride;
  const int64_t nTasks = static_cast<int64_t>(spans.size()) * sh.kvHeads;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for num_threads(threads) schedule(dynamic)
  for (int64_t task = 0; task < nTasks; ++task) {
    const Span& sp = spans[task / sh.kvHeads];
    const int64_t g = task % sh.kvHeads;
    const float* base = qkv + sp.start * R;
    float* dbase = dqkv + sp.start * R;
    const float* K = base + sh.qd + g * hd;
    const float* V = K + kvd;
    float* dK = dbase + sh.qd + g * hd;
    float* dV = dK + kvd;
    const int64_t blk = std::min(kQueryBlock, sp.length);
    std::vector<float> P(blk * sp.length), dP(blk * sp.length);
    for (int64_t h = g * group; h < (g + 1) * group; ++h)
      for (int64_t i0 = 0; i0 < sp.length; i0 += kQueryBlock) {
        const int64_t bq = std::min(kQueryBlock, sp.length - i0), n = i0 + bq;
        const float* Q = base + i0 * R + h * hd;
        const float* dOb = dO + (sp.start + i0) * sh.qd + h * hd;
        sgemm(bq, n, hd, Q, R, 1, K, 1, R, P.data(), n, false, 1);
        sgemm(bq, n, hd, dOb, sh.qd, 1, V, 1, R, dP.data(), n, false, 1);
        for (int64_t r = 0; r < bq; ++r) {
          const int64_t row = sp.start + i0 + r, cnt = i0 + r + 1;
          float* p = P.data() + r * n;
          float* dp = dP.data() + r * n;
          double unused;
          expShifted(p, cnt, scale, lse[row * sh.heads + h], p, &unused, nullptr);
          const float Di = dot(dO + row * sh.qd + h * hd, o + row * sh.qd + h * hd, hd);
          for (int64_t j = 0; j < cnt; ++j) dp[j] = p[j] * (dp[j] - Di) * scale;
          for (int64_t j = cnt; j < n; ++j) p[j] = dp[j] = 0.f;
        }
        sgemm(bq, hd, n, dP.data(), n, 1, K, R, 1, dbase + i0 * R + h * hd, R, true, 1);
        sgemm(n, hd, bq, dP.data(), 1, n, Q, R, 1, dK, R, true, 1);
        sgemm(n, hd, bq, P.data(), 1, n, dOb, sh.qd, 1, dV, R, true, 1);
      }
  }
}

}  // namespace clipo::engine
