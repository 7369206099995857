// Forward passes (scoring, logits, training forward) and the parameter layout. Formulas follow Hugging Face's
// Qwen2/Llama modeling code:
//   RMSNorm   y = x / sqrt(mean(x^2) + eps) * w
//   RoPE      (x_i, x_{i+d/2}) rotated by pos * invFreq_i, invFreq_i = theta^(-2i/d) (Llama-3 scaling optional)
//   attention softmax(q k^T / sqrt(d) + causal mask) v, kv head of query head h: h / (heads / kvHeads)
//   MLP       down(silu(gate(x)) * up(x))
// Attention keeps only the log-sum-exp per (row, head); the backward pass recomputes the probabilities.
#include "engine/model.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/gemm.h"
#include "engine/ops.h"

namespace clipo::engine {

Model::Model(const ModelConfig& c, int t) : cfg(c), threads(std::max(1, t)) {
  auto need = [](bool ok, const char* msg) {
    if (!ok) throw EngineError(std::string("invalid model config: ") + msg);
  };
  need(c.vocab > 0 && c.hidden > 0 && c.intermediate > 0 && c.layers > 0, "sizes must be positive");
  need(c.heads > 0 && c.kvHeads > 0 && c.heads % c.kvHeads == 0, "heads must be a positive multiple of kvHeads");
  need(c.headDim > 0 && c.headDim % 2 == 0, "headDim must be positive and even");
  need(c.rmsEps > 0 && c.ropeTheta > 0, "rmsNormEps and ropeTheta must be positive");
  need(!c.llama3Scaling || (c.ropeFactor > 0 && c.highFreqFactor > c.lowFreqFactor && c.originalMaxPositions > 0),
       "llama3 rope scaling needs factor > 0, highFreqFactor > lowFreqFactor, originalMaxPositionEmbeddings > 0");
  qd_ = c.heads * c.headDim;
  kvd_ = c.kvHeads * c.headDim;
  qkv_ = qd_ + 2 * kvd_;
  layout();
  const int64_t half = c.headDim / 2;
  invFreq_.resize(half);
  for (int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(c.ropeTheta, static_cast<double>(2 * i) / static_cast<double>(c.headDim));
    if (c.llama3Scaling) {
      // Llama 3.1: long wavelengths are divided by `factor`, short ones kept, a smooth blend in between.
      const double lowWavelen = c.originalMaxPositions / c.lowFreqFactor;
      const double highWavelen = c.originalMaxPositions / c.highFreqFactor;
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > lowWavelen) {
        f = f / c.ropeFactor;
      } else if (wavelen >= highWavelen) {
        const double smooth = (c.originalMaxPositions / wavelen - c.lowFreqFactor) / (c.highFreqFactor - c.lowFreqFactor);
        f = (1.0 - smooth) * f / c.ropeFactor + smooth * f;
      }
    }
    invFreq_[i] = f;
  }
}

Model::Model(const Model& s, bool fr) : Model(s.cfg, s.threads) {
  w = s.w;
  frozen = fr;
}

void Model::layout() {
  const int64_t H = cfg.hidden, I = cfg.intermediate, V = cfg.vocab;
  size_t off = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    params.push_back({name, std::move(shape), off, n});
    off += n;
    return off - n;
  };
  embOff_ = add("model.embed_tokens.weight", {V, H});
  lay_.resize(cfg.layers);
  for (int64_t l = 0; l < cfg.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerOffsets& o = lay_[l];
    o.ln1 = add(p + "input_layernorm.weight", {H});
    o.wqkv = add(p + "self_attn.q_proj.weight", {qd_, H});
    add(p + "self_attn.k_proj.weight", {kvd_, H});
    add(p + "self_attn.v_proj.weight", {kvd_, H});
    o.bqkv = kAbsent;
    if (cfg.attentionBias) {
      o.bqkv = add(p + "self_attn.q_proj.bias", {qd_});
      add(p + "self_attn.k_proj.bias", {kvd_});
      add(p + "self_attn.v_proj.bias", {kvd_});
    }
    o.wo = add(p + "self_attn.o_proj.weight", {H, qd_});
    o.bo = cfg.mlpBias ? add(p + "self_attn.o_proj.bias", {H}) : kAbsent;
    o.ln2 = add(p + "post_attention_layernorm.weight", {H});
    o.wgu = add(p + "mlp.gate_proj.weight", {I, H});
    add(p + "mlp.up_proj.weight", {I, H});
    o.bgu = kAbsent;
    if (cfg.mlpBias) {
      o.bgu = add(p + "mlp.gate_proj.bias", {I});
      add(p + "mlp.up_proj.bias", {I});
    }
    o.wd = add(p + "mlp.down_proj.weight", {H, I});
    o.bd = cfg.mlpBias ? add(p + "mlp.down_proj.bias", {H}) : kAbsent;
  }
  normOff_ = add("model.norm.weight", {H});
  headOff_ = cfg.tieEmbeddings ? embOff_ : add("lm_head.weight", {V, H});
  w.assign(off, 0.f);
}

const ParamInfo* Model::find(const std::string& name) const {
  for (const auto& p : params)
    if (p.name == name) return &p;
  return nullptr;
}

void Model::ensureRope(int64_t positions) {
  if (positions <= ropeLen_) return;
  const int64_t len = std::max<int64_t>({positions, 2 * ropeLen_, 256});
  const int64_t half = cfg.headDim / 2;
  cos_.resize(len * half);
  sin_.resize(len * half);
  for (int64_t p = ropeLen_; p < len; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(p) * invFreq_[i];
      cos_[p * half + i] = static_cast<float>(std::cos(a));
      sin_[p * half + i] = static_cast<float>(std::sin(a));
    }
  ropeLen_ = len;
}

