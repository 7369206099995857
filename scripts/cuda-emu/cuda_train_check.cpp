// The CUDA engine's training path (native/engine/cuda_train.cuh with cuda_engine.cu and the kernels it runs, rewritten
// for host emulation by launch_to_emu.py) against the CPU engine (cpu_model.h) on tiny random models:
//   fp32 mode: forwardTrain's log-probs and entropies within 1e-4; the gradients accumulated over two micro-batches
//   within 1e-4 of the largest entry, for the policy-gradient loss (d loss / d logp and d loss / d entropy, as the
//   surrogate kernel hands them over) and for the cross-entropy of the supervised warm-up; the same gradients bit for
//   bit when run again; one AdamW step (weight decay, clipping active) equal to the CPU kernel (optim.cpp) on the same
//   weights and gradient within 1e-6, moments included; the gradient norm; optimizer state in and out; a frozen copy
//   refusing to train.
//   bf16 mode: gradients near the CPU engine's on the same (bf16-rounded) weights (bf16 activations), the fp32 master
//   updated as the CPU kernel would, and the bf16 working weights refreshed to its rounding.
//   per-layer recomputation (setCheckpointing, 3 layers): log-probs and gradients the same bits as without it, fp32 and
//   bf16, and the fp32 ones within 1e-4 of the CPU engine's; the device memory's peak lower by the layers not kept.
//   device memory figures (Engine::deviceMemory): the engine's count of its buffers, held and peak, equal to the
//   emulated allocator's own around a training step (forwardTrain, backward, AdamW).
// Usage: check [seed] [quick]; quick (the jest run): one model; the two micro-batches take the policy-gradient and the
// cross-entropy gradient respectively; no rerun, no bf16 AdamW step; recomputation in bf16 on one micro-batch. Exit
// status 1 on a mismatch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/cpu_model.h"
#include "engine/cuda_engine.h"
#include "engine/engine.h"
#include "engine/formulas.h"
#include "engine/optim.h"

using namespace clipo::engine;

// the emulated device memory's counters (cuda_emu.h defines the same inline variables; this check does not include
// that header, whose macros are for the rewritten kernels)
namespace emu {
inline size_t liveBytes = 0, peakBytes = 0, liveAsked = 0, peakAsked = 0;
}

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
static double maxAbs(const std::vector<float>& a) {
  double m = 0;
  for (float x : a) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}
static double maxDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}
static std::string fmt(const char* what, double v) {
  char b[96];
  std::snprintf(b, sizeof b, "(%s %.3g)", what, v);
  return b;
}
// max |a - b| / max |b|, and the tensor where the largest difference is
static double relDiff(const ParamLayout& lay, const std::vector<float>& a, const std::vector<float>& b, std::string* where) {
  if (a.size() != b.size() || a.empty()) return INFINITY;
  const double scale = std::max(maxAbs(b), 1e-30);
  double m = 0;
  for (const ParamInfo& p : lay.params)
    for (size_t i = p.offset; i < p.offset + p.size; ++i) {
      const double d = std::fabs(a[i] - b[i]) / scale;
      if (d > m) m = d, *where = p.name;
    }
  return m;
}
static double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return ab / std::sqrt(aa * bb);
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
  if (n > 3) v[3] = v[0];  // a repeated token: the embedding gradient adds rows of one token
  return v;
}
static std::vector<float> randomVec(size_t n, float scale) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

