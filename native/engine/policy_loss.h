// One micro-batch of the policy update in one engine call (Engine::policyLossBackward, engine.h): the training
// forward, the clipped surrogate loss (kernels/surrogate, the same kernel the JS API runs) on its log-probs, the
// micro-batch weight and the entropy bonus, and the backward, gradients accumulated. Only scalars come back.
//
//   CPU engine   policyLossBackwardOnHost (policy_loss.cpp): forwardTrain's [B*T] arrays on the host, lossCpu,
//                backward; the composition src/rl/trainer.ts ran itself before this call existed.
//   CUDA engine  cuda_policy_loss.cuh: the same steps on the device. forwardTrain keeps one log-prob and entropy per
//                scored row (R rows, row r at index out[r] = b*T + t of the [B*T] layout); the glue kernels below
//                scatter the log-probs to the surrogate kernel's [B*T] layout and gather its gradient back to rows,
//                so log-probs, entropies and gradients never leave the device.
//
// Per token (b, t) of an in-loss response (inLoss[b] != 0, t < response length):
//   d loss / d logp_bt = weight * surrogate gradient      (scaledGradient: in double, rounded to float once)
//   d loss / d H_bt    = -entropyCoef / entropyDenominator (entropyGradient; only when entropyCoef > 0)
// and 0 on every other token. A response out of the loss (DAPO's overlong filter) is masked out of the kernel, so it
// counts in neither N nor Bv; its log-probs are still computed and checked for NaN/Inf like every other response's.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/config.h"
#include "engine/formulas.h"
#include "kernels/surrogate/surrogate_loss.h"

namespace clipo::engine {

// What policyLossBackward takes besides the sequences. Arrays are host memory; oldLogp and refLogp are [B*T] with
// T the micro-batch's longest response (forwardTrain's layout); values past a response's end are ignored.
struct PolicyLossRequest {
  surrogate::Params loss;              // mode, agg, clipLow, clipHigh, dualClip, klCoef (batch, length and the
                                       // known counts are the engine's to set)
  const float* oldLogp = nullptr;      // [B*T] log pi_old (the rollout's scoring pass)
  const float* refLogp = nullptr;      // [B*T] log pi_ref, or null: no KL term
  const float* advantages = nullptr;   // [B]
  const uint8_t* inLoss = nullptr;     // [B] 0: the response takes no part in the loss; null: every one does
  double weight = 1.0;                 // the micro-batch's weight in its mini-batch's aggregate
  double entropyCoef = 0.0;            // > 0: the entropy bonus -entropyCoef * sum H / entropyDenominator
  double entropyDenominator = 1.0;     // the mini-batch's in-loss tokens
};

// The scalars that come back. `loss` is the kernel's Result over the micro-batch (before `weight`).
struct PolicyLossFigures {
  surrogate::Result loss;
  double entropySum = 0.0;       // sum of the entropies of the in-loss tokens
  int64_t tokens = 0;            // in-loss response tokens (N)
  int64_t sequences = 0;         // in-loss responses with at least one token (Bv)
  int64_t nonFiniteLogp = 0;     // response tokens (in the loss or not) whose log-prob is NaN or infinite
  int64_t nonFiniteGrad = 0;     // tokens whose weighted d loss / d logp is NaN or infinite
  bool accumulated = false;      // the backward ran: false when there was nothing in the loss, or a log-prob, the
                                 // loss or a gradient was not finite (then the gradients are left as they were)
};

// d loss / d logp of one token: the kernel's gradient times the micro-batch weight, in double, rounded to float once
// (what the trainer's loop computed in JavaScript).
CLIPO_ENGINE_HD inline float scaledGradient(float g, double weight) {
  return static_cast<float>(static_cast<double>(g) * weight);
}
// d loss / d H of an in-loss token under the entropy bonus
inline float entropyGradient(double coef, double denominator) { return static_cast<float>(-coef / denominator); }
// NaN or infinity, by the exponent bits (fast-math builds may fold std::isfinite away)
CLIPO_ENGINE_HD inline bool nonFinite(float x) { return (floatBits(x) & 0x7f800000u) == 0x7f800000u; }

class Engine;
// The composition through the Engine's host methods (forwardTrain, surrogate::lossCpu, backward): the CPU engine's
// policyLossBackward, and the reference the CUDA engine's device path is checked against.
PolicyLossFigures policyLossBackwardOnHost(Engine& e, const std::vector<int32_t>& tokens,
                                           const std::vector<Span>& spans, const PolicyLossRequest& req);

// ---- the CUDA engine's glue kernels (policy_loss.cu; builds with CLIPO_WITH_CUDA) ----
// Device pointers, `stream` a cudaStream_t; nothing synchronizes; "" or an error message.
// out [R]: row r's index b*T + t; inLoss [B] (int32, 0/1).
struct PolicyLossDeviceSums {
  double entropySum;           // over the in-loss rows, summed in a fixed order
  unsigned int nonFiniteLogp;  // rows whose log-prob is NaN or infinite
  unsigned int nonFiniteGrad;  // rows whose weighted gradient is NaN or infinite (policyLossGatherCuda)
};
// logpBT [B*T] <- the rows' log-probs (0 elsewhere), maskBT [B*T] <- 1 on the in-loss rows (0 elsewhere); *sums <- the
// entropy sum and the non-finite log-prob count (nonFiniteGrad <- 0).
const char* policyLossScatterCuda(const float* logpRows, const float* entRows, const int32_t* out, int64_t R,
                                  const int32_t* inLoss, int64_t B, int64_t T, float* logpBT, uint8_t* maskBT,
                                  PolicyLossDeviceSums* sums, void* stream);
// gradRows[r] = scaledGradient(gradBT[out[r]], weight); entGradRows[r] (when not null) = entGrad on in-loss rows, else
// 0; sums->nonFiniteGrad += rows whose gradRows is not finite (an integer count: the same whatever the order).
const char* policyLossGatherCuda(const float* gradBT, const int32_t* out, int64_t R, const int32_t* inLoss, int64_t T,
                                 double weight, float entGrad, float* gradRows, float* entGradRows,
                                 PolicyLossDeviceSums* sums, void* stream);

}  // namespace clipo::engine
