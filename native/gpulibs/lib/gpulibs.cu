// clipo_gpulibs.so: the code that links cuBLASLt and NCCL, kept out of the addon (see ../gpulibs_abi.h). Built by
// CMake only when a CUDA compiler and at least one of the two libraries were found; CLIPO_HAVE_CUBLASLT and
// CLIPO_HAVE_NCCL say which. It holds the probes the GPU engine starts from (a bf16 GEMM at the engine's projection
// shapes and a one-rank all-reduce, each checked before it is timed) and the engine's GEMM itself
// (clipo_gpulibs_lt_matmul: the products of a linear layer with a cached algorithm per plan key, see the ABI header).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "gpulibs/gpulibs_abi.h"

#ifdef CLIPO_HAVE_CUBLASLT
#include <cublasLt.h>
#endif
#ifdef CLIPO_HAVE_NCCL
#include <nccl.h>
#endif

#define CLIPO_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

int setError(char* err, size_t len, const char* what, const char* detail) {
  if (err && len) std::snprintf(err, len, "%s: %s", what, detail);
  return 1;
}
int cudaFail(char* err, size_t len, const char* what, cudaError_t e) { return setError(err, len, what, cudaGetErrorString(e)); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// Frees what it holds on every exit path.
struct DeviceMem {
  std::vector<void*> ptrs;
  ~DeviceMem() {
    for (void* p : ptrs) cudaFree(p);
  }
  cudaError_t alloc(void** p, size_t bytes) {
    cudaError_t e = cudaMalloc(p, bytes);
    if (e == cudaSuccess) ptrs.push_back(*p);
    return e;
  }
};

struct Events {
  cudaEvent_t a = nullptr, b = nullptr;
  ~Events() {
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
  }
  cudaError_t create() {
    cudaError_t e = cudaEventCreate(&a);
    return e ? e : cudaEventCreate(&b);
  }
};

// Uniform in [-1, 1) from a hash of (seed, index): reproducible, no cuRAND needed.
__device__ __forceinline__ float hashUniform(uint64_t seed, uint64_t i) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

__global__ void fillBf16(__nv_bfloat16* a, size_t n, uint64_t seed, float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x)
    a[i] = __float2bfloat16(scale * hashUniform(seed, i));
}

__global__ void fillF32(float* a, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x)
    a[i] = hashUniform(seed, i);
}

// One thread per checked element: ref = sum_k x[i,k] w[j,k] in fp32 (the inputs are exact bf16 values), scale =
// sqrt(sum_k (x w)^2), the natural size of a random sum's rounding error.
__global__ void referenceDots(const __nv_bfloat16* X, const __nv_bfloat16* W, int64_t K, const int64_t* rows,
                              const int64_t* cols, int count, float* ref, float* scale) {
  const int s = blockIdx.x * blockDim.x + threadIdx.x;
  if (s >= count) return;
  const __nv_bfloat16* x = X + rows[s] * K;
  const __nv_bfloat16* w = W + cols[s] * K;
  double acc = 0.0, sq = 0.0;
  for (int64_t k = 0; k < K; ++k) {
    const double p = static_cast<double>(__bfloat162float(x[k])) * static_cast<double>(__bfloat162float(w[k]));
    acc += p;
    sq += p * p;
  }
  ref[s] = static_cast<float>(acc);
  scale[s] = static_cast<float>(std::sqrt(sq));
}

__global__ void gatherBf16(const __nv_bfloat16* Y, int64_t N, const int64_t* rows, const int64_t* cols, int count, float* out) {
  const int s = blockIdx.x * blockDim.x + threadIdx.x;
  if (s < count) out[s] = __bfloat162float(Y[rows[s] * N + cols[s]]);
}

unsigned gridFor(size_t n) { return static_cast<unsigned>(std::min<size_t>((n + 255) / 256, 65535)); }

}  // namespace

CLIPO_EXPORT int clipo_gpulibs_abi(void) { return CLIPO_GPULIBS_ABI; }

