// Opens clipo_gpulibs.so (cuBLASLt + NCCL, see gpulibs_abi.h) with dlopen on first use: shared by the N-API side
// (gpulibs_napi.cpp: gpuLibsInfo and the probes) and the CUDA engine's GEMM dispatch (engine/gemm.cu). The addon
// never links the library, so a CPU-only or CUDA-only addon loads and runs where it is missing.
#pragma once
#include <string>

#include "gpulibs/gpulibs_abi.h"

namespace clipo::gpulibs {

struct Library {
  std::string path;   // where it was looked for (next to clipo.node, or CLIPO_GPULIBS_PATH)
  std::string error;  // why it is not usable ("" when loaded)
  ClipoGpuLibsInfoFn info = nullptr;  // non-null exactly when the library loaded with this ABI
  ClipoGemmBf16Fn gemm = nullptr;
  ClipoAllReduceFn allReduce = nullptr;
  ClipoLtMatmulFn ltMatmul = nullptr;
  ClipoLtReleaseFn ltRelease = nullptr;
  ClipoLtPlansFn ltPlans = nullptr;
  bool loaded() const { return info != nullptr; }
};

// The library, opened once per process (thread-safe); never closed.
const Library& library();

// Whether this build of the addon made the library, and if not why (from cmake/gpulibs.cmake).
bool built();
const char* whyNotBuilt();

}  // namespace clipo::gpulibs
