// The engine's CUDA twins (native/engine/norm_rope.cu, mlp.cu, head.cu, rewritten for host emulation by
// launch_to_emu.py) against their CPU twins (norm_rope.cpp, mlp.cpp, head.cpp) on fresh random inputs: embedding
// gather (with an out-of-range id -> zero row), RMSNorm with and without the residual add (odd and multi-sweep
// widths; the residual also updated in place), RoPE on packed q|k|v rows (plain and Llama-3 scaled tables, forward
// and inverse; v untouched), SwiGLU, and the chunked log-prob/entropy pass (partial last chunk, one chunk, chunk
// wider than the vocabulary, without entropy, large logits, several passes of rows, and a row's bits the same alone
// as in a larger call), and AdamW (fp32 master weights and moments, the bf16
// working copy; sizes off the block size, decay on/off, clipping active/inactive, a non-finite gradient). The CPU twins run in fp32 on the bf16 inputs decoded
// exactly; bf16 outputs must agree within one bf16 ulp, fp32 ones within the stated tolerances.
// Usage: check [seed]; exit status 1 on a mismatch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/formulas.h"
#include "engine/head.h"
#include "engine/mlp.h"
#include "engine/norm_rope.h"
#include "engine/optim.h"

using namespace clipo::engine;

static int failures = 0;
static std::mt19937 rng;

static std::vector<uint16_t> randomBf16(size_t n, float scale) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = floatToBf16(d(rng));
  return v;
}
static std::vector<float> decode(const std::vector<uint16_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = bf16ToFloat(v[i]);
  return f;
}
static void report(const std::string& what, int bad, size_t n, const std::string& detail = "") {
  if (bad) {
    std::printf("FAIL %s: %d of %zu differ %s\n", what.c_str(), bad, n, detail.c_str());
    ++failures;
  } else {
    std::printf("ok   %s (%zu values) %s\n", what.c_str(), n, detail.c_str());
  }
}
// bf16 a (device) against the CPU's fp32 value rounded to bf16: equal, or one bf16 ulp apart (+ slack where a
// result can cancel to near zero and the two sides' fp32 rounding, e.g. FMA contraction, differ)
static bool bf16Close(uint16_t dev, float cpu, float slack = 0.f) {
  const float a = bf16ToFloat(dev), b = bf16ToFloat(floatToBf16(cpu));
  if (a == b) return true;
  const float m = std::max(std::fabs(a), std::fabs(b));
  return std::fabs(a - b) <= m * (1.f / 128.f) * 1.0001f + slack;
}
static void checkError(const char* err, const std::string& what) {
  if (*err) {
    std::printf("FAIL %s: %s\n", what.c_str(), err);
    ++failures;
  }
}

static void checkEmbed(int64_t V, int64_t H, int64_t N) {
  auto table = randomBf16(V * H, 1.f);
  std::vector<int32_t> tok(N);
  std::uniform_int_distribution<int32_t> t(0, static_cast<int32_t>(V - 1));
  for (auto& x : tok) x = t(rng);
  tok[N / 2] = static_cast<int32_t>(V);  // out of range: the kernel writes zeros
  std::vector<uint16_t> dev(N * H, 0xffff);
  checkError(embedRowsCudaHost(table.data(), V, H, tok.data(), N, dev.data()), "embed");
  std::vector<int32_t> tokCpu(tok);
  tokCpu[N / 2] = 0;
  std::vector<float> cpu(N * H);
  const auto tf = decode(table);
  embedRows(tf.data(), H, tokCpu.data(), N, cpu.data(), 1);
  int bad = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < H; ++j) {
      const float want = n == N / 2 ? 0.f : cpu[n * H + j];
      if (bf16ToFloat(dev[n * H + j]) != want) ++bad;
    }
  report("embed V " + std::to_string(V) + " H " + std::to_string(H), bad, dev.size());
}

