// The engine's attention CUDA twins (native/engine/attention.cu, rewritten for host emulation by launch_to_emu.py)
// against their CPU twins (attention.cpp: attentionSpans, attentionSpansBackward, attendRow) on fresh random inputs,
// both storages: spans of lengths 1, a tile exactly, and lengths off the tiles; grouped-query attention with 2 and 7
// query heads per kv head; head dims 16, 64, 128 and 256; rows with padding columns past q | k | v (the backward
// must zero them); the paged KV cache write (a skipped row) and split decoding of several sequences of different
// lengths over non-contiguous blocks, one shared by two sequences, with more than one split; refusals of
// unsupported head dims. fp32 storage: within 1e-5 relative (+ 1e-6 of the tensor's largest value, for
// cancellation); bf16 storage: the CPU twin runs on the same bf16 inputs decoded exactly, and the device's bf16
// output must agree within one bf16 ulp (+ 1e-5 of the largest value).
// Usage: check [seed]; exit status 1 on a mismatch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/attention.h"
#include "engine/config.h"
#include "engine/formulas.h"

using namespace clipo::engine;

static int failures = 0;
static std::mt19937 rng;

static void report(const std::string& what, int bad, size_t n, const std::string& detail = "") {
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

// Storage traits: random values (bf16: already rounded), decoding to fp32, and the tolerance of one value.
template <typename T> struct Stor;
template <> struct Stor<float> {
  static constexpr const char* name = "fp32";
  static float enc(float x) { return x; }
  static float dec(float x) { return x; }
  static bool close(float dev, float cpu, float maxAbs) {
    return std::fabs(dev - cpu) <= 1e-5f * std::fabs(cpu) + 1e-6f * maxAbs;
  }
};
template <> struct Stor<uint16_t> {
  static constexpr const char* name = "bf16";
  static uint16_t enc(float x) { return floatToBf16(x); }
  static float dec(uint16_t x) { return bf16ToFloat(x); }
  static bool close(uint16_t dev, float cpu, float maxAbs) {
    const float a = bf16ToFloat(dev), b = bf16ToFloat(floatToBf16(cpu));
    if (a == b) return true;
    const float m = std::max(std::fabs(a), std::fabs(b));
    return std::fabs(a - cpu) <= m * (1.f / 128.f) * 1.0001f + 1e-5f * maxAbs;
  }
};

template <typename T>
static std::vector<T> randomT(size_t n, float scale) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = Stor<T>::enc(d(rng));
  return v;
}
template <typename T>
static std::vector<float> decode(const std::vector<T>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = Stor<T>::dec(v[i]);
  return f;
}
static float maxAbsOf(const std::vector<float>& v) {
  float m = 0.f;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}
// device values (storage T) against CPU fp32 values; worst |difference| reported
template <typename T>
static void compare(const std::string& what, const std::vector<T>& dev, const std::vector<float>& cpu) {
  const float mx = maxAbsOf(cpu);
  int bad = 0;
  double worst = 0.0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const float d = Stor<T>::dec(dev[i]);
    if (!(Stor<T>::close(dev[i], cpu[i], mx))) {
      if (bad < 3) std::printf("     %s[%zu]: device %.8g cpu %.8g\n", what.c_str(), i, d, cpu[i]);
      ++bad;
    }
    worst = std::max(worst, static_cast<double>(std::fabs(d - cpu[i])));
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "max |diff| %.3g (max |value| %.3g)", worst, mx);
  report(what, bad, cpu.size(), buf);
}
static void compareF(const std::string& what, const std::vector<float>& dev, const std::vector<float>& cpu,
                     float rel) {
  const float mx = maxAbsOf(cpu);
  int bad = 0;
  double worst = 0.0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const float diff = std::fabs(dev[i] - cpu[i]);
    if (!(diff <= rel * std::fabs(cpu[i]) + 1e-6f * mx)) {
      if (bad < 3) std::printf("     %s[%zu]: device %.8g cpu %.8g\n", what.c_str(), i, dev[i], cpu[i]);
      ++bad;
    }
    worst = std::max(worst, static_cast<double>(diff));
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "max |diff| %.3g", worst);
  report(what, bad, cpu.size(), buf);
}

static AttnShape shapeOf(int64_t heads, int64_t kvHeads, int64_t hd, int64_t pad) {
  AttnShape s;
  s.heads = heads;
  s.kvHeads = kvHeads;
  s.headDim = hd;
  s.qd = heads * hd;
  s.rowStride = s.qd + 2 * kvHeads * hd + pad;
  return s;
}
static std::string describe(const AttnShape& s, const std::vector<int64_t>& lens) {
  std::string d = std::to_string(s.heads) + "/" + std::to_string(s.kvHeads) + " heads, hd " + std::to_string(s.headDim) +
                  ", lengths";
  for (int64_t l : lens) d += " " + std::to_string(l);
  return d;
}

