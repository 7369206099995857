// CPU softmax primitives (exp, max, log-sum-exp, entropy) of the LM head, the attention and the sampler: a
// vectorized exp (Cephes polynomial) with float partial sums flushed to double every 256 entries.
#include "engine/head.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/gemm.h"

namespace clipo::engine {


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

void meanRows(const float* X, int64_t start, int64_t count, int64_t cols, float* out) {
  std::vector<double> acc(cols, 0.0);
  for (int64_t r = 0; r < count; ++r)
    for (int64_t c = 0; c < cols; ++c) acc[c] += X[(start + r) * cols + c];
  for (int64_t c = 0; c < cols; ++c) out[c] = count > 0 ? static_cast<float>(acc[c] / count) : 0.f;
}

void headLogprobs(const float* xf, int64_t H, const float* W, int64_t V, const std::vector<int64_t>& rows,
                  const std::vector<int64_t>& targets, float* logp, float* entropy, float* keepProbs, int threads) {
  const int64_t R = static_cast<int64_t>(rows.size());
  // logits are made CH rows at a time, never [rows x vocab] at once
  const int64_t CH = std::max<int64_t>(1, std::min<int64_t>(256, (int64_t{1} << 24) / V));
  std::vector<float> Xc(std::min(CH, R) * H), Lc(std::min(CH, R) * V);
  for (int64_t r0 = 0; r0 < R; r0 += CH) {
    const int64_t ch = std::min(CH, R - r0);
    for (int64_t r = 0; r < ch; ++r) std::memcpy(Xc.data() + r * H, xf + rows[r0 + r] * H, H * sizeof(float));
    matmulNT(ch, V, H, Xc.data(), W, Lc.data(), false, threads);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < ch; ++r) {
      const float* z = Lc.data() + r * V;
      const RowSoftmax sm = rowSoftmaxStats(z, V, entropy != nullptr, keepProbs ? keepProbs + (r0 + r) * V : nullptr);
      logp[r0 + r] = static_cast<float>(z[targets[r0 + r]] - sm.lse);
      if (entropy) entropy[r0 + r] = static_cast<float>(sm.entropy);
    }
  }
}

void headLogprobsBackward(const float* xf, int64_t H, const float* W, int64_t V, const std::vector<int64_t>& rows,
                          const std::vector<int64_t>& targets, const float* gradLogp, const float* gradEntropy,
                          const float* keptProbs, float* dXf, float* dW, int threads) {
  const int64_t R = static_cast<int64_t>(rows.size());
  const int64_t CH = std::max<int64_t>(1, std::min<int64_t>(256, (int64_t{1} << 24) / V));
  const int64_t cap = std::min(CH, std::max<int64_t>(R, 1));
  std::vector<float> Xc(cap * H), Z(cap * V), dX(cap * H);
  for (int64_t r0 = 0; r0 < R; r0 += CH) {
    const int64_t ch = std::min(CH, R - r0);
    bool any = false;
    for (int64_t r = 0; r < ch; ++r) any = any || gradLogp[r0 + r] != 0.f || (gradEntropy && gradEntropy[r0 + r] != 0.f);
    if (!any) continue;
    for (int64_t r = 0; r < ch; ++r) std::memcpy(Xc.data() + r * H, xf + rows[r0 + r] * H, H * sizeof(float));
    const bool kept = keptProbs != nullptr;
    // the entropy term needs the logits themselves, so they are recomputed even when the probabilities are kept
    if (!kept || gradEntropy) matmulNT(ch, V, H, Xc.data(), W, Z.data(), false, threads);
#pragma omp parallel num_threads(threads)
    {
      std::vector<float> pr(gradEntropy ? V : 0);
#pragma omp for schedule(static)
      for (int64_t r = 0; r < ch; ++r) {
        float* z = Z.data() + r * V;
        const float gr = gradLogp[r0 + r];
        const float ge = gradEntropy ? gradEntropy[r0 + r] : 0.f;
        if (ge != 0.f) {
          rowSoftmaxStats(z, V, false, pr.data());
          double pz = 0.0;
          for (int64_t i = 0; i < V; ++i) pz += static_cast<double>(pr[i]) * z[i];
          for (int64_t i = 0; i < V; ++i)
            z[i] = -gr * pr[i] - ge * pr[i] * static_cast<float>(static_cast<double>(z[i]) - pz);
        } else {
          const float* p = kept ? keptProbs + (r0 + r) * V : z;
          if (!kept) rowSoftmaxStats(z, V, false, z);
          for (int64_t i = 0; i < V; ++i) z[i] = -gr * p[i];
        }
        z[targets[r0 + r]] += gr;
      }
    }
    matmulNN(ch, H, V, Z.data(), W, dX.data(), false, threads);
    matmulTN(V, H, ch, Z.data(), Xc.data(), dW, true, threads);
    for (int64_t r = 0; r < ch; ++r) {
      float* d = dXf + rows[r0 + r] * H;
      for (int64_t j = 0; j < H; ++j) d[j] += dX[r * H + j];
    }
  }
}

}  // namespace clipo::engine
