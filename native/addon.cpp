// The addon's entry point: collects the modules registered with CLIPO_REGISTER_MODULE (see common/registry.h)
// and reports what was compiled in (CPU always; CUDA when the build found a toolkit).
#include <napi.h>

#include "common/registry.h"

namespace {

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array modules = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& m : clipo::moduleRegistry()) modules.Set(i++, Napi::String::New(env, m.name));
  out.Set("modules", modules);
#ifdef CLIPO_WITH_CUDA
  out.Set("cudaCompiled", Napi::Boolean::New(env, true));
#else
  out.Set("cudaCompiled", Napi::Boolean::New(env, false));
#endif
#ifdef _OPENMP
  out.Set("openmp", Napi::Boolean::New(env, true));
#else
  out.Set("openmp", Napi::Boolean::New(env, false));
#endif
  out.Set("compiler", Napi::String::New(env, __VERSION__));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  for (const auto& m : clipo::moduleRegistry()) m.init(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(clipo, Init)
