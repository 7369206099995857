// The two storages of the engine's CUDA twins: bf16 (uint16_t, the engine's default; formulas.h rounds) and fp32
// (float, the engine's test mode). Kernels are templates over the storage type T and convert at load and store
// with these, so that one kernel body serves both and the arithmetic is fp32 in both.
#pragma once
#include <cstdint>

#include "engine/formulas.h"

namespace clipo::engine::cudatwin {

CLIPO_ENGINE_HD inline float toF(uint16_t v) { return bf16ToFloat(v); }
CLIPO_ENGINE_HD inline float toF(float v) { return v; }
template <typename T>
CLIPO_ENGINE_HD inline T fromF(float v);
template <>
CLIPO_ENGINE_HD inline uint16_t fromF<uint16_t>(float v) {
  return floatToBf16(v);
}
template <>
CLIPO_ENGINE_HD inline float fromF<float>(float v) {
  return v;
}

}  // namespace clipo::engine::cudatwin
