// The CUDA engine's built-in GEMM kernel (native/engine/gemm.cu, rewritten for host emulation by launch_to_emu.py)
// against a float64 reference on fresh random inputs: the three products of a linear layer (NT forward with and
// without a bias, NN input gradient, TN weight gradient into fp32), each in bf16 storage, fp32 storage and (NT)
// bf16 in with fp32 out, with and without accumulation, on sizes that leave partial tiles in every dimension.
//   fp32 out: |got - ref| <= 2^-24 |ref| + 8 * 2^-24 * sqrt(K) * s,   s = sqrt(sum_p (a_p b_p)^2 + bias^2 + c^2)
//   bf16 out: |got - ref| <= 2^-8 |ref| + the same accumulation term   (one rounding of the stored result)
// Also: a row's result is the same bits whatever M (the rows before it), two runs give the same bits, an empty
// reduction of an accumulating TN adds nothing, K = 0 elsewhere is an error, and under emulation the dispatch
// (gemmCuda with GemmImpl::Auto) takes the built-in kernel and a forced cuBLASLt is an error naming the reason.
// Usage: check [seed]; exit status 1 on a mismatch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>
#include <string>
#include <vector>

#include "engine/formulas.h"
#include "engine/gemm.h"

using namespace clipo::engine;

static int failures = 0;
static std::mt19937 rng;

static void report(const std::string& what, int bad, size_t n, const std::string& detail = "") {
  if (bad) {
    std::printf("FAIL %s: %d of %zu %s\n", what.c_str(), bad, n, detail.c_str());
    ++failures;
  } else {
    std::printf("ok   %s (%zu values) %s\n", what.c_str(), n, detail.c_str());
  }
}

// values as stored (bf16 bits or fp32), and their exact float64 values
struct Stored {
  std::vector<uint16_t> h;
  std::vector<float> f;
  std::vector<double> v;
  const void* data() const { return h.empty() ? static_cast<const void*>(f.data()) : static_cast<const void*>(h.data()); }
};
static Stored randomStored(GemmType t, size_t n, float scale) {
  std::normal_distribution<float> d(0.f, scale);
  Stored s;
  s.v.resize(n);
  if (t == GemmType::Bf16) {
    s.h.resize(n);
    for (size_t i = 0; i < n; ++i) s.h[i] = floatToBf16(d(rng)), s.v[i] = bf16ToFloat(s.h[i]);
  } else {
    s.f.resize(n);
    for (size_t i = 0; i < n; ++i) s.f[i] = d(rng), s.v[i] = s.f[i];
  }
  return s;
}
static double readOut(GemmType t, const std::vector<char>& c, size_t i) {
  if (t == GemmType::Bf16) {
    uint16_t h;
    std::memcpy(&h, c.data() + 2 * i, 2);
    return bf16ToFloat(h);
  }
  float f;
  std::memcpy(&f, c.data() + 4 * i, 4);
  return f;
}

static const char* opName(GemmOp op) { return op == GemmOp::NT ? "nt" : op == GemmOp::NN ? "nn" : "tn"; }
static const char* typeName(GemmType t) { return t == GemmType::Bf16 ? "bf16" : "fp32"; }

// One product on the built-in kernel against float64; returns the outputs' bytes.
static std::vector<char> checkOne(GemmOp op, GemmType in, GemmType out, bool withBias, bool acc, int64_t M, int64_t N,
                                  int64_t K) {
  const Stored A = randomStored(in, static_cast<size_t>(M * K), 1.f), B = randomStored(in, static_cast<size_t>(N * K), 0.1f);
  const Stored bias = randomStored(in, static_cast<size_t>(N), 0.5f);
  const Stored C0 = randomStored(out, static_cast<size_t>(M * N), 0.5f);
  const size_t outBytes = out == GemmType::Bf16 ? 2 : 4;
  std::vector<char> C(static_cast<size_t>(M * N) * outBytes);
  if (acc) std::memcpy(C.data(), C0.data(), C.size());
  GemmCall c;
  c.op = op, c.in = in, c.out = out, c.accumulate = acc, c.M = M, c.N = N, c.K = K;
  c.A = A.data(), c.B = B.data(), c.bias = withBias ? bias.data() : nullptr, c.C = C.data();
  const char* used = "";
  const char* err = gemmCudaHost(c, GemmImpl::Auto, &used);
  const std::string what = std::string(opName(op)) + " " + typeName(in) + "->" + typeName(out) + (withBias ? " +bias" : "") +
                           (acc ? " accumulate" : "") + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
                           " K=" + std::to_string(K);
  if (*err) {
    report(what, 1, 0, err);
    return C;
  }
  if (std::string(used) != "builtin") report(what + ": the dispatch under emulation", 1, 0, std::string("took ") + used);
  const double u = std::ldexp(1.0, -24), rel = out == GemmType::Bf16 ? std::ldexp(1.0, -8) : u;
  int bad = 0;
  double worst = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double ref = 0, s2 = 0;
      for (int64_t p = 0; p < K; ++p) {
        const double a = op == GemmOp::TN ? A.v[p * M + i] : A.v[i * K + p];
        const double b = op == GemmOp::NT ? B.v[j * K + p] : B.v[p * N + j];
        ref += a * b;
        s2 += a * b * a * b;
      }
      if (withBias) ref += bias.v[j], s2 += bias.v[j] * bias.v[j];
      if (acc) ref += C0.v[i * N + j], s2 += C0.v[i * N + j] * C0.v[i * N + j];
      const double got = readOut(out, C, static_cast<size_t>(i * N + j));
      const double tol = rel * std::fabs(ref) + 8 * u * std::sqrt(static_cast<double>(K)) * std::sqrt(s2);
      const double d = std::fabs(got - ref);
      if (!(d <= tol)) ++bad;
      worst = std::max(worst, d / (tol > 0 ? tol : 1));
    }
  char detail[64];
  std::snprintf(detail, sizeof detail, "worst %.2f of the tolerance", worst);
  report(what, bad, static_cast<size_t>(M * N), detail);
  return C;
}