static void checkRmsnorm(int64_t N, int64_t H, bool withDelta) {
  auto res = randomBf16(N * H, 1.5f), delta = randomBf16(N * H, 0.7f), w = randomBf16(H, 1.f);
  std::vector<uint16_t> ro(N * H, 0xffff), y(N * H, 0xffff);
  std::vector<float> rstd(N, NAN);
  const double eps = 1e-6;
  checkError(rmsnormResidualCudaHost(res.data(), withDelta ? delta.data() : nullptr, w.data(), ro.data(), y.data(),
                                     rstd.data(), N, H, eps), "rmsnorm");
  // CPU twin: the residual add in fp32 (addInPlace), rounded to bf16 as the stream stores it, then rmsnormRows
  std::vector<float> r = decode(res);
  if (withDelta) {
    const auto d = decode(delta);
    addInPlace(r.data(), d.data(), N * H, 1);
    for (auto& x : r) x = bf16ToFloat(floatToBf16(x));
  }
  std::vector<float> yc(N * H), rc(N);
  const auto wf = decode(w);
  rmsnormRows(r.data(), wf.data(), yc.data(), rc.data(), N, H, eps, 1);
  int bad = 0;
  for (int64_t i = 0; i < N * H; ++i) {
    if (!bf16Close(y[i], yc[i])) ++bad;
    if (withDelta && bf16ToFloat(ro[i]) != r[i]) ++bad;
  }
  for (int64_t n = 0; n < N; ++n)
    if (!(std::fabs(rstd[n] - rc[n]) <= 2e-6f * rc[n])) ++bad;
  report("rmsnorm N " + std::to_string(N) + " H " + std::to_string(H) + (withDelta ? " + residual" : ""), bad, y.size());
  if (withDelta) {
    // the residual updated in place (residualOut == residual), through the device entry: under emulation device
    // memory is host memory
    std::vector<uint16_t> inPlace(res), y2(N * H, 0xffff);
    checkError(rmsnormResidualCuda(inPlace.data(), delta.data(), w.data(), inPlace.data(), y2.data(), nullptr, N, H, eps,
                                   nullptr), "rmsnorm in place");
    int bad2 = 0;
    for (int64_t i = 0; i < N * H; ++i)
      if (inPlace[i] != ro[i] || y2[i] != y[i]) ++bad2;
    report("rmsnorm N " + std::to_string(N) + " H " + std::to_string(H) + " + residual, in place", bad2, y.size());
  }
}

static void checkRope(bool llama3, bool inverse) {
  ModelConfig c;
  c.vocab = 10; c.hidden = 64; c.intermediate = 10; c.layers = 1;
  c.heads = 4; c.kvHeads = 2; c.headDim = 16;
  c.ropeTheta = llama3 ? 500000.0 : 1000000.0;
  c.llama3Scaling = llama3;
  c.ropeFactor = 8; c.lowFreqFactor = 1; c.highFreqFactor = 4; c.originalMaxPositions = 64;
  RopeTable t;
  t.invFreq = ropeInvFreq(c);
  const int64_t N = 9, qd = c.heads * c.headDim, kvd = c.kvHeads * c.headDim, stride = qd + 2 * kvd;
  std::vector<int32_t> pos(N);
  std::uniform_int_distribution<int32_t> p(0, 700);
  for (auto& x : pos) x = p(rng);
  t.ensure(701);
  auto x = randomBf16(N * stride, 1.f);
  std::vector<uint16_t> dev(x);
  checkError(ropeCudaHost(dev.data(), stride, N, c.heads + c.kvHeads, c.headDim, pos.data(), t, inverse), "rope");
  auto cpu = decode(x);
  applyRope(t, cpu.data(), stride, N, c.heads, c.headDim, pos.data(), inverse, 1);
  applyRope(t, cpu.data() + qd, stride, N, c.kvHeads, c.headDim, pos.data(), inverse, 1);
  int bad = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < stride; ++j) {
      const int64_t i = n * stride + j;
      const int64_t hd = c.headDim, half = hd / 2, pair = (j % hd) < half ? i + half : i - half;
      const float slack = 0x1p-22f * (std::fabs(bf16ToFloat(x[i])) + std::fabs(bf16ToFloat(x[pair])));
      if (j >= qd + kvd ? dev[i] != x[i] : !bf16Close(dev[i], cpu[i], slack)) ++bad;
    }
  report(std::string("rope") + (llama3 ? " llama3" : "") + (inverse ? " inverse" : ""), bad, dev.size());
}

