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

// ---- CUDA twins (attention.cu; builds with CLIPO_WITH_CUDA) ----
// Each entry comes in two storages with one template behind them: bf16 (uint16_t, formulas.h; the engine's default)
// and fp32 (float; the engine's test mode, which must match the CPU engine within 1e-4). Arithmetic is fp32 in both,
// the softmax online (formulas.h). Device entries: every pointer is device memory, `stream` a cudaStream_t, nothing
// synchronizes; they return "" or an error message.
//
// Prefill, scoring and training: causal attention inside each span of the packed qkv rows, flash-style (query tiles
// against key tiles, the [L x L] scores never stored). spanStart/spanLen: device int32 [nSpans]; maxLen the longest
// span (sizes the grid). o [N x qd] (row stride qd), lse [N x heads] (natural log, fp32; the backward's input).
const char* attentionSpansCuda(const AttnShape& s, const int32_t* spanStart, const int32_t* spanLen, int64_t nSpans,
                               int64_t maxLen, const uint16_t* qkv, uint16_t* o, float* lse, void* stream);
const char* attentionSpansCuda(const AttnShape& s, const int32_t* spanStart, const int32_t* spanLen, int64_t nSpans,
                               int64_t maxLen, const float* qkv, float* o, float* lse, void* stream);
// Backward of attentionSpansCuda: dqkv [N x rowStride] (every element of the spans' rows written, columns past
// q | k | v zeroed; the engine's spans cover all N rows) from dO [N x qd], recomputing the probabilities from lse.
// Deterministic: no atomics whose order changes results (dK/dV per key tile over the query tiles, dQ per query tile
// over the key tiles). workspace: attentionBackwardCudaWorkspace(...) bytes.
size_t attentionBackwardCudaWorkspace(const AttnShape& s, int64_t N);
const char* attentionSpansBackwardCuda(const AttnShape& s, const int32_t* spanStart, const int32_t* spanLen,
                                       int64_t nSpans, int64_t maxLen, const uint16_t* qkv, const uint16_t* o,
                                       const float* lse, const uint16_t* dO, uint16_t* dqkv, void* workspace,
                                       void* stream);
const char* attentionSpansBackwardCuda(const AttnShape& s, const int32_t* spanStart, const int32_t* spanLen,
                                       int64_t nSpans, int64_t maxLen, const float* qkv, const float* o,
                                       const float* lse, const float* dO, float* dqkv, void* workspace, void* stream);

// The paged KV cache of decoding (vLLM's layout): kCache and vCache are [numBlocks x blockSize x kvHeads x headDim];
// a sequence's position p lives in block blockTable[p / blockSize], row p % blockSize. Samples of one prompt share
// the prompt's full blocks (the engine counts references); a block is written only by the sequence that owns it.
struct KvCacheShape {
  int64_t numBlocks, blockSize, kvHeads, headDim;
};
// Writes the k and v parts of N packed qkv rows (after RoPE) to the cache: row n goes to slot slots[n]
// (= block * blockSize + offset; device int32 [N]; a negative slot skips the row, as does one past the cache).
const char* kvCacheWriteCuda(const KvCacheShape& c, const AttnShape& s, const uint16_t* qkv, const int32_t* slots,
                             int64_t N, uint16_t* kCache, uint16_t* vCache, void* stream);
const char* kvCacheWriteCuda(const KvCacheShape& c, const AttnShape& s, const float* qkv, const int32_t* slots,
                             int64_t N, float* kCache, float* vCache, void* stream);
// Decoding: the query part of row i of qkv (one new token per sequence, already in the cache at position
// seqLens[i] - 1) against cache positions [0, seqLens[i]) -> o [nSeq x qd]. blockTables: device int32
// [nSeq x maxBlocksPerSeq]; seqLens device int32 [nSeq]; maxSeqLen sizes the split over the context
// (flash-decoding: partial softmax states per split, combined in split order, so results do not depend on timing).
// Block table entries outside [0, numBlocks) skip their positions. workspace: attentionDecodeCudaWorkspace(...) bytes
// (depends on the device's multiprocessor count, through the split plan).
size_t attentionDecodeCudaWorkspace(const AttnShape& s, int64_t nSeq, int64_t maxSeqLen);
const char* attentionDecodeCuda(const KvCacheShape& c, const AttnShape& s, const uint16_t* qkv, int64_t nSeq,
                                const int32_t* blockTables, int64_t maxBlocksPerSeq, const int32_t* seqLens,
                                int64_t maxSeqLen, const uint16_t* kCache, const uint16_t* vCache, uint16_t* o,
                                void* workspace, void* stream);
const char* attentionDecodeCuda(const KvCacheShape& c, const AttnShape& s, const float* qkv, int64_t nSeq,
                                const int32_t* blockTables, int64_t maxBlocksPerSeq, const int32_t* seqLens,
                                int64_t maxSeqLen, const float* kCache, const float* vCache, float* o, void* workspace,
                                void* stream);

// Host wrappers (tests): host pointers; copy in, run the device entry, synchronize, copy back. Spans are checked
// against the N rows, block tables and lengths against the cache; o/lse/dqkv rows outside every span keep the values
// passed in. kCache/vCache: the whole cache, updated in place.
const char* attentionSpansCudaHost(const AttnShape& s, const std::vector<Span>& spans, int64_t N, const uint16_t* qkv,
                                   uint16_t* o, float* lse);
const char* attentionSpansCudaHost(const AttnShape& s, const std::vector<Span>& spans, int64_t N, const float* qkv,
                                   float* o, float* lse);
const char* attentionSpansBackwardCudaHost(const AttnShape& s, const std::vector<Span>& spans, int64_t N,
                                           const uint16_t* qkv, const uint16_t* o, const float* lse,
                                           const uint16_t* dO, uint16_t* dqkv);
const char* attentionSpansBackwardCudaHost(const AttnShape& s, const std::vector<Span>& spans, int64_t N,
                                           const float* qkv, const float* o, const float* lse, const float* dO,
                                           float* dqkv);
const char* kvCacheWriteCudaHost(const KvCacheShape& c, const AttnShape& s, const uint16_t* qkv, const int32_t* slots,
                                 int64_t N, uint16_t* kCache, uint16_t* vCache);
const char* kvCacheWriteCudaHost(const KvCacheShape& c, const AttnShape& s, const float* qkv, const int32_t* slots,
                                 int64_t N, float* kCache, float* vCache);
const char* attentionDecodeCudaHost(const KvCacheShape& c, const AttnShape& s, const uint16_t* qkv, int64_t nSeq,
                                    const int32_t* blockTables, int64_t maxBlocksPerSeq, const int32_t* seqLens,
                                    const uint16_t* kCache, const uint16_t* vCache, uint16_t* o);
const char* attentionDecodeCudaHost(const KvCacheShape& c, const AttnShape& s, const float* qkv, int64_t nSeq,
                                    const int32_t* blockTables, int64_t maxBlocksPerSeq, const int32_t* seqLens,
                                    const float* kCache, const float* vCache, float* o);

}  // namespace clipo::engine