struct MicroBatch {
  std::vector<int32_t> tokens;
  std::vector<Span> spans;
  std::vector<float> gradLogp, gradEntropy;  // [B*T]; gradEntropy may be empty
};
// two micro-batches of different shapes; the second holds an empty response
static std::vector<MicroBatch> microBatches(int64_t V, bool entropyGrad) {
  std::vector<MicroBatch> mbs(2);
  mbs[0].spans = {Span{0, 7, 3}, Span{7, 5, 1}};
  mbs[0].tokens = randomTokens(12, V);
  mbs[1].spans = {Span{0, 6, 2}, Span{6, 3, 3}, Span{9, 5, 4}};
  mbs[1].tokens = randomTokens(14, V);
  for (size_t k = 0; k < mbs.size(); ++k) {
    int64_t T = 0;
    for (const Span& s : mbs[k].spans) T = std::max(T, s.length - s.promptLength);
    mbs[k].gradLogp = randomVec(mbs[k].spans.size() * T, 0.5f);
    if (entropyGrad && k == 0) mbs[k].gradEntropy = randomVec(mbs[k].spans.size() * T, 0.2f);
  }
  return mbs;
}

// forward + backward of every micro-batch, gradients accumulated; crossEntropy[k]: micro-batch k takes the warm-up's
// loss instead (mean over response tokens of -logp, scaled by 1/micro-batches: Engine.crossEntropyStep's gradient)
static std::vector<ScoreResult> runBatches(Engine& e, std::vector<MicroBatch> mbs, std::vector<bool> crossEntropy) {
  std::vector<ScoreResult> out;
  for (size_t k = 0; k < mbs.size(); ++k) {
    MicroBatch& mb = mbs[k];
    ScoreResult r = e.forwardTrain(mb.tokens, mb.spans);
    if (crossEntropy[k]) {
      int64_t n = 0;
      for (uint8_t m : r.mask) n += m;
      mb.gradLogp.assign(r.mask.size(), 0.f);
      mb.gradEntropy.clear();
      for (size_t i = 0; i < r.mask.size(); ++i)
        if (r.mask[i]) mb.gradLogp[i] = -1.f / static_cast<float>(n * mbs.size());
    }
    e.backward(mb.gradLogp.data(), mb.gradLogp.size(), mb.gradEntropy.empty() ? nullptr : mb.gradEntropy.data(),
               mb.gradEntropy.size());
    e.releaseActivations();
    out.push_back(std::move(r));
  }
  return out;
}

static std::vector<AdamwSegment> segmentsOf(const ModelConfig& c, const ParamLayout& lay) {
  std::vector<AdamwSegment> segs;
  for (const ParamInfo& p : lay.params) {
    if (c.tieEmbeddings && p.name == "lm_head.weight") continue;
    segs.push_back(AdamwSegment{static_cast<int64_t>(p.offset), static_cast<int64_t>(p.size), p.shape.size() >= 2});
  }
  return segs;
}

// One AdamW step of the engine against the CPU kernel on the same weights and gradient (fresh moments)
static void checkAdamw(const std::string& name, const ModelConfig& c, Engine& gpu, double lr) {
  const auto w0 = gpu.exportWeights(), g = gpu.exportGradients();
  double sq = 0;
  for (float x : g) sq += double(x) * x;
  const double norm = std::sqrt(sq);
  const AdamwHyper h{lr, 0.9, 0.95, 1e-8, 0.1, 0.5 * norm};  // clipping active
  std::vector<float> w = w0, m(w.size(), 0.f), v(w.size(), 0.f);
  const auto segs = segmentsOf(c, gpu.layout());
  const double refNorm = adamwStepCpu(w.data(), m.data(), v.data(), g.data(), w.size(), segs.data(), segs.size(), h, 1, 1);
  const double got = gpu.adamw(h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, h.maxGradNorm);
  report(std::fabs(got - refNorm) <= 1e-9 * refNorm, name + ": AdamW's gradient norm",
         fmt("relative diff", std::fabs(got - refNorm) / refNorm));
  const auto w1 = gpu.exportWeights();
  report(maxDiff(w1, w) <= 1e-6, name + ": one AdamW step (decay, clipping) equals the CPU kernel within 1e-6",
         fmt("max |diff|", maxDiff(w1, w)) + fmt("largest update", maxDiff(w1, w0)));
  const OptimizerState s = gpu.optimizerState();
  report(s.step == 1 && maxDiff(s.m, m) <= 1e-6 * std::max(1.0, maxAbs(m)) && maxDiff(s.v, v) <= 1e-6 * std::max(1e-12, maxAbs(v)),
         name + ": Adam moments equal the CPU kernel's", fmt("m", maxDiff(s.m, m)) + fmt("v", maxDiff(s.v, v)));
}

