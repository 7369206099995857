// CUDA twin of head.h's log-prob pass: for R rows of bf16 hidden states and a bf16 head [V x H], the log-prob of
// each row's target token and the entropy of its next-token distribution, walking the vocabulary chunkColumns
// columns at a time so that only [R x chunk] fp32 logits exist at once:
//   init     one thread per row: SoftmaxState empty, target logit unset
//   logits   per chunk, z[r, c] = W[c0 + c] . xf[rows[r]] in fp32 (a plain kernel, one dot product per thread;
//            the engine puts its cuBLASLt GEMM here)
//   stats    per chunk, one block per row: the chunk's max, sum exp(z - max) and sum exp(z - max)(z - max) (each
//            thread in fp32 over its columns, the block in double), merged into the row's state (formulas.h,
//            softmaxMerge); the target's logit when it falls in the chunk
//   finalize one thread per row: logp = z_t - lse, entropy = log(sum) - sumZ / sum
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "engine/cuda_storage.cuh"
#include "engine/cuda_util.cuh"
#include "engine/formulas.h"
#include "engine/head.h"

namespace clipo::engine {

namespace {

using namespace cudatwin;

constexpr int kThreads = 256;

struct RowState {
  SoftmaxState s;
  float zt;
};

size_t alignUp(size_t x) { return (x + 255) & ~static_cast<size_t>(255); }

int64_t chunkWidth(int64_t R, int64_t V, int64_t chunkColumns) {
  if (chunkColumns > 0) return std::min(chunkColumns, V);
  // at most 2^24 logits (64 MiB) at once, and at least 128 columns per chunk
  const int64_t c = (int64_t{1} << 24) / std::max<int64_t>(R, 1);
  return std::min(V, std::max<int64_t>(128, c));
}

__global__ void initKernel(RowState* st, int64_t R) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < R;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    st[r].s = softmaxEmpty();
    st[r].zt = NAN;
  }
}

template <typename T>
__global__ void chunkLogitsKernel(const T* __restrict__ xf, int64_t H, const T* __restrict__ W,
                                  const int32_t* __restrict__ rows, int64_t R, int64_t c0, int64_t cw,
                                  float* __restrict__ z) {
  const int64_t total = R * cw;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = k / cw, c = k % cw;
    const T* x = xf + static_cast<int64_t>(rows[r]) * H;
    const T* wr = W + (c0 + c) * H;
    float acc = 0.f;
    for (int64_t j = 0; j < H; ++j) acc += toF(x[j]) * toF(wr[j]);
    z[k] = acc;
  }
}

__global__ void chunkStatsKernel(const float* __restrict__ z, int64_t cw, int64_t c0,
                                 const int32_t* __restrict__ targets, RowState* __restrict__ st) {
  __shared__ float scratchF[kThreads / 32];
  __shared__ double scratchD[kThreads / 32];
  const int64_t r = blockIdx.x;
  const float* zr = z + r * cw;
  float mx = -INFINITY;
  for (int64_t c = threadIdx.x; c < cw; c += blockDim.x) mx = fmaxf(mx, zr[c]);
  mx = cuda::blockMax(mx, scratchF);
  float sum = 0.f, sumZ = 0.f;
  for (int64_t c = threadIdx.x; c < cw; c += blockDim.x) {
    const float a = zr[c] - mx, e = expf(a);
    sum += e;
    sumZ += e * a;
  }
  const double bs = cuda::blockSum(static_cast<double>(sum), scratchD);
  const double bz = cuda::blockSum(static_cast<double>(sumZ), scratchD);
  if (threadIdx.x == 0) {
    st[r].s = softmaxMerge(st[r].s, SoftmaxState{mx, bs, bz});
    const int64_t t = targets[r] - c0;
    if (t >= 0 && t < cw) st[r].zt = zr[t];
  }
}

__global__ void finalizeKernel(const RowState* __restrict__ st, int64_t R, float* __restrict__ logp,
                               float* __restrict__ entropy) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < R;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    logp[r] = static_cast<float>(static_cast<double>(st[r].zt) - softmaxLse(st[r].s));
    if (entropy) entropy[r] = static_cast<float>(softmaxEntropy(st[r].s));
  }
}

}  // namespace

size_t headLogprobsCudaWorkspace(int64_t R, int64_t V, int64_t chunkColumns) {
  const int64_t cw = chunkWidth(R, V, chunkColumns);
  return alignUp(sizeof(RowState) * static_cast<size_t>(std::max<int64_t>(R, 1))) +
         sizeof(float) * static_cast<size_t>(std::max<int64_t>(R, 1) * cw);
}

