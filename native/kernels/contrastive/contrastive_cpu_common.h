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

// Sets the OpenMP thread count for one kernel call and restores the caller's setting afterwards.
class ThreadScope {
 public:
  explicit ThreadScope(int threads) : prev_(omp_get_max_threads()), set_(threads > 0) {
    if (set_) omp_set_num_threads(threads);
  }
  ~ThreadScope() {
    if (set_) omp_set_num_threads(prev_);
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int prev_;
  bool set_;
};

// C[M x N] = sum_k A(m, k) B[k, :]  with A(m, k) = A[m * am + k * ak] (so A or A^T), B row-major [K x N].
// Register-blocked: a 6 x 32 tile of C lives in 12 vector registers while k runs; each step loads two vectors of a
// B row and broadcasts six scalars of A (12 FMAs for 2 loads + 6 broadcasts). Edge tiles take the plain loop.
typedef float v16f __attribute__((vector_size(64), aligned(4)));

inline void gemmAB(int64_t M, int64_t N, int64_t K, const float* A, int64_t am, int64_t ak, const float* B, float* C) {
  constexpr int64_t MR = 6, NR = 32;
  const int64_t mBlocks = (M + MR - 1) / MR, nBlocks = (N + NR - 1) / NR;
#pragma omp parallel for schedule(dynamic, 4) collapse(2) if (M * N * K > (1 << 18))
  for (int64_t nb = 0; nb < nBlocks; ++nb)
    for (int64_t mb = 0; mb < mBlocks; ++mb) {
      const int64_t m0 = mb * MR, n0 = nb * NR;
      if (m0 + MR <= M && n0 + NR <= N) {
        v16f c[MR][2] = {};
        for (int64_t k = 0; k < K; ++k) {
          const v16f b0 = *reinterpret_cast<const v16f*>(B + k * N + n0);
          const v16f b1 = *reinterpret_cast<const v16f*>(B + k * N + n0 + 16);
          for (int64_t r = 0; r < MR; ++r) {
            const float a = A[(m0 + r) * am + k * ak];
            c[r][0] += a * b0;
            c[r][1] += a * b1;
          }
        }
        for (int64_t r = 0; r < MR; ++r) {
          *reinterpret_cast<v16f*>(C + (m0 + r) * N + n0) = c[r][0];
          *reinterpret_cast<v16f*>(C + (m0 + r) * N + n0 + 16) = c[r][1];
        }
      } else {
        const int64_t mr = std::min(MR, M - m0), nr = std::min(NR, N - n0);
        float c[MR][NR] = {};
        for (int64_t k = 0; k < K; ++k)
          for (int64_t r = 0; r < mr; ++r) {
            const float a = A[(m0 + r) * am + k * ak];
            for (int64_t n = 0; n < nr; ++n) c[r][n] += a * B[k * N + n0 + n];
          }
        for (int64_t r = 0; r < mr; ++r) std::memcpy(C + (m0 + r) * N + n0, c[r], nr * sizeof(float));
      }
    }
}

// C[M x N] = A[M x K] . B[N x K]^T  (both operands row-major along K, like x @ W.T with nn.Linear's W):
// B is transposed once (N*K copies, small next to the 2*M*N*K FLOPs) and the product runs as gemmAB.
inline void gemmABt(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  std::vector<float> Bt(static_cast<size_t>(K * N));
  constexpr int64_t T = 32;
#pragma omp parallel for schedule(static) if (N * K > (1 << 18))
  for (int64_t k0 = 0; k0 < K; k0 += T)
    for (int64_t n0 = 0; n0 < N; n0 += T)
      for (int64_t n = n0; n < std::min(N, n0 + T); ++n)
        for (int64_t k = k0; k < std::min(K, k0 + T); ++k) Bt[k * N + n] = B[n * K + k];
  gemmAB(M, N, K, A, K, 1, Bt.data(), C);
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
