// The CPU engine's forward passes (scoring, logits, training forward). Formulas follow Hugging Face's
// Qwen2/Llama modeling code:
//   RMSNorm   y = x / sqrt(mean(x^2) + eps) * w
//   RoPE      (x_i, x_{i+d/2}) rotated by pos * invFreq_i, invFreq_i = theta^(-2i/d) (Llama-3 scaling optional)
//   attention softmax(q k^T / sqrt(d) + causal mask) v, kv head of query head h: h / (heads / kvHeads)
//   MLP       down(silu(gate(x)) * up(x))
// Attention keeps only the log-sum-exp per (row, head); the backward pass recomputes the probabilities.
#include "engine/cpu_model.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/attention.h"
#include "engine/gemm.h"
#include "engine/head.h"
#include "engine/mlp.h"
#include "engine/parallel.h"

namespace clipo::engine {

CpuModel::CpuModel(const ModelConfig& c, int t) : cfg(c), threads(std::max(1, t)) {
  validateConfig(c);
  lay_ = makeLayout(c);
  qd_ = lay_.qd;
  kvd_ = lay_.kvd;
  qkv_ = lay_.qkv;
  w.assign(lay_.total, 0.f);
  rope_.invFreq = ropeInvFreq(c);
}

CpuModel::CpuModel(const CpuModel& s, bool fr) : CpuModel(s.cfg, s.threads) {
  w = s.w;
  frozen_ = fr;
}

void CpuModel::setParameter(const ParamInfo& p, const float* data) {
  std::copy(data, data + p.size, w.data() + p.offset);
}

void CpuModel::ensureGrads() {
  if (frozen_) throw EngineError("this engine is a frozen copy: it has no gradients or optimizer");
  if (g.empty()) g.assign(w.size(), 0.f);
}

void CpuModel::embed(const int32_t* tokens, int64_t N, float* x) const {
  embedRows(P(lay_.embOff), cfg.hidden, tokens, N, x, threads);
}

void CpuModel::rmsnorm(const float* x, const float* weight, float* y, float* rstd, int64_t N) const {
  rmsnormRows(x, weight, y, rstd, N, cfg.hidden, cfg.rmsEps, threads);
}

void CpuModel::rope(float* x, int64_t rowStride, int64_t N, int64_t nHeads, const int32_t* pos, bool inverse) const {
  applyRope(rope_, x, rowStride, N, nHeads, cfg.headDim, pos, inverse, threads);
}

void CpuModel::linear(int64_t N, int64_t out, int64_t in, const float* X, size_t wOff, size_t bOff, float* Y, bool rows) {
  if (rows)
    matmulNTRows(N, out, in, X, P(wOff), Y, threads);
  else
    matmulNT(N, out, in, X, P(wOff), Y, false, threads);
  if (bOff != kAbsent) addBias(Y, P(bOff), N, out, threads);
}

void CpuModel::layerForward(int64_t l, int64_t N, const int32_t* pos, const std::vector<Span>* spans, KVCache* cache,
                         const std::vector<std::vector<int64_t>>* prefillSlots, const int64_t* rowSlot, LayerActs& a,
                         bool rowsKernel) {
  const LayerOffsets& o = lay_.layers[l];
  const int64_t H = cfg.hidden, I = cfg.intermediate, nh = cfg.heads, nkv = cfg.kvHeads, hd = cfg.headDim;
  const int64_t qd = qd_, kvd = kvd_, QKV = qkv_;
  rmsnorm(a.xin, P(o.ln1), a.xn1, a.rstd1, N);
  linear(N, QKV, H, a.xn1, o.wqkv, o.bqkv, a.qkv, rowsKernel);
  rope(a.qkv, QKV, N, nh, pos, false);
  rope(a.qkv + qd, QKV, N, nkv, pos, false);
  const AttnShape shape{nh, nkv, hd, QKV, qd};
  if (spans) {
    if (cache && prefillSlots) {
      for (size_t s = 0; s < spans->size(); ++s) {
        const Span& sp = (*spans)[s];
        for (int64_t slot : (*prefillSlots)[s])
          for (int64_t t = 0; t < sp.length; ++t) {
            const float* row = a.qkv + (sp.start + t) * QKV;
            std::memcpy(cache->K(slot, l) + t * kvd, row + qd, kvd * sizeof(float));
            std::memcpy(cache->V(slot, l) + t * kvd, row + qd + kvd, kvd * sizeof(float));
          }
      }
    }
    attentionSpans(shape, *spans, a.qkv, a.o, a.lse, threads);
  } else {
    for (int64_t m = 0; m < N; ++m) {
      const float* row = a.qkv + m * QKV;
      std::memcpy(cache->K(rowSlot[m], l) + pos[m] * kvd, row + qd, kvd * sizeof(float));
      std::memcpy(cache->V(rowSlot[m], l) + pos[m] * kvd, row + qd + kvd, kvd * sizeof(float));
    }
    const float scale = 1.f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for num_threads(threads) schedule(dynamic) collapse(2)
    for (int64_t m = 0; m < N; ++m)
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t grp = h / (nh / nkv);
        attendRow(a.qkv + m * QKV + h * hd, cache->K(rowSlot[m], l) + grp * hd, cache->V(rowSlot[m], l) + grp * hd,
                  kvd, pos[m] + 1, hd, scale, a.o + m * qd + h * hd, a.lse + m * nh + h);
      }
  }
  linear(N, H, qd, a.o, o.wo, o.bo, a.x1, rowsKernel);
  addInPlace(a.x1, a.xin, N * H, threads);
  rmsnorm(a.x1, P(o.ln2), a.xn2, a.rstd2, N);
  linear(N, 2 * I, H, a.xn2, o.wgu, o.bgu, a.gu, rowsKernel);
  swiglu(a.gu, a.act, N, I, threads);
  linear(N, H, I, a.act, o.wd, o.bd, a.xout, rowsKernel);
  addInPlace(a.xout, a.x1, N * H, threads);
}

