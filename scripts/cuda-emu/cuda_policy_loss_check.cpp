// The CUDA engine's policy-loss micro-batch on the device (Engine::policyLossBackward: native/engine/
// cuda_policy_loss.cuh, the glue kernels of policy_loss.cu and the surrogate kernel, all rewritten for host emulation
// by launch_to_emu.py) in fp32 mode, on a tiny random model, against the CPU engine's policyLossBackward (the host
// composition, policy_loss.cpp): accumulated gradients within 1e-5 of the largest entry and every figure within 1e-5
// (relative; counts and flags exact). Without `quick` also against the same CUDA engine through its host methods
// (policyLossBackwardOnHost: forwardTrain's download, the CPU surrogate kernel, backward's upload), within 1e-5: the
// two differ only in the surrogate kernel's exp (CPU polynomial, device expf) and summation order.
// Cases, each over two micro-batches of different shapes (the second with an empty response), gradients accumulated:
// quick: GRPO with KL (reference log-probs, seq-mean-token-mean) and the entropy bonus; DAPO with overlong filtering
// masking a response out (inLoss 0). Without `quick` also GRPO alone, GSPO (sequence mode) and GMPO (geo_mean) with
// KL. Then: a NaN old log-prob makes the loss non-finite and that micro-batch accumulates nothing; a batch of empty
// responses; without `quick` also the same bits when run again and with per-layer recomputation, and NaN weights
// making every log-prob non-finite, counted, nothing accumulated.
// Usage: check [seed] [quick]. Exit status 1 on a mismatch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/cpu_model.h"
#include "engine/cuda_engine.h"
#include "engine/engine.h"
#include "engine/policy_loss.h"

using namespace clipo::engine;
namespace sg = clipo::surrogate;

static int failures = 0;
static std::mt19937 rng;
static const auto t0 = std::chrono::steady_clock::now();

static void report(bool ok, const std::string& what, const std::string& detail = "") {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s %s %s [%.1f s]\n", ok ? "ok  " : "FAIL", what.c_str(), detail.c_str(), s);
  std::fflush(stdout);
  if (!ok) ++failures;
}
static std::string fmt(const char* what, double v) {
  char b[96];
  std::snprintf(b, sizeof b, "(%s %.3g)", what, v);
  return b;
}
static double maxAbs(const std::vector<float>& a) {
  double m = 0;
  for (float x : a) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}
// max |a - b| / max |b|
static double relDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.empty()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m / std::max(maxAbs(b), 1e-30);
}

static void fillWeights(Engine& a, Engine& b) {
  std::normal_distribution<float> d(0.f, 1.f);
  for (const ParamInfo& p : a.layout().params) {
    std::vector<float> v(p.size);
    const bool norm = p.name.find("norm") != std::string::npos;
    const bool emb = p.name.find("embed") != std::string::npos || p.name.find("lm_head") != std::string::npos;
    for (auto& x : v) x = norm ? 1.f + 0.1f * d(rng) : (emb ? 0.5f : 0.15f) * d(rng);
    a.setParameter(p, v.data());
    b.setParameter(p, v.data());
  }
}

// One micro-batch with its loss inputs (the request's pointers are set from these just before a call).
struct MicroBatch {
  std::vector<int32_t> tokens;
  std::vector<Span> spans;
  std::vector<float> oldLogp, refLogp, advantages;
  std::vector<uint8_t> inLoss;
  int64_t T = 0;
};

