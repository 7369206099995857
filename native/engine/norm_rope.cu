// CUDA twins of norm_rope.h: embedding gather, RMSNorm fused with the residual add, RoPE. bf16 storage (uint16_t,
// formulas.h), fp32 arithmetic (the RMSNorm sum of squares in double, as the CPU twin), one row per block.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "engine/cuda_storage.cuh"
#include "engine/cuda_util.cuh"
#include "engine/formulas.h"
#include "engine/norm_rope.h"

namespace clipo::engine {

namespace {

using namespace cudatwin;

template <typename T>
__global__ void embedKernel(const T* __restrict__ table, int64_t vocab, int64_t H,
                            const int32_t* __restrict__ tokens, T* __restrict__ x) {
  const int64_t n = blockIdx.x;
  const int32_t t = tokens[n];
  const bool ok = t >= 0 && t < vocab;
  const T* src = table + (ok ? static_cast<int64_t>(t) : 0) * H;
  T* dst = x + n * H;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) dst[j] = ok ? src[j] : T(0);
}

// residualOut may alias residual: element j is read and written by the same thread, in both sweeps.
template <typename T>
__global__ void rmsnormResidualKernel(const T* residual, const T* __restrict__ delta, const T* __restrict__ w,
                                      T* residualOut, T* __restrict__ y, float* __restrict__ rstd, int64_t H,
                                      double eps) {
  __shared__ double scratch[kRowThreads / 32];
  const int64_t n = blockIdx.x;
  const T* r = residual + n * H;
  double ss = 0.0;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
    float v = toF(r[j]);
    if (delta) {
      const T sum = fromF<T>(v + toF(delta[n * H + j]));
      residualOut[n * H + j] = sum;
      v = toF(sum);
    }
    ss += static_cast<double>(v) * v;
  }
  ss = cuda::blockSum(ss, scratch);
  const float rs = rmsRstd(ss, H, eps);
  if (rstd && threadIdx.x == 0) rstd[n] = rs;
  const T* src = delta ? residualOut + n * H : r;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) y[n * H + j] = fromF<T>(toF(src[j]) * rs * toF(w[j]));
}

template <typename T>
__global__ void ropeKernel(T* __restrict__ x, int64_t rowStride, int64_t nHeads, int64_t hd,
                           const int32_t* __restrict__ pos, const float* __restrict__ cosT,
                           const float* __restrict__ sinT, float sign) {
  const int64_t n = blockIdx.x, half = hd / 2;
  const int64_t p = pos[n];
  const float* c = cosT + p * half;
  const float* s = sinT + p * half;
  for (int64_t k = threadIdx.x; k < nHeads * half; k += blockDim.x) {
    const int64_t h = k / half, i = k % half;
    T* v = x + n * rowStride + h * hd;
    float a, b;
    ropeRotate(toF(v[i]), toF(v[i + half]), c[i], sign * s[i], &a, &b);
    v[i] = fromF<T>(a);
    v[i + half] = fromF<T>(b);
  }
}

}  // namespace

namespace {

template <typename T>
const char* embedRowsT(const T* table, int64_t vocab, int64_t H, const int32_t* tokens, int64_t N, T* x,
                      void* stream) {
  if (N <= 0 || H <= 0) return "";
  embedKernel<<<static_cast<unsigned>(N), kRowThreads, 0, static_cast<cudaStream_t>(stream)>>>(table, vocab, H, tokens, x);
  return launched("embedRowsCuda");
}

template <typename T>
const char* rmsnormResidualT(const T* residual, const T* delta, const T* w, T* residualOut, T* y, float* rstd,
                             int64_t N, int64_t H, double eps, void* stream) {
  if (N <= 0 || H <= 0) return "";
  if (delta && !residualOut) return failMsg("rmsnormResidualCuda: residualOut is required with delta");
  rmsnormResidualKernel<<<static_cast<unsigned>(N), kRowThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      residual, delta, w, residualOut, y, rstd, H, eps);
  return launched("rmsnormResidualCuda");
}