void CpuModel::forwardStream(const std::vector<int32_t>& tokens, const std::vector<Span>& spans,
                          std::vector<int32_t>& pos, float* xf, KVCache* cache,
                          const std::vector<std::vector<int64_t>>* prefillSlots) {
  const int64_t N = static_cast<int64_t>(tokens.size());
  const int64_t H = cfg.hidden, I = cfg.intermediate;
  pos.resize(N);
  int64_t maxLen = 0;
  for (const Span& s : spans) {
    for (int64_t t = 0; t < s.length; ++t) pos[s.start + t] = static_cast<int32_t>(t);
    maxLen = std::max(maxLen, s.length);
  }
  rope_.ensure(maxLen);
  std::vector<float> resA(N * H), resB(N * H), xn1(N * H), rstd1(N), qkv(N * qkv_), o(N * qd_),
      lse(N * cfg.heads), x1(N * H), xn2(N * H), rstd2(N), gu(N * 2 * I), act(N * I);
  embed(tokens.data(), N, resA.data());
  float *cur = resA.data(), *nxt = resB.data();
  for (int64_t l = 0; l < cfg.layers; ++l) {
    LayerActs a{cur, xn1.data(), rstd1.data(), qkv.data(), o.data(), lse.data(), x1.data(), xn2.data(),
                rstd2.data(), gu.data(), act.data(), nxt};
    layerForward(l, N, pos.data(), &spans, cache, prefillSlots, nullptr, a, false);
    std::swap(cur, nxt);
  }
  rmsnorm(cur, P(lay_.normOff), xf, rstd1.data(), N);
}

void CpuModel::headLogprobs(const float* xf, const std::vector<int64_t>& rows, const std::vector<int64_t>& targets,
                            float* logp, float* entropy, float* keepProbs) {
  clipo::engine::headLogprobs(xf, cfg.hidden, P(lay_.headOff), cfg.vocab, rows, targets, logp, entropy, keepProbs,
                              threads);
}

void CpuModel::logits(const int32_t* tokens, int64_t batch, int64_t length, float* out) {
  const int64_t N = batch * length, H = cfg.hidden;
  std::vector<int32_t> tok(tokens, tokens + N), pos;
  std::vector<Span> spans(batch);
  for (int64_t b = 0; b < batch; ++b) spans[b] = Span{b * length, length, length};
  std::vector<float> xf(N * H);
  forwardStream(tok, spans, pos, xf.data(), nullptr, nullptr);
  matmulNT(N, cfg.vocab, H, xf.data(), P(lay_.headOff), out, false, threads);
}

ScoreResult CpuModel::score(const std::vector<int32_t>& tokens, const std::vector<Span>& spans, bool entropy,
                         bool pooled) {
  const int64_t H = cfg.hidden, B = static_cast<int64_t>(spans.size());
  ScoreResult res;
  for (const Span& s : spans) res.T = std::max(res.T, s.length - s.promptLength);
  res.logprobs.assign(B * res.T, 0.f);
  res.mask.assign(B * res.T, 0);
  if (entropy) res.entropy.assign(B * res.T, 0.f);
  if (pooled) res.pooled.assign(B * H, 0.f);
  // Sequences are processed in groups of about kGroupTokens tokens so that activations stay bounded; every row's
  // result is independent of the grouping.
  const int64_t kGroupTokens = 4096;
  for (int64_t b0 = 0; b0 < B;) {
    int64_t b1 = b0, total = 0;
    while (b1 < B && (b1 == b0 || total + spans[b1].length <= kGroupTokens)) total += spans[b1++].length;
    std::vector<int32_t> tok(total), pos;
    std::vector<Span> local;
    std::vector<int64_t> rows, targets, outIdx;
    int64_t at = 0;
    for (int64_t b = b0; b < b1; ++b) {
      const Span& s = spans[b];
      std::copy(tokens.begin() + s.start, tokens.begin() + s.start + s.length, tok.begin() + at);
      local.push_back(Span{at, s.length, s.promptLength});
      for (int64_t t = 0; t < s.length - s.promptLength; ++t) {
        rows.push_back(at + s.promptLength - 1 + t);
        targets.push_back(tok[at + s.promptLength + t]);
        outIdx.push_back(b * res.T + t);
      }
      at += s.length;
    }
    std::vector<float> xf(total * H);
    forwardStream(tok, local, pos, xf.data(), nullptr, nullptr);
    std::vector<float> lp(rows.size()), ent(entropy ? rows.size() : 0);
    headLogprobs(xf.data(), rows, targets, lp.data(), entropy ? ent.data() : nullptr);
    for (size_t r = 0; r < rows.size(); ++r) {
      res.logprobs[outIdx[r]] = lp[r];
      res.mask[outIdx[r]] = 1;
      if (entropy) res.entropy[outIdx[r]] = ent[r];
    }
    if (pooled)
      for (int64_t b = b0; b < b1; ++b)
        meanRows(xf.data(), local[b - b0].start + local[b - b0].promptLength, local[b - b0].length -
                 local[b - b0].promptLength, H, res.pooled.data() + b * H);
    b0 = b1;
  }
  return res;
}