CLIPO_EXPORT void clipo_gpulibs_info(ClipoGpuLibsInfo* out) {
  std::memset(out, 0, sizeof(*out));
  out->abi = CLIPO_GPULIBS_ABI;
#ifdef CLIPO_HAVE_CUBLASLT
  out->cublasLtCompiled = 1;
  out->cublasLtVersion = static_cast<int64_t>(cublasLtGetVersion());
#endif
#ifdef CLIPO_HAVE_NCCL
  out->ncclCompiled = 1;
  int v = 0;
  if (ncclGetVersion(&v) == ncclSuccess) out->ncclVersion = v;
#endif
  cudaRuntimeGetVersion(&out->cudaRuntimeVersion);
  if (cudaDriverGetVersion(&out->cudaDriverVersion) != cudaSuccess) out->cudaDriverVersion = 0;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    n = 0;
    cudaGetLastError();  // clear the sticky "no driver" error
  }
  out->deviceCount = n;
}

CLIPO_EXPORT int clipo_gpulibs_gemm_bf16(const ClipoGemmArgs* a, double* msSamples, ClipoGemmResult* out, char* err,
                                         size_t errLen) {
  std::memset(out, 0, sizeof(*out));
#ifndef CLIPO_HAVE_CUBLASLT
  (void)a;
  (void)msSamples;
  return setError(err, errLen, "gemm", "clipo_gpulibs was built without cuBLASLt");
#else
  const int64_t M = a->m, N = a->n, K = a->k;
  if (M <= 0 || N <= 0 || K <= 0 || a->repeats <= 0) return setError(err, errLen, "gemm", "m, n, k and repeats must be positive");
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    return setError(err, errLen, "gemm", "no CUDA device");
  }
  DeviceMem mem;
  __nv_bfloat16 *X, *W, *Y;
  void* ws;
  const size_t wsBytes = 32u << 20;  // what cuBLAS recommends for Hopper
  cudaError_t e;
  if ((e = mem.alloc(reinterpret_cast<void**>(&X), sizeof(__nv_bfloat16) * M * K)) ||
      (e = mem.alloc(reinterpret_cast<void**>(&W), sizeof(__nv_bfloat16) * N * K)) ||
      (e = mem.alloc(reinterpret_cast<void**>(&Y), sizeof(__nv_bfloat16) * M * N)) || (e = mem.alloc(&ws, wsBytes)))
    return cudaFail(err, errLen, "gemm: cudaMalloc", e);
  fillBf16<<<gridFor(M * K), 256>>>(X, M * K, a->seed, 1.0f);
  fillBf16<<<gridFor(N * K), 256>>>(W, N * K, a->seed ^ 0x5bd1e995ull, 1.0f / std::sqrt(static_cast<float>(K)));
  if ((e = cudaMemset(Y, 0xFF, sizeof(__nv_bfloat16) * M * N)))  // NaN: an unwritten element fails the check
    return cudaFail(err, errLen, "gemm: cudaMemset", e);

  cublasLtHandle_t h = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  struct Cleanup {
    cublasLtHandle_t& h; cublasLtMatmulDesc_t& op; cublasLtMatrixLayout_t &la, &lb, &lc; cublasLtMatmulPreference_t& pref;
    ~Cleanup() {
      if (pref) cublasLtMatmulPreferenceDestroy(pref);
      if (lc) cublasLtMatrixLayoutDestroy(lc);
      if (lb) cublasLtMatrixLayoutDestroy(lb);
      if (la) cublasLtMatrixLayoutDestroy(la);
      if (op) cublasLtMatmulDescDestroy(op);
      if (h) cublasLtDestroy(h);
    }
  } cleanup{h, op, la, lb, lc, pref};
  // Row-major Y[M,N] = X W^T is column-major Y^T[N,M] = W X^T: A = W stored column-major as [K,N] (transposed),
  // B = X stored column-major as [K,M]; the "TN" product cuBLAS is fastest at.
  cublasStatus_t s;
  const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
  if ((s = cublasLtCreate(&h)) || (s = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F)) ||
      (s = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(opT))) ||
      (s = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(opN))) ||
      (s = cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, N, K)) ||
      (s = cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, M, K)) ||
      (s = cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, M, N)) || (s = cublasLtMatmulPreferenceCreate(&pref)) ||
      (s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsBytes, sizeof(wsBytes))))
    return setError(err, errLen, "gemm: cuBLASLt setup", cublasLtGetStatusString(s));
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  s = cublasLtMatmulAlgoGetHeuristic(h, op, la, lb, lc, lc, pref, 1, &heur, &found);
  if (s || found == 0) return setError(err, errLen, "gemm: no cuBLASLt algorithm for this shape", cublasLtGetStatusString(s));
  out->workspaceBytes = static_cast<double>(heur.workspaceSize);
  const float alpha = 1.0f, beta = 0.0f;
  auto call = [&]() { return cublasLtMatmul(h, op, &alpha, W, la, X, lb, &beta, Y, lc, Y, lc, &heur.algo, ws, wsBytes, nullptr); };

  // check first, on the first call's output
  if ((s = call())) return setError(err, errLen, "gemm: cublasLtMatmul", cublasLtGetStatusString(s));
  const int S = std::max(1, a->checkSamples);
  std::vector<int64_t> rows(S), cols(S);
  uint64_t r = a->seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int i = 0; i < S; ++i) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    rows[i] = static_cast<int64_t>((r >> 33) % static_cast<uint64_t>(M));
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    cols[i] = static_cast<int64_t>((r >> 33) % static_cast<uint64_t>(N));
  }
  rows[0] = M - 1;  // the corners too
  cols[0] = N - 1;
  int64_t *dRows, *dCols;
  float *dRef, *dScale, *dGot;
  if ((e = mem.alloc(reinterpret_cast<void**>(&dRows), 8 * S)) || (e = mem.alloc(reinterpret_cast<void**>(&dCols), 8 * S)) ||
      (e = mem.alloc(reinterpret_cast<void**>(&dRef), 4 * S)) || (e = mem.alloc(reinterpret_cast<void**>(&dScale), 4 * S)) ||
      (e = mem.alloc(reinterpret_cast<void**>(&dGot), 4 * S)) ||
      (e = cudaMemcpy(dRows, rows.data(), 8 * S, cudaMemcpyHostToDevice)) ||
      (e = cudaMemcpy(dCols, cols.data(), 8 * S, cudaMemcpyHostToDevice)))
    return cudaFail(err, errLen, "gemm: check buffers", e);
  referenceDots<<<(S + 127) / 128, 128>>>(X, W, K, dRows, dCols, S, dRef, dScale);
  gatherBf16<<<(S + 127) / 128, 128>>>(Y, N, dRows, dCols, S, dGot);
  std::vector<float> ref(S), scale(S), got(S);
  if ((e = cudaMemcpy(ref.data(), dRef, 4 * S, cudaMemcpyDeviceToHost)) ||
      (e = cudaMemcpy(scale.data(), dScale, 4 * S, cudaMemcpyDeviceToHost)) ||
      (e = cudaMemcpy(got.data(), dGot, 4 * S, cudaMemcpyDeviceToHost)))
    return cudaFail(err, errLen, "gemm: check", e);
  double worst = 0.0;
  for (int i = 0; i < S; ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - ref[i]) / (std::fabs(ref[i]) + scale[i] + 1e-30);
    worst = std::isfinite(got[i]) ? std::max(worst, d) : INFINITY;
  }
  out->maxScaledError = worst;
  out->checked = S;

  for (int w = 0; w < a->warmup; ++w)
    if ((s = call())) return setError(err, errLen, "gemm: cublasLtMatmul", cublasLtGetStatusString(s));
  // back to back (as the PyTorch side is timed): products queued without waiting, an event between consecutive
  // ones, so each interval is one product's device time, not its launch latency too
  std::vector<double> ms(a->repeats);
  std::vector<cudaEvent_t> marks(static_cast<size_t>(a->repeats) + 1, nullptr);
  struct Destroy {
    std::vector<cudaEvent_t>& v;
    ~Destroy() { for (auto x : v) if (x) cudaEventDestroy(x); }
  } destroyMarks{marks};
  for (auto& x : marks)
    if ((e = cudaEventCreate(&x))) return cudaFail(err, errLen, "gemm: events", e);
  cudaEventRecord(marks[0], nullptr);
  for (int i = 0; i < a->repeats; ++i) {
    if ((s = call())) return setError(err, errLen, "gemm: cublasLtMatmul", cublasLtGetStatusString(s));
    cudaEventRecord(marks[static_cast<size_t>(i) + 1], nullptr);
  }
  if ((e = cudaEventSynchronize(marks.back()))) return cudaFail(err, errLen, "gemm: run", e);
  for (int i = 0; i < a->repeats; ++i) {
    float t = 0;
    cudaEventElapsedTime(&t, marks[static_cast<size_t>(i)], marks[static_cast<size_t>(i) + 1]);
    ms[i] = t;
    msSamples[i] = t;
  }
  out->msMedian = median(ms);
  out->msMin = *std::min_element(ms.begin(), ms.end());
  out->tflops = 2.0 * M * N * K / (out->msMedian * 1e-3) / 1e12;
  return 0;