template <typename T>
const char* ropeT(T* x, int64_t rowStride, int64_t N, int64_t nHeads, int64_t headDim, const int32_t* pos,
                  const float* cos, const float* sin, bool inverse, void* stream) {
  if (N <= 0 || nHeads <= 0) return "";
  if (headDim <= 0 || headDim % 2) return failMsg("ropeCuda: headDim must be positive and even");
  ropeKernel<<<static_cast<unsigned>(N), kRowThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      x, rowStride, nHeads, headDim, pos, cos, sin, inverse ? -1.f : 1.f);
  return launched("ropeCuda");
}

}  // namespace

const char* embedRowsCuda(const uint16_t* table, int64_t vocab, int64_t H, const int32_t* tokens, int64_t N,
                          uint16_t* x, void* stream) {
  return embedRowsT(table, vocab, H, tokens, N, x, stream);
}
const char* embedRowsCuda(const float* table, int64_t vocab, int64_t H, const int32_t* tokens, int64_t N, float* x,
                          void* stream) {
  return embedRowsT(table, vocab, H, tokens, N, x, stream);
}
const char* rmsnormResidualCuda(const uint16_t* residual, const uint16_t* delta, const uint16_t* w,
                                uint16_t* residualOut, uint16_t* y, float* rstd, int64_t N, int64_t H, double eps,
                                void* stream) {
  return rmsnormResidualT(residual, delta, w, residualOut, y, rstd, N, H, eps, stream);
}
const char* rmsnormResidualCuda(const float* residual, const float* delta, const float* w, float* residualOut,
                                float* y, float* rstd, int64_t N, int64_t H, double eps, void* stream) {
  return rmsnormResidualT(residual, delta, w, residualOut, y, rstd, N, H, eps, stream);
}
const char* ropeCuda(uint16_t* x, int64_t rowStride, int64_t N, int64_t nHeads, int64_t headDim, const int32_t* pos,
                     const float* cos, const float* sin, bool inverse, void* stream) {
  return ropeT(x, rowStride, N, nHeads, headDim, pos, cos, sin, inverse, stream);
}
const char* ropeCuda(float* x, int64_t rowStride, int64_t N, int64_t nHeads, int64_t headDim, const int32_t* pos,
                     const float* cos, const float* sin, bool inverse, void* stream) {
  return ropeT(x, rowStride, N, nHeads, headDim, pos, cos, sin, inverse, stream);
}

// ---- host wrappers (tests) ----

const char* embedRowsCudaHost(const uint16_t* table, int64_t vocab, int64_t H, const int32_t* tokens, int64_t N,
                              uint16_t* x) {
  cuda::DeviceBuffers b;
  const uint16_t* dT;
  const int32_t* dTok;
  uint16_t* dX;
  cudaError_t e;
  if ((e = b.upload(&dT, table, static_cast<size_t>(vocab * H))) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dTok, tokens, static_cast<size_t>(N))) != cudaSuccess) return fail("upload", e);
  if ((e = b.alloc(&dX, static_cast<size_t>(N * H))) != cudaSuccess) return fail("cudaMalloc", e);
  const char* err = embedRowsCuda(dT, vocab, H, dTok, N, dX, nullptr);
  if (*err || *(err = synced("embedRowsCuda"))) return err;
  return download(x, dX, static_cast<size_t>(N * H), "download");
}

const char* rmsnormResidualCudaHost(const uint16_t* residual, const uint16_t* delta, const uint16_t* w,
                                    uint16_t* residualOut, uint16_t* y, float* rstd, int64_t N, int64_t H,
                                    double eps) {
  cuda::DeviceBuffers b;
  const size_t n = static_cast<size_t>(N * H);
  const uint16_t *dR, *dD = nullptr, *dW;
  uint16_t *dRo = nullptr, *dY;
  float* dRstd = nullptr;
  cudaError_t e;
  if ((e = b.upload(&dR, residual, n)) != cudaSuccess) return fail("upload", e);
  if (delta && (e = b.upload(&dD, delta, n)) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dW, w, static_cast<size_t>(H))) != cudaSuccess) return fail("upload", e);
  if (delta && (e = b.alloc(&dRo, n)) != cudaSuccess) return fail("cudaMalloc", e);
  if ((e = b.alloc(&dY, n)) != cudaSuccess) return fail("cudaMalloc", e);
  if (rstd && (e = b.alloc(&dRstd, static_cast<size_t>(N))) != cudaSuccess) return fail("cudaMalloc", e);
  const char* err = rmsnormResidualCuda(dR, dD, dW, dRo, dY, dRstd, N, H, eps, nullptr);
  if (*err || *(err = synced("rmsnormResidualCuda"))) return err;
  if (delta && residualOut && *(err = download(residualOut, static_cast<const uint16_t*>(dRo), n, "download"))) return err;
  if (rstd && *(err = download(rstd, static_cast<const float*>(dRstd), static_cast<size_t>(N), "download"))) return err;
  return download(y, static_cast<const uint16_t*>(dY), n, "download");
}

