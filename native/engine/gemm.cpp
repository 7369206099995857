// SGEMM in the BLIS style: C is cut into NC-wide column blocks; K into KC-deep slices; for each slice a KC x NC block
// of B is packed into NR-wide panels and an MC x KC block of A into MR-high panels; an MR x NR micro-kernel keeps
// its tile of C in registers and runs KC rank-1 updates (one broadcast of A, NR/VL loads of B, MR*NR/VL FMAs each).
// Threads split the columns of C (whole NR panels) and pack privately, with no barrier inside a product.
#include "engine/gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

namespace clipo::engine {
namespace {

#if defined(__AVX512F__)
using vec = __m512;
constexpr int VL = 16;
constexpr int MR = 12;
inline vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, vec v) { _mm512_storeu_ps(p, v); }
inline vec vbroadcast(const float* p) { return _mm512_set1_ps(*p); }
inline vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
inline vec vzero() { return _mm512_setzero_ps(); }
inline vec vadd(vec a, vec b) { return _mm512_add_ps(a, b); }
inline float vsum(vec v) { return _mm512_reduce_add_ps(v); }
const char* kKernelName = "avx512 12x32";
#elif defined(__AVX2__) && defined(__FMA__)
using vec = __m256;
constexpr int VL = 8;
constexpr int MR = 6;
inline vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, vec v) { _mm256_storeu_ps(p, v); }
inline vec vbroadcast(const float* p) { return _mm256_broadcast_ss(p); }
inline vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
inline vec vzero() { return _mm256_setzero_ps(); }
inline vec vadd(vec a, vec b) { return _mm256_add_ps(a, b); }
inline float vsum(vec v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
const char* kKernelName = "avx2 6x16";
#else
using vec = float;
constexpr int VL = 1;
constexpr int MR = 4;
inline vec vload(const float* p) { return *p; }
inline void vstore(float* p, vec v) { *p = v; }
inline vec vbroadcast(const float* p) { return *p; }
inline vec vfma(vec a, vec b, vec c) { return a * b + c; }
inline vec vzero() { return 0.f; }
inline vec vadd(vec a, vec b) { return a + b; }
inline float vsum(vec v) { return v; }
const char* kKernelName = "scalar 4x2";
#endif

constexpr int NV = 2;            // vectors per row of the tile
constexpr int NR = NV * VL;      // tile width
constexpr int64_t KC = 256;      // depth of a packed slice: an NR panel of B (KC*NR*4 bytes) stays in L1
constexpr int64_t MC = MR * 12;  // height of the packed A block (L2)
constexpr int64_t NC = 2048;     // width of the packed B block (L3)

// C tile (MR x NR) (=|+=) Ap (kc x MR, packed) . Bp (kc x NR, packed)
inline void microKernel(int64_t kc, const float* __restrict Ap, const float* __restrict Bp, float* C, int64_t ldc,
                        bool acc) {
  vec c[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) c[r][v] = vzero();
  for (int64_t p = 0; p < kc; ++p) {
    vec b[NV];
    for (int v = 0; v < NV; ++v) b[v] = vload(Bp + v * VL);
    for (int r = 0; r < MR; ++r) {
      vec a = vbroadcast(Ap + r);
      for (int v = 0; v < NV; ++v) c[r][v] = vfma(a, b[v], c[r][v]);
    }
    Ap += MR;
    Bp += NR;
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      float* out = C + r * ldc + v * VL;
      vstore(out, acc ? vadd(vload(out), c[r][v]) : c[r][v]);
    }
}

// Pack rows [i0, i0+mc) x depth [p0, p0+kc) of A into MR-high panels, zero-padded: Ap[panel][p][r].
void packA(const float* A, int64_t rsa, int64_t csa, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* Ap,
           int64_t panel) {
  float* dst = Ap + panel * MR * kc;
  int64_t rows = std::min<int64_t>(MR, mc - panel * MR);
  const int64_t ib = i0 + panel * MR;
  if (csa == 1) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = A + (ib + r) * rsa + p0;
      for (int64_t p = 0; p < kc; ++p) dst[p * MR + r] = src[p];
    }
  } else {
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = A + (p0 + p) * csa + ib * rsa;
      for (int64_t r = 0; r < rows; ++r) dst[p * MR + r] = src[r * rsa];
    }
  }
  for (int64_t r = rows; r < MR; ++r)
    for (int64_t p = 0; p < kc; ++p) dst[p * MR + r] = 0.f;
}

