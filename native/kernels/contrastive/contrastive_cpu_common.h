// Small dense helpers shared by the fused and the unfused CPU contrastive paths: two GEMM shapes (the projection
// is a few hundred rows; no BLAS needed), normalize forward/backward, the head's backward.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "contrastive_loss.h"

namespace clipo::contrastive::cpu {

// C[M x N] = A[M x K] . B[N x K]^T  (dot-product form: both operands row-major along K).
// Four rows of A share each row of B, so B is read M/4 times from cache.
inline void gemmABt(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
#pragma omp parallel for schedule(static) if (M * N * K > (1 << 16))
  for (int64_t m0 = 0; m0 < M; m0 += 4) {
    const int64_t mr = std::min<int64_t>(4, M - m0);
    const float* a0 = A + m0 * K;
    const float* a1 = A + (m0 + (mr > 1 ? 1 : 0)) * K;
    const float* a2 = A + (m0 + (mr > 2 ? 2 : 0)) * K;
    const float* a3 = A + (m0 + (mr > 3 ? 3 : 0)) * K;
    for (int64_t n = 0; n < N; ++n) {
      const float* b = B + n * K;
      float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
      for (int64_t k = 0; k < K; ++k) {
        const float bk = b[k];
        s0 += a0[k] * bk;
        s1 += a1[k] * bk;
        s2 += a2[k] * bk;
        s3 += a3[k] * bk;
      }
      C[m0 * N + n] = s0;
      if (mr > 1) C[(m0 + 1) * N + n] = s1;
      if (mr > 2) C[(m0 + 2) * N + n] = s2;
      if (mr > 3) C[(m0 + 3) * N + n] = s3;
    }
  }
}

// C[M x N] = sum_k A(m, k) B[k, :]  with A(m, k) = A[m * am + k * ak] (so A or A^T), B row-major [K x N].
// axpy form: eight output rows by a 512-wide column chunk stay in L1 while k runs.
inline void gemmAB(int64_t M, int64_t N, int64_t K, const float* A, int64_t am, int64_t ak, const float* B, float* C) {
  constexpr int64_t MR = 8, NC = 512;
  const int64_t mBlocks = (M + MR - 1) / MR, nBlocks = (N + NC - 1) / NC;
#pragma omp parallel for schedule(static) collapse(2) if (M * N * K > (1 << 16))
  for (int64_t mb = 0; mb < mBlocks; ++mb)
    for (int64_t nb = 0; nb < nBlocks; ++nb) {
      const int64_t m0 = mb * MR, mr = std::min(MR, M - m0);
      const int64_t n0 = nb * NC, nc = std::min(NC, N - n0);
      alignas(64) float acc[MR][NC];
      for (int64_t r = 0; r < mr; ++r) std::fill(acc[r], acc[r] + nc, 0.f);
      for (int64_t k = 0; k < K; ++k) {
        const float* b = B + k * N + n0;
        for (int64_t r = 0; r < mr; ++r) {
          const float a = A[(m0 + r) * am + k * ak];
          if (a == 0.f) continue;  // masked anchors and relu zeros: common, and skipping changes no value
          float* c = acc[r];
#pragma omp simd
          for (int64_t n = 0; n < nc; ++n) c[n] += a * b[n];
        }
      }
      for (int64_t r = 0; r < mr; ++r) std::memcpy(C + (m0 + r) * N + n0, acc[r], nc * sizeof(float));
    }
}

// z = u / max(|u|, floor); keeps |u| for the backward.
inline void normalizeRows(int64_t B, int64_t D, const float* U, float* Z, float* norms) {
  for (int64_t i = 0; i < B; ++i) {
    const float* u = U + i * D;
    double ss = 0.0;
    for (int64_t d = 0; d < D; ++d) ss += static_cast<double>(u[d]) * u[d];
    const float n = static_cast<float>(std::sqrt(ss));
    norms[i] = n;
    const float inv = 1.f / std::max(n, kNormFloor);
    for (int64_t d = 0; d < D; ++d) Z[i * D + d] = u[d] * inv;
  }
}

// d u = (dz - z (z.dz)) / |u|  when |u| > floor, else dz / floor (the clamp is constant there).
inline void normalizeBackward(int64_t B, int64_t D, const float* Z, const float* norms, const float* dZ, float* dU) {
  for (int64_t i = 0; i < B; ++i) {
    const float* z = Z + i * D;
    const float* g = dZ + i * D;
    float* du = dU + i * D;
    if (norms[i] > kNormFloor) {
      double zg = 0.0;
      for (int64_t d = 0; d < D; ++d) zg += static_cast<double>(z[d]) * g[d];
      const float inv = 1.f / norms[i], c = static_cast<float>(zg);
      for (int64_t d = 0; d < D; ++d) du[d] = (g[d] - z[d] * c) * inv;
    } else {
      for (int64_t d = 0; d < D; ++d) du[d] = g[d] / kNormFloor;
    }
  }
}

// Forward of the head from pooled Hm [B x H]: U [B x D]; for the mlp also A1 = W1 h [B x H] and R = relu(A1).
inline void headForward(const Params& p, const float* Hm, const float* W, const float* W1, float* U,
                        std::vector<float>& A1, std::vector<float>& R) {
  const int64_t B = p.batch, H = p.hidden, D = p.out;
  if (p.head == Head::Linear) {
    gemmABt(B, D, H, Hm, W, U);
    return;
  }
  A1.resize(B * H);
  R.resize(B * H);
  gemmABt(B, H, H, Hm, W1, A1.data());
  for (int64_t k = 0; k < B * H; ++k) R[k] = A1[k] > 0.f ? A1[k] : 0.f;
  gemmABt(B, D, H, R.data(), W, U);
}

// Backward of the head: gradW = dU^T X (X = Hm or R), and for the mlp gradW1 = (dU W2 . relu'(A1))^T Hm.
inline void headBackward(const Params& p, const float* Hm, const float* W, const std::vector<float>& A1,
                         const std::vector<float>& R, const float* dU, float* gradW, float* gradW1) {
  const int64_t B = p.batch, H = p.hidden, D = p.out;
  if (p.head == Head::Linear) {
    gemmAB(D, H, B, dU, 1, D, Hm, gradW);  // gradW[d][h] = sum_i dU[i][d] Hm[i][h]
    return;
  }
  gemmAB(D, H, B, dU, 1, D, R.data(), gradW);
  std::vector<float> dA(B * H);
  gemmAB(B, H, D, dU, D, 1, W, dA.data());  // dR[i][h] = sum_d dU[i][d] W2[d][h]
  for (int64_t k = 0; k < B * H; ++k)
    if (!(A1[k] > 0.f)) dA[k] = 0.f;
  gemmAB(H, H, B, dA.data(), 1, H, Hm, gradW1);
}

}  // namespace clipo::contrastive::cpu