static std::vector<MicroBatch> microBatches(Engine& cpu, int64_t V) {
  std::vector<MicroBatch> mbs(2);
  mbs[0].spans = {Span{0, 7, 3}, Span{7, 4, 1}, Span{11, 7, 2}};
  mbs[1].spans = {Span{0, 6, 2}, Span{6, 3, 3}, Span{9, 5, 4}};
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(V - 1));
  std::normal_distribution<float> d(0.f, 1.f);
  for (MicroBatch& mb : mbs) {
    const Span& last = mb.spans.back();
    mb.tokens.resize(static_cast<size_t>(last.start + last.length));
    for (auto& x : mb.tokens) x = tok(rng);
    // the old and reference policies near the current one: ratios around 1, some of them clipped
    const ScoreResult r = cpu.score(mb.tokens, mb.spans, false, false);
    mb.T = r.T;
    mb.oldLogp.resize(r.logprobs.size());
    mb.refLogp.resize(r.logprobs.size());
    for (size_t i = 0; i < r.logprobs.size(); ++i) {
      mb.oldLogp[i] = r.mask[i] ? r.logprobs[i] + 0.5f * d(rng) : 0.f;
      mb.refLogp[i] = r.mask[i] ? r.logprobs[i] + 0.3f * d(rng) : 0.f;
    }
    for (size_t b = 0; b < mb.spans.size(); ++b) mb.advantages.push_back(d(rng));
    mb.inLoss.assign(mb.spans.size(), 1);
  }
  return mbs;
}

struct Case {
  std::string name;
  sg::Params loss;
  bool ref = false;
  double entropyCoef = 0;
  bool filterOne = false;  // DAPO's overlong filter: the first micro-batch's second response is out of the loss
};

static Case makeCase(const std::string& name, sg::Mode mode, sg::Agg agg, float clipLow, float clipHigh, float dual,
                     float klCoef = 0) {
  Case c;
  c.name = name;
  c.loss.mode = mode;
  c.loss.agg = agg;
  c.loss.clipLow = clipLow;
  c.loss.clipHigh = clipHigh;
  c.loss.dualClip = dual;
  c.loss.klCoef = klCoef;
  c.ref = klCoef > 0;
  return c;
}

// the micro-batches of a case through one of the three paths; gradients accumulated from zero
enum class Path { Device, EngineHost, Cpu };
static std::vector<PolicyLossFigures> runCase(Engine& e, Path path, const Case& c, const std::vector<MicroBatch>& mbs) {
  e.zeroGrad();
  int64_t miniTokens = 0;
  for (const MicroBatch& mb : mbs)
    for (size_t b = 0; b < mb.spans.size(); ++b)
      if (!(c.filterOne && &mb == &mbs[0] && b == 1)) miniTokens += mb.spans[b].length - mb.spans[b].promptLength;
  std::vector<PolicyLossFigures> out;
  for (const MicroBatch& mb : mbs) {
    std::vector<uint8_t> inLoss = mb.inLoss;
    if (c.filterOne && &mb == &mbs[0]) inLoss[1] = 0;
    PolicyLossRequest req;
    req.loss = c.loss;
    req.oldLogp = mb.oldLogp.data();
    req.refLogp = c.ref ? mb.refLogp.data() : nullptr;
    req.advantages = mb.advantages.data();
    req.inLoss = inLoss.data();
    req.weight = &mb == &mbs[0] ? 0.625 : 0.375;
    req.entropyCoef = c.entropyCoef;
    req.entropyDenominator = static_cast<double>(miniTokens);
    out.push_back(path == Path::EngineHost ? policyLossBackwardOnHost(e, mb.tokens, mb.spans, req)
                                           : e.policyLossBackward(mb.tokens, mb.spans, req));
  }
  return out;
}

