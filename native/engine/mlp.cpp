// CPU kernels of mlp.h: fp32, OpenMP over rows; column reductions split columns between threads, never rows.
#include "engine/mlp.h"

#include <omp.h>

#include "engine/formulas.h"
#include "engine/parallel.h"

namespace clipo::engine {

void addBias(float* Y, const float* b, int64_t N, int64_t cols, int threads) {
#pragma omp parallel for num_threads(threadsFor(N * cols, threads)) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < cols; ++c) Y[n * cols + c] += b[c];
}

void addInPlace(float* y, const float* x, int64_t n, int threads) {
#pragma omp parallel for num_threads(threadsFor(n, threads)) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void swiglu(const float* gu, float* act, int64_t N, int64_t I, int threads) {
#pragma omp parallel for num_threads(threadsFor(N * I * 8, threads)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* gate = gu + n * 2 * I;
    const float* up = gate + I;
    float* a = act + n * I;
    for (int64_t i = 0; i < I; ++i) a[i] = swigluValue(gate[i], up[i]);
  }
}

void swigluBackward(const float* gu, const float* dact, float* dgu, int64_t N, int64_t I, int threads) {
#pragma omp parallel for num_threads(threadsFor(N * I * 8, threads)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* gate = gu + n * 2 * I;
    const float* up = gate + I;
    const float* da = dact + n * I;
    float* dg = dgu + n * 2 * I;
    float* du = dg + I;
    for (int64_t i = 0; i < I; ++i) swigluGrad(gate[i], up[i], da[i], &dg[i], &du[i]);
  }
}

void colSumAccumulate(const float* dY, int64_t N, int64_t cols, float* gb, int threads) {
#pragma omp parallel num_threads(threadsFor(N * cols, threads))
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t c0 = cols * t / nt, c1 = cols * (t + 1) / nt;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = c0; c < c1; ++c) gb[c] += dY[n * cols + c];
  }
}

}  // namespace clipo::engine
