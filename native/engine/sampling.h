// The sampler: one token from one row of logits (temperature, top-k, top-p, min-p, repetition penalty, logit bias)
// with a uniform u in [0, 1) from the counter-based stream of formulas.h (uniformAt). CPU version (sampling.cpp);
// the CUDA sampler will follow the same rules and streams.
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

}  // namespace clipo::engine