// every figure within tol (relative to max(1, |b|)), counts and flags exact
static double figureDiff(const std::vector<PolicyLossFigures>& a, const std::vector<PolicyLossFigures>& b, bool* exact) {
  double m = 0;
  *exact = a.size() == b.size();
  for (size_t k = 0; *exact && k < a.size(); ++k) {
    const PolicyLossFigures &x = a[k], &y = b[k];
    const double xs[] = {x.loss.loss, x.loss.pgLoss, x.loss.klLoss, x.loss.clipFracHigh, x.loss.clipFracLow,
                         x.loss.dualClipFrac, x.loss.approxKl, x.entropySum};
    const double ys[] = {y.loss.loss, y.loss.pgLoss, y.loss.klLoss, y.loss.clipFracHigh, y.loss.clipFracLow,
                         y.loss.dualClipFrac, y.loss.approxKl, y.entropySum};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; ++i)
      m = std::max(m, std::fabs(xs[i] - ys[i]) / std::max(1.0, std::fabs(ys[i])));
    *exact = *exact && x.tokens == y.tokens && x.sequences == y.sequences && x.loss.tokens == y.loss.tokens &&
             x.loss.sequences == y.loss.sequences && x.nonFiniteLogp == y.nonFiniteLogp &&
             x.nonFiniteGrad == y.nonFiniteGrad && x.accumulated == y.accumulated;
  }
  return m;
}