// Engine::deviceMemory (cuda_engine.cu DevMemCounter) against the emulated allocator's own figures (cuda_emu.h: the
// bytes asked for, held and peak), around checkFp32's training step (forwardTrain + backward of its micro-batches,
// then AdamW, which makes the moments): no extra emulated work. Every cudaMalloc of the emulated engine is a DevBuf's
// (no cuBLASLt here), so the engine's count must equal the allocator's exactly: before the step, after it, and the
// peak since resetPeakDeviceMemory. The count is process-wide: a frozen copy adds its weights. The CPU engine has none.
static std::optional<DeviceMemory> memoryBefore(const std::string& name, Engine& e) {
  const auto m0 = e.deviceMemory();
  report(m0 && m0->currentBytes == static_cast<double>(emu::liveAsked) && m0->totalBytes > 0 &&
             m0->freeBytes <= m0->totalBytes,
         name + ": deviceMemory's bytes held equal the allocator's before training",
         fmt("engine", m0 ? m0->currentBytes : -1.0) + fmt("allocator", static_cast<double>(emu::liveAsked)));
  e.resetPeakDeviceMemory();
  emu::peakAsked = emu::liveAsked;
  return m0;
}
static void memoryAfter(const std::string& name, Engine& e, const std::optional<DeviceMemory>& m0, double weightBytes,
                        const Engine& cpu) {
  const auto held = [](const std::optional<DeviceMemory>& d) { return d ? d->currentBytes : -1.0; };
  const auto m1 = e.deviceMemory();
  const double total = static_cast<double>(e.layout().total);
  report(m1 && m1->currentBytes == static_cast<double>(emu::liveAsked) && m1->peakBytes == static_cast<double>(emu::peakAsked),
         name + ": after forwardTrain + backward + AdamW, deviceMemory's held and peak bytes equal the allocator's",
         fmt("held", held(m1)) + fmt("allocator", static_cast<double>(emu::liveAsked)) +
             fmt("peak", m1 ? m1->peakBytes : -1.0) + fmt("allocator peak", static_cast<double>(emu::peakAsked)));
  // the step made the fp32 gradients and two moments (held on); its activations (freed) raised the peak above that
  report(m1 && m0 && m1->currentBytes - m0->currentBytes >= 12.0 * total && m1->peakBytes > m1->currentBytes,
         name + ": the step holds gradients and moments on, and its peak is above what it holds after",
         fmt("held before", held(m0)) + fmt("after", held(m1)) + fmt("peak", m1 ? m1->peakBytes : -1.0));
  e.resetPeakDeviceMemory();
  const auto fr = e.clone(true);
  const auto m2 = e.deviceMemory();
  report(m2 && m1 && m2->currentBytes - m1->currentBytes == weightBytes * total && m2->peakBytes == m2->currentBytes &&
             m2->currentBytes == static_cast<double>(emu::liveAsked),
         name + ": resetPeakDeviceMemory restarts the peak; a frozen copy's weights join the process's count",
         fmt("held", held(m2)) + fmt("peak", m2 ? m2->peakBytes : -1.0));
  report(!cpu.deviceMemory(), name + ": the CPU engine has no device memory figures");
}

