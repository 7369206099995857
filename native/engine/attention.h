// Causal grouped-query attention on the CPU (fp32): over the spans of a packed [q | k | v] row stream (prefill,
// scoring, training) with a flash-style backward that recomputes the probabilities from the log-sum-exp, and one
// query row against a KV cache (decoding). kv head of query head h: h / (heads / kvHeads); scale 1/sqrt(headDim).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/config.h"

namespace clipo::engine {

struct AttnShape {
  int64_t heads, kvHeads, headDim;
  int64_t rowStride;  // floats between rows of the packed [q | k | v] matrix
  int64_t qd;         // heads * headDim (offset of k inside a row; v follows at qd + kvHeads*headDim)
};

// One query row against `count` cached key/value rows (stride kvStride): softmax(q.k * scale) v -> out, lse.
void attendRow(const float* q, const float* K, const float* V, int64_t kvStride, int64_t count, int64_t hd, float scale,
               float* out, float* lse);
// Causal attention inside each span of the packed qkv rows -> o [N x qd], lse [N x heads].
void attentionSpans(const AttnShape& s, const std::vector<Span>& spans, const float* qkv, float* o, float* lse,
                    int threads);
// Backward of attentionSpans: d(qkv) from d(o), recomputing the probabilities from lse.
void attentionSpansBackward(const AttnShape& s, const std::vector<Span>& spans, const float* qkv, const float* o,
                            const float* lse, const float* dO, float* dqkv, int threads);

}  // namespace clipo::engine
