// The CUDA engine's device GEMM (gemm.h): each product goes to cuBLASLt through clipo_gpulibs.so when the library
// loads and has an algorithm for the product's plan, else to the built-in kernel here. CLIPO_CUDA_GEMM (auto,
// builtin, cublaslt) overrides the choice.
//
// The built-in kernel: a plain shared-memory tiled kernel (16 x 16 output tiles, 16-wide K steps) for the three
// products of a linear layer (NT forward, NN input gradient, TN weight gradient). It runs where cuBLASLt is not
// available and under the host emulation of scripts/cuda-emu/ (which never opens the library). fp32 accumulation;
// every output element is summed over k in ascending order (zero padding past K adds nothing), so a row's result
// does not depend on M, on the tile it falls in or on timing.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/cuda_common.cuh"
#include "engine/cuda_storage.cuh"
#include "engine/cuda_util.cuh"
#include "engine/gemm.h"

#ifndef CLIPO_CUDA_EMU
#include "gpulibs/gpulibs_loader.h"
#endif

namespace clipo::engine {

namespace {

using namespace cudatwin;

constexpr int kTile = 16;

// C(i, j) = sum_p opA(i, p) opB(p, j) (+ bias[j]) (+ C(i, j) when accumulating), with
//   NT: opA(i, p) = A[i*K + p], opB(p, j) = B[j*K + p];  NN: A[i*K + p], B[p*N + j];  TN: A[p*M + i], B[p*N + j].
// One thread per output element of a 16 x 16 tile, a 1-D block of 256 threads (ty = t / 16, tx = t % 16); the tile
// loads read 16 consecutive values per row of threads whichever operand layout.
template <int OP, typename TI, typename TO>
__global__ void gemmKernel(int64_t M, int64_t N, int64_t K, const TI* __restrict__ A, const TI* __restrict__ B,
                           const TI* __restrict__ bias, TO* __restrict__ C, bool accumulate) {
  __shared__ float as[kTile][kTile + 1];  // as[i][p]
  __shared__ float bs[kTile][kTile + 1];  // bs[j][p]
  const int tx = static_cast<int>(threadIdx.x) % kTile, ty = static_cast<int>(threadIdx.x) / kTile;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kTile, c0 = static_cast<int64_t>(blockIdx.x) * kTile;
  float acc = 0.f;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    if (OP == 2) {  // TN: A is [K x M]
      const int64_t k = k0 + ty, i = r0 + tx;
      as[tx][ty] = (i < M && k < K) ? toF(A[k * M + i]) : 0.f;
    } else {
      const int64_t k = k0 + tx, i = r0 + ty;
      as[ty][tx] = (i < M && k < K) ? toF(A[i * K + k]) : 0.f;
    }
    if (OP == 0) {  // NT: B is [N x K]
      const int64_t k = k0 + tx, j = c0 + ty;
      bs[ty][tx] = (j < N && k < K) ? toF(B[j * K + k]) : 0.f;
    } else {  // NN, TN: B is [K x N]
      const int64_t k = k0 + ty, j = c0 + tx;
      bs[tx][ty] = (j < N && k < K) ? toF(B[k * N + j]) : 0.f;
    }
    __syncthreads();
    for (int p = 0; p < kTile; ++p) acc += as[ty][p] * bs[tx][p];
    __syncthreads();
  }
  const int64_t r = r0 + ty, c = c0 + tx;
  if (r < M && c < N) {
    if (bias) acc += toF(bias[c]);
    if (accumulate) acc += toF(C[r * N + c]);
    C[r * N + c] = fromF<TO>(acc);
  }
}

template <int OP, typename TI, typename TO>
const char* builtinT(const GemmCall& c) {
  if ((c.M + kTile - 1) / kTile > 65535) return failMsg("gemmCuda: too many rows for one call (at most 1048560)");
  const dim3 grid(static_cast<unsigned>((c.N + kTile - 1) / kTile), static_cast<unsigned>((c.M + kTile - 1) / kTile));
  gemmKernel<OP, TI, TO><<<grid, kTile * kTile, 0, static_cast<cudaStream_t>(c.stream)>>>(
      c.M, c.N, c.K, static_cast<const TI*>(c.A), static_cast<const TI*>(c.B), static_cast<const TI*>(c.bias),
      static_cast<TO*>(c.C), c.accumulate);
  return launched("gemmCuda");
}

template <int OP>
const char* builtinOp(const GemmCall& c) {
  if (c.in == GemmType::Bf16 && c.out == GemmType::Bf16) return builtinT<OP, uint16_t, uint16_t>(c);
  if (c.in == GemmType::Bf16 && c.out == GemmType::F32) return builtinT<OP, uint16_t, float>(c);
  if (c.in == GemmType::F32 && c.out == GemmType::F32) return builtinT<OP, float, float>(c);
  return failMsg("gemmCuda: fp32 inputs with a bf16 output are not supported");
}

const char* builtin(const GemmCall& c) {
  switch (c.op) {
    case GemmOp::NT: return builtinOp<0>(c);
    case GemmOp::NN: return builtinOp<1>(c);
    case GemmOp::TN: return builtinOp<2>(c);
  }
  return failMsg("gemmCuda: unknown product");
}

// CLIPO_CUDA_GEMM, read once: "auto" (default), "builtin" or "cublaslt"; anything else is kept and reported.
const std::string& gemmMode() {
  static const std::string mode = [] {
    const char* e = std::getenv("CLIPO_CUDA_GEMM");
    return std::string(e && *e ? e : "auto");
  }();
  return mode;
}
bool modeValid(const std::string& m) { return m == "auto" || m == "builtin" || m == "cublaslt"; }

// Why cuBLASLt cannot run the engine's products here, or "" when it can (the library loaded, built with cuBLASLt,
// and sees a device).
std::string cublasLtUnusable() {
#ifdef CLIPO_CUDA_EMU
  return "host emulation: the library is never opened";
#else
  const gpulibs::Library& L = gpulibs::library();
  if (!L.loaded()) return "clipo_gpulibs: " + L.error;
  static const std::string why = [&L] {
    ClipoGpuLibsInfo r{};
    L.info(&r);
    if (!r.cublasLtCompiled) return std::string("clipo_gpulibs was built without cuBLASLt");
    if (r.deviceCount == 0) return std::string("clipo_gpulibs sees no CUDA device");
    return std::string();
  }();
  return why;
#endif
}

// The choice, made once per process (the environment and the library do not change under a running process).
CudaGemmChoice chooseGemm() {
  CudaGemmChoice c;
  c.mode = gemmMode();
  if (!modeValid(c.mode)) {
    c.impl = "builtin";
    c.error = "CLIPO_CUDA_GEMM: expected auto, builtin or cublaslt, got '" + c.mode + "'";
    c.why = c.error;
    return c;
  }
  if (c.mode == "builtin") {
    c.impl = "builtin";
    c.why = "the built-in kernel, as asked";
    return c;
  }
  const std::string why = cublasLtUnusable();
  if (why.empty()) {
    c.impl = "cublaslt";
    c.why = c.mode == "cublaslt" ? "cuBLASLt, as asked" : "clipo_gpulibs loaded with cuBLASLt";
    return c;
  }
  c.impl = "builtin";
  c.why = why;
  if (c.mode == "cublaslt") c.error = "CLIPO_CUDA_GEMM=cublaslt, but cuBLASLt cannot run: " + why;
  return c;
}
const CudaGemmChoice& cachedChoice() {
  static const CudaGemmChoice c = chooseGemm();
  return c;
}

}  // namespace

