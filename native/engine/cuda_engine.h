// The CUDA engine (cuda_engine.cu): the Engine of engine.h on one GPU: inference (logits, scoring, sampling,
// step-wise decoding with a paged KV cache) and training (forward keeping activations, backward, AdamW:
// cuda_train.cuh).
// Precision "bf16" (default: bf16 weights and activations, fp32 arithmetic) or "fp32" (the test mode that matches
// the CPU engine within 1e-4). Declared in every build; defined only in CUDA builds (CLIPO_WITH_CUDA).
#pragma once
#include <memory>
#include <string>

#include "engine/engine.h"

namespace clipo::engine {

// "" when a CUDA device is usable, otherwise why not (no device, no driver).
std::string cudaEngineUnavailable();
// Throws EngineError for an unknown precision, an unusable device, or weights that do not fit in the GPU's free memory.
// training: keep the fp32 master copy (bf16 storage) from the start (engine.h createEngine).
std::unique_ptr<Engine> createCudaEngine(const ModelConfig& cfg, int threads, const std::string& precision,
                                         bool training = false);

}  // namespace clipo::engine
