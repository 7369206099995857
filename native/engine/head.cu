// CUDA twin of head.h's log-prob pass: for R rows of hidden states (bf16 or fp32 storage) and a head [V x H], the
// log-prob of each row's target token and the entropy of its next-token distribution, walking the vocabulary
// chunkColumns columns at a time so that only [rows x chunk] fp32 logits exist at once:
//   init     one thread per row: SoftmaxState empty, target logit unset
//   gather   per pass of rows (at most 2^24 / chunk of them), the scored rows of xf copied into one contiguous
//            [rows x H] matrix (a GEMM operand cannot be indexed by a row list)
//   logits   per chunk, z [rows x chunk] = X . W[c0 : c0 + chunk]^T through the device GEMM dispatch (gemm.h,
//            gemmCuda NT, fp32 accumulation and output: cuBLASLt where it runs, else the built-in tiled kernel, whose
//            sums run over k ascending like the CPU's dot products)
//   stats    per chunk, one block per row: the chunk's max, sum exp(z - max) and sum exp(z - max)(z - max) (each
//            thread in fp32 over its columns, the block in double), merged into the row's state (formulas.h,
//            softmaxMerge); the target's logit when it falls in the chunk
//   finalize one thread per row: logp = z_t - lse, entropy = log(sum) - sumZ / sum
// Batch independence (gemm.h): the automatic chunk width depends on V alone, never on R, and the products take the
// Wide shape class, so the GEMM's plan for each chunk — and with it a row's logits, its merge order and its bits —
// is the same whatever the other rows of the call.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "engine/cuda_storage.cuh"
#include "engine/cuda_util.cuh"
#include "engine/formulas.h"
#include "engine/gemm.h"
#include "engine/head.h"

