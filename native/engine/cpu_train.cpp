// Backward pass through the whole model from d loss / d logp of the response tokens (and optionally d loss / d H of
// their entropies), and AdamW (optim.cpp).
//   d logp_t / d z = onehot(t) - softmax(z)        (z: logits of the row predicting t)
//   d H / d z_i    = -p_i (z_i - sum_j p_j z_j)      (H = lse(z) - sum_j p_j z_j, the entropy of softmax(z))
// The logits of the response rows are recomputed chunk by chunk (never [rows x vocab] at once), then every block is
// differentiated in reverse order with the activations kept by forwardTrain. Weight gradients accumulate into g.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/attention.h"
#include "engine/cpu_model.h"
#include "engine/formulas.h"
#include "engine/gemm.h"
#include "engine/head.h"
#include "engine/mlp.h"
#include "engine/norm_rope.h"
#include "engine/optim.h"

namespace clipo::engine {

void CpuModel::backward(const float* gradLogp, size_t count, const float* gradEntropy, size_t entropyCount) {
  TrainState& st = train_;
  if (st.N == 0 && st.tokens.empty()) throw EngineError("backward: no activations; call forwardTrain first");
  const int64_t N = static_cast<int64_t>(st.tokens.size()), H = cfg.hidden, I = cfg.intermediate,
                V = cfg.vocab, L = cfg.layers, nh = cfg.heads;
  const size_t expected = st.spans.size() * static_cast<size_t>(st.T);
  checkBackwardGradients(gradLogp, count, gradEntropy, entropyCount, expected);
  float* G = g.data();

  // LM head and the final hidden states (head.cpp: headLogprobsBackward), the upstream gradients per scored row
  std::vector<float> dres(N * H, 0.f), dxf(N * H, 0.f);
  {
    const size_t R = st.headRows.size();
    std::vector<float> gl(R), ge(gradEntropy ? R : 0);
    for (size_t r = 0; r < R; ++r) {
      gl[r] = gradLogp[st.headOut[r]];
      if (gradEntropy) ge[r] = gradEntropy[st.headOut[r]];
    }
    headLogprobsBackward(st.xf.data(), H, P(lay_.headOff), V, st.headRows, st.headTargets, gl.data(),
                         gradEntropy ? ge.data() : nullptr, st.probs.empty() ? nullptr : st.probs.data(), dxf.data(),
                         G + lay_.headOff, threads);
  }
  rmsnormBackward(dxf.data(), st.res.data() + L * N * H, st.rstdF.data(), P(lay_.normOff), dres.data(), G + lay_.normOff, N, H,
                  threads);
  dxf = std::vector<float>();

  std::vector<float> act(N * I), dact(N * I), dgu(N * 2 * I), dxn(N * H), dO(N * qd_), dqkv(N * qkv_);
  const AttnShape shape{nh, cfg.kvHeads, cfg.headDim, qkv_, qd_};
  for (int64_t l = L - 1; l >= 0; --l) {
    const LayerOffsets& o = lay_.layers[l];
    const float* xin = st.res.data() + l * N * H;
    const float* xn1 = st.xn1.data() + l * N * H;
    const float* rstd1 = st.rstd1.data() + l * N;
    const float* qkv = st.qkv.data() + l * N * qkv_;
    const float* ao = st.o.data() + l * N * qd_;
    const float* lse = st.lse.data() + l * N * nh;
    const float* x1 = st.x1.data() + l * N * H;
    const float* xn2 = st.xn2.data() + l * N * H;
    const float* rstd2 = st.rstd2.data() + l * N;
    const float* gu = st.gu.data() + l * N * 2 * I;

    // MLP: out = x1 + down(act), act = silu(gate) * up
    swiglu(gu, act.data(), N, I, threads);
    matmulNN(N, I, H, dres.data(), P(o.wd), dact.data(), false, threads);
    matmulTN(H, I, N, dres.data(), act.data(), G + o.wd, true, threads);
    if (o.bd != kAbsent) colSumAccumulate(dres.data(), N, H, G + o.bd, threads);
    swigluBackward(gu, dact.data(), dgu.data(), N, I, threads);
    matmulTN(2 * I, H, N, dgu.data(), xn2, G + o.wgu, true, threads);
    if (o.bgu != kAbsent) colSumAccumulate(dgu.data(), N, 2 * I, G + o.bgu, threads);
    matmulNN(N, H, 2 * I, dgu.data(), P(o.wgu), dxn.data(), false, threads);
    rmsnormBackward(dxn.data(), x1, rstd2, P(o.ln2), dres.data(), G + o.ln2, N, H, threads);

    // attention: x1 = xin + o_proj(attn(rope(q), rope(k), v))
    matmulTN(H, qd_, N, dres.data(), ao, G + o.wo, true, threads);
    if (o.bo != kAbsent) colSumAccumulate(dres.data(), N, H, G + o.bo, threads);
    matmulNN(N, qd_, H, dres.data(), P(o.wo), dO.data(), false, threads);
    std::fill(dqkv.begin(), dqkv.end(), 0.f);
    attentionSpansBackward(shape, st.spans, qkv, ao, lse, dO.data(), dqkv.data(), threads);
    rope(dqkv.data(), qkv_, N, nh, st.pos.data(), true);
    rope(dqkv.data() + qd_, qkv_, N, cfg.kvHeads, st.pos.data(), true);
    matmulTN(qkv_, H, N, dqkv.data(), xn1, G + o.wqkv, true, threads);
    if (o.bqkv != kAbsent) colSumAccumulate(dqkv.data(), N, qkv_, G + o.bqkv, threads);
    matmulNN(N, H, qkv_, dqkv.data(), P(o.wqkv), dxn.data(), false, threads);
    rmsnormBackward(dxn.data(), xin, rstd1, P(o.ln1), dres.data(), G + o.ln1, N, H, threads);
  }

  // embeddings: rows of the same token add up, in position order (norm_rope.cpp)
  embedRowsBackward(dres.data(), H, st.tokens.data(), N, G + lay_.embOff, threads);
}

void CpuModel::zeroGrad() {
  if (frozen_) throw EngineError("this engine is a frozen copy: it has no gradients or optimizer");
  if (!g.empty()) std::fill(g.begin(), g.end(), 0.f);
}

double CpuModel::adamw(double lr, double beta1, double beta2, double eps, double weightDecay, double maxGradNorm) {
  ensureGrads();
  if (m.empty()) {
    m.assign(w.size(), 0.f);
    v.assign(w.size(), 0.f);
  }
  // torch.optim.AdamW with clip_grad_norm_ (optim.cpp)
  const std::vector<AdamwSegment> segs = adamwSegments(cfg, lay_);
  AdamwHyper h{lr, beta1, beta2, eps, weightDecay, maxGradNorm};
  h.bf16Master = bf16Master;
  h.seed = masterSeed;
  const double norm = adamwStepCpu(w.data(), m.data(), v.data(), g.data(), w.size(), segs.data(), segs.size(), h,
                                   adamSteps + 1, threads);
  adamSteps += 1;
  return norm;
}

void CpuModel::setMasterWeights(bool bf16, uint64_t seed) {
  if (frozen_) throw EngineError("this engine is a frozen copy: it has no gradients or optimizer");
  if (bf16 && !bf16Master)
    for (float& x : w) x = bf16ToFloat(floatToBf16(x));  // the master is bf16 from here on
  bf16Master = bf16;
  masterSeed = seed;
}

}  // namespace clipo::engine

namespace clipo::engine {

void CpuModel::setOptimizerState(OptimizerState s) {
  if (frozen_) throw EngineError("this engine is a frozen copy: it has no gradients or optimizer");
  if (s.m.size() != w.size() || s.v.size() != w.size())
    throw EngineError("optimizer state: m and v must hold one value per parameter (" + std::to_string(w.size()) + ")");
  adamSteps = s.step;
  m = std::move(s.m);
  v = std::move(s.v);
}

}  // namespace clipo::engine
