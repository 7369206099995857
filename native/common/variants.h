// The names of the kernels' variants, once for the native side, in the order of their enums, and the one parser
// every N-API entry uses to read them. The TypeScript side defines the same lists in src/kernels/variants.ts;
// kernelVariants() (variants_napi.cpp) returns these so that test/variants.test.ts can check the two agree.
#pragma once
#include <napi.h>

#include <array>
#include <string>

#include "common/napi_args.h"
#include "kernels/contrastive/contrastive_loss.h"
#include "kernels/surrogate/surrogate_loss.h"

namespace clipo::variants {

// Names of one enum E, indexed by its value: Names<E>::list[static_cast<int>(e)].
template <typename E> struct Names;
template <> struct Names<surrogate::Mode> {
  static constexpr std::array<const char*, 3> list = {"token", "sequence", "geo_mean"};
};
template <> struct Names<surrogate::Agg> {
  static constexpr std::array<const char*, 3> list = {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum"};
};
enum class KlType : int { LowVarKl = 0 };
template <> struct Names<KlType> {
  static constexpr std::array<const char*, 1> list = {"low_var_kl"};
};
template <> struct Names<contrastive::LossType> {
  static constexpr std::array<const char*, 4> list = {"infonce", "supcon_in", "supcon_out", "soft_nn"};
};
template <> struct Names<contrastive::Level> {
  static constexpr std::array<const char*, 3> list = {"group", "cross", "batch"};
};
template <> struct Names<contrastive::Distance> {
  static constexpr std::array<const char*, 2> list = {"cosine", "l2"};
};
template <> struct Names<contrastive::Head> {
  static constexpr std::array<const char*, 2> list = {"linear", "mlp"};
};
template <> struct Names<contrastive::DType> {
  static constexpr std::array<const char*, 2> list = {"f32", "bf16"};
};

// What the surrogate kernel accepts per mode (src/kernels/variants.ts policyLossModes holds the same figures for
// config validation; the test compares them).
struct PolicyLossMode {
  double clipLowBelow;  // clip_low < this (ratio space: 1 - clip_low must stay positive)
  double clipHighMax;   // clip_high <= this
  bool dualClip;        // the dual clip applies
};
inline PolicyLossMode policyLossMode(surrogate::Mode m) {
  switch (m) {
    case surrogate::Mode::Token: return {1.0, 20.0, true};
    case surrogate::Mode::Sequence: return {1.0, 20.0, false};
    case surrogate::Mode::GeoMean: return {20.0, 20.0, false};
  }
  return {1.0, 20.0, false};
}

// Reads field `key` of `obj` as one of E's names; a missing or unknown name throws a JS Error listing them.
template <typename E>
E get(const Napi::Object& obj, const char* key) {
  Napi::Env env = obj.Env();
  const auto& names = Names<E>::list;
  std::string all;
  for (const char* n : names) all += (all.empty() ? "" : ", ") + std::string(n);
  if (!hasField(obj, key) || !obj.Get(key).IsString())
    throwError(env, std::string(key) + ": expected a string (one of: " + all + ")");
  const std::string v = obj.Get(key).As<Napi::String>().Utf8Value();
  for (size_t i = 0; i < names.size(); ++i)
    if (v == names[i]) return static_cast<E>(i);
  throwError(env, std::string(key) + ": unknown value '" + v + "' (expected one of: " + all + ")");
}

// As get, with `fallback` when the field is absent.
template <typename E>
E getOr(const Napi::Object& obj, const char* key, E fallback) {
  return hasField(obj, key) ? get<E>(obj, key) : fallback;
}

}  // namespace clipo::variants
