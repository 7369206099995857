// The choice of engine backend (engine.h).
#include "engine/engine.h"

#include "engine/cpu_model.h"

namespace clipo::engine {

namespace {
const char* const kNoCudaEngine =
    "the CUDA engine is not part of this version of clipo: its kernels (embedding, RMSNorm, RoPE, SwiGLU, log-probs) "
    "are compiled in CUDA builds, but the engine that runs a model on the GPU is not written yet; use the 'cpu' backend";
}  // namespace

EngineBackends engineBackends() {
  EngineBackends b;
  b.cuda = false;
  b.cudaReason = kNoCudaEngine;
  return b;
}

std::unique_ptr<Engine> createEngine(const std::string& backend, const ModelConfig& cfg, int threads) {
  if (backend == "cpu") return std::make_unique<CpuModel>(cfg, threads);
  if (backend == "cuda") throw EngineError(kNoCudaEngine);
  throw EngineError("unknown engine backend '" + backend + "' (expected 'cpu' or 'cuda')");
}

}  // namespace clipo::engine