#endif
}

CLIPO_EXPORT int clipo_gpulibs_allreduce(const ClipoAllReduceArgs* a, double* msSamples, ClipoAllReduceResult* out,
                                         char* err, size_t errLen) {
  std::memset(out, 0, sizeof(*out));
#ifndef CLIPO_HAVE_NCCL
  (void)a;
  (void)msSamples;
  return setError(err, errLen, "all-reduce", "clipo_gpulibs was built without NCCL");
#else
  if (a->bytes < 4 || a->repeats <= 0) return setError(err, errLen, "all-reduce", "bytes >= 4 and repeats > 0 required");
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    return setError(err, errLen, "all-reduce", "no CUDA device");
  }
  const size_t n = static_cast<size_t>(a->bytes / 4);
  DeviceMem mem;
  float *src, *buf;
  cudaError_t e;
  if ((e = mem.alloc(reinterpret_cast<void**>(&src), n * 4)) || (e = mem.alloc(reinterpret_cast<void**>(&buf), n * 4)))
    return cudaFail(err, errLen, "all-reduce: cudaMalloc", e);
  fillF32<<<gridFor(n), 256>>>(src, n, 12345);
  cudaStream_t stream;
  if ((e = cudaStreamCreate(&stream))) return cudaFail(err, errLen, "all-reduce: stream", e);
  struct StreamGuard {
    cudaStream_t s;
    ~StreamGuard() { cudaStreamDestroy(s); }
  } sg{stream};
  ncclComm_t comm = nullptr;
  int dev0 = 0;
  ncclResult_t nr = ncclCommInitAll(&comm, 1, &dev0);
  if (nr != ncclSuccess) return setError(err, errLen, "all-reduce: ncclCommInitAll", ncclGetErrorString(nr));
  struct CommGuard {
    ncclComm_t c;
    ~CommGuard() { ncclCommDestroy(c); }
  } cg{comm};
  ncclCommCount(comm, &out->nranks);
  // check: one rank's sum is its own input
  if ((e = cudaMemcpy(buf, src, n * 4, cudaMemcpyDeviceToDevice))) return cudaFail(err, errLen, "all-reduce: copy", e);
  if ((nr = ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, comm, stream)) != ncclSuccess)
    return setError(err, errLen, "all-reduce: ncclAllReduce", ncclGetErrorString(nr));
  if ((e = cudaStreamSynchronize(stream))) return cudaFail(err, errLen, "all-reduce: run", e);
  {
    const size_t m = std::min<size_t>(n, 1u << 20);  // compare the first million values and the last one
    std::vector<float> want(m), got(m);
    float wl = 0, gl = 0;
    if ((e = cudaMemcpy(want.data(), src, m * 4, cudaMemcpyDeviceToHost)) || (e = cudaMemcpy(got.data(), buf, m * 4, cudaMemcpyDeviceToHost)) ||
        (e = cudaMemcpy(&wl, src + n - 1, 4, cudaMemcpyDeviceToHost)) || (e = cudaMemcpy(&gl, buf + n - 1, 4, cudaMemcpyDeviceToHost)))
      return cudaFail(err, errLen, "all-reduce: check", e);
    double worst = std::fabs(static_cast<double>(wl) - gl);
    for (size_t i = 0; i < m; ++i) worst = std::max(worst, std::fabs(static_cast<double>(want[i]) - got[i]));
    out->maxAbsError = worst;
  }
  Events ev;
  if ((e = ev.create())) return cudaFail(err, errLen, "all-reduce: events", e);
  for (int w = 0; w < a->warmup; ++w) ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, comm, stream);
  std::vector<double> ms(a->repeats);
  for (int i = 0; i < a->repeats; ++i) {
    cudaEventRecord(ev.a, stream);
    nr = ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, comm, stream);
    cudaEventRecord(ev.b, stream);
    if ((e = cudaEventSynchronize(ev.b))) return cudaFail(err, errLen, "all-reduce: run", e);
    if (nr != ncclSuccess) return setError(err, errLen, "all-reduce: ncclAllReduce", ncclGetErrorString(nr));
    float t = 0;
    cudaEventElapsedTime(&t, ev.a, ev.b);
    ms[i] = t;
    msSamples[i] = t;
  }
  out->msMedian = median(ms);
  out->msMin = *std::min_element(ms.begin(), ms.end());
  out->algGBs = static_cast<double>(n * 4) / (out->msMedian * 1e-3) / 1e9;
  return 0;