template <typename T>
static void checkSpans(int64_t heads, int64_t kvHeads, int64_t hd, int64_t pad, const std::vector<int64_t>& lens,
                       bool repeat = false) {
  const AttnShape s = shapeOf(heads, kvHeads, hd, pad);
  std::vector<Span> spans;
  int64_t N = 0;
  for (int64_t l : lens) {
    Span sp;
    sp.start = N;
    sp.length = l;
    spans.push_back(sp);
    N += l;
  }
  const std::string tag = std::string(Stor<T>::name) + " " + describe(s, lens);
  // forward
  const auto qkv = randomT<T>(N * s.rowStride, 1.5f);
  const auto qkvF = decode(qkv);
  std::vector<float> oCpu(N * s.qd), lseCpu(N * heads);
  attentionSpans(s, spans, qkvF.data(), oCpu.data(), lseCpu.data(), 1);
  std::vector<T> oDev(N * s.qd, Stor<T>::enc(NAN));
  std::vector<float> lseDev(N * heads, NAN);
  checkError(attentionSpansCudaHost(s, spans, N, qkv.data(), oDev.data(), lseDev.data()), "forward " + tag);
  compare("forward o   " + tag, oDev, oCpu);
  compareF("forward lse " + tag, lseDev, lseCpu, 1e-5f);
  // backward, from the CPU's o (in storage) and lse
  std::vector<T> oT(N * s.qd);
  for (size_t i = 0; i < oT.size(); ++i) oT[i] = Stor<T>::enc(oCpu[i]);
  const auto oF = decode(oT);
  const auto dO = randomT<T>(N * s.qd, 1.f);
  const auto dOF = decode(dO);
  std::vector<float> dCpu(N * s.rowStride, 0.f);
  attentionSpansBackward(s, spans, qkvF.data(), oF.data(), lseCpu.data(), dOF.data(), dCpu.data(), 1);
  std::vector<T> dDev(N * s.rowStride, Stor<T>::enc(NAN));  // every element must be written
  checkError(attentionSpansBackwardCudaHost(s, spans, N, qkv.data(), oT.data(), lseCpu.data(), dO.data(), dDev.data()),
             "backward " + tag);
  compare("backward dqkv " + tag, dDev, dCpu);
  // deterministic: a second run gives the same bits
  if (!repeat) return;
  std::vector<T> dDev2(N * s.rowStride, Stor<T>::enc(0.f));
  checkError(attentionSpansBackwardCudaHost(s, spans, N, qkv.data(), oT.data(), lseCpu.data(), dO.data(), dDev2.data()),
             "backward again " + tag);
  int diff = 0;
  for (size_t i = 0; i < dDev.size(); ++i) diff += std::memcmp(&dDev[i], &dDev2[i], sizeof(T)) != 0;
  report("backward repeat, same bits " + tag, diff, dDev.size());
}

// Several sequences over a paged cache: random block tables (blocks drawn without replacement from a shuffled pool,
// sequence 1 sharing sequence 0's first block), the cache filled with random values, then the new token of each
// sequence written by kvCacheWriteCuda (plus a skipped row), then decoding.
template <typename T>
static void checkDecode(int64_t heads, int64_t kvHeads, int64_t hd, int64_t pad, int64_t blockSize,
                        const std::vector<int64_t>& lens) {
  const AttnShape s = shapeOf(heads, kvHeads, hd, pad);
  const int64_t nSeq = static_cast<int64_t>(lens.size()), kvd = kvHeads * hd;
  int64_t maxBlocks = 0, total = 0;
  for (int64_t l : lens) {
    maxBlocks = std::max(maxBlocks, (l + blockSize - 1) / blockSize);
    total += (l + blockSize - 1) / blockSize;
  }
  KvCacheShape c;
  c.numBlocks = total + 3;
  c.blockSize = blockSize;
  c.kvHeads = kvHeads;
  c.headDim = hd;
  std::vector<int32_t> pool(c.numBlocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<int32_t> tables(nSeq * maxBlocks, -1);
  size_t next = 0;
  for (int64_t i = 0; i < nSeq; ++i)
    for (int64_t k = 0; k < (lens[i] + blockSize - 1) / blockSize; ++k) tables[i * maxBlocks + k] = pool[next++];
  if (nSeq > 1 && lens[0] > blockSize && lens[1] > blockSize) tables[maxBlocks] = tables[0];  // shared prompt block
  const std::string tag = std::string(Stor<T>::name) + " " + describe(s, lens) + ", block " + std::to_string(blockSize);
  // cache write: the new token of each sequence (position len-1) plus one skipped row
  const size_t cn = static_cast<size_t>(c.numBlocks * blockSize * kvd);
  auto kCache = randomT<T>(cn, 1.5f), vCache = randomT<T>(cn, 1.5f);
  const auto qkv = randomT<T>((nSeq + 1) * s.rowStride, 1.5f);
  std::vector<int32_t> slots(nSeq + 1, -1);
  for (int64_t i = 0; i < nSeq; ++i) {
    const int64_t p = lens[i] - 1;
    slots[i] = static_cast<int32_t>(tables[i * maxBlocks + p / blockSize] * blockSize + p % blockSize);
  }
  auto kWant = kCache, vWant = vCache;
  for (int64_t i = 0; i < nSeq; ++i)
    for (int64_t j = 0; j < kvd; ++j) {
      kWant[slots[i] * kvd + j] = qkv[i * s.rowStride + s.qd + j];
      vWant[slots[i] * kvd + j] = qkv[i * s.rowStride + s.qd + kvd + j];
    }
  checkError(kvCacheWriteCudaHost(c, s, qkv.data(), slots.data(), nSeq + 1, kCache.data(), vCache.data()),
             "cache write " + tag);
  int bad = 0;
  for (size_t i = 0; i < cn; ++i)
    bad += std::memcmp(&kCache[i], &kWant[i], sizeof(T)) != 0 || std::memcmp(&vCache[i], &vWant[i], sizeof(T)) != 0;
  report("cache write " + tag, bad, 2 * cn);
  // decoding
  std::vector<int32_t> seqLens(lens.begin(), lens.end());
  int64_t maxLen = 0;
  for (int64_t l : lens) maxLen = std::max(maxLen, l);
  const size_t ws = attentionDecodeCudaWorkspace(s, nSeq, maxLen);
  const int64_t splits = static_cast<int64_t>(ws / (sizeof(float) * nSeq * heads * (hd + 2)));
  std::vector<T> oDev(nSeq * s.qd, Stor<T>::enc(NAN));
  checkError(attentionDecodeCudaHost(c, s, qkv.data(), nSeq, tables.data(), maxBlocks, seqLens.data(), kCache.data(),
                                     vCache.data(), oDev.data()),
             "decode " + tag);
  const auto kF = decode(kCache), vF = decode(vCache), qF = decode(qkv);
  std::vector<float> oCpu(nSeq * s.qd);
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  for (int64_t i = 0; i < nSeq; ++i)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t g = h / (heads / kvHeads);
      std::vector<float> K(lens[i] * hd), V(lens[i] * hd);
      for (int64_t p = 0; p < lens[i]; ++p) {
        const int64_t row = tables[i * maxBlocks + p / blockSize] * blockSize + p % blockSize;
        for (int64_t d = 0; d < hd; ++d) {
          K[p * hd + d] = kF[row * kvd + g * hd + d];
          V[p * hd + d] = vF[row * kvd + g * hd + d];
        }
      }
      float lse;
      attendRow(qF.data() + i * s.rowStride + h * hd, K.data(), V.data(), hd, lens[i], hd, scale,
                oCpu.data() + i * s.qd + h * hd, &lse);
    }
  compare("decode " + tag + ", " + std::to_string(splits) + " splits", oDev, oCpu);
  if (splits < 2) report("decode " + tag + ": more than one split", 1, 1, "(set EMU_SM=64)");
}

