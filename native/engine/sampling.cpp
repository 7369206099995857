// The sampler on the CPU: one token from one row of logits (sampling.h).
#include "engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/formulas.h"
#include "engine/head.h"

namespace clipo::engine {

// (rules in sampling.h)
int32_t sampleRow(const float* z, int64_t V, double temperature, double topP, int64_t topK, double minP, double u,
                  float* logprob, std::vector<float>& e, std::vector<int32_t>& idx) {
  if (temperature <= 0.0) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; ++i)
      if (z[i] > z[best]) best = i;
    *logprob = static_cast<float>(z[best] - rowSoftmaxStats(z, V, false).lse);
    return static_cast<int32_t>(best);
  }
  const float invT = static_cast<float>(1.0 / temperature);
  const float mx = maxOf(z, V) * invT;
  e.resize(V);
  double sum = 0.0;
  expShifted(z, V, invT, mx, e.data(), &sum, nullptr);
  int64_t pick = -1;
  double keptMass = sum;
  if (topK > 0 && topK < V) {
    // the k-th largest weight; smaller ones leave the candidate set (weight 0 is never picked)
    idx.resize(V);
    std::iota(idx.begin(), idx.end(), 0);
    std::nth_element(idx.begin(), idx.begin() + (topK - 1), idx.end(), [&](int32_t a, int32_t b) { return e[a] > e[b]; });
    const float kth = e[idx[topK - 1]];
    keptMass = 0.0;
    for (int64_t i = 0; i < V; ++i) {
      if (e[i] < kth) e[i] = 0.f;
      keptMass += e[i];
    }
  }
  // the candidate set: every token (topP = 1) or the nucleus {p_i >= theta}
  float theta = 0.f;
  if (topP < 1.0) {
    const double need = topP * keptMass;
    // peaked distributions: the top 64 usually hold the mass; sort just those
    const int64_t k = std::min<int64_t>(V, 64);
    idx.resize(V);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return e[a] > e[b] || (e[a] == e[b] && a < b); });
    double cum = 0.0;
    int64_t kept = 0;
    while (kept < k && cum < need) cum += e[idx[kept++]];
    if (cum >= need) {
      theta = e[idx[kept - 1]];
    } else {
      // flat distributions: bisect the threshold theta so that sum_{p >= theta} p reaches topP (O(V) per step)
      float lo = 0.f, hi = e[idx[0]];
      for (int it = 0; it < 40; ++it) {
        const float mid = 0.5f * (lo + hi);
        double m = 0.0;
        for (int64_t i = 0; i < V; ++i) m += e[i] >= mid ? e[i] : 0.f;
        if (m >= need) lo = mid; else hi = mid;
      }
      theta = lo;
    }
  }
  if (minP > 0.0) theta = std::max(theta, static_cast<float>(minP * maxOf(e.data(), V)));
  {
    double kept = 0.0;
    for (int64_t i = 0; i < V; ++i) kept += e[i] >= theta ? e[i] : 0.f;
    const double target = u * kept;
    double c = 0.0;
    for (int64_t i = 0; i < V; ++i) {
      if (e[i] < theta || e[i] <= 0.f) continue;
      c += e[i];
      pick = i;
      if (c > target) break;
    }
  }
  *logprob = static_cast<float>((z[pick] * invT - mx) - std::log(sum));
  return static_cast<int32_t>(pick);
}

// Repetition penalty (vLLM/CTRL: a positive logit is divided by it, a negative one multiplied, once per distinct
// token of prompt + output) and logit bias, on a copy of the row; null when neither applies (the row is used as is).
namespace {

const float* processedLogits(const float* z, int64_t V, const SamplerSettings& s, const std::vector<int32_t>& history,
                             std::vector<float>& buf) {
  const bool pen = s.repetitionPenalty != 1.0 && !history.empty();
  if (!pen && s.logitBias.empty()) return z;
  buf.assign(z, z + V);
  if (pen) {
    std::vector<int32_t> seen(history);
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    const float r = static_cast<float>(s.repetitionPenalty);
    for (int32_t t : seen)
      if (t >= 0 && t < V) buf[t] = repetitionPenalized(buf[t], r);
  }
  for (const auto& [t, b] : s.logitBias)
    if (t >= 0 && t < V) buf[t] += b;
  return buf.data();
}

}  // namespace

SampledToken sampleWith(const float* z0, int64_t V, const SamplerSettings& s, const std::vector<int32_t>& history,
                        double u, std::vector<float>& buf, std::vector<float>& e, std::vector<int32_t>& idx) {
  const float* z = processedLogits(z0, V, s, history, buf);
  SampledToken out;
  out.token = sampleRow(z, V, s.temperature, s.topP, s.topK, s.minP, u, &out.logprob, e, idx);
  if (s.topLogprobs > 0) {
    // the same distribution as out.logprob: untempered for greedy, z / T otherwise
    const double T = s.temperature > 0.0 ? s.temperature : 1.0;
    const float invT = static_cast<float>(1.0 / T);
    const float mx = maxOf(z, V) * invT;
    double sum = 0.0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(z[i] * invT - mx));
    const double lse = std::log(sum);
    const int64_t k = std::min<int64_t>(V, s.topLogprobs);
    idx.resize(V);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
    for (int64_t j = 0; j < k; ++j)
      out.top.emplace_back(idx[j], static_cast<float>((z[idx[j]] * invT - mx) - lse));
  }
  return out;
}

SampledToken sampleLogits(const float* z, int64_t V, const SamplerSettings& s, const std::vector<int32_t>& history,
                          double u) {
  std::vector<float> buf, e;
  std::vector<int32_t> idx;
  return sampleWith(z, V, s, history, u, buf, e, idx);
}

}  // namespace clipo::engine
