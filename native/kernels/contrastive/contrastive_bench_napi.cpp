// Benchmark-only entry of the contrastive kernel: its pooling pass alone, so `clipo bench contrastive` can put
// that pass (the only one that streams the token states) next to the read bandwidth measured in the same run.
#include <napi.h>

#include "common/napi_args.h"
#include "common/registry.h"
#include "contrastive_loss.h"

namespace {

// contrastivePoolCpu({ tokens: Float32Array [B*L*H], mask: Uint8Array [B*L], batch, length, hiddenSize, threads?,
//                      out: Float32Array [B*H] }) -> out
Napi::Value ContrastivePoolCpu(const Napi::CallbackInfo& info) {
  Napi::Object o = clipo::argObject(info, 0, "contrastivePoolCpu");
  const int64_t B = clipo::getInt(o, "batch", 1), L = clipo::getInt(o, "length", 1), H = clipo::getInt(o, "hiddenSize", 1);
  const size_t n = clipo::checkedSize(info.Env(), {B, L, H}, "tokens");
  auto tokens = clipo::getArray<float>(o, "tokens", n);
  auto mask = clipo::getArray<uint8_t>(o, "mask", static_cast<size_t>(B * L));
  auto out = clipo::getArray<float>(o, "out", static_cast<size_t>(B * H));
  const int threads = static_cast<int>(clipo::getIntOr(o, "threads", 0, 0, 4096));
  clipo::contrastive::poolTokensCpu(B, L, H, tokens.data, mask.data, out.data, threads);
  return o.Get("out");
}

void InitContrastiveBench(Napi::Env env, Napi::Object exports) {
  exports.Set("contrastivePoolCpu", Napi::Function::New(env, ContrastivePoolCpu, "contrastivePoolCpu"));
}

}  // namespace

CLIPO_REGISTER_MODULE(contrastive_bench, InitContrastiveBench);