#endif
}

// ---- the engine's GEMM (ABI 2: ClipoLtMatmulArgs) ----
//
// Row-major products mapped onto cuBLASLt's column-major D'[m' x n'] = op(A')[m' x k'] op(B')[k' x n'] by computing
// D^T: m' = N, n' = M, k' = K, A' = the second operand (the weight W, or B), B' = the first (X, or A):
//   NT: A' = W  as col-major [K x N] (ld K), op T;   B' = X as col-major [K x M] (ld K), op N
//   NN: A' = B  as col-major [N x K] (ld N), op N;   B' = A as col-major [K x M] (ld K), op N
//   TN: A' = B  as col-major [N x K] (ld N), op N;   B' = A as col-major [M x K] (ld M), op T
//   D (and C = D): col-major [N x M] (ld N); the bias has one entry per row of D', i.e. per output column N.
// Every leading dimension is a fixed dimension of the plan, so only the free dimension (M, or K for TN) changes
// between calls of one plan.

#ifdef CLIPO_HAVE_CUBLASLT
namespace {

constexpr size_t kLtWorkspaceBytes = 32u << 20;  // what cuBLAS recommends for Hopper
constexpr int64_t kLtRef[2] = {4096, 128};        // the heuristic's free dimension: CLIPO_LT_WIDE, CLIPO_LT_ROWS
// Free-dimension sizes every candidate algorithm must accept (cublasLtMatmulAlgoCheck) before a plan takes it, so
// that the algorithm chosen at the reference size serves every call of the plan.
const int64_t kLtCheckSizes[] = {1, 2, 3, 7, 16, 17, 64, 100, 128, 255, 256, 257, 1000, 4096, 4097, 16384, 65536};

uint32_t alignmentOf(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a == 0) return 256;
  const uintptr_t low = a & (~a + 1);  // the lowest set bit: the largest power of two dividing the address
  return low >= 256 ? 256u : static_cast<uint32_t>(low);
}
cudaDataType_t ltType(int t) { return t == CLIPO_LT_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

struct LtKey {
  int device, op, in, out, cls, bias, acc;
  int64_t f0, f1;
  uint32_t alA, alB, alD, alBias;
  auto tie() const { return std::tie(device, op, in, out, cls, bias, acc, f0, f1, alA, alB, alD, alBias); }
  bool operator<(const LtKey& o) const { return tie() < o.tie(); }
};

struct LtPlan {
  LtKey key{};
  bool supported = false;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  float waves = 0.f;
  int candidates = 0;
  std::atomic<int64_t> calls{0};
};

struct LtState {
  std::mutex mu;
  std::map<int, cublasLtHandle_t> handles;
  std::map<LtKey, std::unique_ptr<LtPlan>> plans;
  std::map<std::pair<int, void*>, void*> workspaces;
};
// Never destroyed: no cuBLAS or CUDA call may run from a static destructor at process exit.
LtState& ltState() {
  static LtState* s = new LtState;
  return *s;
}

// The descriptors of one problem, on the stack (cublasLt*Init), so a call allocates nothing on the host.
struct LtProblem {
  cublasLtMatmulDescOpaque_t descMem;
  cublasLtMatrixLayoutOpaque_t aMem, bMem, dMem;
  cublasLtMatmulDesc_t desc = &descMem;
  cublasLtMatrixLayout_t la = &aMem, lb = &bMem, ld = &dMem;
};

// m, n, k: the row-major problem (the free dimension already set to the size wanted).
cublasStatus_t ltDescribe(const ClipoLtMatmulArgs& a, int64_t m, int64_t n, int64_t k, LtProblem& p) {
  cublasStatus_t s;
  const cudaDataType_t ti = ltType(a.inType), to = ltType(a.outType);
  if ((s = cublasLtMatmulDescInit(p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F))) return s;
  const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
  const cublasOperation_t ta = a.op == CLIPO_LT_NT ? opT : opN, tb = a.op == CLIPO_LT_TN ? opT : opN;
  if ((s = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta))) ||
      (s = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb))))
    return s;
  if (a.bias) {
    const cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
    if ((s = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep))) ||
        (s = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &a.bias, sizeof(a.bias))))
      return s;
    const int32_t bt = static_cast<int32_t>(to);
    if ((s = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)))) return s;
  }
  if (a.op == CLIPO_LT_NT) {
    if ((s = cublasLtMatrixLayoutInit(p.la, ti, k, n, k)) || (s = cublasLtMatrixLayoutInit(p.lb, ti, k, m, k))) return s;
  } else if (a.op == CLIPO_LT_NN) {
    if ((s = cublasLtMatrixLayoutInit(p.la, ti, n, k, n)) || (s = cublasLtMatrixLayoutInit(p.lb, ti, k, m, k))) return s;
  } else {
    if ((s = cublasLtMatrixLayoutInit(p.la, ti, n, k, n)) || (s = cublasLtMatrixLayoutInit(p.lb, ti, m, k, m))) return s;
  }
  return cublasLtMatrixLayoutInit(p.ld, to, n, m, n);
}

