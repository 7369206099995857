// What the attention twins (native/engine/attention.cu) need beyond engine_emu.h: the dynamic shared memory opt-in
// (a no-op here: the emulated shared memory has no size limit).
#pragma once
#include "engine_emu.h"

enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
template <typename F>
inline cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) { return 0; }
