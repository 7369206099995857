// The engine's backward CUDA twins (native/engine/norm_rope.cu, mlp.cu, head.cu, rewritten for host emulation by
// launch_to_emu.py) against their CPU twins (rmsnormBackward, swigluBackward, colSumAccumulate, embedRowsBackward,
// headLogprobsBackward: the functions the CPU engine's backward calls) on fresh random inputs, in both storages:
//   fp32  the same float inputs on both sides; within 1e-5 relative (plus 2e-6 of the array's largest value, for
//         sums that cancel; for the LM head scaled up with the largest sum_j |x_j w_j| past 20, the fp32 rounding of
//         the logits that both sides make in their own order), the embedding gradient bit-identical (same order of
//         additions)
//   bf16  the CPU twin in fp32 on the bf16 inputs decoded exactly; bf16 outputs within one bf16 ulp (plus the same
//         cancellation slack), fp32 outputs (weight gradients) as in fp32 mode
// Also: RMSNorm's weight gradient over several row parts, column sums over several parts and column blocks, the
// embedding gradient with repeated tokens and an out-of-range id (an error), the tied-embedding case (the head's
// gradient and the embedding gradient into one table), the LM-head backward with and without the entropy term,
// a row scored twice, partial and oversized chunks, nearly one-hot rows, zero upstream gradients; RoPE's inverse as
// its backward (the transpose); and that two runs give the same bits.
// Usage: check [seed]; exit status 1 on a mismatch. VERBOSE=1 prints the LM head's mismatching entries, TIMES=1 the
// seconds each check took.
#include <algorithm>
#include <chrono>
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

using namespace clipo::engine;

static int failures = 0;
static std::mt19937 rng;

static void report(const std::string& what, int bad, size_t n, const std::string& detail = "") {
  if (getenv("TIMES")) {
    static auto last = std::chrono::steady_clock::now();
    const auto now = std::chrono::steady_clock::now();
    std::printf("  [%.1f s]\n", std::chrono::duration<double>(now - last).count());
    last = now;
  }
  if (bad) {
    std::printf("FAIL %s: %d of %zu differ %s\n", what.c_str(), bad, n, detail.c_str());
    ++failures;
  } else {
    std::printf("ok   %s (%zu values) %s\n", what.c_str(), n, detail.c_str());
  }
}
static void checkError(const char* err, const std::string& what) {
  if (*err) {
    std::printf("FAIL %s: %s\n", what.c_str(), err);
    ++failures;
  }
}
static std::vector<float> randomF(size_t n, float scale) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// The two storages: S::T the device type, S::enc/dec between it and float, S::name for the report.
struct F32 {
  using T = float;
  static T enc(float x) { return x; }
  static float dec(T x) { return x; }
  static constexpr const char* name = "fp32";
  static constexpr bool bf16 = false;
};
struct Bf16 {
  using T = uint16_t;
  static T enc(float x) { return floatToBf16(x); }
  static float dec(T x) { return bf16ToFloat(x); }
  static constexpr const char* name = "bf16";
  static constexpr bool bf16 = true;
};
template <typename S>
static std::vector<typename S::T> encode(const std::vector<float>& f) {
  std::vector<typename S::T> v(f.size());
  for (size_t i = 0; i < f.size(); ++i) v[i] = S::enc(f[i]);
  return v;
}
template <typename S>
static std::vector<float> decode(const std::vector<typename S::T>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = S::dec(v[i]);
  return f;
}
// random values representable in the storage (so that both sides start from the same numbers)
template <typename S>
static std::vector<float> randomIn(size_t n, float scale) {
  auto v = randomF(n, scale);
  for (auto& x : v) x = S::dec(S::enc(x));
  return v;
}
static float maxAbs(const std::vector<float>& v) {
  float m = 0.f;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}
