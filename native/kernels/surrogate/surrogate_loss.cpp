// Fused CPU surrogate loss: one streaming pass over each response (a second pass over the same row, still in L1/L2,
// for the sequence-level modes) computing the loss, its gradient d loss / d logp, the clip fractions and the KLs.
// OpenMP over responses; the inner loops are branch-free so they vectorize. Row partials are summed in row order in
// double, so the result does not depend on the thread count.
// No floating-point traps are ever enabled here, so tell GCC (NaN and Inf semantics are unchanged: this is not
// -ffast-math). Without it, GCC keeps the clamp-then-exp of each token as a branch (a multiply on one arm "could
// trap") and the token loops are not vectorized: 7 ns instead of about 0.5 ns per token.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "kernels/surrogate/surrogate_loss.h"

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/surrogate/fast_math.h"

namespace clipo {
namespace surrogate {

namespace {

struct RowPartial {
  double pg = 0;      // w_i * sum_t M l_t (geo_mean: -(1/Bv) A_i R_i)
  double kl = 0;      // w_i * sum_t M k_t
  double negDelta = 0;
  int64_t high = 0, low = 0, dual = 0;
};

// The KL term of one row, added to the row's gradient: verl's low_var_kl,
//   x = ref - logp clamped to [-20, 20], k = e^x - x - 1 clamped to [-10, 10], dk/dlogp = 1 - e^x (0 where clamped),
// times wk = w_i klCoef. It runs right after the policy sweep over the same row, whose logp and gradient are still in
// L1/L2, so the row still crosses DRAM once; kept as its own loop because GCC does not vectorize the combined body.
float klRowAdd(int64_t T, const float* lp, const float* ref, const uint8_t* mk, float wk, float* g) {
  float sk = 0;
#pragma omp simd reduction(+ : sk)
  for (int64_t t = 0; t < T; ++t) {
    const float x = ref[t] - lp[t];
    const float xc = clampNan(x, -kKlLogRatioClamp, kKlLogRatioClamp);
    const float e = expApprox(xc);
    const float k = e - xc - 1.0f;
    const float kv = clampNan(k, -kKlValueClamp, kKlValueClamp);
    // zero gradient where a clamp binds; a chain of selects (GCC does not vectorize an OR of the four conditions)
    const float g0 = wk * (1.0f - e);
    const float g1 = x < -kKlLogRatioClamp ? 0.0f : g0;
    const float g2 = x > kKlLogRatioClamp ? 0.0f : g1;
    const float g3 = k > kKlValueClamp ? 0.0f : g2;
    const float gk = k < -kKlValueClamp ? 0.0f : g3;
    const float gv = g[t] + gk;
    g[t] = mk[t] ? gv : 0.0f;
    sk += mk[t] ? kv : 0.0f;
  }
  return sk;
}

// mode token (GRPO/DAPO): per token, with sign-split clip (exactly verl's max/min composition):
//   A >= 0: l = -A min(rho, 1+eh)                     grad -A rho unless rho > 1+eh
//   A <  0: l = min(-A max(rho, 1-el), -A c)          grad -A rho unless rho < 1-el or rho > c
// The sign of A is a template parameter (it is constant over a row) so the loop body has no branches.
template <bool kRef, int kSign>
RowPartial tokenRowSigned(const Params& p, const float* lp, const float* old, const float* ref, const uint8_t* mk,
                          float a, float w, float* g) {
  const int64_t T = p.length;
  const float up = 1.0f + p.clipHigh, lo = 1.0f - p.clipLow;
  const float c = p.dualClip > 0 ? p.dualClip : std::numeric_limits<float>::infinity();
  const float negAc = kSign < 0 ? -a * c : 0.0f;
  const float wk = w * p.klCoef;
  float sl = 0, sk = 0, snd = 0;
  int32_t chi = 0, clo = 0, cdu = 0;
  (void)ref;
#pragma omp simd reduction(+ : sl, snd, chi, clo, cdu)
  for (int64_t t = 0; t < T; ++t) {
    const bool m = mk[t] != 0;
    const float d = lp[t] - old[t];
    const float r = expApprox(clampNan(d, -kTokenLogRatioClamp, kTokenLogRatioClamp));
    const bool dOut = (d < -kTokenLogRatioClamp) | (d > kTokenLogRatioClamp);
    const bool h = (kSign > 0) & (r > up);
    const bool L = (kSign < 0) & (r < lo);
    const bool du = (kSign < 0) & (r > c);
    const float rLo = r < lo ? lo : r, rUp = r > up ? up : r;
    const float inner = kSign < 0 ? -a * rLo : -a * rUp;
    const float l = kSign < 0 ? (negAc < inner ? negAc : inner) : (kSign > 0 ? inner : 0.0f);
    const float live = -a * r;
    const float gpg = (h | L | du | dOut) ? 0.0f : live;
    const float gv = w * gpg;
    g[t] = m ? gv : 0.0f;
    sl += m ? l : 0.0f;
    snd += m ? -d : 0.0f;
    chi += (m & h) ? 1 : 0;
    clo += (m & L) ? 1 : 0;
    cdu += (m & du) ? 1 : 0;
  }
  if constexpr (kRef) sk = klRowAdd(T, lp, ref, mk, wk, g);
  RowPartial out;
  out.pg = static_cast<double>(w) * sl;
  out.kl = static_cast<double>(w) * sk;
  out.negDelta = snd;
  out.high = chi;
  out.low = clo;
  out.dual = cdu;
  return out;
}

template <bool kRef>
RowPartial tokenRow(const Params& p, const float* lp, const float* old, const float* ref, const uint8_t* mk, float a,
                    float w, float* g) {
  if (a > 0) return tokenRowSigned<kRef, 1>(p, lp, old, ref, mk, a, w, g);
  if (a < 0) return tokenRowSigned<kRef, -1>(p, lp, old, ref, mk, a, w, g);
  return tokenRowSigned<kRef, 0>(p, lp, old, ref, mk, a, w, g);
}

// The KL sum of a row and the final gradient write, for the sequence-level modes whose policy gradient per token is
// gpg (uniform over the row) or 0 where the token's own clip is active (geo_mean).
template <bool kRef, bool kGeo>
float writeRowGrad(const Params& p, const float* lp, const float* old, const float* ref, const uint8_t* mk, float a,
                   float gpg, float w, float* g) {
  const int64_t T = p.length;
  const float wk = w * p.klCoef;
  const float eh = p.clipHigh, el = p.clipLow;
  const bool pos = a > 0, neg = a < 0;
#pragma omp simd
  for (int64_t t = 0; t < T; ++t) {
    const bool m = mk[t] != 0;
    const float d = kGeo ? lp[t] - old[t] : 0.0f;
    const bool clipped = kGeo & ((pos & (d > eh)) | (neg & (d < -el)));
    const float gt = clipped ? 0.0f : gpg;
    g[t] = m ? gt : 0.0f;
  }
  if constexpr (kRef) return klRowAdd(T, lp, ref, mk, wk, g);
  return 0.0f;
}

// mode sequence (GSPO): s_i = exp(min(mean_t delta_t, 10)), used per token as sg(s_i) pi/sg(pi), so each token's
// loss is the token formula with rho = s_i (no dual clip) and d s_it / d logp_t = s_i.
template <bool kRef>
RowPartial sequenceRow(const Params& p, const float* lp, const float* old, const float* ref, const uint8_t* mk, float a,
                       int32_t n, float w, float* g) {
  const int64_t T = p.length;
  float sd = 0;
#pragma omp simd reduction(+ : sd)
  for (int64_t t = 0; t < T; ++t) sd += mk[t] ? lp[t] - old[t] : 0.0f;
  const double meanDelta = static_cast<double>(sd) / n;
  const bool sIn = !(meanDelta > kSeqLogRatioMax);
  const double s = std::exp(sIn ? meanDelta : static_cast<double>(kSeqLogRatioMax));
  const double up = 1.0 + p.clipHigh, lo = 1.0 - p.clipLow;
  const bool pos = a > 0, neg = a < 0;
  const bool h = pos && s > up, L = neg && s < lo;
  const double l = neg ? -a * (s < lo ? lo : s) : -a * (s > up ? up : s);
  const float gpg = (h || L || !sIn) ? 0.0f : static_cast<float>(w * (-a * s));
  const float sk = writeRowGrad<kRef, false>(p, lp, old, ref, mk, a, gpg, w, g);
  RowPartial out;
  out.pg = static_cast<double>(w) * n * l;
  out.kl = static_cast<double>(w) * sk;
  out.negDelta = -static_cast<double>(sd);
  out.high = h ? n : 0;
  out.low = L ? n : 0;
  return out;
}

// mode geo_mean (GMPO): clip in log space, sign-aware,
//   A > 0: dt = min(delta, eh);  A < 0: dt = max(delta, -el);  A = 0: dt = 0
// R_i = exp(sum_t M dt / n_i), row loss -(1/Bv) A_i R_i, d/d logp_t = -(1/Bv) A_i R_i / n_i where the clip is idle.
template <bool kRef>
RowPartial geoRow(const Params& p, const float* lp, const float* old, const float* ref, const uint8_t* mk, float a,
                  int32_t n, float invBv, float w, float* g) {
  const int64_t T = p.length;
  const float eh = p.clipHigh, el = p.clipLow;
  const bool pos = a > 0, neg = a < 0;
  float sdt = 0, snd = 0;
  int32_t chi = 0, clo = 0;
#pragma omp simd reduction(+ : sdt, snd, chi, clo)
  for (int64_t t = 0; t < T; ++t) {
    const bool m = mk[t] != 0;
    const float d = lp[t] - old[t];
    const bool h = pos & (d > eh), L = neg & (d < -el);
    const float dt = pos ? (h ? eh : d) : (neg ? (L ? -el : d) : 0.0f);
    sdt += m ? dt : 0.0f;
    snd += m ? -d : 0.0f;
    chi += (m & h) ? 1 : 0;
    clo += (m & L) ? 1 : 0;
  }
  const double R = std::exp(static_cast<double>(sdt) / n);
  const float gpg = static_cast<float>(invBv * (-a * R) / n);
  const float sk = writeRowGrad<kRef, true>(p, lp, old, ref, mk, a, gpg, w, g);
  RowPartial out;
  out.pg = static_cast<double>(invBv) * (-a * R);
  out.kl = static_cast<double>(w) * sk;
  out.negDelta = snd;
  out.high = chi;
  out.low = clo;
  return out;
}

}  // namespace

Result lossCpu(const Params& p, const Inputs& in, float* grad) {
  const int64_t B = p.batch, T = p.length;
  // Pass 0 (1 byte per token): response lengths, N and Bv, which every weight depends on.
  std::vector<int32_t> n(B);
  int64_t N = 0, Bv = 0;
#pragma omp parallel for schedule(static) reduction(+ : N, Bv)
  for (int64_t i = 0; i < B; ++i) {
    const uint8_t* mk = in.mask + i * T;
    int32_t c = 0;
#pragma omp simd reduction(+ : c)
    for (int64_t t = 0; t < T; ++t) c += mk[t] != 0;
    n[i] = c;
    N += c;
    Bv += c > 0;
  }
  std::vector<RowPartial> rows(B);
  const bool hasRef = in.refLogp != nullptr;
  const float invBv = Bv > 0 ? static_cast<float>(1.0 / static_cast<double>(Bv)) : 0.0f;
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < B; ++i) {
    const size_t off = static_cast<size_t>(i) * T;
    float* g = grad + off;
    if (n[i] == 0) {
      for (int64_t t = 0; t < T; ++t) g[t] = 0.0f;
      continue;
    }
    const float* lp = in.logp + off;
    const float* old = in.oldLogp + off;
    const float* ref = hasRef ? in.refLogp + off : nullptr;
    const uint8_t* mk = in.mask + off;
    const float a = in.advantages[i];
    const float w = static_cast<float>(aggWeight(p.agg, n[i], N, Bv));
    switch (p.mode) {
      case Mode::Token:
        rows[i] = hasRef ? tokenRow<true>(p, lp, old, ref, mk, a, w, g) : tokenRow<false>(p, lp, old, ref, mk, a, w, g);
        break;
      case Mode::Sequence:
        rows[i] = hasRef ? sequenceRow<true>(p, lp, old, ref, mk, a, n[i], w, g)
                         : sequenceRow<false>(p, lp, old, ref, mk, a, n[i], w, g);
        break;
      case Mode::GeoMean:
        rows[i] = hasRef ? geoRow<true>(p, lp, old, ref, mk, a, n[i], invBv, w, g)
                         : geoRow<false>(p, lp, old, ref, mk, a, n[i], invBv, w, g);
        break;
    }
  }
  Result r;
  r.tokens = N;
  r.sequences = Bv;
  int64_t hi = 0, lo = 0, du = 0;
  double nd = 0;
  for (int64_t i = 0; i < B; ++i) {
    r.pgLoss += rows[i].pg;
    r.klLoss += rows[i].kl;
    nd += rows[i].negDelta;
    hi += rows[i].high;
    lo += rows[i].low;
    du += rows[i].dual;
  }
  if (!hasRef) r.klLoss = 0;
  r.loss = r.pgLoss + (hasRef ? p.klCoef * r.klLoss : 0.0);
  if (N > 0) {
    r.clipFracHigh = static_cast<double>(hi) / N;
    r.clipFracLow = static_cast<double>(lo) / N;
    r.dualClipFrac = static_cast<double>(du) / N;
    r.approxKl = nd / N;
  }
  return r;
}

}  // namespace surrogate
}  // namespace clipo
