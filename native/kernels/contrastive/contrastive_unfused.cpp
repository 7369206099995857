// The unfused baseline of the contrastive kernel: the same math as separate passes with full intermediate buffers,
// the way eager framework code runs it (masked = tokens * mask[..., None]; pooled = masked.sum(1) / mask.sum(1);
// z = normalize(pooled @ W.T); S = z @ z.T; masks and softmax terms as B x B matrices). It exists so that
// `clipo bench contrastive` can show what fusing buys; it is also a second, independently written implementation
// that the tests compare with the fused one.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "contrastive_cpu_common.h"
#include "contrastive_loss.h"

namespace clipo::contrastive {

void contrastiveUnfusedCpu(const Params& p, const Inputs& in, const Outputs& out) {
  cpu::ThreadScope threads(p.threads);
  const int64_t B = p.batch, H = p.hidden, D = p.out, L = p.length;
  const float eps = p.eps, invT = 1.f / p.temperature;

  // pass 1-3: masked copy of the tokens, sum over the sequence, divide by the counts
  std::vector<float> pooled(B * H);
  if (in.pooled) {
    std::memcpy(pooled.data(), in.pooled, B * H * sizeof(float));
  } else {
    std::vector<float> masked(static_cast<size_t>(B * L * H));
#pragma omp parallel for schedule(static) if (B * L * H > (1 << 18))
    for (int64_t r = 0; r < B * L; ++r) {
      const float m = in.mask[r] ? 1.f : 0.f;
      float* dst = masked.data() + r * H;
      if (in.tokenType == DType::BF16) {
        const uint16_t* x = static_cast<const uint16_t*>(in.tokens) + r * H;
        for (int64_t k = 0; k < H; ++k) dst[k] = bf16ToFloat(x[k]) * m;
      } else {
        const float* x = static_cast<const float*>(in.tokens) + r * H;
        for (int64_t k = 0; k < H; ++k) dst[k] = x[k] * m;
      }
    }
    std::vector<float> sums(B * H, 0.f), counts(B, 0.f);
#pragma omp parallel for schedule(static) if (B * L * H > (1 << 18))
    for (int64_t i = 0; i < B; ++i)
      for (int64_t t = 0; t < L; ++t) {
        const float* x = masked.data() + (i * L + t) * H;
        for (int64_t k = 0; k < H; ++k) sums[i * H + k] += x[k];
      }
    for (int64_t i = 0; i < B; ++i)
      for (int64_t t = 0; t < L; ++t) counts[i] += in.mask[i * L + t] ? 1.f : 0.f;
    for (int64_t i = 0; i < B; ++i)
      for (int64_t k = 0; k < H; ++k) pooled[i * H + k] = counts[i] > 0.f ? sums[i * H + k] / counts[i] : 0.f;
  }

  // projection, norms, normalize
  std::vector<float> U(B * D), A1, R, norms(B);
  cpu::headForward(p, pooled.data(), in.weightOut, in.weightIn, U.data(), A1, R);
  for (int64_t i = 0; i < B; ++i) {
    float ss = 0.f;
    for (int64_t d = 0; d < D; ++d) ss += U[i * D + d] * U[i * D + d];
    norms[i] = std::sqrt(ss);
  }
  float* Z = out.embeddings;
  for (int64_t i = 0; i < B; ++i)
    for (int64_t d = 0; d < D; ++d) Z[i * D + d] = U[i * D + d] / std::max(norms[i], kNormFloor);

  // similarity, logits, row max, shifted logits, exponentials: one B x B buffer each
  const size_t BB = static_cast<size_t>(B * B);
  std::vector<float> dot(BB), S(BB), logits(BB), shifted(BB), ex(BB), rowMax(B);
  cpu::gemmABt(B, B, D, Z, Z, dot.data());
  for (int64_t i = 0; i < B; ++i) dot[i * B + i] = static_cast<float>(selfDot(norms[i]));
  for (size_t k = 0; k < BB; ++k)
    S[k] = p.distance == Distance::Cosine ? dot[k] : 1.f - std::sqrt(std::max(2.f - 2.f * dot[k], eps));
  for (size_t k = 0; k < BB; ++k) logits[k] = S[k] * invT;
  for (int64_t i = 0; i < B; ++i) rowMax[i] = *std::max_element(logits.begin() + i * B, logits.begin() + (i + 1) * B);
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < B; ++j) shifted[i * B + j] = logits[i * B + j] - rowMax[i];
  for (size_t k = 0; k < BB; ++k) ex[k] = std::exp(shifted[k]);

