// The sampler: one token from one row of logits (temperature, top-k, top-p, min-p, repetition penalty, logit bias)
// with a uniform u in [0, 1) from the counter-based stream of formulas.h (uniformAt). CPU version (sampling.cpp) and
// its CUDA twin (sampling.cu, R rows at once), which follows the same rules on the same u.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/config.h"

namespace clipo::engine {

// Picks a token from logits z. temperature 0: argmax, logprob under the untempered softmax. Otherwise softmax(z/T),
// restricted to the nucleus {i : p_i >= theta} with theta the largest threshold whose set holds topP of the mass
// (the smallest top set; tokens tied at the boundary are all kept), renormalised, walked in token order. The
// logprob reported is under the full temperature-scaled distribution.
// topK > 0 first keeps the topK most probable tokens (ties at the k-th value kept) and the nucleus is taken over
// them; minP > 0 then also drops tokens with p_i < minP * p_max. topK = 0 and minP = 0 leave the above unchanged.
// e and idx are scratch buffers (reused between calls).
int32_t sampleRow(const float* z, int64_t V, double temperature, double topP, int64_t topK, double minP, double u,
                  float* logprob, std::vector<float>& e, std::vector<int32_t>& idx);

// The step-wise decoder's sampler: repetition penalty and logit bias on a copy of the row, then sampleRow, then
// the topLogprobs most likely tokens. buf, e, idx are scratch buffers.
SampledToken sampleWith(const float* z, int64_t V, const SamplerSettings& s, const std::vector<int32_t>& history,
                        double u, std::vector<float>& buf, std::vector<float>& e, std::vector<int32_t>& idx);

// sampleWith with its own scratch (exposed for tests of the sampler against a reference).
SampledToken sampleLogits(const float* z, int64_t V, const SamplerSettings& s, const std::vector<int32_t>& history,
                          double u);

// ---- the CUDA sampler (sampling.cu) ----

// One row's settings, in device memory (an array of R). The fields mean what SamplerSettings' do; u is the row's
// uniform (formulas.h uniformAt with the row's (seed, prompt, sample, step), exactly what the CPU engine uses).
// penaltyBegin/End: the row's slice of penaltyTokens, its DISTINCT history tokens (prompt + output; the penalty applies
// once per distinct token, so the caller dedupes; out-of-range ids are ignored, as on the CPU); biasBegin/End: its
// slice of biasTokens/biasValues, applied in order after the penalty.
struct SampleRowParams {
  double temperature = 1.0, topP = 1.0, minP = 0.0, repetitionPenalty = 1.0, u = 0.0;
  int64_t topK = 0, topLogprobs = 0;
  int64_t penaltyBegin = 0, penaltyEnd = 0, biasBegin = 0, biasEnd = 0;
};

// Device workspace of sampleRowsCuda (bytes; 0 today: one block per row keeps its state in shared memory). Kept so
// that callers allocate through it and a later version may use scratch without changing them.
size_t sampleRowsCudaWorkspace(int64_t R, int64_t V);

// Samples one token from each of R rows of fp32 logits [R x V] (device pointers; one block per row), by
// sampleWith's rules: the repetition penalty and logit bias are applied IN PLACE to `logits` (they then hold the
// processed logits), then sampleRow (temperature 0: argmax, first index on ties; otherwise top-k, the nucleus with
// ties at the boundary kept, min-p, and the walk in token order to u * kept mass) and the top-logprobs. Outputs:
// tokens[R], logprobs[R] (under the full temperature-scaled distribution; untempered for temperature 0), and, when
// maxTop > 0, topTokens/topLogprobs [R x maxTop]: each row's min(V, topLogprobs, maxTop) most likely tokens (logit
// descending, index ascending on ties), the rest of the row -1 / 0. Never synchronizes; returns "" or an error.
const char* sampleRowsCuda(float* logits, int64_t R, int64_t V, const SampleRowParams* params,
                           const int32_t* penaltyTokens, const int32_t* biasTokens, const float* biasValues,
                           int64_t maxTop, int32_t* tokens, float* logprobs, int32_t* topTokens, float* topLogprobs,
                           void* workspace, void* stream);

// Host wrapper for tests: host arrays in (logits are not changed; penaltyTokens may repeat: deduped here, per row),
// copies, runs, copies back, synchronizes. Validates the slices and settings; returns "" or an error.
const char* sampleRowsCudaHost(const float* logits, int64_t R, int64_t V, const SampleRowParams* params,
                               const int32_t* penaltyTokens, int64_t nPenalty, const int32_t* biasTokens,
                               const float* biasValues, int64_t nBias, int64_t maxTop, int32_t* tokens,
                               float* logprobs, int32_t* topTokens, float* topLogprobs);

}  // namespace clipo::engine