CudaGemmChoice cudaGemmChoice() { return cachedChoice(); }

const char* gemmCuda(const GemmCall& c, GemmImpl impl, const char** used) {
  if (used) *used = "builtin";
  if (c.M < 0 || c.N < 0 || c.K < 0) return failMsg("gemmCuda: negative size");
  if (c.M == 0 || c.N == 0) return "";
  if (c.K == 0) {
    // an empty reduction: only the TN weight gradient meets one (no tokens), and adds nothing
    if (c.op == GemmOp::TN && c.accumulate) return "";
    return failMsg("gemmCuda: K must be positive");
  }
  if (!c.A || !c.B || !c.C) return failMsg("gemmCuda: null matrix pointer");
  if (c.bias && c.op != GemmOp::NT) return failMsg("gemmCuda: a bias only with the NT product");
  bool wantLt = impl == GemmImpl::CublasLt;
  if (impl == GemmImpl::Auto) {
    const CudaGemmChoice& choice = cachedChoice();
    if (!choice.error.empty()) return failMsg("gemm: " + choice.error);
    wantLt = choice.impl == "cublaslt";
  }
#ifndef CLIPO_CUDA_EMU
  // an NT bias of another storage than the output (never the engine's case) is the built-in kernel's alone
  if (wantLt && !(c.bias && c.in != c.out)) {
    if (impl == GemmImpl::CublasLt) {
      const std::string why = cublasLtUnusable();
      if (!why.empty()) return failMsg("gemm (cuBLASLt): " + why);
    }
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) {
      cudaGetLastError();
      device = 0;
    }
    ClipoLtMatmulArgs a{};
    a.op = static_cast<int>(c.op);
    a.inType = c.in == GemmType::Bf16 ? CLIPO_LT_BF16 : CLIPO_LT_F32;
    a.outType = c.out == GemmType::Bf16 ? CLIPO_LT_BF16 : CLIPO_LT_F32;
    a.shapeClass = c.cls == GemmClass::Rows ? CLIPO_LT_ROWS : CLIPO_LT_WIDE;
    a.accumulate = c.accumulate ? 1 : 0;
    a.device = device;
    a.m = c.M, a.n = c.N, a.k = c.K;
    a.a = c.A, a.b = c.B, a.bias = c.bias, a.d = c.C, a.stream = c.stream;
    char err[512] = {0};
    const int rc = gpulibs::library().ltMatmul(&a, err, sizeof err);
    if (rc == 0) {
      if (used) *used = "cublaslt";
      return "";
    }
    if (rc != CLIPO_LT_UNSUPPORTED) return failMsg(std::string("gemm (cuBLASLt): ") + err);
    if (used) *used = "builtin (no cuBLASLt algorithm)";
  }