// an fp32 result against the CPU twin's
static bool f32Close(float dev, float cpu, float scale, float rel = 1e-5f) {
  return std::fabs(dev - cpu) <= rel * std::fabs(cpu) + 0.2f * rel * scale;
}
// a stored result (storage S) against the CPU twin's fp32 value: fp32 as above; bf16 equal to the rounded CPU value
// or one bf16 ulp apart, plus the cancellation slack
template <typename S>
static bool storedClose(typename S::T dev, float cpu, float scale, float rel = 1e-5f) {
  if (!S::bf16) return f32Close(S::dec(dev), cpu, scale, rel);
  const float a = S::dec(dev), b = bf16ToFloat(floatToBf16(cpu));
  if (a == b) return true;
  const float m = std::max(std::fabs(a), std::fabs(b));
  return std::fabs(a - b) <= m * (1.f / 128.f) * 1.0001f + 0.2f * rel * scale;
}
template <typename T>
static bool sameBits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <typename S>
static void checkRmsnormBackward(int64_t N, int64_t H, bool twice = false) {
  using T = typename S::T;
  const auto x = randomIn<S>(N * H, 1.5f), w = randomIn<S>(H, 1.f), dy = randomIn<S>(N * H, 0.8f),
             dx0 = randomIn<S>(N * H, 0.5f);
  const auto gw0 = randomF(H, 2.f);
  std::vector<float> y(N * H), rstd(N);
  rmsnormRows(x.data(), w.data(), y.data(), rstd.data(), N, H, 1e-6, 1);
  // CPU twin
  std::vector<float> dxc(dx0), gwc(gw0);
  rmsnormBackward(dy.data(), x.data(), rstd.data(), w.data(), dxc.data(), gwc.data(), N, H, 1);
  // CUDA twin, twice (the second run must give the same bits)
  const auto xs = encode<S>(x), ws = encode<S>(w), dys = encode<S>(dy);
  std::vector<T> dxd = encode<S>(dx0), dxd2 = dxd;
  std::vector<float> gwd(gw0), gwd2(gw0);
  checkError(rmsnormBackwardCudaHost(dys.data(), xs.data(), rstd.data(), ws.data(), dxd.data(), gwd.data(), N, H), "rmsnorm backward");
  if (twice)
    checkError(rmsnormBackwardCudaHost(dys.data(), xs.data(), rstd.data(), ws.data(), dxd2.data(), gwd2.data(), N, H), "rmsnorm backward");
  const float sx = maxAbs(dxc), sg = maxAbs(gwc);
  int bad = 0;
  for (int64_t i = 0; i < N * H; ++i)
    if (!storedClose<S>(dxd[i], dxc[i], sx)) ++bad;
  for (int64_t c = 0; c < H; ++c)
    if (!f32Close(gwd[c], gwc[c], sg)) ++bad;
  if (twice && (!sameBits(dxd, dxd2) || !sameBits(gwd, gwd2))) ++bad;
  report(std::string("rmsnorm backward ") + S::name + " N " + std::to_string(N) + " H " + std::to_string(H) +
             " (row parts " + std::to_string((N + 63) / 64) + (twice ? ", two runs bit-identical" : "") + ")",
         bad, static_cast<size_t>(N * H + H));
}

template <typename S>
static void checkSwigluBackward(int64_t N, int64_t I) {
  using T = typename S::T;
  const auto gu = randomIn<S>(N * 2 * I, 2.f), dact = randomIn<S>(N * I, 1.f);
  std::vector<float> dguc(N * 2 * I);
  swigluBackward(gu.data(), dact.data(), dguc.data(), N, I, 1);
  const auto gus = encode<S>(gu), das = encode<S>(dact);
  std::vector<T> dgud(N * 2 * I, S::enc(NAN));
  checkError(swigluBackwardCudaHost(gus.data(), das.data(), dgud.data(), N, I), "swiglu backward");
  int bad = 0;
  for (int64_t i = 0; i < N * 2 * I; ++i)
    if (!storedClose<S>(dgud[i], dguc[i], 0.f)) ++bad;
  report(std::string("swiglu backward ") + S::name + " N " + std::to_string(N) + " I " + std::to_string(I), bad, dgud.size());
}

template <typename S>
static void checkColSum(int64_t N, int64_t cols) {
  using T = typename S::T;
  const auto dY = randomIn<S>(N * cols, 1.f);
  const auto gb0 = randomF(cols, 3.f);
  std::vector<float> gbc(gb0);
  colSumAccumulate(dY.data(), N, cols, gbc.data(), 1);
  const auto ys = encode<S>(dY);
  std::vector<float> gbd(gb0), gbd2(gb0);
  checkError(colSumAccumulateCudaHost(ys.data(), N, cols, gbd.data()), "column sums");
  checkError(colSumAccumulateCudaHost(ys.data(), N, cols, gbd2.data()), "column sums");
  const float s = maxAbs(gbc);
  int bad = 0;
  for (int64_t c = 0; c < cols; ++c)
    if (!f32Close(gbd[c], gbc[c], s)) ++bad;
  if (!sameBits(gbd, gbd2)) ++bad;
  report(std::string("bias column sums ") + S::name + " N " + std::to_string(N) + " cols " + std::to_string(cols), bad,
         static_cast<size_t>(cols));
}

