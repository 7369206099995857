// AdamW on the CPU (optim.h): the fp32 master weights and moments updated in place, torch.optim.AdamW semantics.
#include "engine/optim.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/formulas.h"

namespace clipo::engine {

std::vector<AdamwSegment> adamwSegments(const ModelConfig& cfg, const ParamLayout& lay) {
  std::vector<AdamwSegment> segs;
  for (const ParamInfo& p : lay.params) {
    if (cfg.tieEmbeddings && p.name == "lm_head.weight") continue;
    segs.push_back(AdamwSegment{static_cast<int64_t>(p.offset), static_cast<int64_t>(p.size), p.shape.size() >= 2});
  }
  return segs;
}

double gradNormCpu(const float* g, size_t n, int threads) {
  const size_t chunk = 1 << 16, nChunks = (n + chunk - 1) / chunk;
  std::vector<double> partial(nChunks, 0.0);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t c = 0; c < nChunks; ++c) {
    double s = 0.0;
    for (size_t i = c * chunk; i < std::min(n, (c + 1) * chunk); ++i) s += static_cast<double>(g[i]) * g[i];
    partial[c] = s;
  }
  double sq = 0.0;
  for (double p : partial) sq += p;
  return std::sqrt(sq);
}

double adamwStepCpu(float* w, float* m, float* v, const float* g, size_t n, const AdamwSegment* segs, size_t nSegs,
                    const AdamwHyper& h, int64_t step, int threads) {
  const double norm = gradNormCpu(g, n, threads);
  if (!std::isfinite(norm)) throw EngineError("adamwStep: the gradient is not finite (norm " + std::to_string(norm) + ")");
  const float c = static_cast<float>(adamwClipScale(norm, h.maxGradNorm));
  const AdamwScalars s = adamwScalars(h.lr, h.beta1, h.beta2, h.eps, step);
  for (size_t k = 0; k < nSegs; ++k) {
    const AdamwSegment& seg = segs[k];
    const float decay = adamwDecay(h.lr, h.weightDecay, seg.decay);
    float* W = w + seg.offset;
    float* M = m + seg.offset;
    float* Vv = v + seg.offset;
    const float* G = g + seg.offset;
    if (h.bf16Master) {
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t i = 0; i < seg.size; ++i) {
        adamwElement(G[i] * c, decay, s, W + i, M + i, Vv + i);
        W[i] = stochasticRoundBf16(W[i], roundingBits(h.seed, static_cast<uint64_t>(step), static_cast<uint64_t>(seg.offset + i)));
      }
    } else {
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t i = 0; i < seg.size; ++i) adamwElement(G[i] * c, decay, s, W + i, M + i, Vv + i);
    }
  }
  return norm;
}

}  // namespace clipo::engine