#else
  if (impl == GemmImpl::CublasLt) return failMsg("gemm (cuBLASLt): host emulation: the library is never opened");
  (void)wantLt;
#endif
  return builtin(c);
}

const char* gemmCudaHost(const GemmCall& h, GemmImpl impl, const char** used) {
  if (h.M <= 0 || h.N <= 0 || h.K <= 0) return failMsg("gemmCudaHost: M, N and K must be positive");
  const size_t in = h.in == GemmType::Bf16 ? 2 : 4, out = h.out == GemmType::Bf16 ? 2 : 4;
  const size_t biasSize = h.in == h.out ? out : in;  // the built-in kernel's bias storage (gemm.h)
  const size_t nA = static_cast<size_t>(h.M * h.K), nC = static_cast<size_t>(h.M * h.N);
  const size_t nB = static_cast<size_t>(h.N * h.K);
  cuda::DeviceBuffers b;
  char *dA, *dB, *dBias = nullptr, *dC;
  cudaError_t e;
  if ((e = b.alloc(&dA, nA * in)) || (e = b.alloc(&dB, nB * in)) || (e = b.alloc(&dC, nC * out)) ||
      (h.bias && (e = b.alloc(&dBias, static_cast<size_t>(h.N) * biasSize))))
    return fail("gemmCudaHost: cudaMalloc", e);
  if ((e = cudaMemcpy(dA, h.A, nA * in, cudaMemcpyHostToDevice)) || (e = cudaMemcpy(dB, h.B, nB * in, cudaMemcpyHostToDevice)) ||
      (h.bias && (e = cudaMemcpy(dBias, h.bias, static_cast<size_t>(h.N) * biasSize, cudaMemcpyHostToDevice))) ||
      (h.accumulate ? (e = cudaMemcpy(dC, h.C, nC * out, cudaMemcpyHostToDevice)) : (e = cudaMemset(dC, 0xFF, nC * out))))
    return fail("gemmCudaHost: upload", e);  // without accumulation C starts as NaNs: an unwritten element shows
  GemmCall d = h;
  d.A = dA, d.B = dB, d.bias = dBias, d.C = dC, d.stream = nullptr;
  const char* err = gemmCuda(d, impl, used);
  if (*err || *(err = synced("gemmCuda"))) return err;
  return download(static_cast<char*>(h.C), static_cast<const char*>(dC), nC * out, "gemmCudaHost: download");
}