static void checkRefusals() {
  std::vector<Span> spans(1);
  spans[0].length = 2;
  std::vector<float> qkv(2 * 64 * 4, 0.5f), o(2 * 64 * 4), lse(8);
  for (int64_t hd : {20, 264}) {
    const AttnShape s = shapeOf(2, 1, hd, 0);
    qkv.assign(2 * s.rowStride, 0.5f);
    o.assign(2 * s.qd, 0.f);
    const char* err = attentionSpansCudaHost(s, spans, 2, qkv.data(), o.data(), lse.data());
    const bool ok = std::string(err).find("headDim") != std::string::npos;
    report("refuses headDim " + std::to_string(hd), ok ? 0 : 1, 1, ok ? std::string("(") + err + ")" : "");
  }
  const AttnShape s = shapeOf(3, 2, 16, 0);
  qkv.assign(2 * s.rowStride, 0.5f);
  o.assign(2 * s.qd, 0.f);
  const char* err = attentionSpansCudaHost(s, spans, 2, qkv.data(), o.data(), lse.data());
  report("refuses heads not a multiple of kvHeads", *err ? 0 : 1, 1, *err ? std::string("(") + err + ")" : "");
}

template <typename T>
static void checkAll() {
  checkSpans<T>(4, 2, 16, 0, {1, 16, 37, 5}, true);  // group 2, small head dim; a tile exactly, lengths off the tiles
  checkSpans<T>(7, 1, 16, 8, {33, 1, 20});      // group 7; padding columns past q | k | v
  checkSpans<T>(4, 2, 64, 0, {1, 40, 17});      // head dim 64 (Qwen2.5-0.5B's)
  checkSpans<T>(2, 1, 128, 0, {19});            // head dim 128 (Qwen2.5-1.5B's)
  checkSpans<T>(2, 2, 256, 8, {18, 3});         // the largest head dim
  checkDecode<T>(4, 2, 16, 0, 8, {37, 9, 70});  // group 2, several splits
  checkDecode<T>(7, 1, 64, 8, 4, {1, 45, 12});  // group 7, head dim 64, a one-token context
  checkDecode<T>(10, 1, 16, 0, 8, {50, 3});     // group 10: two passes of the scores over the heads
}

int main(int argc, char** argv) {
  const unsigned seed = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : std::random_device{}();
  std::printf("seed %u\n", seed);
  rng.seed(seed);
  checkAll<float>();
  checkAll<uint16_t>();
  checkRefusals();
  std::printf("%s (%d failures, seed %u)\n", failures ? "FAILED" : "all ok", failures, seed);
  return failures ? 1 : 0;
}
