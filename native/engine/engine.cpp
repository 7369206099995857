// The choice of engine backend (engine.h).
#include "engine/engine.h"

#include "engine/cpu_model.h"
#include "engine/cuda_engine.h"

namespace clipo::engine {

namespace {
const char* const kNoCudaBuild =
    "this build of clipo has no CUDA engine (the addon was built without a CUDA compiler, or with CLIPO_CUDA=OFF); "
    "rebuild with nvcc on PATH, or use the 'cpu' backend";
}  // namespace

EngineBackends engineBackends() {
  EngineBackends b;
#ifdef CLIPO_WITH_CUDA
  b.cudaReason = cudaEngineUnavailable();
  b.cuda = b.cudaReason.empty();
#else
  b.cuda = false;
  b.cudaReason = kNoCudaBuild;
#endif
  return b;
}

std::unique_ptr<Engine> createEngine(const std::string& backend, const ModelConfig& cfg, int threads,
                                     const std::string& precision, bool training) {
  if (backend == "cpu") {
    if (!precision.empty() && precision != "fp32")
      throw EngineError("precision '" + precision + "': the cpu backend runs in fp32 only");
    return std::make_unique<CpuModel>(cfg, threads);
  }
  if (backend == "cuda") {
#ifdef CLIPO_WITH_CUDA
    return createCudaEngine(cfg, threads, precision.empty() ? "bf16" : precision, training);
#else
    throw EngineError(kNoCudaBuild);
#endif
  }
  throw EngineError("unknown engine backend '" + backend + "' (expected 'cpu' or 'cuda')");
}

}  // namespace clipo::engine
