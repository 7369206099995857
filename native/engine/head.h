// The LM head's log-softmax over the vocabulary (log-prob of the target token, entropy), the pooled final hidden
// state, and the softmax primitives the attention and the sampler share: the CPU kernels (head.cpp, fp32) and the
// CUDA twin of the log-prob pass (head.cu), which walks the vocabulary in chunks with an online log-sum-exp
// (formulas.h, SoftmaxState), so the [rows x vocab] logits never exist in full on either side.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/gemm.h"

namespace clipo::engine {

struct RowSoftmax {
  double lse = 0.0, entropy = 0.0;
};
// log-sum-exp of a logits row, optionally the entropy H = lse - sum_i p_i z_i and the probabilities (probs may be z)
RowSoftmax rowSoftmaxStats(const float* z, int64_t V, bool entropy, float* probs = nullptr);
float maxOf(const float* z, int64_t V);
// out[i] = exp(z[i]*scale - shift) (out may be null); *sum = sum of them, *sumZ = sum of out[i]*(z[i]*scale - shift)
float expShifted(const float* z, int64_t V, float scale, float shift, float* out, double* sum, double* sumZ);
// out[c] = mean over rows [start, start+count) of X (zeros when count == 0)
void meanRows(const float* X, int64_t start, int64_t count, int64_t cols, float* out);

// For each i: the logits of row rows[i] of xf [* x H] under the head W [V x H] (z = W x), then
// logp[i] = z[targets[i]] - lse(z), entropy[i] (optional), keepProbs[i*V..] = softmax(z) (optional). Logits are
// made a chunk of rows at a time (at most 2^24 floats).
void headLogprobs(const float* xf, int64_t H, const float* W, int64_t V, const std::vector<int64_t>& rows,
                  const std::vector<int64_t>& targets, float* logp, float* entropy, float* keepProbs, int threads);

// The backward of headLogprobs for d loss/d logp (gradLogp [R]) and optionally d loss/d entropy (gradEntropy [R]):
//   d logp_t / d z = onehot(t) - softmax(z);  d H / d z_i = -p_i (z_i - sum_j p_j z_j)
// dXf[rows[r]] += dz_r . W (rows in order) and dW += dz^T . X; logits recomputed a chunk of rows at a time, or the
// probabilities taken from keptProbs ([R x V], headLogprobs' keepProbs; may be null). Rows whose gradients are all
// zero in a chunk are skipped.
void headLogprobsBackward(const float* xf, int64_t H, const float* W, int64_t V, const std::vector<int64_t>& rows,
                          const std::vector<int64_t>& targets, const float* gradLogp, const float* gradEntropy,
                          const float* keptProbs, float* dXf, float* dW, int threads);

// ---- CUDA twin (head.cu; builds with CLIPO_WITH_CUDA) ----
// xf [* x H] and W [V x H] in bf16 (uint16_t) or fp32 storage, fp32 accumulation; rows/targets int32 [R]; logp,
// entropy fp32 [R] (entropy may be null). The vocabulary is walked chunkColumns columns at a time (0: 4096, a width
// fixed by V alone so that a row's result does not depend on R), rows in passes of at most 2^24 / chunk (64 MiB of
// logits): each pass gathers its rows into one [rows x H] matrix, each chunk's [rows x chunk] logits come from the
// device GEMM dispatch (gemm.h gemmCuda NT, shape class Wide: cuBLASLt where it runs, else the built-in kernel), then
// every row's SoftmaxState and target logit are updated; logp = z_t - lse at the end.
// Device entry: device pointers; `workspace` of headLogprobsCudaWorkspace(R, V, H, chunkColumns) bytes; stream a
// cudaStream_t; nothing synchronizes. Returns "" or an error message.
size_t headLogprobsCudaWorkspace(int64_t R, int64_t V, int64_t H, int64_t chunkColumns);
const char* headLogprobsCuda(const uint16_t* xf, int64_t H, const uint16_t* W, int64_t V, const int32_t* rows,
                             const int32_t* targets, int64_t R, float* logp, float* entropy, int64_t chunkColumns,
                             void* workspace, void* stream);
// fp32 storage (the engine's test mode): the same passes on fp32 xf and W.
const char* headLogprobsCuda(const float* xf, int64_t H, const float* W, int64_t V, const int32_t* rows,
                             const int32_t* targets, int64_t R, float* logp, float* entropy, int64_t chunkColumns,
                             void* workspace, void* stream);
// Host wrapper for tests (host pointers; xfRows = rows of xf; copies, runs, copies back, synchronizes). impl forces
// the GEMM (Auto: CLIPO_CUDA_GEMM's choice); *used (when not null) names what ran: "cublaslt" when every chunk took
// cuBLASLt, else what gemmCuda reported for a chunk that did not ("builtin", "builtin (no cuBLASLt algorithm)").
const char* headLogprobsCudaHost(const uint16_t* xf, int64_t xfRows, int64_t H, const uint16_t* W, int64_t V,
                                 const int32_t* rows, const int32_t* targets, int64_t R, float* logp, float* entropy,
                                 int64_t chunkColumns, GemmImpl impl = GemmImpl::Auto, const char** used = nullptr);

// ---- backward twin (head.cu): storage T = uint16_t (bf16) or float (fp32), one entry overloaded on both ----
// The gradient of the log-prob/entropy pass (cpu_train.cpp's head block), chunked over the vocabulary like the
// forward: given per scored row r the forward's logp and entropy (fp32 [R]; entropy only needed with gradEntropy)
// and the upstream gradients gradLogp = d loss/d logp, gradEntropy = d loss/d H (fp32 [R]; may be null), each
// chunk's logits are recomputed and turned into
//   dz_i = gl (1[i = t] - p_i) - ge p_i (z_i - E_p[z]),  p_i = exp(z_i - lse), lse = z_t - logp, E_p[z] = lse - H
// then dXf[rows[r]] += dz . W_chunk (storage T, accumulated in fp32 per row and added once, rows in order) and
// dW[chunk] += dz^T . X (fp32 [V x H], may be null; with tied embeddings the embedding table's gradient).
// Deterministic: fixed-order sums, one writer per output. Device entry: device pointers; `workspace` of
// headLogprobsBackwardCudaWorkspace(R, V, H, chunkColumns) bytes; nothing synchronizes. Returns "" or an error.
size_t headLogprobsBackwardCudaWorkspace(int64_t R, int64_t V, int64_t H, int64_t chunkColumns);
const char* headLogprobsBackwardCuda(const uint16_t* xf, int64_t H, const uint16_t* W, int64_t V, const int32_t* rows,
                                     const int32_t* targets, int64_t R, const float* logp, const float* entropy,
                                     const float* gradLogp, const float* gradEntropy, uint16_t* dXf, float* dW,
                                     int64_t chunkColumns, void* workspace, void* stream);
const char* headLogprobsBackwardCuda(const float* xf, int64_t H, const float* W, int64_t V, const int32_t* rows,
                                     const int32_t* targets, int64_t R, const float* logp, const float* entropy,
                                     const float* gradLogp, const float* gradEntropy, float* dXf, float* dW,
                                     int64_t chunkColumns, void* workspace, void* stream);
// Host wrappers for tests (host pointers; dXf [xfRows x H] and dW are read and updated).
const char* headLogprobsBackwardCudaHost(const uint16_t* xf, int64_t xfRows, int64_t H, const uint16_t* W, int64_t V,
                                         const int32_t* rows, const int32_t* targets, int64_t R, const float* logp,
                                         const float* entropy, const float* gradLogp, const float* gradEntropy,
                                         uint16_t* dXf, float* dW, int64_t chunkColumns);
const char* headLogprobsBackwardCudaHost(const float* xf, int64_t xfRows, int64_t H, const float* W, int64_t V,
                                         const int32_t* rows, const int32_t* targets, int64_t R, const float* logp,
                                         const float* entropy, const float* gradLogp, const float* gradEntropy,
                                         float* dXf, float* dW, int64_t chunkColumns);

}  // namespace clipo::engine