template <typename S>
static void checkEmbedBackward(int64_t V, int64_t H, int64_t N) {
  using T = typename S::T;
  const auto dx = randomIn<S>(N * H, 1.f);
  std::vector<int32_t> tok(N);
  std::uniform_int_distribution<int32_t> t(0, static_cast<int32_t>(V - 1));
  for (auto& x : tok) x = t(rng);
  tok[N - 1] = tok[0];  // a repeat at least
  const auto g0 = randomF(V * H, 1.f);
  std::vector<float> gc(g0), gd(g0);
  embedRowsBackward(dx.data(), H, tok.data(), N, gc.data(), 1);
  const auto dxs = encode<S>(dx);
  checkError(embedBackwardCudaHost(dxs.data(), H, tok.data(), N, V, gd.data()), "embedding backward");
  int bad = sameBits(gc, gd) ? 0 : 1;  // same additions in the same order: the same bits
  // an id outside the vocabulary is an error that leaves the table as it was
  std::vector<int32_t> badTok(tok);
  badTok[N / 2] = static_cast<int32_t>(V);
  std::vector<float> g3(g0);
  const std::string e = embedBackwardCudaHost(dxs.data(), H, badTok.data(), N, V, g3.data());
  if (e.find("tokens[" + std::to_string(N / 2) + "]") == std::string::npos || !sameBits(g3, g0)) ++bad;
  report(std::string("embedding backward ") + S::name + " V " + std::to_string(V) + " H " + std::to_string(H) + " N " +
             std::to_string(N) + " (bit-identical; bad id: \"" + e + "\")",
         bad, gd.size());
}

