// AdamW over fp32 master weights and moments with deterministic global-norm clipping: the CPU kernel (optim.cpp,
// used by the CPU engine's adamwStep) and its CUDA twin (optim.cu), which also refreshes the bf16 working copy of
// the weights. Formulas (clip scale, bias corrections, the element update) in formulas.h.
// A flat parameter buffer of n values is updated segment by segment (one segment per tensor: its own decay);
// values outside every segment (a tied LM head's duplicate) are left as they are. The gradient norm covers all n.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/config.h"

namespace clipo::engine {

struct AdamwSegment {
  int64_t offset = 0, size = 0;
  bool decay = false;  // weight decay applies (matrices; not norm weights or biases)
};
struct AdamwHyper {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0, maxGradNorm = 0;
  // bf16 master weights: each updated weight is rounded stochastically to bf16 (formulas.h stochasticRoundBf16,
  // bits roundingBits(seed, step, element index in the flat buffer)). On the CPU the buffer stays fp32 but holds
  // bf16 values (the semantics, for checks); on the device the bf16 working copy is the master (no fp32 copy).
  bool bf16Master = false;
  uint64_t seed = 0;
};

// The segments of a model's flat parameter buffer, one per tensor, as both engines step them (torch.optim.AdamW
// param groups): decay on matrices only (not norm weights or biases); a tied LM head is the embedding, stepped once.
std::vector<AdamwSegment> adamwSegments(const ModelConfig& cfg, const ParamLayout& lay);

// The gradient's global L2 norm: sum of squares in double over fixed chunks of 2^16 values, chunk sums added in
// order (the same value for any thread count).
double gradNormCpu(const float* g, size_t n, int threads);
// One step (step = the new step count, >= 1): returns the pre-clip gradient norm; a non-finite norm throws
// (EngineError) before anything is written. h.bf16Master: every updated weight rounded stochastically to bf16.
double adamwStepCpu(float* w, float* m, float* v, const float* g, size_t n, const AdamwSegment* segs, size_t nSegs,
                    const AdamwHyper& h, int64_t step, int threads);

// ---- CUDA twin (optim.cu; builds with CLIPO_WITH_CUDA) ----
// Two launches for the norm: kAdamwNormBlocks blocks each sum a fixed strided share of g^2 in double (a tree
// reduction in a fixed order, no atomics), one block adds the partials in index order and stores the norm and the
// clip scale. Then one fused kernel per segment: scale the gradient, update m, v and the fp32 master weights,
// write the bf16 working copy (wBf16 may be null). h.bf16Master: the bf16 copy is the master (w may be null; wBf16
// is read, updated and written back rounded stochastically). When the norm is not finite nothing is written.
// Device entry: device pointers; `scratch` of adamwCudaScratchBytes() bytes (the norm lands in ((double*)scratch)[0]);
// segs a host array; stream a cudaStream_t; nothing synchronizes. Returns "" or an error message.
constexpr int kAdamwNormBlocks = 240;
size_t adamwCudaScratchBytes();
const char* adamwStepCuda(float* w, float* m, float* v, const float* g, uint16_t* wBf16, int64_t n,
                          const AdamwSegment* segs, size_t nSegs, const AdamwHyper& h, int64_t step, void* scratch,
                          void* stream);
// Host wrapper for tests (host pointers; copies, runs, copies back, synchronizes): *norm gets the gradient norm; a
// non-finite norm is an error and w, m, v, wBf16 are left as they were.
const char* adamwStepCudaHost(float* w, float* m, float* v, const float* g, uint16_t* wBf16, int64_t n,
                              const AdamwSegment* segs, size_t nSegs, const AdamwHyper& h, int64_t step, double* norm);

}  // namespace clipo::engine