namespace clipo::engine {

namespace {

using namespace cudatwin;

constexpr int kThreads = 256;
// fp32 logits at once (64 MiB); the host emulation's check sets a small value so that several passes of rows run
#ifndef CLIPO_HEAD_PASS_LOGITS
#define CLIPO_HEAD_PASS_LOGITS (int64_t{1} << 24)
#endif
constexpr int64_t kLogitsPerPass = CLIPO_HEAD_PASS_LOGITS;
constexpr int64_t kForwardChunk = 4096;               // the forward's automatic chunk width (columns)

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

// the forward's chunk width: chunkColumns, or a width fixed by V alone (a row's bits must not depend on R)
int64_t forwardChunk(int64_t V, int64_t chunkColumns) {
  return std::min(V, chunkColumns > 0 ? chunkColumns : kForwardChunk);
}
// rows per pass of the forward: at most kLogitsPerPass logits at once, at least one row
int64_t forwardRows(int64_t R, int64_t cw) {
  return std::min(std::max<int64_t>(R, 1), std::max<int64_t>(1, kLogitsPerPass / cw));
}

// X[r] = xf[rows[r]] for r < m
template <typename T>
__global__ void gatherRowsKernel(const T* __restrict__ xf, int64_t H, const int32_t* __restrict__ rows, int64_t m,
                                 T* __restrict__ X) {
  const int64_t total = m * H;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    X[k] = xf[static_cast<int64_t>(rows[k / H]) * H + k % H];
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

size_t headLogprobsCudaWorkspace(int64_t R, int64_t V, int64_t H, int64_t chunkColumns) {
  const int64_t cw = forwardChunk(std::max<int64_t>(V, 1), chunkColumns), rp = forwardRows(R, cw);
  // row states | gathered rows (4 bytes a value: either storage) | logits
  return alignUp(sizeof(RowState) * static_cast<size_t>(std::max<int64_t>(R, 1))) +
         alignUp(sizeof(float) * static_cast<size_t>(rp * std::max<int64_t>(H, 1))) + sizeof(float) * static_cast<size_t>(rp * cw);
}

namespace {

template <typename T>
constexpr GemmType gemmTypeOf() {
  return sizeof(T) == 2 ? GemmType::Bf16 : GemmType::F32;
}

template <typename T>
const char* headLogprobsT(const T* xf, int64_t H, const T* W, int64_t V, const int32_t* rows, const int32_t* targets,
                          int64_t R, float* logp, float* entropy, int64_t chunkColumns, void* workspace,
                          void* stream, GemmImpl impl = GemmImpl::Auto, const char** used = nullptr) {
  if (R <= 0) return "";
  if (H <= 0 || V <= 0) return failMsg("headLogprobsCuda: H and V must be positive");
  const int64_t cw = forwardChunk(V, chunkColumns), rp = forwardRows(R, cw);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  char* ws = static_cast<char*>(workspace);
  RowState* st = reinterpret_cast<RowState*>(ws);
  T* X = reinterpret_cast<T*>(ws + alignUp(sizeof(RowState) * static_cast<size_t>(R)));
  float* z = reinterpret_cast<float*>(reinterpret_cast<char*>(X) + alignUp(sizeof(float) * static_cast<size_t>(rp * H)));
  const char* err;
  initKernel<<<gridFor(R, kThreads), kThreads, 0, s>>>(st, R);
  if (*(err = launched("headLogprobsCuda init"))) return err;
  for (int64_t r0 = 0; r0 < R; r0 += rp) {
    const int64_t m = std::min(rp, R - r0);
    gatherRowsKernel<<<gridFor(m * H, kThreads), kThreads, 0, s>>>(xf, H, rows + r0, m, X);
    if (*(err = launched("headLogprobsCuda gather"))) return err;
    for (int64_t c0 = 0; c0 < V; c0 += cw) {
      const int64_t w = std::min(cw, V - c0);
      GemmCall g;
      g.op = GemmOp::NT;
      g.in = gemmTypeOf<T>();
      g.out = GemmType::F32;
      g.cls = GemmClass::Wide;
      g.M = m, g.N = w, g.K = H;
      g.A = X, g.B = W + c0 * H, g.C = z, g.stream = stream;
      const char* u = "builtin";
      if (*(err = gemmCuda(g, impl, &u))) return err;
      // what ran: cuBLASLt only when every chunk took it
      if (used && (r0 == 0 && c0 == 0 ? true : std::string(u) != "cublaslt")) *used = u;
      chunkStatsKernel<<<static_cast<unsigned>(m), kThreads, 0, s>>>(z, w, c0, targets + r0, st + r0);
      if (*(err = launched("headLogprobsCuda stats"))) return err;
    }
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
                                 int64_t chunkColumns, GemmImpl impl, const char** used) {
  if (used) *used = "builtin";
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
  if ((e = b.alloc(&ws, headLogprobsCudaWorkspace(R, V, H, chunkColumns))) != cudaSuccess) return fail("cudaMalloc", e);
  const char* err = headLogprobsT(dX, H, dW, V, dRows, dT, R, dLp, dEnt, chunkColumns, ws, nullptr, impl, used);
  if (*err || *(err = synced("headLogprobsCuda"))) return err;
  if (entropy && *(err = download(entropy, static_cast<const float*>(dEnt), static_cast<size_t>(R), "download"))) return err;
  return download(logp, static_cast<const float*>(dLp), static_cast<size_t>(R), "download");
}

}  // namespace clipo::engine

// ---- backward twin (head.h): the log-prob/entropy pass's gradient, chunked over the vocabulary like the forward ----
// Per row r (target t, upstream gradients gl = d loss/d logp, ge = d loss/d H): lse = z_t - logp (z_t recomputed as
// a dot product over k ascending: the forward's bits with the built-in GEMM; with cuBLASLt the forward's z_t may
// differ in the last bits, which moves lse by the same ~1e-7 relative), E_p[z] = lse - H, and per chunk of columns
//   z   = W_chunk . x_r                                       (fp32 logits, recomputed)
//   dz_i = gl (1[i = t] - p_i) - ge p_i (z_i - E_p[z])         (p_i = exp(z_i - lse); cpu_train.cpp's formula:
//                                                              -p_i (log p_i + H) = -p_i (z_i - E_p[z]))
//   dX_r += dz . W_chunk      dW_chunk += dz^T . X            (fp32, plain 16x16 tiled kernels)
// dX is kept per scored row in fp32 and added into dXf (storage T) at the end, the rows in order and rounded once (a
// row scored twice gets both contributions, summed in fp32 first). Every output element has one writer and a fixed summation order: deterministic.
// The forward's logits already go through the engine's device GEMM (cuBLASLt, or its built-in fallback); here the
// three products are still the tiled kernels below: the logits [R x cw] = X_rows . W_chunk^T (NT), dX [R x H] +=
// dZ . W_chunk (NN; dZ is fp32 and W of storage T, a mix the dispatch does not take), dW_chunk [cw x H] += dZ^T .
// X_rows (TN).

#include "engine/backward_util.cuh"

namespace clipo::engine {

namespace {

using namespace cudatwin;

constexpr int kTile = 16;  // tiled products: 16 x 16 outputs per block of 256 threads, K in steps of 16

struct RowBack {
  double lse, pz;  // log-sum-exp and E_p[z] of the row's logits
  float gl, ge;    // d loss / d logp, d loss / d entropy
};

template <typename T>
struct XRowsAt {  // (r, j) -> xf[rows[r], j]
  const T* xf;
  const int32_t* rows;
  int64_t H;
  __device__ float operator()(int64_t r, int64_t j) const { return bwd::ld(xf[static_cast<int64_t>(rows[r]) * H + j]); }
};
template <typename T>
struct WTransAt {  // (j, c) -> W_chunk[c, j]
  const T* w;
  int64_t H;
  __device__ float operator()(int64_t j, int64_t c) const { return bwd::ld(w[c * H + j]); }
};
template <typename T>
struct WAt {  // (c, j) -> W_chunk[c, j]
  const T* w;
  int64_t H;
  __device__ float operator()(int64_t c, int64_t j) const { return bwd::ld(w[c * H + j]); }
};
struct DzAt {  // (r, c) -> dz[r, c]
  const float* z;
  int64_t cw;
  __device__ float operator()(int64_t r, int64_t c) const { return z[r * cw + c]; }
};
struct DzTransAt {  // (c, r) -> dz[r, c]
  const float* z;
  int64_t cw;
  __device__ float operator()(int64_t c, int64_t r) const { return z[r * cw + c]; }
};

// C[i, j] (+)= sum_k a(i, k) b(k, j) for i < M, j < Ncols: 16 x 16 tiles through shared memory, k ascending (fp32)
template <typename A, typename B>
__global__ void tiledProductKernel(A a, B b, int64_t M, int64_t Ncols, int64_t K, float* __restrict__ C, int64_t ldc,
                                   bool accumulate) {
  __shared__ float as[kTile][kTile + 1];
  __shared__ float bs[kTile][kTile + 1];
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const int64_t i = static_cast<int64_t>(blockIdx.y) * kTile + ty, j = static_cast<int64_t>(blockIdx.x) * kTile + tx;
  float acc = 0.f;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    as[ty][tx] = i < M && k0 + tx < K ? a(i, k0 + tx) : 0.f;
    bs[ty][tx] = k0 + ty < K && j < Ncols ? b(k0 + ty, j) : 0.f;
    __syncthreads();
    for (int kk = 0; kk < kTile; ++kk) acc += as[ty][kk] * bs[kk][tx];
    __syncthreads();
  }
  if (i < M && j < Ncols) C[i * ldc + j] = accumulate ? C[i * ldc + j] + acc : acc;
}

// one thread per row: lse = z_t - logp with z_t summed over k ascending (the built-in GEMM's order), E_p[z] = lse - H
template <typename T>
__global__ void backPrepKernel(const T* __restrict__ xf, int64_t H, const T* __restrict__ W,
                               const int32_t* __restrict__ rows, const int32_t* __restrict__ targets, int64_t R,
                               const float* __restrict__ logp, const float* __restrict__ entropy,
                               const float* __restrict__ gradLogp, const float* __restrict__ gradEntropy,
                               RowBack* __restrict__ rb) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < R;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T* x = xf + static_cast<int64_t>(rows[r]) * H;
    const T* wr = W + static_cast<int64_t>(targets[r]) * H;
    float zt = 0.f;
    for (int64_t j = 0; j < H; ++j) zt += bwd::ld(x[j]) * bwd::ld(wr[j]);
    const double lse = static_cast<double>(zt) - logp[r];
    rb[r].lse = lse;
    rb[r].pz = entropy ? lse - entropy[r] : 0.0;
    rb[r].gl = gradLogp[r];
    rb[r].ge = gradEntropy ? gradEntropy[r] : 0.f;
  }
}

__global__ void zeroKernel(float* __restrict__ p, int64_t n) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p[k] = 0.f;
}

// logits of the chunk -> their gradient, in place
__global__ void dLogitsKernel(float* __restrict__ z, int64_t R, int64_t cw, int64_t c0,
                              const int32_t* __restrict__ targets, const RowBack* __restrict__ rb) {
  const int64_t total = R * cw;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = k / cw, c = k % cw;
    const RowBack b = rb[r];
    const float p = expf(static_cast<float>(static_cast<double>(z[k]) - b.lse));
    float d = -b.gl * p;
    if (b.ge != 0.f) d -= b.ge * p * static_cast<float>(static_cast<double>(z[k]) - b.pz);
    if (c0 + c == targets[r]) d += b.gl;
    z[k] = d;
  }
}

// A row of xf may be scored more than once: link[r] = the next r' > r scoring the same row (-1: none) and first[r] =
// whether r is its row's first. One thread per r scans the others (R^2 / 2 comparisons in all, over R threads).
__global__ void rowLinksKernel(const int32_t* __restrict__ rows, int64_t R, int32_t* __restrict__ link,
                               int32_t* __restrict__ first) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < R;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t row = rows[r];
    int32_t f = 1, nx = -1;
    for (int64_t q = 0; q < r && f; ++q) f = rows[q] != row;
    for (int64_t q = r + 1; q < R; ++q)
      if (rows[q] == row) {
        nx = static_cast<int32_t>(q);
        break;
      }
    link[r] = nx;
    first[r] = f;
  }
}

