#include "engine/ops.h"

#include "engine/gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace clipo::engine {

void addBias(float* Y, const float* b, int64_t N, int64_t cols, int threads) {
#pragma omp parallel for num_threads(threadsFor(N * cols, threads)) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < cols; ++c) Y[n * cols + c] += b[c];
}

void addInPlace(float* y, const float* x, int64_t n, int threads) {
#pragma omp parallel for num_threads(threadsFor(n, threads)) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

float expShifted(const float* z, int64_t V, float scale, float shift, float* out, double* sum, double* sumZ);
float maxOf(const float* z, int64_t V);

static inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

void swiglu(const float* gu, float* act, int64_t N, int64_t I, int threads) {
#pragma omp parallel for num_threads(threadsFor(N * I * 8, threads)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* gate = gu + n * 2 * I;
    const float* up = gate + I;
    float* a = act + n * I;
    for (int64_t i = 0; i < I; ++i) a[i] = gate[i] * sigmoid(gate[i]) * up[i];
  }
}

void swigluBackward(const float* gu, const float* dact, float* dgu, int64_t N, int64_t I, int threads) {
#pragma omp parallel for num_threads(threadsFor(N * I * 8, threads)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* gate = gu + n * 2 * I;
    const float* up = gate + I;
    const float* da = dact + n * I;
    float* dg = dgu + n * 2 * I;
    float* du = dg + I;
    for (int64_t i = 0; i < I; ++i) {
      const float s = sigmoid(gate[i]), silu = gate[i] * s;
      dg[i] = da[i] * up[i] * s * (1.f + gate[i] * (1.f - s));
      du[i] = da[i] * silu;
    }
  }
}

void meanRows(const float* X, int64_t start, int64_t count, int64_t cols, float* out) {
  std::vector<double> acc(cols, 0.0);
  for (int64_t r = 0; r < count; ++r)
    for (int64_t c = 0; c < cols; ++c) acc[c] += X[(start + r) * cols + c];
  for (int64_t c = 0; c < cols; ++c) out[c] = count > 0 ? static_cast<float>(acc[c] / count) : 0.f;
}

void colSumAccumulate(const float* dY, int64_t N, int64_t cols, float* gb, int threads) {
#pragma omp parallel num_threads(threadsFor(N * cols, threads))
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t c0 = cols * t / nt, c1 = cols * (t + 1) / nt;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = c0; c < c1; ++c) gb[c] += dY[n * cols + c];
  }
}

void rmsnormBackward(const float* dy, const float* x, const float* rstd, const float* w, float* dx, float* gw,
                     int64_t N, int64_t H, int threads) {
#pragma omp parallel num_threads(threadsFor(N * H * 4, threads))
  {
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* d = dy + n * H;
      const float* xr = x + n * H;
      const float r = rstd[n];
      double dot = 0.0;
      for (int64_t j = 0; j < H; ++j) dot += static_cast<double>(w[j] * d[j]) * xr[j];
      const float k = static_cast<float>(dot * r * r * r / H);
      float* o = dx + n * H;
      for (int64_t j = 0; j < H; ++j) o[j] += r * w[j] * d[j] - xr[j] * k;
    }
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t c0 = H * t / nt, c1 = H * (t + 1) / nt;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = c0; c < c1; ++c) gw[c] += dy[n * H + c] * x[n * H + c] * rstd[n];
  }
}

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

// exp(x) for 16 floats: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6 polynomial (Cephes expf coefficients),
// times 2^n. Relative error ~1-2 ulp; inputs below -87.3 give 0 (softmax arguments are <= 0 here).
#if defined(__AVX512F__)
static inline __m512 exp16(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.33654f);
  const __m512 hi = _mm512_set1_ps(88.37626f);
  const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~under), _mm512_scalef_ps(p, n));
}
#endif

float expShifted(const float* z, int64_t V, float scale, float shift, float* out, double* sumOut, double* sumZOut) {
  // out[i] = exp(z[i]*scale - shift); returns nothing but the sums: sum out, sum out*(z*scale - shift)
  double sum = 0.0, sumZ = 0.0;
  int64_t i = 0;
#if defined(__AVX512F__)
  const __m512 vs = _mm512_set1_ps(scale), vsh = _mm512_set1_ps(shift);
  // float partial sums flushed to double every 256 elements keep the sum accurate over 150k-entry rows
  while (i + 16 <= V) {
    __m512 acc = _mm512_setzero_ps(), accZ = _mm512_setzero_ps();
    const int64_t end = std::min(V - (V - i) % 16, i + 256);
    for (; i < end; i += 16) {
      const __m512 a = _mm512_fmsub_ps(_mm512_loadu_ps(z + i), vs, vsh);
      const __m512 e = exp16(a);
      if (out) _mm512_storeu_ps(out + i, e);
      acc = _mm512_add_ps(acc, e);
      if (sumZOut) accZ = _mm512_fmadd_ps(e, a, accZ);
    }
    sum += _mm512_reduce_add_ps(acc);
    if (sumZOut) sumZ += _mm512_reduce_add_ps(accZ);
  }
#endif
  for (; i < V; ++i) {
    const float a = z[i] * scale - shift;
    const float e = std::exp(a);
    if (out) out[i] = e;
    sum += e;
    sumZ += static_cast<double>(e) * a;
  }
  *sumOut = sum;
  if (sumZOut) *sumZOut = sumZ;
  return 0.f;
}

float maxOf(const float* z, int64_t V) {
  float mx = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
#if defined(__AVX512F__)
  __m512 m = _mm512_set1_ps(mx);
  for (; i + 16 <= V; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(z + i));
  mx = _mm512_reduce_max_ps(m);
#endif
  for (; i < V; ++i) mx = std::max(mx, z[i]);
  return mx;
}

RowSoftmax rowSoftmaxStats(const float* z, int64_t V, bool entropy, float* probs) {
  const float mx = maxOf(z, V);
  double sum = 0.0, sumZ = 0.0;
  expShifted(z, V, 1.f, mx, probs, &sum, entropy ? &sumZ : nullptr);
  RowSoftmax r;
  r.lse = mx + std::log(sum);
  // H = -sum p log p = log(sum) - sum p (z - mx)
  if (entropy) r.entropy = std::log(sum) - sumZ / sum;
  if (probs) {
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < V; ++i) probs[i] *= inv;
  }
  return r;
}

}  // namespace clipo::engine