static void checkSwiglu(int64_t N, int64_t I) {
  auto gu = randomBf16(N * 2 * I, 2.f);
  std::vector<uint16_t> dev(N * I, 0xffff);
  checkError(swigluCudaHost(gu.data(), dev.data(), N, I), "swiglu");
  const auto g = decode(gu);
  std::vector<float> cpu(N * I);
  swiglu(g.data(), cpu.data(), N, I, 1);
  int bad = 0;
  for (int64_t i = 0; i < N * I; ++i)
    if (!bf16Close(dev[i], cpu[i])) ++bad;
  report("swiglu N " + std::to_string(N) + " I " + std::to_string(I), bad, dev.size());
}

static void checkHead(int64_t V, int64_t H, int64_t R, int64_t chunk, bool withEntropy, float scale) {
  const int64_t xfRows = 2 * R + 3;
  auto xf = randomBf16(xfRows * H, 1.f), W = randomBf16(V * H, scale / std::sqrt(static_cast<float>(H)));
  std::vector<int32_t> rows(R), targets(R);
  std::uniform_int_distribution<int32_t> pr(0, static_cast<int32_t>(xfRows - 1)), pt(0, static_cast<int32_t>(V - 1));
  for (int64_t r = 0; r < R; ++r) {
    rows[r] = pr(rng);
    targets[r] = pt(rng);
  }
  rows[R - 1] = rows[0];  // a row scored twice
  targets[0] = 0;
  targets[R - 1] = static_cast<int32_t>(V - 1);  // the first and the last column of the vocabulary
  std::vector<float> lp(R, NAN), ent(R, NAN);
  checkError(headLogprobsCudaHost(xf.data(), xfRows, H, W.data(), V, rows.data(), targets.data(), R, lp.data(),
                                  withEntropy ? ent.data() : nullptr, chunk), "head");
  const auto xff = decode(xf), Wf = decode(W);
  std::vector<int64_t> rr(rows.begin(), rows.end()), tt(targets.begin(), targets.end());
  std::vector<float> lc(R), ec(R);
  headLogprobs(xff.data(), H, Wf.data(), V, rr, tt, lc.data(), ec.data(), nullptr, 1);
  int bad = 0;
  double worst = 0;
  for (int64_t r = 0; r < R; ++r) {
    const double dl = std::fabs(lp[r] - lc[r]);
    worst = std::max(worst, dl);
    if (!(dl <= 2e-5 * (1 + std::fabs(lc[r])))) ++bad;
    if (withEntropy && !(std::fabs(ent[r] - ec[r]) <= 2e-5 * (1 + std::fabs(ec[r])))) ++bad;
  }
  // a row's bits do not depend on the other rows of the call (the chunk width is fixed by V, gemm.h's rule): the
  // first rows again, alone, must give the same floats
  const int64_t half = std::max<int64_t>(1, R / 2);
  std::vector<float> lp2(half, NAN), ent2(half, NAN);
  checkError(headLogprobsCudaHost(xf.data(), xfRows, H, W.data(), V, rows.data(), targets.data(), half, lp2.data(),
                                  withEntropy ? ent2.data() : nullptr, chunk), "head");
  for (int64_t r = 0; r < half; ++r)
    if (std::memcmp(&lp2[r], &lp[r], sizeof(float)) || (withEntropy && std::memcmp(&ent2[r], &ent[r], sizeof(float)))) ++bad;
  char d[96];
  std::snprintf(d, sizeof d, "(max |logp diff| %.3g)", worst);
  report("head V " + std::to_string(V) + " H " + std::to_string(H) + " R " + std::to_string(R) + " chunk " +
             std::to_string(chunk) + (withEntropy ? "" : " no entropy") + " scale " + std::to_string(scale),
         bad, static_cast<size_t>(R), d);
}