void Model::ensureGrads() {
  if (frozen) throw EngineError("this engine is a frozen copy: it has no gradients or optimizer");
  if (g.empty()) g.assign(w.size(), 0.f);
}

void Model::embed(const int32_t* tokens, int64_t N, float* x) const {
  const int64_t H = cfg.hidden;
#pragma omp parallel for num_threads(threadsFor(N * H, threads)) schedule(static)
  for (int64_t n = 0; n < N; ++n) std::memcpy(x + n * H, P(embOff_) + tokens[n] * H, H * sizeof(float));
}

void Model::rmsnorm(const float* x, const float* weight, float* y, float* rstd, int64_t N) const {
  const int64_t H = cfg.hidden;
#pragma omp parallel for num_threads(threadsFor(N * H * 3, threads)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + n * H;
    double ss = 0.0;
    for (int64_t j = 0; j < H; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    const float r = static_cast<float>(1.0 / std::sqrt(ss / H + cfg.rmsEps));
    rstd[n] = r;
    float* yr = y + n * H;
    for (int64_t j = 0; j < H; ++j) yr[j] = xr[j] * r * weight[j];
  }
}

void Model::rope(float* x, int64_t rowStride, int64_t N, int64_t nHeads, const int32_t* pos, bool inverse) const {
  const int64_t hd = cfg.headDim, half = hd / 2;
  const float sign = inverse ? -1.f : 1.f;
#pragma omp parallel for num_threads(threadsFor(N * nHeads * hd * 2, threads)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* c = cos_.data() + static_cast<int64_t>(pos[n]) * half;
    const float* s = sin_.data() + static_cast<int64_t>(pos[n]) * half;
    for (int64_t h = 0; h < nHeads; ++h) {
      float* v = x + n * rowStride + h * hd;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half], sn = sign * s[i];
        v[i] = a * c[i] - b * sn;
        v[i + half] = b * c[i] + a * sn;
      }
    }
  }
}

void Model::linear(int64_t N, int64_t out, int64_t in, const float* X, size_t wOff, size_t bOff, float* Y, bool rows) {
  if (rows)
    matmulNTRows(N, out, in, X, P(wOff), Y, threads);
  else
    matmulNT(N, out, in, X, P(wOff), Y, false, threads);
  if (bOff != kAbsent) addBias(Y, P(bOff), N, out, threads);
}

void Model::layerForward(int64_t l, int64_t N, const int32_t* pos, const std::vector<Span>* spans, KVCache* cache,
                         const std::vector<std::vector<int64_t>>* prefillSlots, const int64_t* rowSlot, LayerActs& a,
                         bool rowsKernel) {
  const LayerOffsets& o = lay_[l];
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

void Model::forwardStream(const std::vector<int32_t>& tokens, const std::vector<Span>& spans,
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
  ensureRope(maxLen);
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
  rmsnorm(cur, P(normOff_), xf, rstd1.data(), N);
}

void Model::headLogprobs(const float* xf, const std::vector<int64_t>& rows, const std::vector<int64_t>& targets,
                         float* logp, float* entropy, float* keepProbs) {
  const int64_t H = cfg.hidden, V = cfg.vocab;
  const int64_t R = static_cast<int64_t>(rows.size());
  // logits are made CH rows at a time, never [rows x vocab] at once
  const int64_t CH = std::max<int64_t>(1, std::min<int64_t>(256, (int64_t{1} << 24) / V));
  std::vector<float> Xc(std::min(CH, R) * H), Lc(std::min(CH, R) * V);
  for (int64_t r0 = 0; r0 < R; r0 += CH) {
    const int64_t ch = std::min(CH, R - r0);
    for (int64_t r = 0; r < ch; ++r) std::memcpy(Xc.data() + r * H, xf + rows[r0 + r] * H, H * sizeof(float));
    matmulNT(ch, V, H, Xc.data(), P(headOff_), Lc.data(), false, threads);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < ch; ++r) {
      const float* z = Lc.data() + r * V;
      const RowSoftmax sm = rowSoftmaxStats(z, V, entropy != nullptr, keepProbs ? keepProbs + (r0 + r) * V : nullptr);
      logp[r0 + r] = static_cast<float>(z[targets[r0 + r]] - sm.lse);
      if (entropy) entropy[r0 + r] = static_cast<float>(sm.entropy);
    }
  }
}

void Model::logits(const int32_t* tokens, int64_t batch, int64_t length, float* out) {
  const int64_t N = batch * length, H = cfg.hidden;
  std::vector<int32_t> tok(tokens, tokens + N), pos;
  std::vector<Span> spans(batch);
  for (int64_t b = 0; b < batch; ++b) spans[b] = Span{b * length, length, length};
  std::vector<float> xf(N * H);
  forwardStream(tok, spans, pos, xf.data(), nullptr, nullptr);
  matmulNT(N, cfg.vocab, H, xf.data(), P(headOff_), out, false, threads);
}

ScoreResult Model::score(const std::vector<int32_t>& tokens, const std::vector<Span>& spans, bool entropy,
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

ScoreResult Model::forwardTrain(const std::vector<int32_t>& tokens, const std::vector<Span>& spans) {
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
  ensureRope(maxLen);
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
  rmsnorm(st.res.data() + L * N * H, P(normOff_), st.xf.data(), st.rstdF.data(), N);

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
