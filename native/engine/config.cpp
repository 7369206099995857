// The model config's checks, the RoPE frequencies and the parameter layout (config.h).
#include "engine/config.h"

#include <cmath>
#include <string>

namespace clipo::engine {

void checkBackwardGradients(const float* gradLogp, size_t count, const float* gradEntropy, size_t entropyCount,
                            size_t expected) {
  if (count != expected)
    throw EngineError("backward: gradLogp has " + std::to_string(count) + " values, expected " +
                      std::to_string(expected) + " (batch x max response length of the forward)");
  for (size_t i = 0; i < count; ++i)
    if (!std::isfinite(gradLogp[i])) throw EngineError("backward: gradLogp[" + std::to_string(i) + "] is not finite");
  if (gradEntropy) {
    if (entropyCount != expected)
      throw EngineError("backward: gradEntropy has " + std::to_string(entropyCount) + " values, expected " +
                        std::to_string(expected) + " (the layout of gradLogp)");
    for (size_t i = 0; i < entropyCount; ++i)
      if (!std::isfinite(gradEntropy[i]))
        throw EngineError("backward: gradEntropy[" + std::to_string(i) + "] is not finite");
  }
}

void validateConfig(const ModelConfig& c) {
  auto need = [](bool ok, const char* msg) {
    if (!ok) throw EngineError(std::string("invalid model config: ") + msg);
  };
  need(c.vocab > 0 && c.hidden > 0 && c.intermediate > 0 && c.layers > 0, "sizes must be positive");
  need(c.heads > 0 && c.kvHeads > 0 && c.heads % c.kvHeads == 0, "heads must be a positive multiple of kvHeads");
  need(c.headDim > 0 && c.headDim % 2 == 0, "headDim must be positive and even");
  need(c.rmsEps > 0 && c.ropeTheta > 0, "rmsNormEps and ropeTheta must be positive");
  need(!c.llama3Scaling || (c.ropeFactor > 0 && c.highFreqFactor > c.lowFreqFactor && c.originalMaxPositions > 0),
       "llama3 rope scaling needs factor > 0, highFreqFactor > lowFreqFactor, originalMaxPositionEmbeddings > 0");
}

std::vector<double> ropeInvFreq(const ModelConfig& c) {
  const int64_t half = c.headDim / 2;
  std::vector<double> inv(half);
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
    inv[i] = f;
  }
  return inv;
}

const ParamInfo* ParamLayout::find(const std::string& name) const {
  for (const auto& p : params)
    if (p.name == name) return &p;
  return nullptr;
}

ParamLayout makeLayout(const ModelConfig& cfg) {
  ParamLayout L;
  const int64_t H = cfg.hidden, I = cfg.intermediate, V = cfg.vocab;
  L.qd = cfg.heads * cfg.headDim;
  L.kvd = cfg.kvHeads * cfg.headDim;
  L.qkv = L.qd + 2 * L.kvd;
  const int64_t qd = L.qd, kvd = L.kvd;
  size_t off = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    L.params.push_back({name, std::move(shape), off, n});
    off += n;
    return off - n;
  };
  L.embOff = add("model.embed_tokens.weight", {V, H});
  L.layers.resize(cfg.layers);
  for (int64_t l = 0; l < cfg.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerOffsets& o = L.layers[l];
    o.ln1 = add(p + "input_layernorm.weight", {H});
    o.wqkv = add(p + "self_attn.q_proj.weight", {qd, H});
    add(p + "self_attn.k_proj.weight", {kvd, H});
    add(p + "self_attn.v_proj.weight", {kvd, H});
    o.bqkv = kAbsent;
    if (cfg.attentionBias) {
      o.bqkv = add(p + "self_attn.q_proj.bias", {qd});
      add(p + "self_attn.k_proj.bias", {kvd});
      add(p + "self_attn.v_proj.bias", {kvd});
    }
    o.wo = add(p + "self_attn.o_proj.weight", {H, qd});
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
  L.normOff = add("model.norm.weight", {H});
  L.headOff = cfg.tieEmbeddings ? L.embOff : add("lm_head.weight", {V, H});
  L.total = off;
  return L;
}

}  // namespace clipo::engine