// AdamW: the CUDA twin (device-side two-stage norm, fused update, bf16 refresh) against adamwStepCpu on the same
// fp32 state, over several steps. The norms are summed in a different order (relative 1e-12); with clipping
// inactive the updates must be bit-identical, with it active within 2 fp32 ulp (the clip factor may round apart).
static void checkAdamw(int64_t n, bool decay, double maxGradNorm, int steps) {
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> w(n), g(n), m(n, 0.f), v(n, 0.f);
  for (auto& x : w) x = d(rng);
  // segments: a decayed "matrix", an undecayed "vector", a hole left untouched (a tied head), another matrix
  const int64_t a = n / 2, b = n / 2 + n / 7 + 1, hole = 3;
  std::vector<AdamwSegment> segs{{0, a, decay}, {a, b - a, false}, {b + hole, n - b - hole, decay}};
  AdamwHyper h;
  h.lr = 3e-3; h.beta1 = 0.9; h.beta2 = 0.995; h.eps = 1e-8; h.weightDecay = decay ? 0.1 : 0.0; h.maxGradNorm = maxGradNorm;
  std::vector<float> wc(w), mc(m), vc(v), wd(w), md(m), vd(v);
  std::vector<uint16_t> bf(n, 0x7fc0);
  int bad = 0, exact = 0;
  double worstNorm = 0;
  for (int t = 1; t <= steps; ++t) {
    for (auto& x : g) x = d(rng) * (t == 1 ? 0.02f : 0.3f);  // the first step below the clip, the later ones above
    const double nc = adamwStepCpu(wc.data(), mc.data(), vc.data(), g.data(), n, segs.data(), segs.size(), h, t, 1);
    double nd = NAN;
    checkError(adamwStepCudaHost(wd.data(), md.data(), vd.data(), g.data(), bf.data(), n, segs.data(), segs.size(), h, t, &nd), "adamw");
    worstNorm = std::max(worstNorm, std::fabs(nd - nc) / nc);
    if (!(std::fabs(nd - nc) <= 1e-12 * nc)) ++bad;
    const bool clipped = adamwClipScale(nc, maxGradNorm) < 1.0;
    for (int64_t i = 0; i < n; ++i) {
      const float pairs[3][2] = {{wd[i], wc[i]}, {md[i], mc[i]}, {vd[i], vc[i]}};
      for (const auto& p : pairs) {
        if (p[0] == p[1]) { ++exact; continue; }
        const float tol = clipped ? 2.f * (std::nextafter(std::fabs(p[1]), INFINITY) - std::fabs(p[1])) : 0.f;
        if (!(std::fabs(p[0] - p[1]) <= tol)) ++bad;
      }
      const bool inHole = i >= b && i < b + hole;
      if (inHole ? (wd[i] != w[i] || bf[i] != 0x7fc0) : bf[i] != floatToBf16(wd[i])) ++bad;
    }
  }
  char det[96];
  std::snprintf(det, sizeof det, "(max norm rel diff %.2g, %d of %lld values bit-identical)", worstNorm, exact,
                static_cast<long long>(3 * n * steps));
  report("adamw n " + std::to_string(n) + (decay ? " decay" : "") + (maxGradNorm > 0 ? " clip " + std::to_string(maxGradNorm) : ""),
         bad, static_cast<size_t>(3 * n * steps), det);
}

// bf16 master weights (stochastic rounding): the device keeps only the bf16 copy, the CPU an fp32 buffer holding bf16
// values; after every step the two must hold the same bf16 bits (same rounding bits per element and step), and the
// moments the same floats. With clipping inactive everything is exact.
static void checkAdamwBf16Master(int64_t n, int steps) {
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<uint16_t> bf(n);
  std::vector<float> wc(n), g(n), mc(n, 0.f), vc(n, 0.f), md(n, 0.f), vd(n, 0.f);
  for (int64_t i = 0; i < n; ++i) {
    bf[i] = floatToBf16(d(rng));
    wc[i] = bf16ToFloat(bf[i]);
  }
  std::vector<AdamwSegment> segs{{0, n / 2, true}, {n / 2 + 2, n - n / 2 - 2, false}};  // two values left untouched
  AdamwHyper h;
  h.lr = 1e-3; h.weightDecay = 0.1; h.bf16Master = true; h.seed = 12345;
  const std::vector<uint16_t> start(bf);
  int bad = 0, rounded = 0;
  for (int t = 1; t <= steps; ++t) {
    for (auto& x : g) x = d(rng) * 0.01f;
    adamwStepCpu(wc.data(), mc.data(), vc.data(), g.data(), n, segs.data(), segs.size(), h, t, 1);
    double nd = NAN;
    checkError(adamwStepCudaHost(nullptr, md.data(), vd.data(), g.data(), bf.data(), n, segs.data(), segs.size(), h, t, &nd), "adamw bf16 master");
    for (int64_t i = 0; i < n; ++i) {
      if (bf16ToFloat(floatToBf16(wc[i])) != wc[i]) ++bad;  // the CPU master holds bf16 values
      if (bf[i] != floatToBf16(wc[i]) || md[i] != mc[i] || vd[i] != vc[i]) ++bad;
      const bool untouched = i == n / 2 || i == n / 2 + 1;
      if (untouched && bf[i] != start[i]) ++bad;
      if (!untouched && bf[i] != start[i]) ++rounded;
    }
  }
  if (rounded == 0) ++bad;  // the updates must move the weights (lr 1e-3 is about a quarter of a bf16 ulp at 1)
  char det[64];
  std::snprintf(det, sizeof det, "(%d weight changes over the steps)", rounded);
  report("adamw bf16 master n " + std::to_string(n), bad, static_cast<size_t>(3 * n * steps), det);
}

