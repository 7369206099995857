// The CUDA engine (native/engine/cuda_engine.cu and the kernels it runs, rewritten for host emulation by
// launch_to_emu.py) against the CPU engine (cpu_model.h) on tiny random models: fp32 mode must give the CPU's logits,
// scores (log-probs, entropy, pooled final states) within 1e-4, the CPU's tokens when generating (greedy and
// sampled, with and without pooled states), and the same tokens when sequences join and leave a running batch
// (step-wise decoding, continuous batching, shared prompt blocks of the paged KV cache) as when each runs alone,
// drawn by the device sampler (sampling.cu) with top-p, top-k, min-p, a repetition penalty, a logit bias and the top
// log-probs, whose log-probs must match the CPU's within 1e-4.
// bf16 mode: logits close to the CPU's (bf16 tolerance). Training: cuda_train_check.cpp (run-cuda-train.sh).
// Usage: check [seed] [quick]; quick: one model of one layer, fewer and shorter cases (the jest run);
// exit status 1 on a mismatch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/cpu_model.h"
#include "engine/cuda_engine.h"
#include "engine/engine.h"

using namespace clipo::engine;

static int failures = 0;
static bool quick = false;
static std::mt19937 rng;

static const auto t0 = std::chrono::steady_clock::now();
static void report(bool ok, const std::string& what, const std::string& detail = "") {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s %s %s [%.1f s]\n", ok ? "ok  " : "FAIL", what.c_str(), detail.c_str(), s);
  std::fflush(stdout);
  if (!ok) ++failures;
}
static double maxDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}
static std::string fmt(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "(max |diff| %.3g)", v);
  return b;
}

static void fillWeights(Engine& a, Engine& b) {
  std::normal_distribution<float> d(0.f, 1.f);
  for (const ParamInfo& p : a.layout().params) {
    std::vector<float> v(p.size);
    const bool norm = p.name.find("norm") != std::string::npos;
    const bool emb = p.name.find("embed") != std::string::npos || p.name.find("lm_head") != std::string::npos;
    for (auto& x : v) x = norm ? 1.f + 0.1f * d(rng) : (emb ? 0.5f : 0.15f) * d(rng);
    a.setParameter(p, v.data());
    b.setParameter(p, v.data());
  }
}
static std::vector<int32_t> randomTokens(int64_t n, int64_t V) {
  std::uniform_int_distribution<int32_t> t(0, static_cast<int32_t>(V - 1));
  std::vector<int32_t> v(n);
  for (auto& x : v) x = t(rng);
  return v;
}