int main(int argc, char** argv) {
  const unsigned seed = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : std::random_device{}();
  rng.seed(seed);
  const CudaGemmChoice choice = cudaGemmChoice();
  if (choice.impl != "builtin") report("cudaGemmChoice under emulation", 1, 0, "chose " + choice.impl);
  const int64_t M = 19, N = 23, K = 37;  // partial tiles everywhere; 2 x 2 blocks, 3 K steps
  const GemmType b = GemmType::Bf16, f = GemmType::F32;
  for (const auto& [in, out] : {std::pair{b, b}, std::pair{f, f}, std::pair{b, f}}) {
    checkOne(GemmOp::NT, in, out, false, false, M, N, K);
    checkOne(GemmOp::NT, in, out, true, false, M, N, K);
  }
  for (const auto& [in, out] : {std::pair{b, b}, std::pair{f, f}})
    for (bool acc : {false, true}) checkOne(GemmOp::NN, in, out, false, acc, M, N, K);
  for (GemmType in : {b, f})
    for (bool acc : {false, true}) checkOne(GemmOp::TN, in, f, false, acc, M, N, K);

  // a row's bits do not depend on M: the first 5 rows of an M = 5 and an M = 21 product of the same inputs
  {
    const Stored A = randomStored(b, static_cast<size_t>(21 * K), 1.f), W = randomStored(b, static_cast<size_t>(N * K), 0.1f);
    std::vector<uint16_t> y5(5 * N), y21(21 * N), again(5 * N);
    std::string err = gemmNTCuda(5, N, K, A.h.data(), W.h.data(), nullptr, y5.data(), nullptr);
    GemmCall c;
    c.op = GemmOp::NT, c.M = 21, c.N = N, c.K = K, c.A = A.h.data(), c.B = W.h.data(), c.C = y21.data();
    const char* used = "";
    const char* e2 = gemmCudaHost(c, GemmImpl::Builtin, &used);
    c.M = 5, c.C = again.data();
    const char* e3 = gemmCudaHost(c, GemmImpl::Builtin, &used);
    // gemmNTCuda above ran on host pointers: under emulation device and host memory are one
    const bool same = err.empty() && !*e2 && !*e3 && std::memcmp(y5.data(), y21.data(), y5.size() * 2) == 0 &&
                      std::memcmp(y5.data(), again.data(), y5.size() * 2) == 0;
    report("nt bf16: the first 5 rows of M = 5 and M = 21, and a second run, give the same bits", same ? 0 : 1,
           y5.size(), err + e2 + e3);
  }
  // empty reductions, refusals
  {
    float c[4] = {1, 2, 3, 4};
    const float a[1] = {0}, w[1] = {0};
    const std::string e1 = gemmTNCuda(2, 2, 0, a, w, c, true, nullptr);
    report("tn with K = 0 and accumulate adds nothing", e1.empty() && c[0] == 1 && c[3] == 4 ? 0 : 1, 4, e1);
    const std::string e2 = gemmNTCuda(2, 2, 0, a, w, nullptr, c, nullptr);
    report("nt with K = 0 is an error", e2.find("K must be positive") != std::string::npos ? 0 : 1, 1, e2);
    GemmCall g;
    g.op = GemmOp::NT, g.in = f, g.out = f, g.M = 1, g.N = 1, g.K = 1, g.A = a, g.B = w, g.C = c;
    const std::string e3 = gemmCudaHost(g, GemmImpl::CublasLt, nullptr);
    report("a forced cuBLASLt under emulation is an error saying why", e3.find("host emulation") != std::string::npos ? 0 : 1, 1, e3);
  }
  std::printf("%s (%d failures, seed %u)\n", failures ? "FAILED" : "all ok", failures, seed);
  return failures ? 1 : 0;
}