static void checkFp32(const std::string& name, const ModelConfig& c) {
  std::printf("-- %s (fp32)\n", name.c_str());
  CpuModel cpu(c, 1);
  auto gpu = createCudaEngine(c, 1, "fp32");
  fillWeights(cpu, *gpu);
  const double tol = 1e-4;
  std::string where;

  // policy-gradient loss: d loss / d logp (and d loss / d entropy on the first micro-batch), two micro-batches (quick:
  // the second takes the cross-entropy's gradient)
  const auto mbs = microBatches(c.vocab, true);
  const std::vector<bool> mix{false, quick};
  const auto mem0 = memoryBefore(name, *gpu);
  const auto a = runBatches(cpu, mbs, mix), b = runBatches(*gpu, mbs, mix);
  double dl = 0, de = 0;
  bool masks = true;
  for (size_t k = 0; k < a.size(); ++k) {
    masks = masks && a[k].mask == b[k].mask && a[k].T == b[k].T;
    dl = std::max(dl, maxDiff(a[k].logprobs, b[k].logprobs));
    de = std::max(de, maxDiff(a[k].entropy, b[k].entropy));
  }
  report(masks, name + ": forwardTrain layout and mask");
  report(dl <= tol && de <= tol, name + ": forwardTrain log-probs and entropies within 1e-4",
         fmt("logp", dl) + fmt("entropy", de));
  const auto gc = cpu.exportGradients(), gg = gpu->exportGradients();
  const double d = relDiff(gpu->layout(), gg, gc, &where);
  report(d <= tol,
         name + (quick ? ": gradients of a policy-gradient and a cross-entropy micro-batch, accumulated, within 1e-4 of the largest"
                       : ": policy-gradient gradients, 2 micro-batches, within 1e-4 of the largest"),
         fmt("max relative diff", d) + " at " + where + fmt("largest", maxAbs(gc)));

  if (!quick) {
    // deterministic: the same micro-batches again give the same bits
    gpu->zeroGrad();
    runBatches(*gpu, mbs, mix);
    report(gpu->exportGradients() == gg, name + ": the same gradients bit for bit when run again");

    // cross-entropy (supervised warm-up)
    cpu.zeroGrad();
    gpu->zeroGrad();
    const auto ce = microBatches(c.vocab, false);
    runBatches(cpu, ce, {true, true});
    runBatches(*gpu, ce, {true, true});
    const double dc = relDiff(gpu->layout(), gpu->exportGradients(), cpu.exportGradients(), &where);
    report(dc <= tol, name + ": cross-entropy gradients, 2 micro-batches, within 1e-4 of the largest",
           fmt("max relative diff", dc) + " at " + where);
  }

  checkAdamw(name, c, *gpu, 1e-3);
  memoryAfter(name, *gpu, mem0, 4.0, cpu);
  {
    OptimizerState s = gpu->optimizerState();
    s.step = 7;
    gpu->setOptimizerState(s);
    const OptimizerState t = gpu->optimizerState();
    report(t.step == 7 && t.m == s.m && t.v == s.v, name + ": optimizer state in and out");
  }
  {
    auto fr = gpu->clone(true);
    bool threw = false;
    try {
      fr->forwardTrain(mbs[0].tokens, mbs[0].spans);
    } catch (const EngineError& e) {
      threw = std::string(e.what()).find("frozen copy") != std::string::npos;
    }
    report(threw && fr->exportGradients().empty(), name + ": a frozen copy refuses to train");
  }
}