static void checkModel(const std::string& name, const ModelConfig& c) {
  std::printf("-- %s\n", name.c_str());
  CpuModel cpu(c, 1);
  auto gpu = createCudaEngine(c, 1, "fp32");
  fillWeights(cpu, *gpu);
  const double tol = 1e-4;
  report(maxDiff(gpu->exportWeights(), cpu.exportWeights()) == 0.0, name + ": exportWeights returns the fp32 weights");

  // logits: 2 sequences of 5
  {
    const auto tok = randomTokens(10, c.vocab);
    std::vector<float> a(10 * c.vocab), b(10 * c.vocab);
    cpu.logits(tok.data(), 2, 5, a.data());
    gpu->logits(tok.data(), 2, 5, b.data());
    const double d = maxDiff(a, b);
    report(d <= tol, name + ": logits", fmt(d));
    if (!quick) {
      auto fr = gpu->clone(true);
      std::vector<float> e(10 * c.vocab);
      fr->logits(tok.data(), 2, 5, e.data());
      report(maxDiff(b, e) == 0.0 && fr->frozen(), name + ": a frozen clone gives the same logits");
    }
  }
  // score: 3 sequences of different lengths and prompts
  {
    const std::vector<Span> spans = quick ? std::vector<Span>{Span{0, 5, 2}, Span{5, 4, 1}}
                                          : std::vector<Span>{Span{0, 7, 3}, Span{7, 4, 1}, Span{11, 9, 5}};
    const auto tok = randomTokens(quick ? 9 : 20, c.vocab);
    const ScoreResult a = cpu.score(tok, spans, true, true), b = gpu->score(tok, spans, true, true);
    report(a.T == b.T && a.mask == b.mask, name + ": score layout and mask");
    report(maxDiff(a.logprobs, b.logprobs) <= tol, name + ": score log-probs", fmt(maxDiff(a.logprobs, b.logprobs)));
    report(maxDiff(a.entropy, b.entropy) <= tol, name + ": score entropy", fmt(maxDiff(a.entropy, b.entropy)));
    report(maxDiff(a.pooled, b.pooled) <= tol, name + ": score pooled states", fmt(maxDiff(a.pooled, b.pooled)));
  }
  // generate: greedy and sampled, 2 prompts x 2 samples, 8 new tokens; one prompt longer than a KV-cache block
  for (double temp : {0.0, 1.0}) {
    if (quick && temp > 0) break;
    GenerateRequest r;
    r.prompts = {randomTokens(3, c.vocab), randomTokens(quick ? 17 : 19, c.vocab)};
    r.n = 2;
    r.maxNewTokens = quick ? 4 : 8;
    r.temperature = temp;
    r.seed = 7;
    r.returnPooled = temp > 0;
    r.maxBatch = quick ? 4 : 2;  // 2: the second prompt joins when the first's samples are done
    const auto a = cpu.generate(r, nullptr), b = gpu->generate(r, nullptr);
    bool same = a.size() == b.size();
    double dl = 0, dp = 0;
    for (size_t i = 0; same && i < a.size(); ++i) {
      same = a[i].tokens == b[i].tokens && a[i].stopped == b[i].stopped;
      dl = std::max(dl, maxDiff(a[i].logprobs, b[i].logprobs));
      if (r.returnPooled) dp = std::max(dp, maxDiff(a[i].pooled, b[i].pooled));
    }
    const std::string t = temp == 0 ? "greedy" : "sampled";
    report(same, name + ": generate " + t + " tokens equal the CPU's");
    report(dl <= tol, name + ": generate " + t + " log-probs", fmt(dl));
    if (r.returnPooled) report(dp <= tol, name + ": generate pooled states", fmt(dp));
  }
  // continuous batching: sequences join, leave and are removed between steps; tokens as when alone (CPU)
  {
    DecodeAddRequest p1, p2;
    p1.prompt = randomTokens(17, c.vocab);
    p1.maxNewTokens = quick ? 4 : 7;
    p1.seed = 3;
    // the device sampler's settings: temperature, the nucleus, a repetition penalty (the distinct history grows
    // past its first slices), a logit bias (one token pushed up, one down) and the top log-probs
    p1.sampler.temperature = 0.9;
    p1.sampler.topP = 0.8;
    p1.sampler.repetitionPenalty = 1.2;
    p1.sampler.logitBias = {{static_cast<int32_t>(rng() % c.vocab), 2.5f}, {static_cast<int32_t>(rng() % c.vocab), -4.f}};
    p1.sampler.topLogprobs = 3;
    p2.prompt = randomTokens(5, c.vocab);
    p2.n = quick ? 2 : 3;
    p2.maxNewTokens = quick ? 3 : 5;
    p2.seed = 4;
    p2.promptIndex = 2;
    p2.sampler.temperature = 1.1;
    p2.sampler.topK = 20;
    p2.sampler.minP = 0.02;
    p2.sampler.repetitionPenalty = 1.3;
    p2.sampler.logitBias = {{static_cast<int32_t>(rng() % c.vocab), 1.5f}};
    using Steps = std::vector<std::vector<SampledToken>>;
    auto alone = [&](const DecodeAddRequest& r) {
      CpuModel m(cpu, true);
      Steps toks(r.n);
      const auto ids = m.decodeAdd(r);
      while (m.decodeActive() > 0)
        for (const auto& t : m.decodeStep()) toks[std::find(ids.begin(), ids.end(), t.id) - ids.begin()].push_back(t.t);
      return toks;
    };
    const auto want1 = alone(p1), want2 = alone(p2);
    Steps got1(1), got2(p2.n);
    const auto id1 = gpu->decodeAdd(p1);
    std::vector<int64_t> id2, id3;
    DecodeAddRequest p3 = p1;
    p3.seed = 99;
    bool removed = false;
    for (int s = 0; gpu->decodeActive() > 0 || id2.empty(); ++s) {
      if (s == 2) id2 = gpu->decodeAdd(p2);
      if (s == 3) id3 = gpu->decodeAdd(p3);  // joins, then is removed before it finishes
      if (s == 5) removed = gpu->decodeRemove(id3[0]);
      for (const auto& t : gpu->decodeStep()) {
        if (t.id == id1[0]) got1[0].push_back(t.t);
        for (size_t k = 0; k < id2.size(); ++k)
          if (t.id == id2[k]) got2[k].push_back(t.t);
      }
      if (s > 100) break;
    }
    report(removed && gpu->decodeActive() == 0, name + ": decodeRemove takes a sequence out of the batch");
    // tokens equal; log-probs and the top lists (tokens equal, log-probs within tol) as the CPU's
    bool sameTokens = true, sameTop = true;
    double dl = 0;
    auto compare = [&](const Steps& a, const Steps& b) {
      sameTokens = sameTokens && a.size() == b.size();
      for (size_t k = 0; sameTokens && k < a.size(); ++k) {
        sameTokens = a[k].size() == b[k].size();
        for (size_t j = 0; sameTokens && j < a[k].size(); ++j) {
          sameTokens = a[k][j].token == b[k][j].token;
          dl = std::max(dl, static_cast<double>(std::fabs(a[k][j].logprob - b[k][j].logprob)));
          sameTop = sameTop && a[k][j].top.size() == b[k][j].top.size();
          for (size_t i = 0; sameTop && i < a[k][j].top.size(); ++i) {
            sameTop = a[k][j].top[i].first == b[k][j].top[i].first;
            dl = std::max(dl, static_cast<double>(std::fabs(a[k][j].top[i].second - b[k][j].top[i].second)));
          }
        }
      }
    };
    compare(got1, want1);
    compare(got2, want2);
    report(sameTokens, name + ": continuous batching gives each sequence its tokens alone (device sampler: top-p, "
                              "top-k, min-p, repetition penalty, logit bias)");
    report(sameTop && !want1[0].empty() && want1[0][0].top.size() == 3, name + ": the top log-probs' tokens equal the CPU's");
    report(dl <= tol, name + ": decoding log-probs and top log-probs", fmt(dl));
  }
  // training: checked by cuda_train_check.cpp; here only that a frozen copy refuses it
  {
    bool threw = false;
    try {
      gpu->clone(true)->zeroGrad();
    } catch (const EngineError& e) {
      threw = std::string(e.what()).find("frozen copy") != std::string::npos;
    }
    report(threw, name + ": a frozen copy refuses training calls");
  }
}

