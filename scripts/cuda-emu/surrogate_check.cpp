// The surrogate CUDA kernel (rewritten for host emulation by launch_to_emu.py) against the CPU kernel on random
// inputs: every mode x aggregation x KL on/off (x dual clip for token), T % 4 == 0 (float4 loads) and not (scalar),
// an all-masked row, an all-masked batch, with N and Bv counted on the host (knownTokens/knownSequences) and on the
// device (the counting launch); the output is NaN-poisoned before each call. Exit status 1 on a mismatch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/surrogate/surrogate_loss.h"

using namespace clipo::surrogate;

static int failures = 0;

static void expectClose(double a, double b, double rel, const std::string& what) {
  if (!(std::fabs(a - b) <= rel * (1 + std::fabs(b)))) {
    std::printf("FAIL %s: cuda %.9g cpu %.9g\n", what.c_str(), a, b);
    ++failures;
  }
}

static void check(Mode mode, Agg agg, bool ref, float dual, int B, int T, bool allMasked, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::normal_distribution<float> nrm(0.f, 1.f);
  const size_t n = static_cast<size_t>(B) * T;
  std::vector<float> lp(n), old(n), rf(n), adv(B), gCpu(n), gGpu(n);
  std::vector<uint8_t> mask(n);
  for (int i = 0; i < B; ++i) {
    adv[i] = i % 5 == 2 ? 0.f : nrm(rng);
    const float scale = mode == Mode::Sequence ? 0.02f + 0.3f * u(rng) : 0.1f + 0.6f * u(rng);
    const int len = 1 + static_cast<int>(u(rng) * T);
    for (int t = 0; t < T; ++t) {
      const size_t k = static_cast<size_t>(i) * T + t;
      lp[k] = -3.f * u(rng) - 0.01f;
      old[k] = lp[k] - scale * (u(rng) < 0.1f ? 4.f : 1.f) * nrm(rng);
      rf[k] = lp[k] + 0.5f * nrm(rng);
      mask[k] = (!allMasked && i != 1 && t < len && u(rng) < 0.9f) ? 1 : 0;
    }
  }
  Params p;
  p.batch = B;
  p.length = T;
  p.mode = mode;
  p.agg = agg;
  p.clipLow = mode == Mode::Sequence ? 3e-4f : (mode == Mode::GeoMean ? 0.4f : 0.2f);
  p.clipHigh = mode == Mode::Sequence ? 4e-4f : (mode == Mode::GeoMean ? 0.4f : 0.28f);
  p.dualClip = dual;
  p.klCoef = ref ? 0.05f : 0.f;
  Inputs in{lp.data(), old.data(), ref ? rf.data() : nullptr, adv.data(), mask.data()};
  const Result c = lossCpu(p, in, gCpu.data());
  for (bool countOnDevice : {false, true}) {
  Result g;
  std::fill(gGpu.begin(), gGpu.end(), 0.f);
  const char* err = lossCudaHost(p, in, gGpu.data(), &g, true, countOnDevice);
  const std::string name = "mode " + std::to_string(static_cast<int>(mode)) + " agg " + std::to_string(static_cast<int>(agg)) +
                           " ref " + std::to_string(ref) + " dual " + std::to_string(dual) + " T " + std::to_string(T) +
                           (allMasked ? " all-masked" : "") + (countOnDevice ? " (device counts)" : " (host counts)");
  if (err && *err) {
    std::printf("FAIL %s: %s\n", name.c_str(), err);
    ++failures;
    continue;
  }
  expectClose(g.loss, c.loss, 1e-5, name + " loss");
  expectClose(g.pgLoss, c.pgLoss, 1e-5, name + " pgLoss");
  expectClose(g.klLoss, c.klLoss, 1e-5, name + " klLoss");
  expectClose(g.approxKl, c.approxKl, 1e-5, name + " approxKl");
  expectClose(g.clipFracHigh, c.clipFracHigh, 1e-12, name + " clipFracHigh");
  expectClose(g.clipFracLow, c.clipFracLow, 1e-12, name + " clipFracLow");
  expectClose(g.dualClipFrac, c.dualClipFrac, 1e-12, name + " dualClipFrac");
  if (g.tokens != c.tokens || g.sequences != c.sequences) {
    std::printf("FAIL %s: counts\n", name.c_str());
    ++failures;
  }
  double gmax = 0;
  for (float v : gCpu) gmax = std::fmax(gmax, std::fabs(v));
  int bad = 0;
  for (size_t k = 0; k < n; ++k)
    if (!(std::fabs(gGpu[k] - gCpu[k]) <= 1e-5 * gmax + 1e-5 * std::fabs(gCpu[k]))) ++bad;
  if (bad) {
    std::printf("FAIL %s: %d gradient elements differ (or were not written)\n", name.c_str(), bad);
    ++failures;
  } else {
    std::printf("ok   %s  loss %.6g  clip %.3f/%.3f/%.3f\n", name.c_str(), c.loss, c.clipFracHigh, c.clipFracLow, c.dualClipFrac);
  }
  }
}

int main() {
  unsigned seed = 1;
  for (int T : {37, 64})
    for (Mode mode : {Mode::Token, Mode::Sequence, Mode::GeoMean})
      for (Agg agg : {Agg::TokenMean, Agg::SeqMeanTokenMean, Agg::SeqMeanTokenSum})
        for (bool ref : {false, true})
          for (float dual : mode == Mode::Token ? std::vector<float>{0.f, 3.f} : std::vector<float>{0.f})
            check(mode, agg, ref, dual, 9, T, false, seed++);
  check(Mode::Token, Agg::TokenMean, true, 3.f, 3, 16, true, 99);
  check(Mode::GeoMean, Agg::SeqMeanTokenMean, false, 0.f, 3, 13, true, 98);
  std::printf("%s (%d failures)\n", failures ? "FAILED" : "all ok", failures);
  return failures ? 1 : 0;
}