ScoreResult CpuModel::forwardTrain(const std::vector<int32_t>& tokens, const std::vector<Span>& spans) {
  ensureGrads();
  releaseActivations();
  TrainState& st = train_;
  const int64_t N = static_cast<int64_t>(tokens.size()), H = cfg.hidden, I = cfg.intermediate, L = cfg.layers;
  const int64_t B = static_cast<int64_t>(spans.size());
  st.N = N;
  st.tokens = tokens;
  st.spans = spans;
  st.pos.resize(N);
  int64_t maxLen = 0;
  for (const Span& s : spans) {
    for (int64_t t = 0; t < s.length; ++t) st.pos[s.start + t] = static_cast<int32_t>(t);
    maxLen = std::max(maxLen, s.length);
    st.T = std::max(st.T, s.length - s.promptLength);
  }
  rope_.ensure(maxLen);
  st.res.resize((L + 1) * N * H);
  st.xn1.resize(L * N * H);
  st.rstd1.resize(L * N);
  st.qkv.resize(L * N * qkv_);
  st.o.resize(L * N * qd_);
  st.lse.resize(L * N * cfg.heads);
  st.x1.resize(L * N * H);
  st.xn2.resize(L * N * H);
  st.rstd2.resize(L * N);
  st.gu.resize(L * N * 2 * I);
  st.xf.resize(N * H);
  st.rstdF.resize(N);
  std::vector<float> act(N * I);
  embed(st.tokens.data(), N, st.res.data());
  for (int64_t l = 0; l < L; ++l) {
    LayerActs a{st.res.data() + l * N * H, st.xn1.data() + l * N * H, st.rstd1.data() + l * N,
                st.qkv.data() + l * N * qkv_, st.o.data() + l * N * qd_, st.lse.data() + l * N * cfg.heads,
                st.x1.data() + l * N * H, st.xn2.data() + l * N * H, st.rstd2.data() + l * N,
                st.gu.data() + l * N * 2 * I, act.data(), st.res.data() + (l + 1) * N * H};
    layerForward(l, N, st.pos.data(), &st.spans, nullptr, nullptr, nullptr, a, false);
  }
  rmsnorm(st.res.data() + L * N * H, P(lay_.normOff), st.xf.data(), st.rstdF.data(), N);

  ScoreResult res;
  res.T = st.T;
  res.logprobs.assign(B * st.T, 0.f);
  res.entropy.assign(B * st.T, 0.f);
  res.mask.assign(B * st.T, 0);
  for (int64_t b = 0; b < B; ++b) {
    const Span& s = spans[b];
    for (int64_t t = 0; t < s.length - s.promptLength; ++t) {
      st.headRows.push_back(s.start + s.promptLength - 1 + t);
      st.headTargets.push_back(st.tokens[s.start + s.promptLength + t]);
      st.headOut.push_back(b * st.T + t);
    }
  }
  std::vector<float> lp(st.headRows.size()), ent(st.headRows.size());
  // keep the head's probabilities for the backward pass when they take at most 256 MiB; otherwise recompute them
  const size_t headFloats = st.headRows.size() * static_cast<size_t>(cfg.vocab);
  if (headFloats <= (size_t{1} << 26)) st.probs.resize(headFloats);
  headLogprobs(st.xf.data(), st.headRows, st.headTargets, lp.data(), ent.data(), st.probs.empty() ? nullptr : st.probs.data());
  for (size_t r = 0; r < st.headRows.size(); ++r) {
    res.logprobs[st.headOut[r]] = lp[r];
    res.entropy[st.headOut[r]] = ent[r];
    res.mask[st.headOut[r]] = 1;
  }
  return res;
}

}  // namespace clipo::engine
