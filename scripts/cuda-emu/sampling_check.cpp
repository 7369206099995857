// The CUDA sampler (native/engine/sampling.cu, rewritten for host emulation by launch_to_emu.py) against the CPU
// sampler (sampling.cpp's sampleWith) on fresh random rows: tiny vocabularies (50-300, several block sizes), random
// settings per row (temperature 0 and tempered, top-p 1 and below, top-k 1 / random / >= V, min-p, repetition
// penalty with a history holding repeats and out-of-range ids, logit bias with a repeated token, top-logprobs),
// logits spread wide and narrow and rounded onto a coarse grid (ties everywhere), u from formulas.h's uniformAt.
// Tokens and the top lists must be equal and logprobs agree within 1e-5. The two sides' exp and double-sum orders
// differ, so a token may differ where u * kept (or topP * mass) sits on a cumulative boundary: such a row counts as
// a boundary case (not a failure) only if the CPU sampler itself picks the device's token with u or topP moved by
// 1e-6, and at most 1 row in 1000 may be one.
// Usage: check [seed] [rows] [inject]; "inject" hands the device u + 0.37 (mod 1), which must fail. Exit 1 on a mismatch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/formulas.h"
#include "engine/sampling.h"

using namespace clipo::engine;

int main(int argc, char** argv) {
  const uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 12345;
  const int64_t wantRows = argc > 2 ? std::atoll(argv[2]) : 1200;
  const bool inject = argc > 3 && std::string(argv[3]) == "inject";
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  auto coin = [&](double p) { return U(rng) < p; };
  auto irand = [&](int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(U(rng) * static_cast<double>(hi - lo + 1)); };
  int64_t rows = 0, tokenBad = 0, lpBad = 0, topBad = 0, boundary = 0, batch = 0;
  double maxLpErr = 0.0;
  const int64_t maxTop = 8;
  while (rows < wantRows) {
    const int64_t V = coin(0.2) ? 257 : irand(50, 300);
    const int64_t R = std::min<int64_t>(wantRows - rows, irand(8, 32));
    std::vector<float> Z(static_cast<size_t>(R * V));
    std::vector<SampleRowParams> P(R);
    std::vector<SamplerSettings> S(R);
    std::vector<std::vector<int32_t>> hist(R);
    std::vector<int32_t> pen, biasT;
    std::vector<float> biasV;
    for (int64_t r = 0; r < R; ++r) {
      const double scale = std::vector<double>{0.3, 2.0, 6.0}[irand(0, 2)];
      std::normal_distribution<float> N(0.f, static_cast<float>(scale));
      const bool ties = coin(0.3);
      for (int64_t i = 0; i < V; ++i) {
        float x = N(rng);
        if (ties) x = std::round(x * 2.f) / 2.f;  // a coarse grid: many tokens share a logit
        Z[r * V + i] = x;
      }
      SamplerSettings& s = S[r];
      s.temperature = coin(0.15) ? 0.0 : 0.3 + 1.2 * U(rng);
      s.topP = coin(0.3) ? 1.0 : 0.05 + 0.94 * U(rng);
      const double k = U(rng);
      s.topK = k < 0.5 ? 0 : k < 0.6 ? 1 : irand(2, V + 5);
      s.minP = coin(0.6) ? 0.0 : 0.3 * U(rng);
      s.repetitionPenalty = coin(0.5) ? 1.0 : 0.8 + 0.7 * U(rng);
      if (s.repetitionPenalty != 1.0) {
        const int64_t n = irand(0, 40);
        for (int64_t j = 0; j < n; ++j) hist[r].push_back(static_cast<int32_t>(coin(0.05) ? (coin(0.5) ? -1 : V + 3) : irand(0, V / 4)));
      }
      if (coin(0.3)) {
        const int32_t t = static_cast<int32_t>(irand(0, V - 1));
        s.logitBias = {{t, 2.5f}, {static_cast<int32_t>(irand(0, V - 1)), -1.5f}, {t, 1.0f}, {static_cast<int32_t>(V + 1), 9.f}};
      }
      s.topLogprobs = coin(0.5) ? 0 : irand(1, maxTop);
      SampleRowParams& q = P[r];
      q.temperature = s.temperature;
      q.topP = s.topP;
      q.topK = s.topK;
      q.minP = s.minP;
      q.repetitionPenalty = s.repetitionPenalty;
      q.topLogprobs = s.topLogprobs;
      q.u = uniformAt(seed, static_cast<uint64_t>(batch), static_cast<uint64_t>(r), 7);
      q.penaltyBegin = static_cast<int64_t>(pen.size());
      pen.insert(pen.end(), hist[r].begin(), hist[r].end());
      q.penaltyEnd = static_cast<int64_t>(pen.size());
      q.biasBegin = static_cast<int64_t>(biasT.size());
      for (const auto& [t, b] : s.logitBias) {
        biasT.push_back(t);
        biasV.push_back(b);
      }
      q.biasEnd = static_cast<int64_t>(biasT.size());
    }
    std::vector<SampleRowParams> Pdev(P);
    if (inject)
      for (auto& q : Pdev) q.u = std::fmod(q.u + 0.37, 1.0);
    std::vector<int32_t> tok(R), tt(R * maxTop);
    std::vector<float> lp(R), tl(R * maxTop);
    const char* err = sampleRowsCudaHost(Z.data(), R, V, Pdev.data(), pen.data(), static_cast<int64_t>(pen.size()),
                                         biasT.data(), biasV.data(), static_cast<int64_t>(biasT.size()), maxTop,
                                         tok.data(), lp.data(), tt.data(), tl.data());
    if (*err) {
      std::printf("FAIL sampleRowsCudaHost: %s\n", err);
      return 1;
    }
    for (int64_t r = 0; r < R; ++r) {
      const float* z = Z.data() + r * V;
      const SampledToken c = sampleLogits(z, V, S[r], hist[r], P[r].u);
      const SamplerSettings& s = S[r];
      const std::string what = "batch " + std::to_string(batch) + " row " + std::to_string(r) + " V=" + std::to_string(V) +
                               " T=" + std::to_string(s.temperature) + " topP=" + std::to_string(s.topP) +
                               " topK=" + std::to_string(s.topK) + " minP=" + std::to_string(s.minP);
      if (c.token != tok[r]) {
        // a boundary case: the CPU sampler reaches the device's token with u or topP moved by 1e-6
        bool near = false;
        for (double d : {-1e-6, 1e-6}) {
          SamplerSettings s2 = s;
          if (sampleLogits(z, V, s, hist[r], std::clamp(P[r].u + d, 0.0, 0.9999999)).token == tok[r]) near = true;
          s2.topP = std::min(1.0, s.topP + d);
          if (sampleLogits(z, V, s2, hist[r], P[r].u).token == tok[r]) near = true;
        }
        if (near) {
          ++boundary;
          std::printf("boundary %s: cpu %d device %d\n", what.c_str(), c.token, tok[r]);
        } else {
          ++tokenBad;
          if (tokenBad <= 10) std::printf("FAIL token %s: cpu %d device %d (u %.6f)\n", what.c_str(), c.token, tok[r], P[r].u);
        }
        continue;  // the logprob is of another token
      }
      const double e = std::fabs(static_cast<double>(c.logprob) - lp[r]);
      maxLpErr = std::max(maxLpErr, e);
      if (!(e <= 1e-5 + 1e-5 * std::fabs(c.logprob))) {
        ++lpBad;
        if (lpBad <= 10) std::printf("FAIL logprob %s: cpu %.8g device %.8g\n", what.c_str(), c.logprob, lp[r]);
      }
      const int64_t K = std::min<int64_t>(V, s.topLogprobs);
      bool ok = static_cast<int64_t>(c.top.size()) == K;
      for (int64_t j = 0; ok && j < maxTop; ++j) {
        if (j < K) {
          ok = tt[r * maxTop + j] == c.top[j].first &&
               std::fabs(tl[r * maxTop + j] - c.top[j].second) <= 1e-5 + 1e-5 * std::fabs(c.top[j].second);
        } else {
          ok = tt[r * maxTop + j] == -1;
        }
      }
      if (!ok) {
        ++topBad;
        if (topBad <= 10) std::printf("FAIL top list %s\n", what.c_str());
      }
    }
    rows += R;
    ++batch;
  }
  const bool tooManyBoundary = boundary * 1000 > std::max<int64_t>(rows, 1000);
  const int64_t failures = tokenBad + lpBad + topBad + (tooManyBoundary ? 1 : 0);
  std::printf("%s %lld rows in %lld launches: %lld token, %lld logprob, %lld top-list mismatches; %lld boundary cases; max |logprob diff| %.3g\n",
              failures ? "FAIL" : "ok  ", static_cast<long long>(rows), static_cast<long long>(batch),
              static_cast<long long>(tokenBad), static_cast<long long>(lpBad), static_cast<long long>(topBad),
              static_cast<long long>(boundary), maxLpErr);
  std::printf("%s (%lld failures, seed %llu)\n", failures ? "MISMATCH" : "all ok", static_cast<long long>(failures),
              static_cast<unsigned long long>(seed));
  return failures ? 1 : 0;
}