// Pack columns [j0, j0+nc) x depth [p0, p0+kc) of B into NR-wide panels, zero-padded: Bp[panel][p][c].
void packB(const float* B, int64_t rsb, int64_t csb, int64_t j0, int64_t nc, int64_t p0, int64_t kc, float* Bp,
           int64_t panel) {
  float* dst = Bp + panel * NR * kc;
  int64_t cols = std::min<int64_t>(NR, nc - panel * NR);
  const int64_t jb = j0 + panel * NR;
  if (csb == 1) {
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = B + (p0 + p) * rsb + jb;
      float* d = dst + p * NR;
      for (int64_t c = 0; c < cols; ++c) d[c] = src[c];
      for (int64_t c = cols; c < NR; ++c) d[c] = 0.f;
    }
  } else {
    // B(p, j) = B[p*rsb + j*csb] with rsb == 1 typically (a transposed weight): read each column contiguously.
    for (int64_t c = 0; c < cols; ++c) {
      const float* src = B + (jb + c) * csb + p0 * rsb;
      for (int64_t p = 0; p < kc; ++p) dst[p * NR + c] = src[p * rsb];
    }
    for (int64_t c = cols; c < NR; ++c)
      for (int64_t p = 0; p < kc; ++p) dst[p * NR + c] = 0.f;
  }
}

struct AlignedBuffer {
  float* ptr = nullptr;
  size_t size = 0;
  float* get(size_t n) {
    if (n > size) {
      std::free(ptr);
      ptr = static_cast<float*>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64));
      size = n;
    }
    return ptr;
  }
  ~AlignedBuffer() { std::free(ptr); }
};

}  // namespace

const char* gemmKernelName() { return kKernelName; }

void sgemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t rsa, int64_t csa, const float* B, int64_t rsb,
           int64_t csb, float* C, int64_t ldc, bool accumulate, int threads) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::memset(C + i * ldc, 0, N * sizeof(float));
    return;
  }
  if (threads < 1) threads = 1;
  // Small products are not worth waking a second thread.
  const int64_t nPanelsAll = (N + NR - 1) / NR;
  if (static_cast<double>(M) * N * K < 4.0e6 || nPanelsAll < 2) threads = 1;
  threads = static_cast<int>(std::min<int64_t>(threads, nPanelsAll));

  // Each thread owns a contiguous range of NR-wide column panels and packs its own A and B blocks: no barrier
  // inside the product, so a descheduled thread never stalls the other (the machine may be shared). Packing A
  // once per thread costs M*K per NC block, small next to the 2*M*N*K/threads of arithmetic.
#pragma omp parallel num_threads(threads)
  {
    static thread_local AlignedBuffer bufA, bufB;
    float* Ap = bufA.get(MC * KC);
    float* Bp = bufB.get(KC * ((NC + NR - 1) / NR) * NR);
    alignas(64) float edge[MR * NR];
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t jBegin = nPanelsAll * t / nt * NR, jEnd = std::min(N, nPanelsAll * (t + 1) / nt * NR);
    for (int64_t jc = jBegin; jc < jEnd; jc += NC) {
      const int64_t nc = std::min(NC, jEnd - jc);
      const int64_t nPanels = (nc + NR - 1) / NR;
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = std::min(KC, K - pc);
        const bool acc = accumulate || pc > 0;
        for (int64_t jp = 0; jp < nPanels; ++jp) packB(B, rsb, csb, jc, nc, pc, kc, Bp, jp);
        for (int64_t ic = 0; ic < M; ic += MC) {
          const int64_t mc = std::min(MC, M - ic);
          const int64_t mPanels = (mc + MR - 1) / MR;
          for (int64_t ip = 0; ip < mPanels; ++ip) packA(A, rsa, csa, ic, mc, pc, kc, Ap, ip);
          for (int64_t jp = 0; jp < nPanels; ++jp) {
            const int64_t j = jc + jp * NR;
            const int64_t cols = std::min<int64_t>(NR, N - j);
            for (int64_t ip = 0; ip < mPanels; ++ip) {
              const int64_t i = ic + ip * MR;
              const int64_t rows = std::min<int64_t>(MR, M - i);
              float* Ct = C + i * ldc + j;
              if (rows == MR && cols == NR) {
                microKernel(kc, Ap + ip * MR * kc, Bp + jp * NR * kc, Ct, ldc, acc);
              } else {
                microKernel(kc, Ap + ip * MR * kc, Bp + jp * NR * kc, edge, NR, false);
                for (int64_t r = 0; r < rows; ++r)
                  for (int64_t c = 0; c < cols; ++c)
                    Ct[r * ldc + c] = acc ? Ct[r * ldc + c] + edge[r * NR + c] : edge[r * NR + c];
              }
            }
          }
        }
      }
    }
  }
}

