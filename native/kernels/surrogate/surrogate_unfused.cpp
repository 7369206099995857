// The surrogate loss written the way eager tensor code runs it (verl's compute_policy_loss + agg_loss + autograd):
// every elementwise op is its own pass over [B*T] buffers, every reduction another pass. Same math and the same exp
// as the fused kernel, parallel in the same way, so the benchmark's speed-up measures the fusion and nothing else.
#include <cmath>
#include <deque>
#include <limits>
#include <vector>

#include "kernels/surrogate/fast_math.h"
#include "kernels/surrogate/surrogate_loss.h"

namespace clipo {
namespace surrogate {

namespace {

using Buf = std::vector<float>;

// Intermediate buffers are kept between calls, as PyTorch's caching allocator keeps them: the comparison is about
// the passes over memory, not about page faults of fresh allocations.
struct Pool {
  std::deque<Buf> bufs;  // deque: references to earlier buffers stay valid as it grows
  size_t used = 0;
  Buf& take(size_t n) {
    if (used == bufs.size()) bufs.emplace_back();
    Buf& b = bufs[used++];
    b.resize(n);
    return b;
  }
};

template <typename F>
void each(size_t n, F f) {
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < static_cast<int64_t>(n); ++k) f(static_cast<size_t>(k));
}

double sum(const Buf& x) {
  double s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s)
  for (int64_t k = 0; k < static_cast<int64_t>(x.size()); ++k) s += x[k];
  return s;
}

// sum over t of x[i, t] for each row i (a [B] result)
std::vector<double> rowSum(const Buf& x, int64_t B, int64_t T) {
  std::vector<double> out(B);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < B; ++i) {
    double s = 0;
    for (int64_t t = 0; t < T; ++t) s += x[i * T + t];
    out[i] = s;
  }
  return out;
}

}  // namespace

