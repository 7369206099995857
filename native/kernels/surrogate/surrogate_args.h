// The surrogate loss's settings as every N-API entry reads them (surrogate_napi.cpp's surrogateLoss*, the engine's
// policyLossBackward in engine_napi.cpp): mode, agg, clipLow, clipHigh, dualClip, klCoef, klType, each validated
// against the mode's limits (common/variants.h) with an error that names the field.
#pragma once
#include <napi.h>

#include <string>

#include "common/napi_args.h"
#include "common/variants.h"
#include "kernels/surrogate/surrogate_loss.h"

namespace clipo::surrogate {

// batch and length are left to the caller.
inline Params parseSettings(const Napi::Object& o) {
  Napi::Env env = o.Env();
  Params p;
  p.mode = variants::get<Mode>(o, "mode");
  p.agg = variants::get<Agg>(o, "agg");
  const variants::PolicyLossMode limits = variants::policyLossMode(p.mode);
  const double clipLow = getNumber(o, "clipLow"), clipHigh = getNumber(o, "clipHigh");
  if (!(clipLow >= 0 && clipLow < limits.clipLowBelow))
    throwError(env, "clipLow: expected a number in [0, " + std::to_string(static_cast<int>(limits.clipLowBelow)) + "), got " + std::to_string(clipLow));
  if (!(clipHigh >= 0 && clipHigh <= limits.clipHighMax))
    throwError(env, "clipHigh: expected a number in [0, " + std::to_string(static_cast<int>(limits.clipHighMax)) + "], got " + std::to_string(clipHigh));
  p.clipLow = static_cast<float>(clipLow);
  p.clipHigh = static_cast<float>(clipHigh);
  if (hasField(o, "dualClip")) {
    const double dc = getNumber(o, "dualClip");
    if (!(dc > 1)) throwError(env, "dualClip: must be > 1 (the dual-clip bound c), got " + std::to_string(dc));
    if (!limits.dualClip) throwError(env, "dualClip: only applies to mode 'token'");
    p.dualClip = static_cast<float>(dc);
  }
  const double klCoef = getNumberOr(o, "klCoef", 0.0);
  if (!(klCoef >= 0)) throwError(env, "klCoef: must be a finite number >= 0, got " + std::to_string(klCoef));
  p.klCoef = static_cast<float>(klCoef);
  variants::getOr(o, "klType", variants::KlType::LowVarKl);
  return p;
}

}  // namespace clipo::surrogate
