// The CUDA engine's device GEMM from JavaScript (gemm.h), for tests and reports:
//   engineCudaGemm({ op: 'nt' | 'nn' | 'tn', in: 'bf16' | 'fp32', out: 'bf16' | 'fp32',
//                    impl?: 'auto' | 'builtin' | 'cublaslt', shapeClass?: 'wide' | 'rows', accumulate?: boolean,
//                    M, N, K, a, b, bias?, c? })  -> { c, used }
//     a, b: Uint16Array (bf16: the top 16 bits of an fp32) or Float32Array as `in`; c (required when accumulating)
//     and the result as `out`; bias (NT only) as `in`. Sizes as gemm.h: a M*K (tn: K*M), b N*K (nn, tn: K*N),
//     c M*N, bias N (as `in`). `used` names the implementation that ran. The inputs are not changed.
//   engineCudaGemmInfo() -> { mode, impl, why, error? }: the GEMM the CUDA engine's products take in this process
//     (impl 'none' in a build without CUDA).
#include <napi.h>

#include <algorithm>
#include <string>

#include "common/napi_args.h"
#include "common/registry.h"
#include "engine/gemm.h"

namespace {

#ifdef CLIPO_WITH_CUDA
using clipo::engine::GemmCall;
using clipo::engine::GemmType;

template <typename T>
const void* inputData(const Napi::Object& o, const char* key, size_t n) {
  return clipo::getArray<T>(o, key, n).data;
}
const void* typed(const Napi::Object& o, const char* key, size_t n, GemmType t) {
  return t == GemmType::Bf16 ? inputData<uint16_t>(o, key, n) : inputData<float>(o, key, n);
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = clipo::argObject(info, 0, "engineCudaGemm");
  GemmCall c;
  c.op = static_cast<clipo::engine::GemmOp>(clipo::getEnum(o, "op", {"nt", "nn", "tn"}));
  c.in = static_cast<GemmType>(clipo::getEnum(o, "in", {"bf16", "fp32"}));
  c.out = static_cast<GemmType>(clipo::getEnum(o, "out", {"bf16", "fp32"}));
  if (c.in == GemmType::F32 && c.out == GemmType::Bf16) clipo::throwError(env, "engineCudaGemm: fp32 inputs with a bf16 output are not supported");
  const auto impl = clipo::hasField(o, "impl") ? static_cast<clipo::engine::GemmImpl>(clipo::getEnum(o, "impl", {"auto", "builtin", "cublaslt"}))
                                               : clipo::engine::GemmImpl::Auto;
  c.cls = clipo::hasField(o, "shapeClass") ? static_cast<clipo::engine::GemmClass>(clipo::getEnum(o, "shapeClass", {"wide", "rows"}))
                                           : clipo::engine::GemmClass::Wide;
  c.accumulate = clipo::getBoolOr(o, "accumulate", false);
  c.M = clipo::getInt(o, "M", 1, 1 << 20);
  c.N = clipo::getInt(o, "N", 1, 1 << 20);
  c.K = clipo::getInt(o, "K", 1, 1 << 20);
  const size_t nA = clipo::checkedSize(env, {c.M, c.K}, "a"), nB = clipo::checkedSize(env, {c.N, c.K}, "b");
  const size_t nC = clipo::checkedSize(env, {c.M, c.N}, "c");
  c.A = typed(o, "a", nA, c.in);
  c.B = typed(o, "b", nB, c.in);
  if (clipo::hasField(o, "bias")) {
    if (c.op != clipo::engine::GemmOp::NT) clipo::throwError(env, "bias: only with op 'nt'");
    c.bias = typed(o, "bias", static_cast<size_t>(c.N), c.in);  // the storage gemm.h reads it in
  }
  Napi::Value result;
  void* cData = nullptr;
  if (c.out == GemmType::Bf16) {
    auto r = clipo::newArray<uint16_t>(env, nC);
    if (c.accumulate) {
      auto init = clipo::getArray<uint16_t>(o, "c", nC);
      std::copy(init.data, init.data + nC, r.Data());
    }
    cData = r.Data();
    result = r;
  } else {
    auto r = clipo::newArray<float>(env, nC);
    if (c.accumulate) {
      auto init = clipo::getArray<float>(o, "c", nC);
      std::copy(init.data, init.data + nC, r.Data());
    }
    cData = r.Data();
    result = r;
  }
  c.C = cData;
  const char* used = "";
  const char* err = clipo::engine::gemmCudaHost(c, impl, &used);
  if (err && *err) clipo::throwError(env, std::string("engineCudaGemm: ") + err);
  Napi::Object out = Napi::Object::New(env);
  out.Set("c", result);
  out.Set("used", used);
  return out;
}
#else
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  clipo::throwError(info.Env(), "engineCudaGemm: the addon was built without CUDA (rebuild with `npm run build:cuda` where nvcc exists)");
}
#endif

Napi::Value GemmInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
#ifdef CLIPO_WITH_CUDA
  const auto c = clipo::engine::cudaGemmChoice();
  out.Set("mode", c.mode);
  out.Set("impl", c.impl);
  out.Set("why", c.why);
  if (!c.error.empty()) out.Set("error", c.error);
#else
  out.Set("mode", "auto");
  out.Set("impl", "none");
  out.Set("why", "the addon was built without CUDA");
#endif
  return out;
}

void InitEngineCudaGemm(Napi::Env env, Napi::Object exports) {
  exports.Set("engineCudaGemm", Napi::Function::New(env, Gemm, "engineCudaGemm"));
  exports.Set("engineCudaGemmInfo", Napi::Function::New(env, GemmInfo, "engineCudaGemmInfo"));
}

}  // namespace

CLIPO_REGISTER_MODULE(engine_cuda_gemm, InitEngineCudaGemm);