Result lossUnfusedCpu(const Params& p, const Inputs& in, float* grad) {
  const int64_t B = p.batch, T = p.length;
  const size_t n = static_cast<size_t>(B) * T;
  const bool hasRef = in.refLogp != nullptr;
  static thread_local Pool pool;
  pool.used = 0;
  const float up = 1.0f + p.clipHigh, lo = 1.0f - p.clipLow;
  const float c = p.dualClip > 0 ? p.dualClip : std::numeric_limits<float>::infinity();

  Buf& mask = pool.take(n);

  Buf& adv = pool.take(n);
  each(n, [&](size_t k) { mask[k] = in.mask[k] ? 1.0f : 0.0f; });
  each(n, [&](size_t k) { adv[k] = in.advantages[k / T]; });  // advantages broadcast to tokens, as verl stores them
  std::vector<double> len = rowSum(mask, B, T);
  double N = 0, Bv = 0;
  for (int64_t i = 0; i < B; ++i) { N += len[i]; Bv += len[i] > 0; }

  // d loss / d (per-token loss) of the aggregation, as a [B*T] buffer (what autograd materializes)
  Buf& wtok = pool.take(n);
  each(n, [&](size_t k) { wtok[k] = static_cast<float>(aggWeight(p.agg, static_cast<int64_t>(len[k / T]), N, Bv)) * mask[k]; });

  Buf& delta = pool.take(n);

  Buf& negDelta = pool.take(n);

  each(n, [&](size_t k) { delta[k] = in.logp[k] - in.oldLogp[k]; });
  each(n, [&](size_t k) { negDelta[k] = -delta[k] * mask[k]; });
  Result r;
  r.tokens = static_cast<int64_t>(N);
  r.sequences = static_cast<int64_t>(Bv);
  double hi = 0, low = 0, du = 0;

  if (p.mode == Mode::Token || p.mode == Mode::Sequence) {
    Buf& logRatio = pool.take(n);
    Buf& ratio = pool.take(n);
    Buf& pg1 = pool.take(n);
    Buf& clipped = pool.take(n);
    Buf& pg2 = pool.take(n);
    Buf& pgMax = pool.take(n);
    Buf& pg3 = pool.take(n);
    Buf& pg = pool.take(n);
    Buf& isHi = pool.take(n);
    Buf& isLo = pool.take(n);
    Buf& isDu = pool.take(n);
    Buf& lossMat = pool.take(n);
    Buf& dRatio = pool.take(n);
    if (p.mode == Mode::Token) {
      each(n, [&](size_t k) { logRatio[k] = clampNan(delta[k], -kTokenLogRatioClamp, kTokenLogRatioClamp); });
    } else {
      Buf& md = pool.take(n);
      each(n, [&](size_t k) { md[k] = delta[k] * mask[k]; });
      std::vector<double> sd = rowSum(md, B, T);
      each(n, [&](size_t k) { double l = len[k / T]; logRatio[k] = static_cast<float>(sd[k / T] / (l > 0 ? l : 1)); });
      each(n, [&](size_t k) { logRatio[k] = logRatio[k] > kSeqLogRatioMax ? kSeqLogRatioMax : logRatio[k]; });
    }
    each(n, [&](size_t k) { ratio[k] = expApprox(logRatio[k]); });
    each(n, [&](size_t k) { pg1[k] = -adv[k] * ratio[k]; });
    each(n, [&](size_t k) { clipped[k] = clampNan(ratio[k], lo, up); });
    each(n, [&](size_t k) { pg2[k] = -adv[k] * clipped[k]; });
    each(n, [&](size_t k) { pgMax[k] = pg2[k] > pg1[k] ? pg2[k] : pg1[k]; });
    each(n, [&](size_t k) { isHi[k] = (pg2[k] > pg1[k] && adv[k] > 0) ? mask[k] : 0.0f; });
    each(n, [&](size_t k) { isLo[k] = (pg2[k] > pg1[k] && adv[k] < 0) ? mask[k] : 0.0f; });
    const float cc = p.mode == Mode::Token ? c : std::numeric_limits<float>::infinity();
    each(n, [&](size_t k) { pg3[k] = -adv[k] * cc; });
    each(n, [&](size_t k) { isDu[k] = (adv[k] < 0 && pgMax[k] > pg3[k]) ? mask[k] : 0.0f; });
    each(n, [&](size_t k) { pg[k] = adv[k] < 0 ? (pg3[k] < pgMax[k] ? pg3[k] : pgMax[k]) : pgMax[k]; });
    each(n, [&](size_t k) { lossMat[k] = pg[k] * wtok[k]; });
    r.pgLoss = sum(lossMat);
    hi = sum(isHi);
    low = sum(isLo);
    du = sum(isDu);
    // backward, op by op: through the where/min, the max, the clamp and the exp
    Buf& dPg = pool.take(n);
    Buf& dPgMax = pool.take(n);
    Buf& dPg1 = pool.take(n);
    each(n, [&](size_t k) { dPg[k] = wtok[k]; });
    each(n, [&](size_t k) { dPgMax[k] = (adv[k] < 0 && pg3[k] < pgMax[k]) ? 0.0f : dPg[k]; });
    each(n, [&](size_t k) { dPg1[k] = pg2[k] > pg1[k] ? 0.0f : dPgMax[k]; });
    each(n, [&](size_t k) { dRatio[k] = -adv[k] * dPg1[k]; });
    if (p.mode == Mode::Token) {
      each(n, [&](size_t k) {
        bool in = !(delta[k] < -kTokenLogRatioClamp || delta[k] > kTokenLogRatioClamp);
        grad[k] = in ? dRatio[k] * ratio[k] : 0.0f;
      });
    } else {
      // s_it = sg(s_i) pi/sg(pi): d s_it / d logp_t = s_i (0 where the log-ratio clamp is active)
      each(n, [&](size_t k) { grad[k] = logRatio[k] >= kSeqLogRatioMax ? 0.0f : dRatio[k] * ratio[k]; });
    }
  } else {  // geo_mean
    Buf& sgn = pool.take(n);
    Buf& dcl = pool.take(n);
    Buf& sdc = pool.take(n);
    Buf& sd = pool.take(n);
    Buf& dmin = pool.take(n);
    Buf& dt = pool.take(n);
    Buf& mdt = pool.take(n);
    Buf& isHi = pool.take(n);
    Buf& isLo = pool.take(n);
    each(n, [&](size_t k) { sgn[k] = adv[k] > 0 ? 1.0f : (adv[k] < 0 ? -1.0f : 0.0f); });
    each(n, [&](size_t k) { dcl[k] = clampNan(delta[k], -p.clipLow, p.clipHigh); });
    each(n, [&](size_t k) { sdc[k] = sgn[k] * dcl[k]; });
    each(n, [&](size_t k) { sd[k] = sgn[k] * delta[k]; });
    each(n, [&](size_t k) { dmin[k] = sdc[k] < sd[k] ? sdc[k] : sd[k]; });
    each(n, [&](size_t k) { dt[k] = sgn[k] * dmin[k]; });
    each(n, [&](size_t k) { mdt[k] = dt[k] * mask[k]; });
    each(n, [&](size_t k) { isHi[k] = (adv[k] > 0 && dcl[k] != delta[k] && sdc[k] < sd[k]) ? mask[k] : 0.0f; });
    each(n, [&](size_t k) { isLo[k] = (adv[k] < 0 && dcl[k] != delta[k] && sdc[k] < sd[k]) ? mask[k] : 0.0f; });
    std::vector<double> s = rowSum(mdt, B, T);
    std::vector<double> R(B), coef(B);
    double pgl = 0;
    for (int64_t i = 0; i < B; ++i) {
      if (len[i] == 0) continue;
      R[i] = std::exp(s[i] / len[i]);
      pgl += -static_cast<double>(in.advantages[i]) * R[i] / Bv;
      coef[i] = -static_cast<double>(in.advantages[i]) * R[i] / Bv / len[i];
    }
    r.pgLoss = pgl;
    hi = sum(isHi);
    low = sum(isLo);
    Buf& dDt = pool.take(n);
    each(n, [&](size_t k) { dDt[k] = static_cast<float>(coef[k / T]) * mask[k]; });
    each(n, [&](size_t k) { grad[k] = sdc[k] < sd[k] ? 0.0f : dDt[k]; });
  }
  if (hasRef) {
    Buf& x = pool.take(n);
    Buf& xc = pool.take(n);
    Buf& e = pool.take(n);
    Buf& kraw = pool.take(n);
    Buf& kv = pool.take(n);
    Buf& kw = pool.take(n);
    Buf& dk = pool.take(n);
    each(n, [&](size_t k) { x[k] = in.refLogp[k] - in.logp[k]; });
    each(n, [&](size_t k) { xc[k] = clampNan(x[k], -kKlLogRatioClamp, kKlLogRatioClamp); });
    each(n, [&](size_t k) { e[k] = expApprox(xc[k]); });
    each(n, [&](size_t k) { kraw[k] = e[k] - xc[k] - 1.0f; });
    each(n, [&](size_t k) { kv[k] = clampNan(kraw[k], -kKlValueClamp, kKlValueClamp); });
    each(n, [&](size_t k) { kw[k] = kv[k] * wtok[k]; });
    r.klLoss = sum(kw);
    each(n, [&](size_t k) {
      bool active = !(x[k] < -kKlLogRatioClamp || x[k] > kKlLogRatioClamp || kraw[k] > kKlValueClamp || kraw[k] < -kKlValueClamp);
      dk[k] = active ? p.klCoef * wtok[k] * (1.0f - e[k]) : 0.0f;
    });
    each(n, [&](size_t k) { grad[k] += dk[k]; });
  }
  each(n, [&](size_t k) { grad[k] = mask[k] != 0.0f ? grad[k] : 0.0f; });
  r.loss = r.pgLoss + (hasRef ? p.klCoef * r.klLoss : 0.0);
  if (N > 0) {
    r.clipFracHigh = hi / N;
    r.clipFracLow = low / N;
    r.dualClipFrac = du / N;
    r.approxKl = sum(negDelta) / N;
  }
  return r;
}

}  // namespace surrogate
}  // namespace clipo