// The LM head's backward. logp and entropy come from the CPU forward (headLogprobs) on the same values; the upstream
// gradients are random with some zeros. tiedTokens > 0: the embedding gradient of that many positions is added
// into the same table afterwards (tied embeddings), on both sides.
template <typename S>
static void checkHeadBackward(int64_t V, int64_t H, int64_t R, int64_t chunk, bool withEntropy, float scale,
                              int64_t tiedTokens = 0, bool twice = false) {
  using T = typename S::T;
  const int64_t xfRows = 2 * R + 3;
  const auto xf = randomIn<S>(xfRows * H, 1.f), W = randomIn<S>(V * H, scale / std::sqrt(static_cast<float>(H)));
  std::vector<int32_t> rows(R), targets(R);
  std::uniform_int_distribution<int32_t> pr(0, static_cast<int32_t>(xfRows - 1)), pt(0, static_cast<int32_t>(V - 1));
  for (int64_t r = 0; r < R; ++r) {
    rows[r] = pr(rng);
    targets[r] = pt(rng);
  }
  rows[R - 1] = rows[0];  // a row scored twice
  targets[0] = 0;
  targets[R - 1] = static_cast<int32_t>(V - 1);
  auto gl = randomF(R, 1.f), ge = randomF(R, 0.5f);
  gl[1] = 0.f;                    // a row with no log-prob gradient
  if (R > 2) ge[2] = 0.f;         // and one with no entropy gradient
  if (R > 3) gl[3] = ge[3] = 0.f;  // and one with neither
  std::vector<int64_t> rr(rows.begin(), rows.end()), tt(targets.begin(), targets.end());
  std::vector<float> logp(R), ent(R);
  headLogprobs(xf.data(), H, W.data(), V, rr, tt, logp.data(), ent.data(), nullptr, 1);
  const auto dX0 = randomIn<S>(xfRows * H, 0.3f);
  const auto dW0 = randomF(V * H, 0.1f);
  std::vector<float> dXc(dX0), dWc(dW0);
  headLogprobsBackward(xf.data(), H, W.data(), V, rr, tt, gl.data(), withEntropy ? ge.data() : nullptr, nullptr,
                       dXc.data(), dWc.data(), 1);
  const auto xs = encode<S>(xf), Ws = encode<S>(W);
  std::vector<T> dXd = encode<S>(dX0), dXd2 = dXd;
  std::vector<float> dWd(dW0), dWd2(dW0);
  for (int run = 0; run < (twice ? 2 : 1); ++run)
    checkError(headLogprobsBackwardCudaHost(xs.data(), xfRows, H, Ws.data(), V, rows.data(), targets.data(), R,
                                            logp.data(), withEntropy ? ent.data() : nullptr, gl.data(),
                                            withEntropy ? ge.data() : nullptr, run ? dXd2.data() : dXd.data(),
                                            run ? dWd2.data() : dWd.data(), chunk),
               "head backward");
  std::string tied;
  if (tiedTokens > 0) {
    // tied embeddings: the embedding gradient goes into the head's gradient buffer
    const auto dres = randomIn<S>(tiedTokens * H, 0.7f);
    std::vector<int32_t> tok(tiedTokens);
    for (auto& x : tok) x = pt(rng);
    tok[0] = targets[0];
    embedRowsBackward(dres.data(), H, tok.data(), tiedTokens, dWc.data(), 1);
    const auto ds = encode<S>(dres);
    checkError(embedBackwardCudaHost(ds.data(), H, tok.data(), tiedTokens, V, dWd.data()), "tied embedding backward");
    if (twice) checkError(embedBackwardCudaHost(ds.data(), H, tok.data(), tiedTokens, V, dWd2.data()), "tied embedding backward");
    tied = ", tied embedding + " + std::to_string(tiedTokens) + " positions";
  }
  // the scale of the gradients themselves (dX0 and dW0 are offsets that would hide errors)
  std::vector<float> gX(dXc.size()), gW(dWc.size());
  for (size_t i = 0; i < gX.size(); ++i) gX[i] = dXc[i] - dX0[i];
  for (size_t i = 0; i < gW.size(); ++i) gW[i] = dWc[i] - dW0[i];
  const float sX = maxAbs(gX), sW = maxAbs(gW);
  // fp32 logits carry an absolute rounding error of ~2^-24 sum_j |x_j w_j| (both sides sum in their own order), which
  // is a relative error of the same size in every p_i: the tolerance grows with the largest such sum past 20
  double zAbs = 0;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t v = 0; v < V; ++v) {
      double a = 0;
      for (int64_t j = 0; j < H; ++j) a += std::fabs(static_cast<double>(xf[rows[r] * H + j]) * W[v * H + j]);
      zAbs = std::max(zAbs, a);
    }
  const float rel = 1e-5f * static_cast<float>(std::max(1.0, zAbs / 20));
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < dXc.size(); ++i) {
    if (!storedClose<S>(dXd[i], dXc[i], sX, rel)) {
      ++bad;
      if (getenv("VERBOSE")) std::printf("  dX[%zu] (row %zu) dev %.9g cpu %.9g start %.9g\n", i, i / H, S::dec(dXd[i]), dXc[i], dX0[i]);
    }
    worst = std::max(worst, static_cast<double>(std::fabs(S::dec(dXd[i]) - dXc[i])) / sX);
  }
  for (size_t i = 0; i < dWc.size(); ++i) {
    if (!f32Close(dWd[i], dWc[i], sW, rel)) ++bad;
    worst = std::max(worst, static_cast<double>(std::fabs(dWd[i] - dWc[i])) / sW);
  }
  if (twice && (!sameBits(dXd, dXd2) || !sameBits(dWd, dWd2))) ++bad;
  char d[128];
  std::snprintf(d, sizeof d, "(max diff / max gradient %.2g, tolerance %.2g relative)", worst, rel);
  report(std::string("head backward ") + S::name + " V " + std::to_string(V) + " H " + std::to_string(H) + " R " +
             std::to_string(R) + " chunk " + std::to_string(chunk) + (withEntropy ? " + entropy" : "") + " scale " +
             std::to_string(static_cast<int>(scale)) + tied + (twice ? ", two runs bit-identical" : ""),
         bad, dXc.size() + dWc.size(), d);
}

