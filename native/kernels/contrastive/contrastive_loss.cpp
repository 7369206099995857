// CPU implementation of the fused contrastive kernel (see contrastive_loss.h for the math).
//
// Cost model: the token-level hidden states (B*L*H values) are the only large input; they are read exactly once, in
// a streaming pass that accumulates each response's masked sum into an H-vector held in L1/L2 (OpenMP over
// responses). Everything after that works on B*H pooled values, the D*H weights and the B*B similarities.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "contrastive_cpu_common.h"
#include "contrastive_loss.h"

namespace clipo::contrastive {

namespace {

inline float loadValue(const float* x, int64_t k) { return x[k]; }
inline float loadValue(const uint16_t* x, int64_t k) {
  const uint32_t bits = static_cast<uint32_t>(x[k]) << 16;  // bf16 = high half of a float32
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// acc += sum of the rows, one row at a time (the bf16 path: the widening conversion, not memory, is its limit).
template <typename T>
inline void addRows(const T* const* rows, int n, int64_t H, float* acc) {
  for (int r = 0; r < n; ++r) {
    const T* a = rows[r];
#pragma omp simd
    for (int64_t k = 0; k < H; ++k) acc[k] += loadValue(a, k);
  }
}

// fp32 streaming sum of the rows rows[0..n) into acc[0..H). Memory, not arithmetic, is the limit, and one core's
// read rate depends on how many independent sequential streams it keeps in flight: a single stream reaches about
// two thirds of what eight reach (the hardware prefetcher follows each stream only within a 4 KiB page, and one
// stream leaves too few misses outstanding). So the rows go in windows of S segments of about 128 KiB each,
// and each sweep adds one row from every segment: for a response whose tokens are contiguous (the usual prefix
// mask) that is S sequential streams through memory, 128 KiB apart. (Segments a power of two apart, e.g. an
// eighth of a 512-token response, hit the same DRAM banks at once and read 5-10% slower. A window holds at most
// 31.5 Ki floats of rows, as the bench's read probe's best pattern does; at H = 1024 (31 rows rather than 32) that
// measured the same as 32 Ki, within noise.) Per 64-float block of H the partial sum lives in eight vector
// registers while the S rows are added, so the accumulator costs one L1 load and store per S rows.
//
// L1 sets: the L1 data cache is indexed by the address within a 4 KiB page (64 sets of 64 B, 8 ways here). When a
// row is a whole number of pages long (H = 1024, 2048, 4096 in fp32), all streams read at the same offset within
// their pages at once and land in the same few L1 sets; eight streams plus the accumulator's line exceed the eight
// ways. Such rows use six streams, and the accumulator always sits 2 KiB away from the rows' page offset (a
// private buffer, copied out at the end). Measured at B256 L512 H1024 on one thread: about +5% (six streams and the
// offset) over eight streams with the accumulator in the output row; no change at H = 3584.
typedef float v8f __attribute__((vector_size(32), aligned(4)));
constexpr int kMaxStreams = 8;
constexpr int64_t kBlock = 64;             // floats of H per register block (8 vectors of 8)
constexpr int64_t kSegmentFloats = 32256;  // about 126 KiB per stream per window (not a power of two: see above)
constexpr uintptr_t kPage = 4096;

// the stream count for rows of H floats: six when a row is a whole number of pages (see above), else eight
inline int streamsFor(int64_t H) { return (H * static_cast<int64_t>(sizeof(float))) % static_cast<int64_t>(kPage) == 0 ? 6 : kMaxStreams; }

// acc += rows[s * m + j] for s < S, j < m
template <int S>
inline void sweepStreams(const float* const* rows, int64_t m, int64_t H, float* acc) {
  for (int64_t j = 0; j < m; ++j) {
    const float* r[S];
    for (int s = 0; s < S; ++s) r[s] = rows[s * m + j];
    int64_t k = 0;
    for (; k + kBlock <= H; k += kBlock) {
      v8f a[8];
      for (int q = 0; q < 8; ++q) a[q] = *reinterpret_cast<const v8f*>(acc + k + 8 * q);
      for (int s = 0; s < S; ++s)
        for (int q = 0; q < 8; ++q) a[q] += *reinterpret_cast<const v8f*>(r[s] + k + 8 * q);
      for (int q = 0; q < 8; ++q) *reinterpret_cast<v8f*>(acc + k + 8 * q) = a[q];
    }
    for (; k < H; ++k) {
      float t = 0.f;
      for (int s = 0; s < S; ++s) t += r[s][k];
      acc[k] += t;
    }
  }
}

template <int S>
inline void addRowsStreams(const float* const* rows, int64_t n, int64_t H, float* acc) {
  const int64_t window = std::max<int64_t>(1, kSegmentFloats / H);  // rows per stream per window
  int64_t done = 0;
  while (n - done >= S) {
    const int64_t m = std::min(window, (n - done) / S);
    sweepStreams<S>(rows + done, m, H, acc);
    done += S * m;
  }
  addRows(rows + done, static_cast<int>(n - done), H, acc);
}

// The accumulator inside `buf` (H + kPage / sizeof(float) floats): 2 KiB from `rowBase`'s offset within a page.
inline float* offsetAccumulator(std::vector<float>& buf, const void* rowBase) {
  const uintptr_t want = (reinterpret_cast<uintptr_t>(rowBase) + kPage / 2) % kPage;
  const uintptr_t have = reinterpret_cast<uintptr_t>(buf.data()) % kPage;
  return buf.data() + ((want - have + kPage) % kPage) / sizeof(float);  // both 4-byte aligned
}

// h_i = sum_t mask_it x_it / n_i, one pass over the tokens; masked-out tokens are never read. n_i = 0 gives h_i = 0
// (the JS API rejects such responses before calling; here it must only stay finite).
template <typename T>
void poolTokens(int64_t B, int64_t L, int64_t H, const T* X, const uint8_t* mask, float* Hm) {
  const int streams = streamsFor(H);
#pragma omp parallel if (B * L * H > (1 << 18))
  {
    std::vector<const T*> rows(static_cast<size_t>(L));
    std::vector<float> accBuf(std::is_same_v<T, float> ? static_cast<size_t>(H) + kPage / sizeof(float) : 0);
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < B; ++i) {
      float* out = Hm + i * H;
      int64_t n = 0;
      for (int64_t t = 0; t < L; ++t)
        if (mask[i * L + t]) rows[n++] = X + (i * L + t) * H;
      float* acc = out;
      if constexpr (std::is_same_v<T, float>) {
        acc = offsetAccumulator(accBuf, X);
        std::fill(acc, acc + H, 0.f);
        if (streams == 6)
          addRowsStreams<6>(rows.data(), n, H, acc);
        else
          addRowsStreams<kMaxStreams>(rows.data(), n, H, acc);
      } else {
        std::fill(acc, acc + H, 0.f);
        addRows(rows.data(), static_cast<int>(n), H, acc);
      }
      const float scale = n ? 1.f / static_cast<float>(n) : 0.f;
      for (int64_t k = 0; k < H; ++k) out[k] = acc[k] * scale;
    }
  }
}

}  // namespace

int32_t lossFromEmbeddingsCpu(const Params& p, const float* Z, const float* norms, const uint8_t* correct,
                              const int32_t* group, const int32_t* givenPositives, float* perSample, int32_t* positives,
                              float* loss, float* dZ) {
  const int64_t B = p.batch, D = p.out;
  const double invT = 1.0 / p.temperature, eps = p.eps;
  std::vector<float> dot(B * B);
  cpu::gemmABt(B, B, D, Z, Z, dot.data());
  for (int64_t i = 0; i < B; ++i) dot[i * B + i] = static_cast<float>(selfDot(norms[i]));

  // similarity and its derivative with respect to the dot product
  auto sim = [&](double d) { return p.distance == Distance::Cosine ? d : 1.0 - std::sqrt(std::max(2.0 - 2.0 * d, eps)); };
  auto dsim = [&](double d) {
    if (p.distance == Distance::Cosine) return 1.0;
    const double r = 2.0 - 2.0 * d;
    return r > eps ? 1.0 / std::sqrt(r) : 0.0;  // max(r, eps) is constant below eps
  };

  std::vector<float> G(dZ ? B * B : 0, 0.f);  // dL_i / d dot_ij, before the 1/(valid + eps) scale
  std::vector<double> logit(B), e(B);
  double total = 0.0;
  int32_t valid = 0;
  for (int64_t i = 0; i < B; ++i) {
    perSample[i] = 0.f;
    positives[i] = -1;
    const int32_t gi = group[i];
    const uint8_t yi = correct[i];
    double m = -INFINITY;
    int64_t nP = 0, nA = 0;
    for (int64_t j = 0; j < B; ++j) {
      logit[j] = sim(dot[i * B + j]) * invT;
      m = std::max(m, logit[j]);
      if (j == i || !inAll(p.level, gi, group[j])) continue;
      ++nA;
      if (inPos(p.level, gi, group[j], yi, correct[j])) ++nP;
    }
    bool ok = anchorValid(p, yi, nP, nA);
    int64_t pos = -1;
    if (ok && p.loss == LossType::InfoNCE) {
      if (givenPositives) {
        pos = givenPositives[i];
      } else if (nP > 0) {
        int64_t k = positiveHash(p.seed, static_cast<uint32_t>(i)) % static_cast<uint32_t>(nP);
        for (int64_t j = 0; j < B; ++j)
          if (j != i && inAll(p.level, gi, group[j]) && inPos(p.level, gi, group[j], yi, correct[j]) && k-- == 0) {
            pos = j;
            break;
          }
      }
      ok = infoNceKeepsAnchor(p, pos);
    }
    if (!ok) continue;

    double SA = 0.0, SP = 0.0;
    for (int64_t j = 0; j < B; ++j) {
      e[j] = 0.0;
      if (j == i || !inAll(p.level, gi, group[j])) continue;
      e[j] = std::exp(logit[j] - m);
      SA += e[j];
      if (inPos(p.level, gi, group[j], yi, correct[j])) SP += e[j];
    }
    const double logSA = std::log(SA + eps);
    double Li = 0.0;
    // coefficient of the anchor's A(i) softmax term, and of each positive's own term, in dL_i/dl'_ij
    double cA = 0.0, cP = 0.0, cPexp = 0.0;
    switch (p.loss) {
      case LossType::InfoNCE:
        if (pos >= 0) {  // no positive: the empty sum, 0 with no gradient
          Li = -((logit[pos] - m) - logSA);
          cA = 1.0;
        }
        break;
      case LossType::SupConIn:
        Li = -(std::log(SP + eps) - logSA - std::log(static_cast<double>(nP) + eps));
        cA = 1.0;
        cPexp = -1.0 / (SP + eps);
        break;
      case LossType::SupConOut: {
        double sumP = 0.0;
        for (int64_t j = 0; j < B; ++j)
          if (j != i && inAll(p.level, gi, group[j]) && inPos(p.level, gi, group[j], yi, correct[j])) sumP += logit[j] - m;
        const double w = 1.0 / (static_cast<double>(nP) + eps);
        Li = -w * (sumP - static_cast<double>(nP) * logSA);
        cA = static_cast<double>(nP) * w;
        cP = -w;
        break;
      }
      case LossType::SoftNN:
        Li = -(std::log(SP + eps) - logSA);
        cA = 1.0;
        cPexp = -1.0 / (SP + eps);
        break;
    }
    perSample[i] = static_cast<float>(Li);
    if (p.loss == LossType::InfoNCE) positives[i] = static_cast<int32_t>(pos);
    total += Li;
    ++valid;
    if (!dZ) continue;
    for (int64_t j = 0; j < B; ++j) {
      if (j == i || !inAll(p.level, gi, group[j])) continue;
      double c = cA * e[j] / (SA + eps);
      if (inPos(p.level, gi, group[j], yi, correct[j])) c += cP + cPexp * e[j];
      if (p.loss == LossType::InfoNCE && j == pos) c -= 1.0;
      G[i * B + j] = static_cast<float>(c * invT * dsim(dot[i * B + j]));
    }
  }
  *loss = valid ? static_cast<float>(total / (valid + eps)) : 0.f;
  if (dZ) {
    if (!valid) {
      std::fill(dZ, dZ + B * D, 0.f);
    } else {
      // dot_ij = z_i.z_j feeds both z_i and z_j: dZ = (G + G^T) Z / (valid + eps)
      const float scale = static_cast<float>(1.0 / (valid + eps));
      std::vector<float> Gs(B * B);
      for (int64_t i = 0; i < B; ++i)
        for (int64_t j = 0; j < B; ++j) Gs[i * B + j] = (G[i * B + j] + G[j * B + i]) * scale;
      cpu::gemmAB(B, D, B, Gs.data(), B, 1, Z, dZ);
    }
  }
  return valid;
}

void poolTokensCpu(int64_t B, int64_t L, int64_t H, const float* X, const uint8_t* mask, float* Hm, int threads) {
  cpu::ThreadScope scope(threads);
  poolTokens(B, L, H, X, mask, Hm);
}

void contrastiveCpu(const Params& p, const Inputs& in, const Outputs& out) {
  cpu::ThreadScope threads(p.threads);
  const int64_t B = p.batch, H = p.hidden, D = p.out;
  std::vector<float> pooledBuf;
  const float* Hm = in.pooled;
  if (!Hm) {
    pooledBuf.resize(B * H);
    if (in.tokenType == DType::BF16)
      poolTokens(B, p.length, H, static_cast<const uint16_t*>(in.tokens), in.mask, pooledBuf.data());
    else
      poolTokens(B, p.length, H, static_cast<const float*>(in.tokens), in.mask, pooledBuf.data());
    Hm = pooledBuf.data();
  }
  std::vector<float> U(B * D), norms(B), A1, R;
  cpu::headForward(p, Hm, in.weightOut, in.weightIn, U.data(), A1, R);
  cpu::normalizeRows(B, D, U.data(), out.embeddings, norms.data());

  std::vector<float> dZ(p.computeGrad ? B * D : 0);
  const int32_t valid = lossFromEmbeddingsCpu(p, out.embeddings, norms.data(), in.correct, in.group, in.positives, out.perSample,
                                              out.positives, out.loss, p.computeGrad ? dZ.data() : nullptr);
  *out.validAnchors = valid;
  if (!p.computeGrad) return;
  if (!valid) {  // no valid anchor: the loss is the constant 0
    std::fill(out.gradWeightOut, out.gradWeightOut + D * H, 0.f);
    if (p.head == Head::Mlp) std::fill(out.gradWeightIn, out.gradWeightIn + H * H, 0.f);
    return;
  }
  std::vector<float> dU(B * D);
  cpu::normalizeBackward(B, D, out.embeddings, norms.data(), dZ.data(), dU.data());
  cpu::headBackward(p, Hm, in.weightOut, A1, R, dU.data(), out.gradWeightOut, out.gradWeightIn);
}

}  // namespace clipo::contrastive