  // masks as matrices
  std::vector<float> allMask(BB), posMask(BB);
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < B; ++j) {
      const bool off = i != j;
      allMask[i * B + j] = off && inAll(p.level, in.group[i], in.group[j]) ? 1.f : 0.f;
      posMask[i * B + j] = allMask[i * B + j] > 0.f && inPos(p.level, in.group[i], in.group[j], in.correct[i], in.correct[j]) ? 1.f : 0.f;
    }
  std::vector<float> SA(B), SP(B), nP(B), nA(B), sumPosLogit(B);
  for (int64_t i = 0; i < B; ++i) {
    float sa = 0.f, sp = 0.f, np = 0.f, na = 0.f, sl = 0.f;
    for (int64_t j = 0; j < B; ++j) {
      sa += ex[i * B + j] * allMask[i * B + j];
      sp += ex[i * B + j] * posMask[i * B + j];
      np += posMask[i * B + j];
      na += allMask[i * B + j];
      sl += shifted[i * B + j] * posMask[i * B + j];
    }
    SA[i] = sa, SP[i] = sp, nP[i] = np, nA[i] = na, sumPosLogit[i] = sl;
  }

  // anchor mask and InfoNCE positives
  std::vector<float> anchor(B);
  for (int64_t i = 0; i < B; ++i) {
    bool ok = anchorValid(p, in.correct[i], static_cast<int64_t>(nP[i]), static_cast<int64_t>(nA[i]));
    out.positives[i] = -1;
    if (ok && p.loss == LossType::InfoNCE) {
      int64_t pos = -1;
      if (in.positives) {
        pos = in.positives[i];
      } else if (nP[i] > 0.f) {
        int64_t k = positiveHash(p.seed, static_cast<uint32_t>(i)) % static_cast<uint32_t>(nP[i]);
        for (int64_t j = 0; j < B && pos < 0; ++j)
          if (posMask[i * B + j] > 0.f && k-- == 0) pos = j;
      }
      ok = infoNceKeepsAnchor(p, pos);
      if (ok) out.positives[i] = static_cast<int32_t>(pos);
    }
    anchor[i] = ok ? 1.f : 0.f;
  }

  // per-anchor losses and the batch loss
  float total = 0.f, valid = 0.f;
  std::vector<float> logSA(B);
  for (int64_t i = 0; i < B; ++i) {
    logSA[i] = std::log(SA[i] + eps);
    float Li = 0.f;
    switch (p.loss) {
      case LossType::InfoNCE: Li = anchor[i] > 0.f && out.positives[i] >= 0 ? -(shifted[i * B + out.positives[i]] - logSA[i]) : 0.f; break;
      case LossType::SupConIn: Li = -(std::log(SP[i] + eps) - logSA[i] - std::log(nP[i] + eps)); break;
      case LossType::SupConOut: Li = -(sumPosLogit[i] - nP[i] * logSA[i]) / (nP[i] + eps); break;
      case LossType::SoftNN: Li = -(std::log(SP[i] + eps) - logSA[i]); break;
    }
    out.perSample[i] = Li * anchor[i];
    total += out.perSample[i];
    valid += anchor[i];
  }
  *out.loss = valid > 0.f ? total / (valid + eps) : 0.f;
  *out.validAnchors = static_cast<int32_t>(valid);
  if (!p.computeGrad) return;
  if (valid == 0.f) {
    std::fill(out.gradWeightOut, out.gradWeightOut + D * H, 0.f);
    if (p.head == Head::Mlp) std::fill(out.gradWeightIn, out.gradWeightIn + H * H, 0.f);
    return;
  }

  // backward: d loss / d shifted logits (B x B), then through the similarity, then (G + G^T) Z
  const float scale = 1.f / (valid + eps);
  std::vector<float> dShifted(BB), G(BB), Gs(BB);
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < B; ++j) {
      const size_t k = i * B + j;
      const float soft = ex[k] * allMask[k] / (SA[i] + eps);
      float g = 0.f;
      switch (p.loss) {
        case LossType::InfoNCE: g = out.positives[i] >= 0 ? soft - (j == out.positives[i] ? 1.f : 0.f) : 0.f; break;
        case LossType::SupConIn:
        case LossType::SoftNN: g = soft - ex[k] * posMask[k] / (SP[i] + eps); break;
        case LossType::SupConOut: g = (nP[i] * soft - posMask[k]) / (nP[i] + eps); break;
      }
      dShifted[k] = g * anchor[i] * scale;
    }
  for (size_t k = 0; k < BB; ++k) {
    float ds = 1.f;
    if (p.distance == Distance::L2) {
      const float r = 2.f - 2.f * dot[k];
      ds = r > eps ? 1.f / std::sqrt(r) : 0.f;
    }
    G[k] = dShifted[k] * invT * ds;
  }
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < B; ++j) Gs[i * B + j] = G[i * B + j] + G[j * B + i];
  std::vector<float> dZ(B * D), dU(B * D);
  cpu::gemmAB(B, D, B, Gs.data(), B, 1, Z, dZ.data());
  cpu::normalizeBackward(B, D, Z, norms.data(), dZ.data(), dU.data());
  cpu::headBackward(p, pooled.data(), in.weightOut, A1, R, dU.data(), out.gradWeightOut, out.gradWeightIn);
}

}  // namespace clipo::contrastive