// MB x NB dot products over K, one vector accumulator per dot (lane j sums k = j mod VL), then a fixed horizontal
// sum and a scalar tail: each dot's rounding depends only on K, not on MB, NB or the thread count.
template <int MB, int NB>
inline void dotTile(int64_t K, const float* X, int64_t ldx, const float* W, int64_t ldw, float* Y, int64_t ldy) {
  vec acc[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = vzero();
  int64_t k = 0;
  for (; k + VL <= K; k += VL) {
    vec w[NB];
    for (int j = 0; j < NB; ++j) w[j] = vload(W + j * ldw + k);
    for (int i = 0; i < MB; ++i) {
      const vec x = vload(X + i * ldx + k);
      for (int j = 0; j < NB; ++j) acc[i][j] = vfma(x, w[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) {
      float s = vsum(acc[i][j]);
      for (int64_t t = k; t < K; ++t) s += X[i * ldx + t] * W[j * ldw + t];
      Y[i * ldy + j] = s;
    }
}

template <int NB>
inline void dotRows(int64_t M, int64_t K, const float* X, const float* W, int64_t ldw, float* Y, int64_t ldy) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) dotTile<4, NB>(K, X + m * K, K, W, ldw, Y + m * ldy, ldy);
  for (; m < M; ++m) dotTile<1, NB>(K, X + m * K, K, W, ldw, Y + m * ldy, ldy);
}

void matmulNTRows(int64_t M, int64_t N, int64_t K, const float* X, const float* W, float* Y, int threads) {
  // Blocks of 4 weight rows, each read from memory once and reused from L1 by all X rows.
  const int64_t nBlocks = (N + 3) / 4;
  if (static_cast<double>(M) * N * K < 2.0e6) threads = 1;
#pragma omp parallel for num_threads(std::max(1, threads)) schedule(static)
  for (int64_t nb = 0; nb < nBlocks; ++nb) {
    const int64_t n0 = nb * 4;
    if (n0 + 4 <= N) {
      dotRows<4>(M, K, X, W + n0 * K, K, Y + n0, N);
    } else {
      for (int64_t n = n0; n < N; ++n) dotRows<1>(M, K, X, W + n * K, K, Y + n, N);
    }
  }
}

FmaPeak measureFmaPeak(int threads, double seconds) {
  if (threads < 1) threads = 1;
  const int64_t iters = 1 << 22;
  FmaPeak best;
  const auto start = std::chrono::steady_clock::now();
  volatile float sink = 0.f;
  for (;;) {
    double cpuSeconds = 0.0;
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : cpuSeconds)
    {
      timespec c0, c1;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
      // 12 independent accumulators hide the FMA latency (4 cycles x 2-3 pipes); values stay bounded (x*1 + 0).
      vec a[12];
      for (int i = 0; i < 12; ++i) a[i] = vzero();
      float onef = 1.0f - 1e-7f * static_cast<float>(omp_get_thread_num()), smallf = 1e-7f;
      vec one = vbroadcast(&onef), small = vbroadcast(&smallf);
      for (int64_t it = 0; it < iters; ++it)
        for (int i = 0; i < 12; ++i) a[i] = vfma(a[i], one, small);
      float s = 0.f;
      for (int i = 0; i < 12; ++i) s += vsum(a[i]);
      sink = sink + s;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
      cpuSeconds += (c1.tv_sec - c0.tv_sec) + 1e-9 * (c1.tv_nsec - c0.tv_nsec);
    }
    auto t1 = std::chrono::steady_clock::now();
    double dt = std::chrono::duration<double>(t1 - t0).count();
    double flops = 2.0 * VL * 12.0 * static_cast<double>(iters) * threads;
    best.gflops = std::max(best.gflops, flops / dt / 1e9);
    best.gflopsPerCpuSecond = std::max(best.gflopsPerCpuSecond, flops / cpuSeconds / 1e9);
    if (std::chrono::duration<double>(t1 - start).count() > seconds) break;
  }
  return best;
}

}  // namespace clipo::engine
