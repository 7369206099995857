// The CUDA engine's policyLossBackward (engine.h; the steps and their formulas: policy_loss.h): one micro-batch of the
// policy update with its token-level tensors on the device. Included by cuda_engine.cu after cuda_train.cuh; like
// it, it launches nothing itself (the glue kernels are in policy_loss.cu, the loss in kernels/surrogate/
// surrogate_loss.cu, so the host emulation of scripts/cuda-emu/ sees every launch).
//
//   forwardTrainOn(download false)      log-probs and entropies stay in st.logp / st.ent (one per scored row)
//   upload old/ref log-probs, advantages, the row map and the in-loss flags (host -> device, once per micro-batch)
//   policyLossScatterCuda               rows -> the surrogate kernel's [B*T] layout and loss mask; entropy sum and
//                                       non-finite log-probs
//   surrogate::lossCudaDevice           d loss / d logp [B*T] and the loss's scalars (N and Bv known on the host)
//   policyLossGatherCuda                weighted gradient and entropy-bonus gradient back to rows; non-finite count
//   download the scalars (one sync)     a non-finite log-prob, loss or gradient stops here, before the backward
//   backwardRows                        the backward from the device's per-row gradients
//
// The old and reference log-probs come from the rollout's scoring pass on the host; keeping them on the device from
// that pass to the update (scoring straight into a resident [B*T] buffer) would save their upload, a possible
// follow-up: at 4 bytes a token it is small next to the forward.
#pragma once
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/policy_loss.h"
#include "kernels/surrogate/surrogate_loss.h"

namespace clipo::engine {

namespace {

template <typename T>
PolicyLossFigures CudaModel<T>::policyLossBackward(const std::vector<int32_t>& tokens, const std::vector<Span>& spans,
                                                   const PolicyLossRequest& req) {
  PolicyLossFigures f;
  const int64_t B = static_cast<int64_t>(spans.size());
  // the loss's token and sequence counts are known from the response lengths (the kernel skips its counting pass)
  std::vector<int32_t> inLoss(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    inLoss[b] = !req.inLoss || req.inLoss[b] ? 1 : 0;
    const int64_t len = spans[b].length - spans[b].promptLength;
    if (inLoss[b]) f.tokens += len, f.sequences += len > 0;
  }
  forwardTrainOn(tokens, spans, false);
  TrainActs& st = tr_;
  const int64_t R = st.R, T_ = st.respLen;
  if (R == 0) {  // every response is empty: nothing to check, nothing in the loss
    releaseActivations();
    return f;
  }
  const size_t n = static_cast<size_t>(B * T_), r_ = static_cast<size_t>(R);
  const bool hasRef = req.refLogp != nullptr, hasEnt = req.entropyCoef > 0;
  surrogate::Params p = req.loss;
  p.batch = B;
  p.length = T_;
  p.knownTokens = f.tokens;
  p.knownSequences = f.sequences;
  const size_t wsBytes = surrogate::cudaWorkspaceBytes(p);
  const size_t nf = n * (hasRef ? 4 : 3) + static_cast<size_t>(B);
  requireFree(4.0 * static_cast<double>(nf + r_ * (hasEnt ? 3 : 2) + static_cast<size_t>(B)) +
                  static_cast<double>(n + wsBytes) + 1024 * 1024,
              "the policy loss of " + std::to_string(R) + " response tokens");

  // [B*T] floats: logp | oldLogp | refLogp (with KL) | gradient, then the advantages [B]
  DevBuf<float> fl;
  fl.ensure(nf);
  float* logpBT = fl.p;
  float* old = fl.p + n;
  float* ref = hasRef ? fl.p + 2 * n : nullptr;
  float* grad = fl.p + (hasRef ? 3 : 2) * n;
  float* adv = grad + n;
  DevBuf<uint8_t> mask;
  mask.ensure(n);
  // int32: each row's index b*T + t, then the in-loss flags [B]
  DevBuf<int32_t> ints;
  ints.ensure(r_ + static_cast<size_t>(B));
  std::vector<int32_t> hostInts(r_ + static_cast<size_t>(B));
  for (size_t r = 0; r < r_; ++r) hostInts[r] = static_cast<int32_t>(st.headOut[r]);
  std::copy(inLoss.begin(), inLoss.end(), hostInts.begin() + static_cast<std::ptrdiff_t>(r_));
  DevBuf<float> rows;  // per-row d loss / d logp, then (entropy bonus) d loss / d H
  rows.ensure(r_ * (hasEnt ? 2 : 1));
  DevBuf<char> ws;
  ws.ensure(wsBytes);
  DevBuf<surrogate::Result> res;
  res.ensure(1);
  DevBuf<PolicyLossDeviceSums> sums;
  sums.ensure(1);

  check(cudaMemsetAsync(ws.p, 0, wsBytes, stream_), "cudaMemsetAsync");  // the kernel's block counter starts at 0
  check(cudaMemcpyAsync(old, req.oldLogp, n * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload");
  if (hasRef) check(cudaMemcpyAsync(ref, req.refLogp, n * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload");
  check(cudaMemcpyAsync(adv, req.advantages, static_cast<size_t>(B) * sizeof(float), cudaMemcpyHostToDevice, stream_),
        "upload");
  check(cudaMemcpyAsync(ints.p, hostInts.data(), hostInts.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
        "upload");
  const int32_t* out = ints.p;
  const int32_t* inLossDev = ints.p + r_;
  check(policyLossScatterCuda(st.logp.p, st.ent.p, out, R, inLossDev, B, T_, logpBT, mask.p, sums.p, stream_));
  if (f.tokens > 0) {
    surrogate::Inputs in;
    in.logp = logpBT;
    in.oldLogp = old;
    in.refLogp = ref;
    in.advantages = adv;
    in.mask = mask.p;
    check(surrogate::lossCudaDevice(p, in, grad, res.p, ws.p, stream_));
    const float ge = hasEnt ? entropyGradient(req.entropyCoef, req.entropyDenominator) : 0.f;
    check(policyLossGatherCuda(grad, out, R, inLossDev, T_, req.weight, ge, rows.p, hasEnt ? rows.p + r_ : nullptr,
                               sums.p, stream_));
  }
  PolicyLossDeviceSums hs{};
  surrogate::Result hr;
  check(cudaMemcpyAsync(&hs, sums.p, sizeof hs, cudaMemcpyDeviceToHost, stream_), "download");
  if (f.tokens > 0) check(cudaMemcpyAsync(&hr, res.p, sizeof hr, cudaMemcpyDeviceToHost, stream_), "download");
  sync();
  // the [B*T] buffers are done with; the backward needs only the rows
  fl.release();
  mask.release();
  ws.release();

  // the figures as the host path (policy_loss.cpp) reports them: each check stops the ones after it
  f.entropySum = hs.entropySum;
  f.nonFiniteLogp = hs.nonFiniteLogp;
  const auto done = [&]() {
    releaseActivations();
    return f;
  };
  if (f.nonFiniteLogp > 0 || f.tokens == 0) return done();
  f.loss = hr;
  if (!std::isfinite(f.loss.loss)) return done();
  f.nonFiniteGrad = hs.nonFiniteGrad;
  if (f.nonFiniteGrad > 0) return done();
  backwardRows(rows.p, hasEnt ? rows.p + r_ : nullptr);
  f.accumulated = true;
  return done();
}

}  // namespace

}  // namespace clipo::engine