// (m, n, k) with the free dimension replaced by `free`
void withFree(const ClipoLtMatmulArgs& a, int64_t free, int64_t& m, int64_t& n, int64_t& k) {
  m = a.m, n = a.n, k = a.k;
  if (a.op == CLIPO_LT_TN) k = free;
  else m = free;
}

// Picks the plan's algorithm: the heuristic's candidates at the class's reference size, restricted to fp32
// accumulation (and fp32 multiply inputs for fp32 data: no TF32, no emulation) and, for bf16 outputs, to split-K
// reductions kept in fp32; the first candidate that cublasLtMatmulAlgoCheck accepts at every size of
// kLtCheckSizes is taken. None: the plan is unsupported (the caller's own kernel runs, for every call of the key).
void ltChoose(cublasLtHandle_t h, const ClipoLtMatmulArgs& a, LtPlan& plan) {
  int64_t m, n, k;
  withFree(a, kLtRef[a.shapeClass], m, n, k);
  LtProblem p;
  if (ltDescribe(a, m, n, k, p)) return;
  cublasLtMatmulPreferenceOpaque_t prefMem;
  cublasLtMatmulPreference_t pref = &prefMem;
  if (cublasLtMatmulPreferenceInit(pref)) return;
  const uint64_t ws = kLtWorkspaceBytes;
  uint32_t reduction = a.outType == CLIPO_LT_BF16 ? (CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE)
                                                  : static_cast<uint32_t>(CUBLASLT_REDUCTION_SCHEME_MASK);
  uint64_t impl = ~uint64_t(0) & ~(CUBLASLT_NUMERICAL_IMPL_FLAGS_ACCUMULATOR_16F | CUBLASLT_NUMERICAL_IMPL_FLAGS_ACCUMULATOR_32I |
                                   CUBLASLT_NUMERICAL_IMPL_FLAGS_ACCUMULATOR_64F);
  if (a.inType == CLIPO_LT_F32)
    impl &= ~(CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_TF32 | CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_16BF |
              CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_16F | CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_8I |
              CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_8F_E4M3 | CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_8F_E5M2);
  const LtKey& key = plan.key;
  if (cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)) ||
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reduction, sizeof(reduction)) ||
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_IMPL_MASK, &impl, sizeof(impl)) ||
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.alB, sizeof(key.alB)) ||
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.alA, sizeof(key.alA)) ||
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.alD, sizeof(key.alD)) ||
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.alD, sizeof(key.alD)))
    return;
  constexpr int kCandidates = 16;
  cublasLtMatmulHeuristicResult_t heur[kCandidates];
  int found = 0;
  if (cublasLtMatmulAlgoGetHeuristic(h, p.desc, p.la, p.lb, p.ld, p.ld, pref, kCandidates, heur, &found) || found <= 0) return;
  plan.candidates = found;
  for (int c = 0; c < found; ++c) {
    if (heur[c].state != CUBLAS_STATUS_SUCCESS || heur[c].workspaceSize > kLtWorkspaceBytes) continue;
    bool ok = true;
    for (int64_t size : kLtCheckSizes) {
      int64_t cm, cn, ck;
      withFree(a, size, cm, cn, ck);
      LtProblem q;
      cublasLtMatmulHeuristicResult_t r{};
      if (ltDescribe(a, cm, cn, ck, q) || cublasLtMatmulAlgoCheck(h, q.desc, q.la, q.lb, q.ld, q.ld, &heur[c].algo, &r) ||
          r.workspaceSize > kLtWorkspaceBytes) {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    plan.supported = true;
    plan.algo = heur[c].algo;
    plan.workspace = heur[c].workspaceSize;
    plan.waves = heur[c].wavesCount;
    return;
  }
}

int ltFail(char* err, size_t len, const char* what, cublasStatus_t s) { return setError(err, len, what, cublasLtGetStatusString(s)); }

}  // namespace
#endif