// dXf[row] = T(dXf[row] + dX[r1] + dX[r2] + ...) over the scored rows r1 < r2 < ... of that row, in fp32 and
// rounded once (the CPU twin's order); one thread per (first scored row, column) owns that element
template <typename T>
__global__ void scatterRowsKernel(const float* __restrict__ dX, const int32_t* __restrict__ rows,
                                  const int32_t* __restrict__ link, const int32_t* __restrict__ first, int64_t R,
                                  int64_t H, T* __restrict__ dXf) {
  const int64_t total = R * H;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = k / H, j = k % H;
    if (!first[r]) continue;
    T* o = dXf + static_cast<int64_t>(rows[r]) * H + j;
    float acc = bwd::ld(*o) + dX[k];
    for (int32_t q = link[r]; q >= 0; q = link[q]) acc += dX[static_cast<int64_t>(q) * H + j];
    bwd::st(o, acc);
  }
}

dim3 tilesFor(int64_t M, int64_t Ncols) {
  return dim3(static_cast<unsigned>((Ncols + kTile - 1) / kTile), static_cast<unsigned>((M + kTile - 1) / kTile));
}

template <typename T>
const char* headBackwardT(const T* xf, int64_t H, const T* W, int64_t V, const int32_t* rows, const int32_t* targets,
                          int64_t R, const float* logp, const float* entropy, const float* gradLogp,
                          const float* gradEntropy, T* dXf, float* dW, int64_t chunkColumns, void* workspace,
                          void* stream) {
  if (R <= 0) return "";
  if (H <= 0 || V <= 0) return failMsg("headLogprobsBackwardCuda: H and V must be positive");
  if (gradEntropy && !entropy) return failMsg("headLogprobsBackwardCuda: gradEntropy needs the forward's entropy");
  const int64_t cw = chunkWidth(R, V, chunkColumns);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  char* ws = static_cast<char*>(workspace);
  RowBack* rb = reinterpret_cast<RowBack*>(ws);
  float* dX = reinterpret_cast<float*>(ws + alignUp(sizeof(RowBack) * static_cast<size_t>(R)));
  float* z = dX + alignUp(sizeof(float) * static_cast<size_t>(R * H)) / sizeof(float);
  int32_t* link = reinterpret_cast<int32_t*>(z + alignUp(sizeof(float) * static_cast<size_t>(R * cw)) / sizeof(float));
  int32_t* first = link + R;
  const char* err;
  backPrepKernel<<<gridFor(R, kThreads), kThreads, 0, s>>>(xf, H, W, rows, targets, R, logp, entropy, gradLogp,
                                                          gradEntropy, rb);
  if (*(err = launched("headLogprobsBackwardCuda prep"))) return err;
  zeroKernel<<<gridFor(R * H, kThreads), kThreads, 0, s>>>(dX, R * H);
  if (*(err = launched("headLogprobsBackwardCuda prep"))) return err;
  for (int64_t c0 = 0; c0 < V; c0 += cw) {
    const int64_t w = std::min(cw, V - c0);
    const T* Wc = W + c0 * H;
    // logits [R x w] = X_rows . W_chunk^T  (device GEMM NT)
    tiledProductKernel<<<tilesFor(R, w), kTile * kTile, 0, s>>>(XRowsAt<T>{xf, rows, H}, WTransAt<T>{Wc, H}, R, w, H,
                                                                z, w, false);
    if (*(err = launched("headLogprobsBackwardCuda logits"))) return err;
    dLogitsKernel<<<gridFor(R * w, kThreads), kThreads, 0, s>>>(z, R, w, c0, targets, rb);
    if (*(err = launched("headLogprobsBackwardCuda dlogits"))) return err;
    // dX [R x H] += dZ . W_chunk  (device GEMM NN, beta 1)
    tiledProductKernel<<<tilesFor(R, H), kTile * kTile, 0, s>>>(DzAt{z, w}, WAt<T>{Wc, H}, R, H, w, dX, H, true);
    if (*(err = launched("headLogprobsBackwardCuda dX"))) return err;
    // dW_chunk [w x H] += dZ^T . X_rows  (device GEMM TN, beta 1)
    if (dW) {
      tiledProductKernel<<<tilesFor(w, H), kTile * kTile, 0, s>>>(DzTransAt{z, w}, XRowsAt<T>{xf, rows, H}, w, H, R,
                                                                  dW + c0 * H, H, true);
      if (*(err = launched("headLogprobsBackwardCuda dW"))) return err;
    }
  }
  rowLinksKernel<<<gridFor(R, kThreads), kThreads, 0, s>>>(rows, R, link, first);
  if (*(err = launched("headLogprobsBackwardCuda links"))) return err;
  scatterRowsKernel<<<gridFor(R * H, kThreads), kThreads, 0, s>>>(dX, rows, link, first, R, H, dXf);
  return launched("headLogprobsBackwardCuda scatter");
}