static void checkBf16(const std::string& name, const ModelConfig& c) {
  std::printf("-- %s (bf16)\n", name.c_str());
  CpuModel cpu(c, 1);
  auto gpu = createCudaEngine(c, 1, "bf16");
  fillWeights(cpu, *gpu);
  // the CPU on the bf16-rounded weights: the difference left is the bf16 activations'
  const auto w0 = gpu->exportWeights();
  for (const ParamInfo& p : cpu.layout().params) cpu.setParameter(p, w0.data() + p.offset);
  const auto mbs = microBatches(c.vocab, true);
  const std::vector<bool> mix{false, quick};
  runBatches(cpu, mbs, mix);
  runBatches(*gpu, mbs, mix);
  const auto gc = cpu.exportGradients(), gg = gpu->exportGradients();
  std::string where;
  const double d = relDiff(gpu->layout(), gg, gc, &where), cs = cosine(gg, gc);
  report(d <= 0.1 && cs >= 0.995, name + ": bf16 gradients within 0.1 of the largest, cosine >= 0.995",
         fmt("max relative diff", d) + " at " + where + fmt("cosine", cs));
  report(gpu->exportWeights() == w0, name + ": the fp32 master starts as the working weights");
  if (quick) return;
  checkAdamw(name + " bf16", c, *gpu, 1e-2);
  // the working copy is the master's rounding (a frozen clone copies the working weights)
  const auto master = gpu->exportWeights(), working = gpu->clone(true)->exportWeights();
  bool rounded = master.size() == working.size();
  for (size_t i = 0; rounded && i < master.size(); ++i) rounded = working[i] == bf16ToFloat(floatToBf16(master[i]));
  report(rounded && master != w0, name + ": the bf16 working weights are refreshed to the updated master's rounding");
  // created for training: the master holds the exact fp32 values given, the working copy their rounding
  {
    auto t = createCudaEngine(c, 1, "bf16", true);
    CpuModel exact(c, 1);
    fillWeights(exact, *t);
    const auto want = exact.exportWeights(), got = t->exportWeights(), work = t->clone(true)->exportWeights();
    bool ok = got == want && work.size() == want.size();
    for (size_t i = 0; ok && i < want.size(); ++i) ok = work[i] == bf16ToFloat(floatToBf16(want[i]));
    report(ok && got != work, name + ": an engine created for training keeps the exact fp32 values as its master");
  }
}

