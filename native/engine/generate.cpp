// Batched sampling with a KV cache. Each prompt is prefilled once and its keys/values copied to its n sample slots;
// then all live sequences advance one token per step. Randomness comes from a counter-based generator keyed by
// (seed, prompt index, sample index, step), and every row's arithmetic is independent of the other rows, so the
// tokens do not depend on how sequences are batched or on the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "engine/gemm.h"
#include "engine/model.h"
#include "engine/ops.h"

namespace clipo::engine {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// uniform in [0, 1) from the counter (seed, prompt, sample, step)
double uniformAt(uint64_t seed, uint64_t prompt, uint64_t sample, uint64_t step) {
  uint64_t k = splitmix64(seed);
  k = splitmix64(k ^ prompt);
  k = splitmix64(k ^ (sample * 0xD1B54A32D192ED03ULL));
  k = splitmix64(k ^ (step * 0xAEF17502108EF2D9ULL));
  return static_cast<double>(k >> 11) * (1.0 / 9007199254740992.0);
}

// Picks a token from logits z. temperature 0: argmax, logprob under the untempered softmax. Otherwise softmax(z/T),
// restricted to the nucleus {i : p_i >= theta} with theta the largest threshold whose set holds topP of the mass
// (the smallest top set; tokens tied at the boundary are all kept), renormalised, walked in token order. The
// logprob reported is under the full temperature-scaled distribution.
int32_t sampleRow(const float* z, int64_t V, double temperature, double topP, double u, float* logprob,
                  std::vector<float>& e, std::vector<int32_t>& idx) {
  if (temperature <= 0.0) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; ++i)
      if (z[i] > z[best]) best = i;
    *logprob = static_cast<float>(z[best] - rowSoftmaxStats(z, V, false).lse);
    return static_cast<int32_t>(best);
  }
  const float invT = static_cast<float>(1.0 / temperature);
  const float mx = maxOf(z, V) * invT;
  e.resize(V);
  double sum = 0.0;
  expShifted(z, V, invT, mx, e.data(), &sum, nullptr);
  int64_t pick = -1;
  // the candidate set: every token (topP = 1) or the nucleus {p_i >= theta}
  float theta = 0.f;
  if (topP < 1.0) {
    const double need = topP * sum;
    // peaked distributions: the top 64 usually hold the mass; sort just those
    const int64_t k = std::min<int64_t>(V, 64);
    idx.resize(V);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return e[a] > e[b] || (e[a] == e[b] && a < b); });
    double cum = 0.0;
    int64_t kept = 0;
    while (kept < k && cum < need) cum += e[idx[kept++]];
    if (cum >= need) {
      theta = e[idx[kept - 1]];
    } else {
      // flat distributions: bisect the threshold theta so that sum_{p >= theta} p reaches topP (O(V) per step)
      float lo = 0.f, hi = e[idx[0]];
      for (int it = 0; it < 40; ++it) {
        const float mid = 0.5f * (lo + hi);
        double m = 0.0;
        for (int64_t i = 0; i < V; ++i) m += e[i] >= mid ? e[i] : 0.f;
        if (m >= need) lo = mid; else hi = mid;
      }
      theta = lo;
    }
  }
  {
    double kept = 0.0;
    for (int64_t i = 0; i < V; ++i) kept += e[i] >= theta ? e[i] : 0.f;
    const double target = u * kept;
    double c = 0.0;
    for (int64_t i = 0; i < V; ++i) {
      if (e[i] < theta || e[i] <= 0.f) continue;
      c += e[i];
      pick = i;
      if (c > target) break;
    }
  }
  *logprob = static_cast<float>((z[pick] * invT - mx) - std::log(sum));
  return static_cast<int32_t>(pick);
}

}  // namespace