namespace {

template <typename T>
const char* headLogprobsT(const T* xf, int64_t H, const T* W, int64_t V, const int32_t* rows, const int32_t* targets,
                          int64_t R, float* logp, float* entropy, int64_t chunkColumns, void* workspace,
                          void* stream) {
  if (R <= 0) return "";
  if (H <= 0 || V <= 0) return failMsg("headLogprobsCuda: H and V must be positive");
  const int64_t cw = chunkWidth(R, V, chunkColumns);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  RowState* st = static_cast<RowState*>(workspace);
  float* z = reinterpret_cast<float*>(static_cast<char*>(workspace) + alignUp(sizeof(RowState) * static_cast<size_t>(R)));
  const char* err;
  initKernel<<<gridFor(R, kThreads), kThreads, 0, s>>>(st, R);
  if (*(err = launched("headLogprobsCuda init"))) return err;
  for (int64_t c0 = 0; c0 < V; c0 += cw) {
    const int64_t w = std::min(cw, V - c0);
    chunkLogitsKernel<<<gridFor(R * w, kThreads), kThreads, 0, s>>>(xf, H, W, rows, R, c0, w, z);
    if (*(err = launched("headLogprobsCuda logits"))) return err;
    chunkStatsKernel<<<static_cast<unsigned>(R), kThreads, 0, s>>>(z, w, c0, targets, st);
    if (*(err = launched("headLogprobsCuda stats"))) return err;
  }
  finalizeKernel<<<gridFor(R, kThreads), kThreads, 0, s>>>(st, R, logp, entropy);
  return launched("headLogprobsCuda finalize");
}

}  // namespace

const char* headLogprobsCuda(const uint16_t* xf, int64_t H, const uint16_t* W, int64_t V, const int32_t* rows,
                             const int32_t* targets, int64_t R, float* logp, float* entropy, int64_t chunkColumns,
                             void* workspace, void* stream) {
  return headLogprobsT(xf, H, W, V, rows, targets, R, logp, entropy, chunkColumns, workspace, stream);
}
const char* headLogprobsCuda(const float* xf, int64_t H, const float* W, int64_t V, const int32_t* rows,
                             const int32_t* targets, int64_t R, float* logp, float* entropy, int64_t chunkColumns,
                             void* workspace, void* stream) {
  return headLogprobsT(xf, H, W, V, rows, targets, R, logp, entropy, chunkColumns, workspace, stream);
}

const char* headLogprobsCudaHost(const uint16_t* xf, int64_t xfRows, int64_t H, const uint16_t* W, int64_t V,
                                 const int32_t* rows, const int32_t* targets, int64_t R, float* logp, float* entropy,
                                 int64_t chunkColumns) {
  for (int64_t r = 0; r < R; ++r) {
    if (rows[r] < 0 || rows[r] >= xfRows) return failMsg("headLogprobsCudaHost: rows[" + std::to_string(r) + "] is out of range");
    if (targets[r] < 0 || targets[r] >= V) return failMsg("headLogprobsCudaHost: targets[" + std::to_string(r) + "] is out of range");
  }
  if (R <= 0) return "";
  cuda::DeviceBuffers b;
  const uint16_t *dX, *dW;
  const int32_t *dRows, *dT;
  float *dLp, *dEnt = nullptr;
  char* ws;
  cudaError_t e;
  if ((e = b.upload(&dX, xf, static_cast<size_t>(xfRows * H))) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dW, W, static_cast<size_t>(V * H))) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dRows, rows, static_cast<size_t>(R))) != cudaSuccess) return fail("upload", e);
  if ((e = b.upload(&dT, targets, static_cast<size_t>(R))) != cudaSuccess) return fail("upload", e);
  if ((e = b.alloc(&dLp, static_cast<size_t>(R))) != cudaSuccess) return fail("cudaMalloc", e);
  if (entropy && (e = b.alloc(&dEnt, static_cast<size_t>(R))) != cudaSuccess) return fail("cudaMalloc", e);
  if ((e = b.alloc(&ws, headLogprobsCudaWorkspace(R, V, chunkColumns))) != cudaSuccess) return fail("cudaMalloc", e);
  const char* err = headLogprobsCuda(dX, H, dW, V, dRows, dT, R, dLp, dEnt, chunkColumns, ws, nullptr);
  if (*err || *(err = synced("headLogprobsCuda"))) return err;
  if (entropy && *(err = download(entropy, static_cast<const float*>(dEnt), static_cast<size_t>(R), "download"))) return err;
  return download(logp, static_cast<const float*>(dLp), static_cast<size_t>(R), "download");
}

}  // namespace clipo::engine