const char* ropeCudaHost(uint16_t* x, int64_t rowStride, int64_t N, int64_t nHeads, int64_t headDim,
                         const int32_t* pos, const RopeTable& table, bool inverse) {
  if (table.half() * 2 != headDim) return failMsg("ropeCudaHost: the table is for another headDim");
  for (int64_t i = 0; i < N; ++i)
    if (pos[i] < 0 || pos[i] >= table.len) return failMsg("ropeCudaHost: a position is outside the table");
  cuda::DeviceBuffers b;
  const size_t n = static_cast<size_t>(N * rowStride);
  uint16_t* dX;
  const int32_t* dPos;
  const float *dCos, *dSin;
  cudaError_t e;
  if ((e = b.alloc(&dX, n)) != cudaSuccess) return fail("cudaMalloc", e);
  if ((e = cudaMemcpy(dX, x, n * sizeof(uint16_t), cudaMemcpyHostToDevice)) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dPos, pos, static_cast<size_t>(N))) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dCos, table.cos.data(), table.cos.size())) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dSin, table.sin.data(), table.sin.size())) != cudaSuccess) return fail("upload", e);
  const char* err = ropeCuda(dX, rowStride, N, nHeads, headDim, dPos, dCos, dSin, inverse, nullptr);
  if (*err || *(err = synced("ropeCuda"))) return err;
  return download(x, static_cast<const uint16_t*>(dX), n, "download");
}

}  // namespace clipo::engine

// ---- backward twins (norm_rope.h): RMSNorm into the residual stream's gradient, embedding gradient ----
// Storage T: uint16_t (bf16) or float; arithmetic fp32, the per-row dot product in double (as the CPU twin).

#include "engine/backward_util.cuh"

namespace clipo::engine {

namespace {

using namespace cudatwin;

// one block per row: dx[n] = dx[n] + rstd * w * dy - x * k, k = rstd^3 / H * sum_j (w_j dy_j) x_j. Each element
// is read and written by one thread (dx in place), rounded once to T.
template <typename T>
__global__ void rmsnormBackwardRowKernel(const T* __restrict__ dy, const T* __restrict__ x,
                                         const float* __restrict__ rstd, const T* __restrict__ w, T* dx, int64_t H) {
  __shared__ double scratch[kRowThreads / 32];
  const int64_t n = blockIdx.x;
  const T* d = dy + n * H;
  const T* xr = x + n * H;
  double dot = 0.0;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x)
    dot += static_cast<double>(bwd::ld(w[j]) * bwd::ld(d[j])) * bwd::ld(xr[j]);
  dot = cuda::blockSum(dot, scratch);
  const float r = rstd[n];
  const float k = static_cast<float>(dot * r * r * r / static_cast<double>(H));
  T* o = dx + n * H;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x)
    bwd::st(o + j, bwd::ld(o[j]) + (r * bwd::ld(w[j]) * bwd::ld(d[j]) - bwd::ld(xr[j]) * k));
}

// the norm weight's gradient term of row n, column c: dy * x * rstd (the CPU twin's order)
template <typename T>
struct NormWeightTerm {
  const T* dy;
  const T* x;
  const float* rstd;
  int64_t H;
  __device__ float operator()(int64_t n, int64_t c) const {
    return bwd::ld(dy[n * H + c]) * bwd::ld(x[n * H + c]) * rstd[n];
  }
};