void gemmCudaReleaseStream(void* stream) {
#ifndef CLIPO_CUDA_EMU
  const gpulibs::Library& L = gpulibs::library();
  if (!L.loaded()) return;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    device = 0;
  }
  L.ltRelease(device, stream);
#else
  (void)stream;
#endif
}

namespace {
GemmCall call(GemmOp op, GemmType in, GemmType out, GemmClass cls, bool acc, int64_t M, int64_t N, int64_t K,
              const void* A, const void* B, const void* bias, void* C, void* stream) {
  GemmCall c;
  c.op = op, c.in = in, c.out = out, c.cls = cls, c.accumulate = acc;
  c.M = M, c.N = N, c.K = K, c.A = A, c.B = B, c.bias = bias, c.C = C, c.stream = stream;
  return c;
}
constexpr GemmType kB = GemmType::Bf16, kF = GemmType::F32;
}  // namespace

const char* gemmNTCuda(int64_t M, int64_t N, int64_t K, const uint16_t* X, const uint16_t* W, const uint16_t* bias,
                       uint16_t* Y, void* stream, GemmClass cls) {
  return gemmCuda(call(GemmOp::NT, kB, kB, cls, false, M, N, K, X, W, bias, Y, stream));
}
const char* gemmNTCuda(int64_t M, int64_t N, int64_t K, const float* X, const float* W, const float* bias, float* Y,
                       void* stream, GemmClass cls) {
  return gemmCuda(call(GemmOp::NT, kF, kF, cls, false, M, N, K, X, W, bias, Y, stream));
}
const char* gemmNTCuda(int64_t M, int64_t N, int64_t K, const uint16_t* X, const uint16_t* W, const uint16_t* bias,
                       float* Y, void* stream, GemmClass cls) {
  return gemmCuda(call(GemmOp::NT, kB, kF, cls, false, M, N, K, X, W, bias, Y, stream));
}
const char* gemmNNCuda(int64_t M, int64_t N, int64_t K, const uint16_t* A, const uint16_t* B, uint16_t* C,
                       bool accumulate, void* stream, GemmClass cls) {
  return gemmCuda(call(GemmOp::NN, kB, kB, cls, accumulate, M, N, K, A, B, nullptr, C, stream));
}
const char* gemmNNCuda(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C, bool accumulate,
                       void* stream, GemmClass cls) {
  return gemmCuda(call(GemmOp::NN, kF, kF, cls, accumulate, M, N, K, A, B, nullptr, C, stream));
}
const char* gemmTNCuda(int64_t M, int64_t N, int64_t K, const uint16_t* A, const uint16_t* B, float* C,
                       bool accumulate, void* stream) {
  return gemmCuda(call(GemmOp::TN, kB, kF, GemmClass::Wide, accumulate, M, N, K, A, B, nullptr, C, stream));
}
const char* gemmTNCuda(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C, bool accumulate,
                       void* stream) {
  return gemmCuda(call(GemmOp::TN, kF, kF, GemmClass::Wide, accumulate, M, N, K, A, B, nullptr, C, stream));
}

}  // namespace clipo::engine