// a non-finite gradient: an error naming it, and neither the weights, the moments nor the bf16 copy change
static void checkAdamwNonFinite(float poison) {
  const int64_t n = 1000;
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> w(n), g(n), m(n), v(n);
  for (int64_t i = 0; i < n; ++i) { w[i] = d(rng); g[i] = d(rng); m[i] = d(rng) * 0.1f; v[i] = std::fabs(d(rng)) * 0.01f; }
  g[n - 5] = poison;
  std::vector<float> w2(w), m2(m), v2(v);
  std::vector<uint16_t> bf(n, 0x1234);
  std::vector<AdamwSegment> segs{{0, n, true}};
  AdamwHyper h;
  h.lr = 1e-2; h.weightDecay = 0.1; h.maxGradNorm = 1.0;
  double nd = 0;
  const char* err = adamwStepCudaHost(w2.data(), m2.data(), v2.data(), g.data(), bf.data(), n, segs.data(), 1, h, 3, &nd);
  const std::string e(err);
  int bad = e.find("not finite") == std::string::npos ? 1 : 0;
  for (int64_t i = 0; i < n; ++i)
    if (w2[i] != w[i] || m2[i] != m[i] || v2[i] != v[i] || bf[i] != 0x1234) ++bad;
  bool cpuThrew = false;
  try {
    adamwStepCpu(w.data(), m.data(), v.data(), g.data(), n, segs.data(), 1, h, 3, 1);
  } catch (const std::exception& ex) {
    cpuThrew = std::string(ex.what()).find("not finite") != std::string::npos;
  }
  if (!cpuThrew) ++bad;
  report(std::string("adamw non-finite gradient (") + std::to_string(poison) + "): error \"" + e + "\", nothing written",
         bad, static_cast<size_t>(n));
}

int main(int argc, char** argv) {
  const unsigned seed = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : std::random_device{}();
  std::printf("seed %u\n", seed);
  rng.seed(seed);
  checkEmbed(50, 37, 6);
  checkRmsnorm(5, 37, false);
  checkRmsnorm(5, 37, true);
  checkRmsnorm(3, 300, true);
  for (bool llama3 : {false, true})
    for (bool inverse : {false, true}) checkRope(llama3, inverse);
  checkSwiglu(6, 45);
  // (run-engine.sh sets CLIPO_HEAD_PASS_LOGITS=2048: rows go through in passes of 2048 / chunk)
  checkHead(1001, 40, 7, 256, true, 4.f);   // four chunks, the last one partial
  checkHead(1001, 40, 19, 256, true, 4.f);  // three passes of rows (8, 8, 3); alone, the first 9 take two
  checkHead(1000, 33, 5, 0, true, 4.f);     // the automatic width: one chunk (passes of 2 rows)
  checkHead(300, 24, 4, 1000, false, 1.f);  // a chunk wider than the vocabulary; no entropy
  checkHead(517, 16, 4, 128, true, 60.f);   // large logits: nearly one-hot rows
  checkAdamw(1000, true, 0.0, 3);      // no clipping; not a multiple of the block
  checkAdamw(777, false, 1.0, 3);      // clipping active after the first step, no decay
  checkAdamw(4096, true, 1.0, 2);      // a multiple of the block
  checkAdamw(70001, true, 1e6, 1);     // more values than the norm's threads; clipping inactive
  checkAdamwBf16Master(3001, 3);
  checkAdamwNonFinite(NAN);
  checkAdamwNonFinite(INFINITY);
  std::printf("%s (%d failures, seed %u)\n", failures ? "FAILED" : "all ok", failures, seed);
  return failures ? 1 : 0;
}