// one block per segment of equal tokens, threads across the columns: the table row's gradient plus the segment's
// dx rows added one by one in position order (the CPU twin's order); each table row has one writer.
template <typename T>
__global__ void embedBackwardKernel(const T* __restrict__ dx, int64_t H, const int32_t* __restrict__ order,
                                    const int32_t* __restrict__ segStart, const int32_t* __restrict__ segToken,
                                    float* __restrict__ gTable) {
  const int64_t sgm = blockIdx.x;
  const int32_t s0 = segStart[sgm], s1 = segStart[sgm + 1];
  float* dst = gTable + static_cast<int64_t>(segToken[sgm]) * H;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
    float acc = dst[j];
    for (int32_t i = s0; i < s1; ++i) acc += bwd::ld(dx[static_cast<int64_t>(order[i]) * H + j]);
    dst[j] = acc;
  }
}

template <typename T>
const char* rmsnormBackwardT(const T* dy, const T* x, const float* rstd, const T* w, T* dx, float* gw, int64_t N,
                             int64_t H, void* workspace, void* stream) {
  if (N <= 0 || H <= 0) return "";
  if (gw && !workspace) return failMsg("rmsnormBackwardCuda: a workspace is required with gw");
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  rmsnormBackwardRowKernel<<<static_cast<unsigned>(N), kRowThreads, 0, s>>>(dy, x, rstd, w, dx, H);
  const char* err = launched("rmsnormBackwardCuda");
  if (*err || !gw) return err;
  const int64_t parts = bwd::colSumParts(N);
  float* partial = static_cast<float*>(workspace);
  const dim3 grid(static_cast<unsigned>((H + bwd::kColThreads - 1) / bwd::kColThreads), static_cast<unsigned>(parts));
  bwd::colSumPartialKernel<<<grid, bwd::kColThreads, 0, s>>>(NormWeightTerm<T>{dy, x, rstd, H}, N, H, parts, partial);
  if (*(err = launched("rmsnormBackwardCuda gw"))) return err;
  bwd::colSumFinishKernel<><<<gridFor(H, 256), 256, 0, s>>>(partial, H, parts, gw);
  return launched("rmsnormBackwardCuda gw");
}

template <typename T>
const char* embedBackwardT(const T* dx, int64_t H, const int32_t* order, const int32_t* segStart,
                           const int32_t* segToken, int64_t nSeg, float* gTable, void* stream) {
  if (nSeg <= 0 || H <= 0) return "";
  embedBackwardKernel<<<static_cast<unsigned>(nSeg), kRowThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      dx, H, order, segStart, segToken, gTable);
  return launched("embedBackwardCuda");
}

template <typename T>
const char* rmsnormBackwardHostT(const T* dy, const T* x, const float* rstd, const T* w, T* dx, float* gw, int64_t N,
                                 int64_t H) {
  if (N <= 0 || H <= 0) return "";
  cuda::DeviceBuffers b;
  const size_t n = static_cast<size_t>(N * H);
  const T *dDy, *dX, *dW;
  const float* dR;
  T* dDx;
  float* dGw = nullptr;
  char* ws = nullptr;
  cudaError_t e;
  if ((e = b.upload(&dDy, dy, n)) != cudaSuccess || (e = b.upload(&dX, x, n)) != cudaSuccess ||
      (e = b.upload(&dW, w, static_cast<size_t>(H))) != cudaSuccess ||
      (e = b.upload(&dR, rstd, static_cast<size_t>(N))) != cudaSuccess)
    return fail("upload", e);
  if ((e = b.alloc(&dDx, n)) != cudaSuccess || (e = cudaMemcpy(dDx, dx, n * sizeof(T), cudaMemcpyHostToDevice)) != cudaSuccess)
    return fail("upload", e);
  if (gw) {
    if ((e = b.alloc(&dGw, static_cast<size_t>(H))) != cudaSuccess ||
        (e = cudaMemcpy(dGw, gw, static_cast<size_t>(H) * sizeof(float), cudaMemcpyHostToDevice)) != cudaSuccess ||
        (e = b.alloc(&ws, rmsnormBackwardCudaWorkspace(N, H))) != cudaSuccess)
      return fail("upload", e);
  }
  const char* err = rmsnormBackwardCuda(dDy, dX, dR, dW, dDx, dGw, N, H, ws, nullptr);
  if (*err || *(err = synced("rmsnormBackwardCuda"))) return err;
  if (gw && *(err = download(gw, static_cast<const float*>(dGw), static_cast<size_t>(H), "download"))) return err;
  return download(dx, static_cast<const T*>(dDx), n, "download");
}

