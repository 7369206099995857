// kernelVariants() -> { surrogateModes, surrogateAggs, klTypes, contrastiveLossTypes, contrastiveLevels,
//   contrastiveDistances, contrastiveHeadKinds, tokenDtypes, policyLossModes: { [mode]: { clipLowBelow,
//   clipHighMax, dualClip } } }: the native vocabulary (variants.h), so that a test can check it against the
// TypeScript one (src/kernels/variants.ts).
#include <napi.h>

#include "common/registry.h"
#include "common/variants.h"

namespace {

using namespace clipo;

template <typename E>
Napi::Array names(Napi::Env env) {
  const auto& list = variants::Names<E>::list;
  Napi::Array a = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); ++i) a.Set(static_cast<uint32_t>(i), list[i]);
  return a;
}

Napi::Value KernelVariants(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("surrogateModes", names<surrogate::Mode>(env));
  o.Set("surrogateAggs", names<surrogate::Agg>(env));
  o.Set("klTypes", names<variants::KlType>(env));
  o.Set("contrastiveLossTypes", names<contrastive::LossType>(env));
  o.Set("contrastiveLevels", names<contrastive::Level>(env));
  o.Set("contrastiveDistances", names<contrastive::Distance>(env));
  o.Set("contrastiveHeadKinds", names<contrastive::Head>(env));
  o.Set("tokenDtypes", names<contrastive::DType>(env));
  Napi::Object modes = Napi::Object::New(env);
  const auto& list = variants::Names<surrogate::Mode>::list;
  for (size_t i = 0; i < list.size(); ++i) {
    const variants::PolicyLossMode m = variants::policyLossMode(static_cast<surrogate::Mode>(i));
    Napi::Object d = Napi::Object::New(env);
    d.Set("clipLowBelow", m.clipLowBelow);
    d.Set("clipHighMax", m.clipHighMax);
    d.Set("dualClip", m.dualClip);
    modes.Set(list[i], d);
  }
  o.Set("policyLossModes", modes);
  return o;
}

void InitVariants(Napi::Env env, Napi::Object exports) {
  exports.Set("kernelVariants", Napi::Function::New(env, KernelVariants, "kernelVariants"));
}

}  // namespace

CLIPO_REGISTER_MODULE(variants, InitVariants);