std::vector<GeneratedSequence> Model::generate(const GenerateRequest& req,
                                               const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t H = cfg.hidden, I = cfg.intermediate, V = cfg.vocab, P0 = static_cast<int64_t>(req.prompts.size());
  const int64_t n = req.n, total = P0 * n;
  std::vector<GeneratedSequence> out(total);
  for (int64_t p = 0; p < P0; ++p)
    for (int64_t k = 0; k < n; ++k) {
      out[p * n + k].promptIndex = p;
      out[p * n + k].sampleIndex = k;
    }
  if (req.maxNewTokens == 0) return out;
  auto isStop = [&](int32_t t) { return std::find(req.stopTokens.begin(), req.stopTokens.end(), t) != req.stopTokens.end(); };
  int64_t done = 0;
  const int64_t perGroup = std::max<int64_t>(1, req.maxBatch / n);

  for (int64_t p0 = 0; p0 < P0; p0 += perGroup) {
    const int64_t p1 = std::min(P0, p0 + perGroup), S = (p1 - p0) * n;
    // --- prefill: the group's prompts as one stream, keys/values copied into every sample's cache
    KVCache cache;
    cache.layers = cfg.layers;
    cache.kvd = kvd_;
    cache.k.resize(S);
    cache.v.resize(S);
    cache.capacity.resize(S);
    std::vector<int32_t> tokens, pos;
    std::vector<Span> spans;
    std::vector<std::vector<int64_t>> slotsOf(p1 - p0);
    int64_t maxLen = 0;
    for (int64_t p = p0; p < p1; ++p) {
      const auto& pr = req.prompts[p];
      spans.push_back(Span{static_cast<int64_t>(tokens.size()), static_cast<int64_t>(pr.size()),
                           static_cast<int64_t>(pr.size())});
      tokens.insert(tokens.end(), pr.begin(), pr.end());
      const int64_t cap = static_cast<int64_t>(pr.size()) + req.maxNewTokens + 1;
      maxLen = std::max(maxLen, cap);
      for (int64_t k = 0; k < n; ++k) {
        const int64_t s = (p - p0) * n + k;
        slotsOf[p - p0].push_back(s);
        cache.capacity[s] = cap;
        cache.k[s].resize(cfg.layers * cap * kvd_);
        cache.v[s].resize(cfg.layers * cap * kvd_);
      }
    }
    ensureRope(maxLen);
    std::vector<float> xf(tokens.size() * H);
    forwardStream(tokens, spans, pos, xf.data(), &cache, &slotsOf);
    const int64_t nP = p1 - p0;
    std::vector<float> lastX(nP * H), logitsBuf(std::max(nP, S) * V);
    for (int64_t i = 0; i < nP; ++i)
      std::memcpy(lastX.data() + i * H, xf.data() + (spans[i].start + spans[i].length - 1) * H, H * sizeof(float));
    xf = std::vector<float>();
    matmulNTRows(nP, V, H, lastX.data(), P(headOff_), logitsBuf.data(), threads);

    // per-slot state
    std::vector<int64_t> nextPos(S);
    std::vector<uint8_t> finished(S, 0), pendingPool(S, 0);
    std::vector<std::vector<double>> poolSum(req.returnPooled ? S : 0, std::vector<double>(H, 0.0));
    auto sampleSlots = [&](const std::vector<int64_t>& slots, const float* rowsLogits, const std::vector<int64_t>& rowOf,
                           int64_t step) {
      std::vector<int32_t> picked(slots.size());
      std::vector<float> lps(slots.size());
#pragma omp parallel num_threads(threads)
      {
        std::vector<float> e;
        std::vector<int32_t> idx;
#pragma omp for schedule(dynamic)
        for (int64_t i = 0; i < static_cast<int64_t>(slots.size()); ++i) {
          const GeneratedSequence& sq = out[p0 * n + slots[i]];
          const double u = uniformAt(req.seed, sq.promptIndex, sq.sampleIndex, step);
          picked[i] = sampleRow(rowsLogits + rowOf[i] * V, V, req.temperature, req.topP, u, &lps[i], e, idx);
        }
      }
      for (size_t i = 0; i < slots.size(); ++i) {
        const int64_t s = slots[i];
        GeneratedSequence& sq = out[p0 * n + s];
        sq.tokens.push_back(picked[i]);
        sq.logprobs.push_back(lps[i]);
        const bool stop = isStop(picked[i]);
        if (stop || static_cast<int64_t>(sq.tokens.size()) >= req.maxNewTokens) {
          finished[s] = 1;
          sq.stopped = stop;
          pendingPool[s] = req.returnPooled ? 1 : 0;
          if (!req.returnPooled) ++done;
        }
      }
    };
    {
      std::vector<int64_t> slots(S), rowOf(S);
      for (int64_t s = 0; s < S; ++s) {
        slots[s] = s;
        rowOf[s] = s / n;
        nextPos[s] = spans[s / n].length;
      }
      sampleSlots(slots, logitsBuf.data(), rowOf, 0);
      if (progress) progress(done, total);
    }

    // --- decode: every live slot (and every finished slot still owing its last hidden state) advances one row
    std::vector<float> resA, resB, xn1, rstd1, qkv, o, lse, x1, xn2, rstd2, gu, act, xfr, headX;
    for (int64_t step = 1;; ++step) {
      std::vector<int64_t> rowSlot;
      std::vector<int32_t> rowTok, rowPos;
      for (int64_t s = 0; s < S; ++s)
        if (!finished[s] || pendingPool[s]) {
          rowSlot.push_back(s);
          rowTok.push_back(out[p0 * n + s].tokens.back());
          rowPos.push_back(static_cast<int32_t>(nextPos[s]));
        }
      const int64_t M = static_cast<int64_t>(rowSlot.size());
      if (M == 0) break;
      resA.resize(M * H), resB.resize(M * H), xn1.resize(M * H), rstd1.resize(M), qkv.resize(M * qkv_);
      o.resize(M * qd_), lse.resize(M * cfg.heads), x1.resize(M * H), xn2.resize(M * H), rstd2.resize(M);
      gu.resize(M * 2 * I), act.resize(M * I), xfr.resize(M * H);
      embed(rowTok.data(), M, resA.data());
      float *cur = resA.data(), *nxt = resB.data();
      for (int64_t l = 0; l < cfg.layers; ++l) {
        LayerActs a{cur, xn1.data(), rstd1.data(), qkv.data(), o.data(), lse.data(), x1.data(), xn2.data(),
                    rstd2.data(), gu.data(), act.data(), nxt};
        layerForward(l, M, rowPos.data(), nullptr, &cache, nullptr, rowSlot.data(), a, true);
        std::swap(cur, nxt);
      }
      rmsnorm(cur, P(normOff_), xfr.data(), rstd1.data(), M);
      std::vector<int64_t> live, rowOf;
      for (int64_t i = 0; i < M; ++i) {
        const int64_t s = rowSlot[i];
        ++nextPos[s];
        if (req.returnPooled)
          for (int64_t j = 0; j < H; ++j) poolSum[s][j] += xfr[i * H + j];
        if (finished[s]) {
          pendingPool[s] = 0;
          ++done;
        } else {
          rowOf.push_back(static_cast<int64_t>(live.size()));
          live.push_back(s);
        }
      }
      if (!live.empty()) {
        headX.resize(live.size() * H);
        int64_t r = 0;
        for (int64_t i = 0; i < M; ++i)
          if (!finished[rowSlot[i]]) std::memcpy(headX.data() + (r++) * H, xfr.data() + i * H, H * sizeof(float));
        matmulNTRows(static_cast<int64_t>(live.size()), V, H, headX.data(), P(headOff_), logitsBuf.data(), threads);
        sampleSlots(live, logitsBuf.data(), rowOf, step);
      }
      if (progress) progress(done, total);
    }
    if (req.returnPooled)
      for (int64_t s = 0; s < S; ++s) {
        GeneratedSequence& sq = out[p0 * n + s];
        sq.pooled.resize(H);
        const double cnt = static_cast<double>(sq.tokens.size());
        for (int64_t j = 0; j < H; ++j) sq.pooled[j] = static_cast<float>(poolSum[s][j] / cnt);
      }
  }
  return out;
}

}  // namespace clipo::engine