template <typename T>
const char* embedBackwardHostT(const T* dx, int64_t H, const int32_t* tokens, int64_t N, int64_t vocab,
                               float* gTable) {
  EmbedGradPlan plan;
  const std::string bad = embedGradPlan(tokens, N, vocab, &plan);
  if (!bad.empty()) return failMsg("embedBackwardCudaHost: " + bad);
  const int64_t nSeg = static_cast<int64_t>(plan.segToken.size());
  if (nSeg == 0 || H <= 0) return "";
  cuda::DeviceBuffers b;
  const T* dDx;
  const int32_t *dOrder, *dStart, *dTok;
  float* dG;
  const size_t nt = static_cast<size_t>(vocab * H);
  cudaError_t e;
  if ((e = b.upload(&dDx, dx, static_cast<size_t>(N * H))) != cudaSuccess ||
      (e = b.upload(&dOrder, plan.order.data(), plan.order.size())) != cudaSuccess ||
      (e = b.upload(&dStart, plan.segStart.data(), plan.segStart.size())) != cudaSuccess ||
      (e = b.upload(&dTok, plan.segToken.data(), plan.segToken.size())) != cudaSuccess)
    return fail("upload", e);
  if ((e = b.alloc(&dG, nt)) != cudaSuccess || (e = cudaMemcpy(dG, gTable, nt * sizeof(float), cudaMemcpyHostToDevice)) != cudaSuccess)
    return fail("upload", e);
  const char* err = embedBackwardCuda(dDx, H, dOrder, dStart, dTok, nSeg, dG, nullptr);
  if (*err || *(err = synced("embedBackwardCuda"))) return err;
  return download(gTable, static_cast<const float*>(dG), nt, "download");
}

}  // namespace

size_t rmsnormBackwardCudaWorkspace(int64_t N, int64_t H) { return bwd::colSumWorkspaceBytes(N, H); }

const char* rmsnormBackwardCuda(const uint16_t* dy, const uint16_t* x, const float* rstd, const uint16_t* w,
                                uint16_t* dx, float* gw, int64_t N, int64_t H, void* workspace, void* stream) {
  return rmsnormBackwardT(dy, x, rstd, w, dx, gw, N, H, workspace, stream);
}
const char* rmsnormBackwardCuda(const float* dy, const float* x, const float* rstd, const float* w, float* dx,
                                float* gw, int64_t N, int64_t H, void* workspace, void* stream) {
  return rmsnormBackwardT(dy, x, rstd, w, dx, gw, N, H, workspace, stream);
}
const char* embedBackwardCuda(const uint16_t* dx, int64_t H, const int32_t* order, const int32_t* segStart,
                              const int32_t* segToken, int64_t nSeg, float* gTable, void* stream) {
  return embedBackwardT(dx, H, order, segStart, segToken, nSeg, gTable, stream);
}
const char* embedBackwardCuda(const float* dx, int64_t H, const int32_t* order, const int32_t* segStart,
                              const int32_t* segToken, int64_t nSeg, float* gTable, void* stream) {
  return embedBackwardT(dx, H, order, segStart, segToken, nSeg, gTable, stream);
}
const char* rmsnormBackwardCudaHost(const uint16_t* dy, const uint16_t* x, const float* rstd, const uint16_t* w,
                                    uint16_t* dx, float* gw, int64_t N, int64_t H) {
  return rmsnormBackwardHostT(dy, x, rstd, w, dx, gw, N, H);
}
const char* rmsnormBackwardCudaHost(const float* dy, const float* x, const float* rstd, const float* w, float* dx,
                                    float* gw, int64_t N, int64_t H) {
  return rmsnormBackwardHostT(dy, x, rstd, w, dx, gw, N, H);
}
const char* embedBackwardCudaHost(const uint16_t* dx, int64_t H, const int32_t* tokens, int64_t N, int64_t vocab,
                                  float* gTable) {
  return embedBackwardHostT(dx, H, tokens, N, vocab, gTable);
}
const char* embedBackwardCudaHost(const float* dx, int64_t H, const int32_t* tokens, int64_t N, int64_t vocab,
                                  float* gTable) {
  return embedBackwardHostT(dx, H, tokens, N, vocab, gTable);
}

}  // namespace clipo::engine
