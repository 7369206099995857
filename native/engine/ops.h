// Element-wise and attention kernels of the engine (forward and backward), fp32, OpenMP over rows or heads.
// Reductions over rows (bias and norm-weight gradients) split columns between threads, never rows, so results do
// not depend on the thread count.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/model.h"

namespace clipo::engine {

// Threads worth using for `work` element operations: waking a second thread costs more than ~32k simple ops.
inline int threadsFor(int64_t work, int threads) { return work < (int64_t{1} << 15) ? 1 : threads; }

struct AttnShape {
  int64_t heads, kvHeads, headDim;
  int64_t rowStride;  // floats between rows of the packed [q | k | v] matrix
  int64_t qd;         // heads * headDim (offset of k inside a row; v follows at qd + kvHeads*headDim)
};

void addBias(float* Y, const float* b, int64_t N, int64_t cols, int threads);
void addInPlace(float* y, const float* x, int64_t n, int threads);
// act[n, i] = silu(gu[n, i]) * gu[n, I + i]
void swiglu(const float* gu, float* act, int64_t N, int64_t I, int threads);
// dgu from dact: d gate = dact * up * silu'(gate), d up = dact * silu(gate)
void swigluBackward(const float* gu, const float* dact, float* dgu, int64_t N, int64_t I, int threads);
// out[c] = mean over rows [start, start+count) of X (zeros when count == 0)
void meanRows(const float* X, int64_t start, int64_t count, int64_t cols, float* out);
// gb[c] += sum_n dY[n, c]
void colSumAccumulate(const float* dY, int64_t N, int64_t cols, float* gb, int threads);
// y = x * rstd * w:  dx += rstd * (w*dy) - x * rstd^3 / H * sum(w*dy*x);  gw += sum_n dy * x * rstd
void rmsnormBackward(const float* dy, const float* x, const float* rstd, const float* w, float* dx, float* gw,
                     int64_t N, int64_t H, int threads);

// One query row against `count` cached key/value rows (stride kvStride): softmax(q.k * scale) v -> out, lse.
void attendRow(const float* q, const float* K, const float* V, int64_t kvStride, int64_t count, int64_t hd, float scale,
               float* out, float* lse);
// Causal attention inside each span of the packed qkv rows -> o [N x qd], lse [N x heads].
void attentionSpans(const AttnShape& s, const std::vector<Span>& spans, const float* qkv, float* o, float* lse,
                    int threads);
// Backward of attentionSpans: d(qkv) from d(o), recomputing the probabilities from lse.
void attentionSpansBackward(const AttnShape& s, const std::vector<Span>& spans, const float* qkv, const float* o,
                            const float* lse, const float* dO, float* dqkv, int threads);

struct RowSoftmax {
  double lse = 0.0, entropy = 0.0;
};
// log-sum-exp of a logits row, optionally the entropy H = lse - sum_i p_i z_i and the probabilities (probs may be z)
RowSoftmax rowSoftmaxStats(const float* z, int64_t V, bool entropy, float* probs = nullptr);
float maxOf(const float* z, int64_t V);
// out[i] = exp(z[i]*scale - shift) (out may be null); *sum = sum of them, *sumZ = sum of out[i]*(z[i]*scale - shift)
float expShifted(const float* z, int64_t V, float scale, float shift, float* out, double* sum, double* sumZ);

}  // namespace clipo::engine