template <typename T>
const char* headBackwardHostT(const T* xf, int64_t xfRows, int64_t H, const T* W, int64_t V, const int32_t* rows,
                              const int32_t* targets, int64_t R, const float* logp, const float* entropy,
                              const float* gradLogp, const float* gradEntropy, T* dXf, float* dW,
                              int64_t chunkColumns) {
  for (int64_t r = 0; r < R; ++r) {
    if (rows[r] < 0 || rows[r] >= xfRows) return failMsg("headLogprobsBackwardCudaHost: rows[" + std::to_string(r) + "] is out of range");
    if (targets[r] < 0 || targets[r] >= V) return failMsg("headLogprobsBackwardCudaHost: targets[" + std::to_string(r) + "] is out of range");
  }
  if (R <= 0) return "";
  cuda::DeviceBuffers b;
  const T *dXin, *dWt;
  const int32_t *dRows, *dT;
  const float *dLp, *dEnt = nullptr, *dGl, *dGe = nullptr;
  T* dDx;
  float* dDw = nullptr;
  char* ws;
  const size_t nx = static_cast<size_t>(xfRows * H), nw = static_cast<size_t>(V * H), nr = static_cast<size_t>(R);
  cudaError_t e;
  if ((e = b.upload(&dXin, xf, nx)) != cudaSuccess || (e = b.upload(&dWt, W, nw)) != cudaSuccess ||
      (e = b.upload(&dRows, rows, nr)) != cudaSuccess || (e = b.upload(&dT, targets, nr)) != cudaSuccess ||
      (e = b.upload(&dLp, logp, nr)) != cudaSuccess || (e = b.upload(&dGl, gradLogp, nr)) != cudaSuccess ||
      (entropy && (e = b.upload(&dEnt, entropy, nr)) != cudaSuccess) ||
      (gradEntropy && (e = b.upload(&dGe, gradEntropy, nr)) != cudaSuccess))
    return fail("upload", e);
  if ((e = b.alloc(&dDx, nx)) != cudaSuccess || (e = cudaMemcpy(dDx, dXf, nx * sizeof(T), cudaMemcpyHostToDevice)) != cudaSuccess)
    return fail("upload", e);
  if (dW && ((e = b.alloc(&dDw, nw)) != cudaSuccess || (e = cudaMemcpy(dDw, dW, nw * sizeof(float), cudaMemcpyHostToDevice)) != cudaSuccess))
    return fail("upload", e);
  if ((e = b.alloc(&ws, headLogprobsBackwardCudaWorkspace(R, V, H, chunkColumns))) != cudaSuccess) return fail("cudaMalloc", e);
  const char* err = headLogprobsBackwardCuda(dXin, H, dWt, V, dRows, dT, R, dLp, dEnt, dGl, dGe, dDx, dDw, chunkColumns,
                                             ws, nullptr);
  if (*err || *(err = synced("headLogprobsBackwardCuda"))) return err;
  if (dW && *(err = download(dW, static_cast<const float*>(dDw), nw, "download"))) return err;
  return download(dXf, static_cast<const T*>(dDx), nx, "download");
}

}  // namespace

