// What the engine's CUDA twins (native/engine/*.cu) need beyond cuda_emu.h: the double/int warp shuffles and the
// typed allocation of surrogate_emu.h.
#pragma once
#include "surrogate_emu.h"
