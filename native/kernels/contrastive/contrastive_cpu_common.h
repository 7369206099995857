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
// Register-blocked: a 6 x (2 vectors) tile of C lives in 12 vector registers while k runs; each step loads two
// vectors of a B row and broadcasts six scalars of A (12 FMAs for 2 loads + 6 broadcasts). The vector is the
// machine's widest: 16 floats with AVX-512 (32 registers), 8 with AVX2 (16 registers: a 16-float vector would be
// split in two and the 24 halves of the tile would spill to the stack, which made this GEMM ~20x slower there).
#if defined(__AVX512F__)
typedef float vtile __attribute__((vector_size(64), aligned(4)));
constexpr int64_t kTileLanes = 16;
#else
typedef float vtile __attribute__((vector_size(32), aligned(4)));
constexpr int64_t kTileLanes = 8;
#endif

// General form: B(k, n) = B[k * bk + n * bn] (row-major [K x N]: bk = N, bn = 1; a row-major [N x K] used
// transposed: bk = 1, bn = K). The packing below absorbs the layout, so x @ W.T needs no separate transpose.
inline void gemmStrided(int64_t M, int64_t N, int64_t K, const float* A, int64_t am, int64_t ak, const float* B,
                        int64_t bk, int64_t bn, float* C) {
  constexpr int64_t MR = 6, NR = 2 * kTileLanes;
  const int64_t mBlocks = (M + MR - 1) / MR, nBlocks = (N + NR - 1) / NR;
  const bool parallel = M * N * K > (1 << 18);
  // B packed into column panels of NR, zero-padded: Bp[nb][k][0..NR). The tile loop then reads one contiguous
  // 64-byte line per k instead of a line N floats away from the last (a new page every few k), and edge tiles run
  // the same vector loop as full ones (padding columns compute zeros; only the real ones are stored).
  std::vector<float> Bp(static_cast<size_t>(nBlocks * K * NR));
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t nb = 0; nb < nBlocks; ++nb) {
    const int64_t n0 = nb * NR, nr = std::min(NR, N - n0);
    float* dst = Bp.data() + nb * K * NR;
    if (bn == 1) {
      for (int64_t k = 0; k < K; ++k) {
        std::memcpy(dst + k * NR, B + k * bk + n0, nr * sizeof(float));
        for (int64_t j = nr; j < NR; ++j) dst[k * NR + j] = 0.f;
      }
    } else {
      for (int64_t j = 0; j < NR; ++j) {
        if (j >= nr) {
          for (int64_t k = 0; k < K; ++k) dst[k * NR + j] = 0.f;
          continue;
        }
        const float* src = B + (n0 + j) * bn;
        for (int64_t k = 0; k < K; ++k) dst[k * NR + j] = src[k * bk];
      }
    }
  }
#pragma omp parallel for schedule(dynamic, 4) collapse(2) if (parallel)
  for (int64_t nb = 0; nb < nBlocks; ++nb)
    for (int64_t mb = 0; mb < mBlocks; ++mb) {
      const int64_t m0 = mb * MR, n0 = nb * NR;
      const int64_t mr = std::min(MR, M - m0), nr = std::min(NR, N - n0);
      // rows past M repeat the last real row (their results are not stored), so the loop has no row test
      const float* a[MR];
      for (int64_t r = 0; r < MR; ++r) a[r] = A + (m0 + std::min(r, mr - 1)) * am;
      const float* bp = Bp.data() + nb * K * NR;
      vtile c[MR][2] = {};
      for (int64_t k = 0; k < K; ++k) {
        const vtile b0 = *reinterpret_cast<const vtile*>(bp + k * NR);
        const vtile b1 = *reinterpret_cast<const vtile*>(bp + k * NR + kTileLanes);
        for (int64_t r = 0; r < MR; ++r) {
          const float x = a[r][k * ak];
          c[r][0] += x * b0;
          c[r][1] += x * b1;
        }
      }
      if (nr == NR) {
        for (int64_t r = 0; r < mr; ++r) {
          *reinterpret_cast<vtile*>(C + (m0 + r) * N + n0) = c[r][0];
          *reinterpret_cast<vtile*>(C + (m0 + r) * N + n0 + kTileLanes) = c[r][1];
        }
      } else {
        for (int64_t r = 0; r < mr; ++r) {
          float row[NR];
          std::memcpy(row, &c[r][0], sizeof(vtile));
          std::memcpy(row + kTileLanes, &c[r][1], sizeof(vtile));
          std::memcpy(C + (m0 + r) * N + n0, row, nr * sizeof(float));
        }
      }
    }
}

inline void gemmAB(int64_t M, int64_t N, int64_t K, const float* A, int64_t am, int64_t ak, const float* B, float* C) {
  gemmStrided(M, N, K, A, am, ak, B, N, 1, C);
}

// C[M x N] = A[M x K] . B[N x K]^T  (both operands row-major along K, like x @ W.T with nn.Linear's W): the
// packing reads B's rows directly (no transposed copy first; that copy, strided writes over 2 MB, took longer
// than the product itself).
inline void gemmABt(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  gemmStrided(M, N, K, A, K, 1, B, 1, K, C);
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
