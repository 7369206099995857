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

#include "engine/cpu_model.h"
#include "engine/formulas.h"
#include "engine/gemm.h"
#include "engine/head.h"
#include "engine/sampling.h"

namespace clipo::engine {

void CpuModel::freeSlot(int64_t slot) {
  dcache_.k[slot] = std::vector<float>();
  dcache_.v[slot] = std::vector<float>();
  dcache_.capacity[slot] = 0;
  freeSlots_.push_back(slot);
}

std::vector<int64_t> CpuModel::decodeAdd(const DecodeAddRequest& r) {
  const int64_t H = cfg.hidden, V = cfg.vocab, L = static_cast<int64_t>(r.prompt.size());
  if (L < 1) throw EngineError("decodeAdd: empty prompt");
  if (r.n < 1 || r.maxNewTokens < 1) throw EngineError("decodeAdd: n and maxNewTokens must be >= 1");
  dcache_.layers = cfg.layers;
  dcache_.kvd = kvd_;
  const int64_t cap = L + r.maxNewTokens + 1;
  auto shared = std::make_shared<const DecodeAddRequest>(r);
  std::vector<std::vector<int64_t>> slotsOf(1);
  try {
    for (int64_t k = 0; k < r.n; ++k) {
      int64_t slot;
      if (!freeSlots_.empty()) {
        slot = freeSlots_.back();
        freeSlots_.pop_back();
      } else {
        slot = static_cast<int64_t>(dcache_.k.size());
        dcache_.k.emplace_back();
        dcache_.v.emplace_back();
        dcache_.capacity.push_back(0);
      }
      slotsOf[0].push_back(slot);
      dcache_.capacity[slot] = cap;
      dcache_.k[slot].resize(cfg.layers * cap * kvd_);
      dcache_.v[slot].resize(cfg.layers * cap * kvd_);
    }
    rope_.ensure(cap);
    std::vector<int32_t> pos;
    std::vector<Span> spans{Span{0, L, L}};
    std::vector<float> xf(L * H), logits(V);
    forwardStream(r.prompt, spans, pos, xf.data(), &dcache_, &slotsOf);
    matmulNTRows(1, V, H, xf.data() + (L - 1) * H, P(lay_.headOff), logits.data(), threads);
    std::vector<int64_t> ids;
    for (int64_t k = 0; k < r.n; ++k) {
      LiveSeq q;
      q.id = nextId_++;
      q.slot = slotsOf[0][k];
      q.promptIndex = r.promptIndex;
      q.sampleIndex = k;
      q.nextPos = L;
      q.maxNewTokens = r.maxNewTokens;
      q.seed = r.seed;
      q.req = shared;
      if (r.sampler.repetitionPenalty != 1.0) q.history = r.prompt;
      q.logits = logits;
      ids.push_back(q.id);
      live_.push_back(std::move(q));
    }
    return ids;
  } catch (...) {
    // nothing half-added stays behind
    for (int64_t slot : slotsOf[0]) freeSlot(slot);
    throw;
  }
}

bool CpuModel::decodeRemove(int64_t id) {
  for (size_t i = 0; i < live_.size(); ++i)
    if (live_[i].id == id) {
      freeSlot(live_[i].slot);
      live_.erase(live_.begin() + static_cast<std::ptrdiff_t>(i));
      return true;
    }
  return false;
}

std::vector<DecodeStepToken> CpuModel::decodeStep() {
  const int64_t H = cfg.hidden, I = cfg.intermediate, V = cfg.vocab;
  // 1. the rows whose last sampled token has not been through the model yet (row-wise kernels: each row's
  //    arithmetic is independent of the others)
  std::vector<int64_t> rowSeq, rowSlot;
  std::vector<int32_t> rowTok, rowPos;
  for (size_t i = 0; i < live_.size(); ++i)
    if (live_[i].needsForward) {
      rowSeq.push_back(static_cast<int64_t>(i));
      rowSlot.push_back(live_[i].slot);
      rowTok.push_back(live_[i].lastToken);
      rowPos.push_back(static_cast<int32_t>(live_[i].nextPos));
    }
  const int64_t M = static_cast<int64_t>(rowSeq.size());
  if (M > 0) {
    std::vector<float> resA(M * H), resB(M * H), xn1(M * H), rstd1(M), qkv(M * qkv_), o(M * qd_), lse(M * cfg.heads),
        x1(M * H), xn2(M * H), rstd2(M), gu(M * 2 * I), act(M * I), xfr(M * H), logits(M * V);
    embed(rowTok.data(), M, resA.data());
    float *cur = resA.data(), *nxt = resB.data();
    for (int64_t l = 0; l < cfg.layers; ++l) {
      LayerActs a{cur, xn1.data(), rstd1.data(), qkv.data(), o.data(), lse.data(), x1.data(), xn2.data(),
                  rstd2.data(), gu.data(), act.data(), nxt};
      layerForward(l, M, rowPos.data(), nullptr, &dcache_, nullptr, rowSlot.data(), a, true);
      std::swap(cur, nxt);
    }
    rmsnorm(cur, P(lay_.normOff), xfr.data(), rstd1.data(), M);
    matmulNTRows(M, V, H, xfr.data(), P(lay_.headOff), logits.data(), threads);
    for (int64_t m = 0; m < M; ++m) {
      LiveSeq& q = live_[rowSeq[m]];
      std::memcpy(q.logits.data(), logits.data() + m * V, V * sizeof(float));
      ++q.nextPos;
      q.needsForward = false;
    }
  }
  // 2. one token for every live sequence, from its own random stream
  const int64_t S = static_cast<int64_t>(live_.size());
  std::vector<DecodeStepToken> out(S);
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> buf, e;
    std::vector<int32_t> idx;
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < S; ++i) {
      const LiveSeq& q = live_[i];
      const double u = uniformAt(q.seed, q.promptIndex, q.sampleIndex, q.generated);
      out[i].id = q.id;
      out[i].t = sampleWith(q.logits.data(), V, q.req->sampler, q.history, u, buf, e, idx);
    }
  }
  std::vector<LiveSeq> keep;
  keep.reserve(live_.size());
  for (int64_t i = 0; i < S; ++i) {
    LiveSeq& q = live_[i];
    recordDecodedToken(q, out[i]);
    if (out[i].finished) {
      freeSlot(q.slot);
    } else {
      q.needsForward = true;
      keep.push_back(std::move(q));
    }
  }
  live_ = std::move(keep);
  return out;
}

std::vector<GeneratedSequence> CpuModel::generate(const GenerateRequest& req,
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
    rope_.ensure(maxLen);
    std::vector<float> xf(tokens.size() * H);
    forwardStream(tokens, spans, pos, xf.data(), &cache, &slotsOf);
    const int64_t nP = p1 - p0;
    std::vector<float> lastX(nP * H), logitsBuf(std::max(nP, S) * V);
    for (int64_t i = 0; i < nP; ++i)
      std::memcpy(lastX.data() + i * H, xf.data() + (spans[i].start + spans[i].length - 1) * H, H * sizeof(float));
    xf = std::vector<float>();
    matmulNTRows(nP, V, H, lastX.data(), P(lay_.headOff), logitsBuf.data(), threads);

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
          picked[i] = sampleRow(rowsLogits + rowOf[i] * V, V, req.temperature, req.topP, 0, 0.0, u, &lps[i], e, idx);
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
      rmsnorm(cur, P(lay_.normOff), xfr.data(), rstd1.data(), M);
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
        matmulNTRows(static_cast<int64_t>(live.size()), V, H, headX.data(), P(lay_.headOff), logitsBuf.data(), threads);
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