static void checkBf16(const ModelConfig& c) {
  std::printf("-- bf16\n");
  CpuModel cpu(c, 1);
  auto gpu = createCudaEngine(c, 1, "bf16");
  fillWeights(cpu, *gpu);
  // the CPU on the bf16-rounded weights: the difference left is the activations' bf16 rounding
  const auto w = gpu->exportWeights();
  for (const ParamInfo& p : cpu.layout().params) cpu.setParameter(p, w.data() + p.offset);
  const auto tok = randomTokens(8, c.vocab);
  std::vector<float> a(8 * c.vocab), b(8 * c.vocab);
  cpu.logits(tok.data(), 1, 8, a.data());
  gpu->logits(tok.data(), 1, 8, b.data());
  double scale = 0;
  for (float x : a) scale = std::max(scale, static_cast<double>(std::fabs(x)));
  const double d = maxDiff(a, b);
  report(d <= 0.05 * scale, "bf16: logits within 5% of the largest logit", fmt(d) + " largest " + std::to_string(scale));
}

int main(int argc, char** argv) {
  rng.seed(argc > 1 ? static_cast<unsigned>(std::atoi(argv[1])) : 1234u);
  quick = argc > 2 && std::string(argv[2]) == "quick";
  ModelConfig a;
  a.vocab = 96, a.hidden = 64, a.intermediate = 96, a.layers = 2, a.heads = 4, a.kvHeads = 2, a.headDim = 16;
  a.attentionBias = true;
  if (quick) {
    a.layers = 1;
    checkModel("qwen-like (q/k/v bias), one layer", a);
    std::printf(failures ? "%d FAILED\n" : "all ok\n", failures);
    return failures ? 1 : 0;
  }
  checkModel("qwen-like (q/k/v bias)", a);
  ModelConfig b = a;
  b.attentionBias = false, b.mlpBias = true, b.tieEmbeddings = true;
  b.llama3Scaling = true, b.ropeFactor = 8.0, b.originalMaxPositions = 8.0, b.ropeTheta = 500000.0;
  checkModel("llama-like (tied, mlp bias, Llama-3 RoPE)", b);
  checkBf16(a);
  std::printf(failures ? "%d FAILED\n" : "all ok\n", failures);
  return failures ? 1 : 0;
}