int main(int argc, char** argv) {
  rng.seed(argc > 1 ? static_cast<unsigned>(std::atoi(argv[1])) : 1234u);
  const bool quick = argc > 2 && std::string(argv[2]) == "quick";
  ModelConfig a;
  a.vocab = 64, a.hidden = 32, a.intermediate = 48, a.layers = 2, a.heads = 2, a.kvHeads = 1, a.headDim = 16;
  a.attentionBias = true;
  CpuModel cpu(a, 1);
  auto gpu = createCudaEngine(a, 1, "fp32");
  fillWeights(cpu, *gpu);
  const auto mbs = microBatches(cpu, a.vocab);

  using M = sg::Mode;
  using A = sg::Agg;
  std::vector<Case> cases = {
      makeCase("grpo with KL (reference log-probs, seq-mean-token-mean) and the entropy bonus", M::Token,
               A::SeqMeanTokenMean, 0.2f, 0.2f, 3.f, 0.05f),
      makeCase("dapo with overlong filtering (a response out of the loss)", M::Token, A::TokenMean, 0.2f, 0.28f, 3.f),
  };
  cases[0].entropyCoef = 0.01;
  cases[1].filterOne = true;
  if (!quick) {
    cases.push_back(makeCase("grpo (token-mean, dual clip 3)", M::Token, A::TokenMean, 0.2f, 0.2f, 3.f));
    cases.push_back(makeCase("gspo (sequence mode)", M::Sequence, A::SeqMeanTokenMean, 0.2f, 0.25f, 0.f));
    cases.push_back(makeCase("gmpo (geo_mean) with KL", M::GeoMean, A::SeqMeanTokenSum, 0.4f, 0.4f, 0.f, 0.05f));
  }

  std::vector<float> firstGrad;
  for (const Case& c : cases) {
    std::printf("-- %s\n", c.name.c_str());
    const auto fd = runCase(*gpu, Path::Device, c, mbs);
    const auto gd = gpu->exportGradients();
    if (firstGrad.empty()) firstGrad = gd;
    const auto fc = runCase(cpu, Path::Cpu, c, mbs);
    const auto gc = cpu.exportGradients();
    bool accumulated = true;
    for (const auto& f : fd) accumulated = accumulated && f.accumulated;
    report(accumulated && maxAbs(gd) > 0, c.name + ": both micro-batches accumulated a nonzero gradient",
           fmt("largest", maxAbs(gd)) + fmt("pg loss", fd[0].loss.pgLoss) + fmt("clip high", fd[0].loss.clipFracHigh) +
               fmt("clip low", fd[0].loss.clipFracLow) + fmt("dual", fd[0].loss.dualClipFrac));
    bool exact = false;
    const double dc = relDiff(gd, gc), fdc = figureDiff(fd, fc, &exact);
    report(dc <= 1e-5 && fdc <= 1e-5 && exact,
           c.name + ": device path = the CPU engine's policyLossBackward, gradients and figures within 1e-5",
           fmt("gradient", dc) + fmt("figures", fdc));
    if (quick) continue;
    const auto fh = runCase(*gpu, Path::EngineHost, c, mbs);
    const auto gh = gpu->exportGradients();
    const double dh = relDiff(gd, gh), fdh = figureDiff(fd, fh, &exact);
    report(dh <= 1e-5 && fdh <= 1e-5 && exact,
           c.name + ": device path = the engine's host path, gradients and figures within 1e-5",
           fmt("gradient", dh) + fmt("figures", fdh));
  }

  // deterministic: the first case again gives the same bits
  if (!quick) {
    runCase(*gpu, Path::Device, cases[0], mbs);
    report(gpu->exportGradients() == firstGrad, "the same gradients bit for bit when run again");
    // per-layer activation recomputation: the backward re-runs each layer's forward, the same bits
    gpu->setCheckpointing(true);
    runCase(*gpu, Path::Device, cases[0], mbs);
    report(gpu->exportGradients() == firstGrad,
           "with per-layer recomputation (setCheckpointing): the same gradient bits");
    gpu->setCheckpointing(false);
  }

  // a NaN old log-prob of an in-loss token: the loss is not finite, nothing accumulates (as on the CPU engine)
  {
    auto bad = mbs;
    bad[0].oldLogp[1] = NAN;
    const auto fd = runCase(*gpu, Path::Device, cases[0], bad);
    const auto fc = runCase(cpu, Path::Cpu, cases[0], bad);
    const auto g = gpu->exportGradients();
    bool exact = false;
    figureDiff(fd, fc, &exact);
    report(!std::isfinite(fd[0].loss.loss) && !fd[0].accumulated && fd[1].accumulated && exact && maxAbs(g) > 0 &&
               std::isfinite(maxAbs(g)),
           "a NaN old log-prob: the loss is reported non-finite, that micro-batch accumulates nothing");
  }
  // NaN weights in the LM head: every log-prob is non-finite, counted, nothing accumulates
  if (!quick) {
    auto badGpu = gpu->clone(false);
    CpuModel badCpu(a, 1);
    const auto w = gpu->exportWeights();
    for (const ParamInfo& p : badCpu.layout().params) {
      std::vector<float> v(w.begin() + p.offset, w.begin() + p.offset + p.size);
      if (p.name == "lm_head.weight") v[5] = NAN;
      badGpu->setParameter(p, v.data());
      badCpu.setParameter(p, v.data());
    }
    const auto fd = runCase(*badGpu, Path::Device, cases[0], mbs);
    const auto fc = runCase(badCpu, Path::Cpu, cases[0], mbs);
    int64_t rows = 0;
    for (const MicroBatch& mb : mbs)
      for (const Span& s : mb.spans) rows += s.length - s.promptLength;
    const auto g = badGpu->exportGradients();
    bool exact = false;
    figureDiff(fd, fc, &exact);
    report(fd[0].nonFiniteLogp + fd[1].nonFiniteLogp == rows && !fd[0].accumulated && !fd[1].accumulated && exact &&
               maxAbs(g) == 0,
           "NaN weights: every log-prob counted non-finite, nothing accumulated",
           fmt("counted", static_cast<double>(fd[0].nonFiniteLogp + fd[1].nonFiniteLogp)) + fmt("rows", rows));
  }
  // a micro-batch of empty responses: nothing to do, and the engine is ready for the next one
  {
    std::vector<MicroBatch> empty(1);
    empty[0].spans = {Span{0, 3, 3}, Span{3, 2, 2}};
    empty[0].tokens = {1, 2, 3, 4, 5};
    empty[0].advantages = {0.5f, -0.5f};
    empty[0].inLoss = {1, 1};
    const auto fd = runCase(*gpu, Path::Device, cases[0], empty);
    report(fd[0].tokens == 0 && !fd[0].accumulated && !gpu->hasActivations(), "a micro-batch of empty responses");
  }
  std::printf(failures ? "%d FAILED\n" : "all ok\n", failures);
  return failures ? 1 : 0;
}
