// The policy-loss micro-batch through the engine's host methods (policy_loss.h): the CPU engine's
// policyLossBackward, and the reference the CUDA engine's device path is checked against (scripts/cuda-emu).
#include "engine/policy_loss.h"

#include <cmath>
#include <vector>

#include "engine/engine.h"

namespace clipo::engine {

PolicyLossFigures policyLossBackwardOnHost(Engine& e, const std::vector<int32_t>& tokens,
                                           const std::vector<Span>& spans, const PolicyLossRequest& req) {
  PolicyLossFigures f;
  const ScoreResult r = e.forwardTrain(tokens, spans);
  const int64_t B = static_cast<int64_t>(spans.size()), T = r.T;
  const size_t n = static_cast<size_t>(B * T);
  // the loss mask: the response tokens of the in-loss responses; every response token's log-prob is checked
  std::vector<uint8_t> mask(n, 0);
  for (int64_t b = 0; b < B; ++b) {
    const bool in = !req.inLoss || req.inLoss[b];
    const int64_t len = spans[b].length - spans[b].promptLength;
    for (int64_t t = 0; t < len; ++t) {
      const size_t i = static_cast<size_t>(b * T + t);
      f.nonFiniteLogp += nonFinite(r.logprobs[i]);
      if (!in) continue;
      mask[i] = 1;
      f.entropySum += static_cast<double>(r.entropy[i]);
    }
    if (in) f.tokens += len, f.sequences += len > 0;
  }
  const auto done = [&]() {
    e.releaseActivations();
    return f;
  };
  if (f.nonFiniteLogp > 0 || f.tokens == 0) return done();

  surrogate::Params p = req.loss;
  p.batch = B;
  p.length = T;
  p.knownTokens = f.tokens;
  p.knownSequences = f.sequences;
  surrogate::Inputs in;
  in.logp = r.logprobs.data();
  in.oldLogp = req.oldLogp;
  in.refLogp = req.refLogp;
  in.advantages = req.advantages;
  in.mask = mask.data();
  std::vector<float> grad(n);
  f.loss = surrogate::lossCpu(p, in, grad.data());
  if (!std::isfinite(f.loss.loss)) return done();
  for (float& g : grad) {
    g = scaledGradient(g, req.weight);
    f.nonFiniteGrad += nonFinite(g);
  }
  if (f.nonFiniteGrad > 0) return done();
  std::vector<float> gradEnt;
  if (req.entropyCoef > 0) {
    gradEnt.assign(n, 0.f);
    const float ge = entropyGradient(req.entropyCoef, req.entropyDenominator);
    for (size_t i = 0; i < n; ++i)
      if (mask[i]) gradEnt[i] = ge;
  }
  e.backward(grad.data(), n, gradEnt.empty() ? nullptr : gradEnt.data(), gradEnt.size());
  f.accumulated = true;
  return done();
}

}  // namespace clipo::engine