CLIPO_EXPORT int clipo_gpulibs_lt_matmul(const ClipoLtMatmulArgs* a, char* err, size_t errLen) {
#ifndef CLIPO_HAVE_CUBLASLT
  (void)a;
  return setError(err, errLen, "lt matmul", "clipo_gpulibs was built without cuBLASLt");
#else
  if (a->op < CLIPO_LT_NT || a->op > CLIPO_LT_TN || a->inType < 0 || a->inType > 1 || a->outType < 0 || a->outType > 1 ||
      a->shapeClass < 0 || a->shapeClass > 1)
    return setError(err, errLen, "lt matmul", "unknown op, type or shape class");
  if (a->m <= 0 || a->n <= 0 || a->k <= 0) return setError(err, errLen, "lt matmul", "m, n and k must be positive");
  if (!a->a || !a->b || !a->d) return setError(err, errLen, "lt matmul", "null matrix pointer");
  if (a->bias && a->op != CLIPO_LT_NT) return setError(err, errLen, "lt matmul", "a bias only with the NT product");
  if (a->inType == CLIPO_LT_F32 && a->outType == CLIPO_LT_BF16)
    return setError(err, errLen, "lt matmul", "fp32 inputs with a bf16 output are not a combination the engine uses");
  LtState& st = ltState();
  LtKey key{a->device, a->op, a->inType, a->outType, a->shapeClass, a->bias != nullptr, a->accumulate != 0,
            a->op == CLIPO_LT_TN ? a->m : a->n, a->op == CLIPO_LT_TN ? a->n : a->k,
            alignmentOf(a->a), alignmentOf(a->b), alignmentOf(a->d), a->bias ? alignmentOf(a->bias) : 256u};
  LtPlan* plan = nullptr;
  cublasLtHandle_t h = nullptr;
  void* ws = nullptr;
  {
    std::lock_guard<std::mutex> lock(st.mu);
    cudaError_t e = cudaSetDevice(a->device);
    if (e != cudaSuccess) return cudaFail(err, errLen, "lt matmul: cudaSetDevice", e);
    auto hi = st.handles.find(a->device);
    if (hi == st.handles.end()) {
      cublasStatus_t s = cublasLtCreate(&h);
      if (s) return ltFail(err, errLen, "lt matmul: cublasLtCreate", s);
      st.handles.emplace(a->device, h);
    } else {
      h = hi->second;
    }
    auto pi = st.plans.find(key);
    if (pi == st.plans.end()) {
      auto p = std::make_unique<LtPlan>();
      p->key = key;
      // the bias must be 16-byte aligned for the epilogue's vector loads: otherwise the caller's kernel runs
      if (!a->bias || key.alBias >= 16) ltChoose(h, *a, *p);
      pi = st.plans.emplace(key, std::move(p)).first;
    }
    plan = pi->second.get();
    if (!plan->supported) return CLIPO_LT_UNSUPPORTED;
    auto wi = st.workspaces.find({a->device, a->stream});
    if (wi == st.workspaces.end()) {
      if ((e = cudaMalloc(&ws, kLtWorkspaceBytes))) {
        cudaGetLastError();
        return setError(err, errLen, "lt matmul: out of GPU memory for the cuBLASLt workspace (32 MiB)", cudaGetErrorString(e));
      }
      st.workspaces.emplace(std::make_pair(a->device, a->stream), ws);
    } else {
      ws = wi->second;
    }
  }
  LtProblem p;
  cublasStatus_t s = ltDescribe(*a, a->m, a->n, a->k, p);
  if (s) return ltFail(err, errLen, "lt matmul: descriptors", s);
  const float alpha = 1.0f, beta = a->accumulate ? 1.0f : 0.0f;
  s = cublasLtMatmul(h, p.desc, &alpha, a->b, p.la, a->a, p.lb, &beta, a->d, p.ld, a->d, p.ld, &plan->algo, ws,
                     kLtWorkspaceBytes, static_cast<cudaStream_t>(a->stream));
  if (s) return ltFail(err, errLen, "lt matmul: cublasLtMatmul", s);
  plan->calls.fetch_add(1, std::memory_order_relaxed);
  return 0;
#endif
}