// RoPE's backward is its inverse: the CPU rotation's inverse is its transpose (<R x, y> = <x, R^T y>), and the CUDA
// twin's inverse (bf16) matches the CPU inverse applied to a gradient.
static void checkRopeBackward() {
  ModelConfig c;
  c.vocab = 10; c.hidden = 64; c.intermediate = 10; c.layers = 1;
  c.heads = 4; c.kvHeads = 2; c.headDim = 16; c.ropeTheta = 1000000.0;
  RopeTable t;
  t.invFreq = ropeInvFreq(c);
  const int64_t N = 7, qd = c.heads * c.headDim, kvd = c.kvHeads * c.headDim, stride = qd + 2 * kvd;
  std::vector<int32_t> pos(N);
  std::uniform_int_distribution<int32_t> p(0, 500);
  for (auto& x : pos) x = p(rng);
  t.ensure(501);
  const auto x = randomF(N * stride, 1.f), dy = randomIn<Bf16>(N * stride, 1.f);
  std::vector<float> rx(x), rtdy(dy);
  applyRope(t, rx.data(), stride, N, c.heads + c.kvHeads, c.headDim, pos.data(), false, 1);
  applyRope(t, rtdy.data(), stride, N, c.heads + c.kvHeads, c.headDim, pos.data(), true, 1);
  double a = 0, b = 0, mag = 0;
  for (int64_t i = 0; i < N * stride; ++i) {
    a += static_cast<double>(rx[i]) * dy[i];
    b += static_cast<double>(x[i]) * rtdy[i];
    mag += std::fabs(static_cast<double>(x[i]) * dy[i]);
  }
  int bad = std::fabs(a - b) <= 1e-6 * mag ? 0 : 1;
  auto dev = encode<Bf16>(dy);
  checkError(ropeCudaHost(dev.data(), stride, N, c.heads + c.kvHeads, c.headDim, pos.data(), t, true), "rope backward");
  for (int64_t i = 0; i < N * stride; ++i) {
    const int64_t j = i % stride, half = c.headDim / 2, pair = (j % c.headDim) < half ? i + half : i - half;
    const float slack = 0x1p-22f * (std::fabs(dy[i]) + (j < qd + kvd ? std::fabs(dy[pair]) : 0.f));
    if (!storedClose<Bf16>(dev[i], rtdy[i], 0.f) && std::fabs(bf16ToFloat(dev[i]) - rtdy[i]) > slack + std::fabs(rtdy[i]) / 128.f) ++bad;
  }
  char d[96];
  std::snprintf(d, sizeof d, "(<Rx,dy> - <x,R^T dy> = %.2g of %.3g)", a - b, mag);
  report("rope backward = inverse rotation (bf16 twin; fp32 overload with the forward's)", bad, dev.size(), d);
}

int main(int argc, char** argv) {
  const unsigned seed = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : std::random_device{}();
  std::printf("seed %u\n", seed);
  rng.seed(seed);
  checkRmsnormBackward<F32>(5, 37);
  checkRmsnormBackward<Bf16>(5, 37);
  checkRmsnormBackward<F32>(3, 300);    // several sweeps of a row
  checkRmsnormBackward<Bf16>(70, 12, true);  // two row parts for the weight gradient
  checkRmsnormBackward<F32>(70, 12);
  checkSwigluBackward<F32>(6, 45);
  checkSwigluBackward<Bf16>(6, 45);
  checkColSum<F32>(5, 37);
  checkColSum<Bf16>(5, 37);
  checkColSum<F32>(200, 130);  // four row parts, two column blocks
  checkColSum<Bf16>(200, 130);
  checkEmbedBackward<F32>(13, 37, 40);
  checkEmbedBackward<Bf16>(13, 37, 40);
  checkHeadBackward<F32>(201, 40, 7, 64, true, 4.f, 0, true);  // four chunks, the last one partial
  checkHeadBackward<Bf16>(201, 40, 7, 64, true, 4.f);
  checkHeadBackward<F32>(150, 24, 5, 1000, false, 1.f);  // a chunk wider than the vocabulary; no entropy term
  checkHeadBackward<Bf16>(150, 24, 5, 0, false, 1.f);    // the automatic width
  checkHeadBackward<F32>(257, 16, 4, 128, true, 60.f);   // large logits: nearly one-hot rows
  checkHeadBackward<F32>(100, 20, 5, 32, true, 4.f, 9);  // tied embeddings
  checkHeadBackward<Bf16>(100, 20, 5, 32, true, 4.f, 9, true);
  checkRopeBackward();
  std::printf("%s (%d failures, seed %u)\n", failures ? "FAILED" : "all ok", failures, seed);
  return failures ? 1 : 0;
}