// Per-layer recomputation (Engine::setCheckpointing): the same micro-batches on an engine that keeps only each layer's
// input and re-runs one layer's forward at a time in the backward pass give the same log-probs and the same gradients
// bit for bit as one that keeps every layer (the recomputed first norm reads the rounded residual sum that the forward
// stored), and in fp32 the CPU engine's within 1e-4. Three layers, so that a layer with a residual input (layer 1) is
// recomputed as well as the first. The device memory's peak drops by the (L - 1) layers' activations not kept.
static void checkRecompute(const std::string& name, const ModelConfig& c, const std::string& precision) {
  std::printf("-- %s (%s), per-layer recomputation\n", name.c_str(), precision.c_str());
  auto off = createCudaEngine(c, 1, precision, true), on = createCudaEngine(c, 1, precision, true);
  on->setCheckpointing(true);
  fillWeights(*off, *on);
  report(on->checkpointing() && !off->checkpointing(), name + ": setCheckpointing(true) is on");
  // a policy-gradient (with entropy) and a cross-entropy micro-batch; quick: the first alone
  auto mbs = microBatches(c.vocab, true);
  std::vector<bool> mix{false, true};
  if (quick) mbs.resize(1), mix.resize(1);
  size_t base = emu::liveBytes;
  emu::peakBytes = base;
  const auto a = runBatches(*off, mbs, mix);
  const double peakOff = static_cast<double>(emu::peakBytes - base);
  base = emu::liveBytes;
  emu::peakBytes = base;
  const auto b = runBatches(*on, mbs, mix);
  const double peakOn = static_cast<double>(emu::peakBytes - base);
  bool same = a.size() == b.size();
  for (size_t k = 0; same && k < a.size(); ++k)
    same = a[k].logprobs == b[k].logprobs && a[k].entropy == b[k].entropy && a[k].mask == b[k].mask;
  report(same, name + ": forwardTrain's log-probs and entropies the same bits with recomputation");
  const auto ga = off->exportGradients(), gb = on->exportGradients();
  size_t differ = 0;
  for (size_t i = 0; i < ga.size() && i < gb.size(); ++i) differ += ga[i] != gb[i];
  report(!ga.empty() && ga.size() == gb.size() && differ == 0 && maxAbs(ga) > 0,
         name + ": gradients with recomputation the same bits as without",
         "(" + std::to_string(differ) + " of " + std::to_string(ga.size()) + " differ)");
  // the peak: the backward of the larger micro-batch, N tokens; recomputation keeps 1 of the L layers' activations
  // (3 hidden-size tensors, q|k|v, o, gate|up in the storage type; 2 rstd and a log-sum-exp per head in fp32)
  int64_t N = 0;
  for (const MicroBatch& mb : mbs) N = std::max<int64_t>(N, static_cast<int64_t>(mb.tokens.size()));
  const double t = precision == "fp32" ? 4 : 2, qd = c.heads * c.headDim, qkv = qd + 2.0 * c.kvHeads * c.headDim;
  const double layer = t * (3.0 * c.hidden + qkv + qd + 2.0 * c.intermediate) + 4.0 * (2 + c.heads);
  const double want = static_cast<double>(N) * (c.layers - 1) * layer, got = peakOff - peakOn;
  report(std::fabs(got - want) <= 9 * 256.0, name + ": the device memory's peak drops by (L - 1) layers' activations",
         fmt("peak without", peakOff) + fmt("with", peakOn) + fmt("drop", got) + fmt("expected", want));
  if (precision == "fp32") {
    CpuModel cpu(c, 1);
    const auto w = on->exportWeights();
    for (const ParamInfo& p : cpu.layout().params) cpu.setParameter(p, w.data() + p.offset);
    runBatches(cpu, mbs, mix);
    std::string where;
    const double d = relDiff(on->layout(), gb, cpu.exportGradients(), &where);
    report(d <= 1e-4, name + ": gradients with recomputation within 1e-4 of the CPU engine's",
           fmt("max relative diff", d) + " at " + where);
  }
  {
    auto fr = on->clone(true);
    bool threw = false;
    try {
      fr->setCheckpointing(true);
    } catch (const EngineError& e) {
      threw = std::string(e.what()).find("frozen copy") != std::string::npos;
    }
    CpuModel cpu(c, 1);
    bool cpuThrew = false;
    try {
      cpu.setCheckpointing(true);
    } catch (const EngineError& e) {
      cpuThrew = std::string(e.what()).find("not supported") != std::string::npos;
    }
    report(threw && cpuThrew && !fr->checkpointing(), name + ": a frozen copy and the CPU engine refuse recomputation");
  }
}

int main(int argc, char** argv) {
  rng.seed(argc > 1 ? static_cast<unsigned>(std::atoi(argv[1])) : 1234u);
  quick = argc > 2 && std::string(argv[2]) == "quick";
  ModelConfig a;
  a.vocab = 64, a.hidden = 32, a.intermediate = 48, a.layers = 2, a.heads = 2, a.kvHeads = 1, a.headDim = 16;
  a.attentionBias = true;
  checkFp32("qwen-like (q/k/v bias)", a);
  if (!quick) {
    ModelConfig b = a;
    b.attentionBias = false, b.mlpBias = true, b.tieEmbeddings = true;
    b.llama3Scaling = true, b.ropeFactor = 8.0, b.originalMaxPositions = 8.0, b.ropeTheta = 500000.0;
    checkFp32("llama-like (tied, mlp bias, Llama-3 RoPE)", b);
  }
  checkBf16("qwen-like", a);
  ModelConfig r = a;
  r.layers = 3;
  checkRecompute("qwen-like, 3 layers", r, "bf16");
  if (!quick) {
    checkRecompute("qwen-like, 3 layers", r, "fp32");
    ModelConfig b = a;
    b.layers = 3, b.attentionBias = false, b.mlpBias = true, b.tieEmbeddings = true;
    checkRecompute("llama-like, 3 layers (tied, mlp bias)", b, "bf16");
  }
  std::printf(failures ? "%d FAILED\n" : "all ok\n", failures);
  return failures ? 1 : 0;
}
