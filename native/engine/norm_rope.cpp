// CPU kernels of norm_rope.h: fp32, OpenMP over rows.
#include "engine/norm_rope.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <climits>
#include <cstring>
#include <string>

#include "engine/formulas.h"
#include "engine/parallel.h"

namespace clipo::engine {

void embedRows(const float* table, int64_t H, const int32_t* tokens, int64_t N, float* x, int threads) {
#pragma omp parallel for num_threads(threadsFor(N * H, threads)) schedule(static)
  for (int64_t n = 0; n < N; ++n) std::memcpy(x + n * H, table + tokens[n] * H, H * sizeof(float));
}

void rmsnormRows(const float* x, const float* weight, float* y, float* rstd, int64_t N, int64_t H, double eps,
                 int threads) {
#pragma omp parallel for num_threads(threadsFor(N * H * 3, threads)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + n * H;
    double ss = 0.0;
    for (int64_t j = 0; j < H; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    const float r = rmsRstd(ss, H, eps);
    rstd[n] = r;
    float* yr = y + n * H;
    for (int64_t j = 0; j < H; ++j) yr[j] = xr[j] * r * weight[j];
  }
}

void rmsnormBackward(const float* dy, const float* x, const float* rstd, const float* w, float* dx, float* gw,
                     int64_t N, int64_t H, int threads) {
#pragma omp parallel num_threads(threadsFor(N * H * 4, threads))
  {
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* d = dy + n * H;
      const float* xr = x + n * H;
      const float r = rstd[n];
      double dot = 0.0;
      for (int64_t j = 0; j < H; ++j) dot += static_cast<double>(w[j] * d[j]) * xr[j];
      const float k = static_cast<float>(dot * r * r * r / H);
      float* o = dx + n * H;
      for (int64_t j = 0; j < H; ++j) o[j] += r * w[j] * d[j] - xr[j] * k;
    }
    // norm-weight gradient: threads split the columns, never the rows (results independent of the thread count)
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t c0 = H * t / nt, c1 = H * (t + 1) / nt;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = c0; c < c1; ++c) gw[c] += dy[n * H + c] * x[n * H + c] * rstd[n];
  }
}

void RopeTable::ensure(int64_t positions) {
  if (positions <= len) return;
  const int64_t newLen = std::max<int64_t>({positions, 2 * len, 256});
  const int64_t h = half();
  cos.resize(newLen * h);
  sin.resize(newLen * h);
  for (int64_t p = len; p < newLen; ++p)
    for (int64_t i = 0; i < h; ++i) {
      const double a = static_cast<double>(p) * invFreq[i];
      cos[p * h + i] = static_cast<float>(std::cos(a));
      sin[p * h + i] = static_cast<float>(std::sin(a));
    }
  len = newLen;
}

void applyRope(const RopeTable& t, float* x, int64_t rowStride, int64_t N, int64_t nHeads, int64_t hd,
               const int32_t* pos, bool inverse, int threads) {
  const int64_t half = hd / 2;
  const float sign = inverse ? -1.f : 1.f;
#pragma omp parallel for num_threads(threadsFor(N * nHeads * hd * 2, threads)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* c = t.cos.data() + static_cast<int64_t>(pos[n]) * half;
    const float* s = t.sin.data() + static_cast<int64_t>(pos[n]) * half;
    for (int64_t h = 0; h < nHeads; ++h) {
      float* v = x + n * rowStride + h * hd;
      for (int64_t i = 0; i < half; ++i) ropeRotate(v[i], v[i + half], c[i], sign * s[i], &v[i], &v[i + half]);
    }
  }
}

void embedRowsBackward(const float* dx, int64_t H, const int32_t* tokens, int64_t N, float* gTable, int threads) {
  // threads split the hidden dimension, rows stay in order (results independent of the thread count)
#pragma omp parallel num_threads(threadsFor(N * H, threads))
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t c0 = H * t / nt, c1 = H * (t + 1) / nt;
    for (int64_t n = 0; n < N; ++n) {
      float* dst = gTable + static_cast<int64_t>(tokens[n]) * H;
      for (int64_t c = c0; c < c1; ++c) dst[c] += dx[n * H + c];
    }
  }
}

std::string embedGradPlan(const int32_t* tokens, int64_t N, int64_t vocab, EmbedGradPlan* plan) {
  plan->order.clear();
  plan->segStart.clear();
  plan->segToken.clear();
  for (int64_t n = 0; n < N; ++n)
    if (tokens[n] < 0 || tokens[n] >= vocab)
      return "tokens[" + std::to_string(n) + "] = " + std::to_string(tokens[n]) + " is outside [0, " +
             std::to_string(vocab) + ")";
  if (N > INT32_MAX) return "more than 2^31 positions";
  plan->order.resize(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) plan->order[n] = static_cast<int32_t>(n);
  std::stable_sort(plan->order.begin(), plan->order.end(),
                   [tokens](int32_t a, int32_t b) { return tokens[a] < tokens[b]; });
  for (int64_t i = 0; i < N; ++i)
    if (i == 0 || tokens[plan->order[i]] != tokens[plan->order[i - 1]]) {
      plan->segStart.push_back(static_cast<int32_t>(i));
      plan->segToken.push_back(tokens[plan->order[i]]);
    }
  plan->segStart.push_back(static_cast<int32_t>(N));
  return "";
}

}  // namespace clipo::engine
