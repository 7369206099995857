// clipo_gpulibs.so: the code that links cuBLASLt and NCCL, kept out of the addon (see ../gpulibs_abi.h). Built by
// CMake only when a CUDA compiler and at least one of the two libraries were found; CLIPO_HAVE_CUBLASLT and
// CLIPO_HAVE_NCCL say which. For now it holds the probes the GPU engine starts from: a bf16 GEMM at the engine's
// projection shapes and a one-rank all-reduce, each checked before it is timed.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
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