size_t headLogprobsBackwardCudaWorkspace(int64_t R, int64_t V, int64_t H, int64_t chunkColumns) {
  const int64_t r = std::max<int64_t>(R, 1);
  return alignUp(sizeof(RowBack) * static_cast<size_t>(r)) + alignUp(sizeof(float) * static_cast<size_t>(r * H)) +
         alignUp(sizeof(float) * static_cast<size_t>(r * chunkWidth(R, V, chunkColumns))) +
         2 * sizeof(int32_t) * static_cast<size_t>(r);
}

const char* headLogprobsBackwardCuda(const uint16_t* xf, int64_t H, const uint16_t* W, int64_t V, const int32_t* rows,
                                     const int32_t* targets, int64_t R, const float* logp, const float* entropy,
                                     const float* gradLogp, const float* gradEntropy, uint16_t* dXf, float* dW,
                                     int64_t chunkColumns, void* workspace, void* stream) {
  return headBackwardT(xf, H, W, V, rows, targets, R, logp, entropy, gradLogp, gradEntropy, dXf, dW, chunkColumns,
                       workspace, stream);
}
const char* headLogprobsBackwardCuda(const float* xf, int64_t H, const float* W, int64_t V, const int32_t* rows,
                                     const int32_t* targets, int64_t R, const float* logp, const float* entropy,
                                     const float* gradLogp, const float* gradEntropy, float* dXf, float* dW,
                                     int64_t chunkColumns, void* workspace, void* stream) {
  return headBackwardT(xf, H, W, V, rows, targets, R, logp, entropy, gradLogp, gradEntropy, dXf, dW, chunkColumns,
                       workspace, stream);
}
const char* headLogprobsBackwardCudaHost(const uint16_t* xf, int64_t xfRows, int64_t H, const uint16_t* W, int64_t V,
                                         const int32_t* rows, const int32_t* targets, int64_t R, const float* logp,
                                         const float* entropy, const float* gradLogp, const float* gradEntropy,
                                         uint16_t* dXf, float* dW, int64_t chunkColumns) {
  return headBackwardHostT(xf, xfRows, H, W, V, rows, targets, R, logp, entropy, gradLogp, gradEntropy, dXf, dW,
                           chunkColumns);
}
const char* headLogprobsBackwardCudaHost(const float* xf, int64_t xfRows, int64_t H, const float* W, int64_t V,
                                         const int32_t* rows, const int32_t* targets, int64_t R, const float* logp,
                                         const float* entropy, const float* gradLogp, const float* gradEntropy,
                                         float* dXf, float* dW, int64_t chunkColumns) {
  return headBackwardHostT(xf, xfRows, H, W, V, rows, targets, R, logp, entropy, gradLogp, gradEntropy, dXf, dW,
                           chunkColumns);
}

}  // namespace clipo::engine