CLIPO_EXPORT void clipo_gpulibs_lt_release(int device, void* stream) {
#ifdef CLIPO_HAVE_CUBLASLT
  LtState& st = ltState();
  std::lock_guard<std::mutex> lock(st.mu);
  auto wi = st.workspaces.find({device, stream});
  if (wi == st.workspaces.end()) return;
  if (cudaSetDevice(device) == cudaSuccess) {
    cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
    cudaFree(wi->second);
  }
  cudaGetLastError();
  st.workspaces.erase(wi);
#else
  (void)device;
  (void)stream;
#endif
}

CLIPO_EXPORT int clipo_gpulibs_lt_plans(ClipoLtPlanInfo* out, int max) {
#ifdef CLIPO_HAVE_CUBLASLT
  LtState& st = ltState();
  std::lock_guard<std::mutex> lock(st.mu);
  int i = 0;
  for (const auto& [key, plan] : st.plans) {
    if (i < max && out) {
      ClipoLtPlanInfo& o = out[i];
      std::memset(&o, 0, sizeof o);
      o.op = key.op, o.inType = key.in, o.outType = key.out, o.shapeClass = key.cls, o.bias = key.bias;
      o.accumulate = key.acc, o.device = key.device, o.fixed0 = key.f0, o.fixed1 = key.f1;
      o.supported = plan->supported, o.candidates = plan->candidates;
      o.wavesCount = plan->waves, o.workspaceBytes = static_cast<double>(plan->workspace);
      o.calls = plan->calls.load(std::memory_order_relaxed);
      if (plan->supported) {
        int32_t id = 0, splitK = 1;
        uint32_t tile = 0, stages = 0, red = 0;
        size_t w = 0;
        cublasLtMatmulAlgoConfigGetAttribute(&plan->algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &w);
        cublasLtMatmulAlgoConfigGetAttribute(&plan->algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &w);
        cublasLtMatmulAlgoConfigGetAttribute(&plan->algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &w);
        cublasLtMatmulAlgoConfigGetAttribute(&plan->algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitK, sizeof splitK, &w);
        cublasLtMatmulAlgoConfigGetAttribute(&plan->algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red, sizeof red, &w);
        o.algoId = id, o.tile = static_cast<int>(tile), o.stages = static_cast<int>(stages), o.splitK = splitK;
        o.reductionScheme = static_cast<int>(red);
      }
    }
    ++i;
  }
  return i;
#else
  (void)out;
  (void)max;
  return 0;
#endif
}
