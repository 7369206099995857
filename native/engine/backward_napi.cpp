// engineCudaBackward(op, args): runs one of the engine's backward CUDA twins (norm_rope.cu, mlp.cu, head.cu) through
// its host wrapper, for the GPU test that compares them with an independent float64 reference
// (test/engine-cuda-backward.test.ts). args.storage picks the overload: 'bf16' (activations as Uint16Array, the top
// 16 bits of an fp32) or 'fp32' (Float32Array); weight gradients are always Float32Array. Outputs are new arrays (the
// inputs are not changed). In a build without CUDA it throws saying so.
//   'rmsnorm' {storage, dy, x, weight, rstd: Float32Array [rows], dx, gw?: Float32Array [hidden], rows, hidden}
//             -> {dx, gw?}                              dx += d(x*rstd*w)/dx . dy, gw += sum_n dy*x*rstd
//   'swiglu'  {storage, gu, dact, rows, intermediate}   -> dgu [rows*2*intermediate]
//   'colsum'  {storage, dy, rows, cols, gb: Float32Array [cols]}  -> gb + column sums of dy
//   'embed'   {storage, dx, hidden, tokens: Int32Array, vocab, grad: Float32Array [vocab*hidden]} -> grad + scatter
//   'head'    {storage, xf, hidden, weight, vocab, rows: Int32Array, targets: Int32Array, logp, entropy?,
//             gradLogp, gradEntropy? (Float32Array [R]), dxf (like xf), dw?: Float32Array [vocab*hidden],
//             chunkColumns?}                            -> {dxf, dw?}
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "common/napi_args.h"
#include "common/registry.h"
#include "engine/head.h"
#include "engine/mlp.h"
#include "engine/norm_rope.h"

namespace {

#ifdef CLIPO_WITH_CUDA
using clipo::getArray;
using clipo::getInt;
using clipo::throwError;

void check(Napi::Env env, const char* err, const std::string& op) {
  if (err && *err) throwError(env, "engineCudaBackward " + op + ": " + err);
}

template <typename T>
Napi::TypedArrayOf<T> copyOf(Napi::Env env, const clipo::ArrayView<T>& a) {
  auto out = clipo::newArray<T>(env, a.length);
  std::copy(a.data, a.data + a.length, out.Data());
  return out;
}

void requireFinite(Napi::Env env, const clipo::ArrayView<float>& a, const char* name) {
  for (size_t i = 0; i < a.length; ++i)
    if (!std::isfinite(a[i])) throwError(env, std::string(name) + "[" + std::to_string(i) + "] is not finite");
}

template <typename T>
Napi::Value Rmsnorm(Napi::Env env, const Napi::Object& o) {
  const int64_t N = getInt(o, "rows", 1), H = getInt(o, "hidden", 1);
  const size_t n = clipo::checkedSize(env, {N, H}, "dy");
  auto dy = getArray<T>(o, "dy", n);
  auto x = getArray<T>(o, "x", n);
  auto w = getArray<T>(o, "weight", static_cast<size_t>(H));
  auto rstd = getArray<float>(o, "rstd", static_cast<size_t>(N));
  auto dx = getArray<T>(o, "dx", n);
  auto gw = clipo::getOptionalArray<float>(o, "gw", static_cast<size_t>(H));
  auto dxo = copyOf(env, dx);
  Napi::Object out = Napi::Object::New(env);
  if (gw.data) {
    auto gwo = copyOf(env, gw);
    check(env, clipo::engine::rmsnormBackwardCudaHost(dy.data, x.data, rstd.data, w.data, dxo.Data(), gwo.Data(), N, H), "rmsnorm");
    out.Set("gw", gwo);
  } else {
    check(env, clipo::engine::rmsnormBackwardCudaHost(dy.data, x.data, rstd.data, w.data, dxo.Data(), nullptr, N, H), "rmsnorm");
  }
  out.Set("dx", dxo);
  return out;
}

template <typename T>
Napi::Value Swiglu(Napi::Env env, const Napi::Object& o) {
  const int64_t N = getInt(o, "rows", 1), I = getInt(o, "intermediate", 1);
  auto gu = getArray<T>(o, "gu", clipo::checkedSize(env, {N, 2, I}, "gu"));
  auto dact = getArray<T>(o, "dact", clipo::checkedSize(env, {N, I}, "dact"));
  auto out = clipo::newArray<T>(env, gu.length);
  check(env, clipo::engine::swigluBackwardCudaHost(gu.data, dact.data, out.Data(), N, I), "swiglu");
  return out;
}

template <typename T>
Napi::Value Colsum(Napi::Env env, const Napi::Object& o) {
  const int64_t N = getInt(o, "rows", 1), C = getInt(o, "cols", 1);
  auto dy = getArray<T>(o, "dy", clipo::checkedSize(env, {N, C}, "dy"));
  auto gb = getArray<float>(o, "gb", static_cast<size_t>(C));
  auto out = copyOf(env, gb);
  check(env, clipo::engine::colSumAccumulateCudaHost(dy.data, N, C, out.Data()), "colsum");
  return out;
}

template <typename T>
Napi::Value Embed(Napi::Env env, const Napi::Object& o) {
  const int64_t H = getInt(o, "hidden", 1), V = getInt(o, "vocab", 1);
  auto tok = getArray<int32_t>(o, "tokens");
  const int64_t N = static_cast<int64_t>(tok.length);
  auto dx = getArray<T>(o, "dx", clipo::checkedSize(env, {N, H}, "dx"));
  auto grad = getArray<float>(o, "grad", clipo::checkedSize(env, {V, H}, "grad"));
  for (int64_t i = 0; i < N; ++i)
    if (tok[i] < 0 || tok[i] >= V) throwError(env, "tokens[" + std::to_string(i) + "]: out of range [0, " + std::to_string(V) + ")");
  auto out = copyOf(env, grad);
  check(env, clipo::engine::embedBackwardCudaHost(dx.data, H, tok.data, N, V, out.Data()), "embed");
  return out;
}

template <typename T>
Napi::Value Head(Napi::Env env, const Napi::Object& o) {
  const int64_t H = getInt(o, "hidden", 1), V = getInt(o, "vocab", 1);
  auto xf = getArray<T>(o, "xf");
  if (xf.length % static_cast<size_t>(H)) throwError(env, "xf: length must be a multiple of hidden");
  auto w = getArray<T>(o, "weight", clipo::checkedSize(env, {V, H}, "weight"));
  auto rows = getArray<int32_t>(o, "rows");
  const size_t R = rows.length;
  auto targets = getArray<int32_t>(o, "targets", R);
  auto logp = getArray<float>(o, "logp", R);
  auto ent = clipo::getOptionalArray<float>(o, "entropy", R);
  auto gl = getArray<float>(o, "gradLogp", R);
  auto ge = clipo::getOptionalArray<float>(o, "gradEntropy", R);
  auto dxf = getArray<T>(o, "dxf", xf.length);
  auto dw = clipo::getOptionalArray<float>(o, "dw", w.length);
  const int64_t chunk = clipo::getIntOr(o, "chunkColumns", 0, 0, INT32_MAX);
  const int64_t xfRows = static_cast<int64_t>(xf.length) / H;
  for (size_t r = 0; r < R; ++r) {
    if (rows[r] < 0 || rows[r] >= xfRows) throwError(env, "rows[" + std::to_string(r) + "]: out of range");
    if (targets[r] < 0 || targets[r] >= V) throwError(env, "targets[" + std::to_string(r) + "]: out of range");
  }
  if (ge.data && !ent.data) throwError(env, "gradEntropy: needs the forward's entropy");
  requireFinite(env, logp, "logp");
  requireFinite(env, gl, "gradLogp");
  if (ent.data) requireFinite(env, ent, "entropy");
  if (ge.data) requireFinite(env, ge, "gradEntropy");
  auto dxo = copyOf(env, dxf);
  Napi::Object out = Napi::Object::New(env);
  if (dw.data) {
    auto dwo = copyOf(env, dw);
    check(env, clipo::engine::headLogprobsBackwardCudaHost(xf.data, xfRows, H, w.data, V, rows.data, targets.data, static_cast<int64_t>(R), logp.data, ent.data, gl.data, ge.data, dxo.Data(), dwo.Data(), chunk), "head");
    out.Set("dw", dwo);
  } else {
    check(env, clipo::engine::headLogprobsBackwardCudaHost(xf.data, xfRows, H, w.data, V, rows.data, targets.data, static_cast<int64_t>(R), logp.data, ent.data, gl.data, ge.data, dxo.Data(), nullptr, chunk), "head");
  }
  out.Set("dxf", dxo);
  return out;
}

template <typename T>
Napi::Value Run(Napi::Env env, const std::string& op, const Napi::Object& o) {
  if (op == "rmsnorm") return Rmsnorm<T>(env, o);
  if (op == "swiglu") return Swiglu<T>(env, o);
  if (op == "colsum") return Colsum<T>(env, o);
  if (op == "embed") return Embed<T>(env, o);
  if (op == "head") return Head<T>(env, o);
  throwError(env, "engineCudaBackward: unknown op '" + op + "' (expected rmsnorm, swiglu, colsum, embed or head)");
}
#endif

Napi::Value EngineCudaBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef CLIPO_WITH_CUDA
  if (info.Length() < 1 || !info[0].IsString()) clipo::throwError(env, "engineCudaBackward: expected an op name");
  const std::string op = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = clipo::argObject(info, 1, "engineCudaBackward");
  const int storage = clipo::getEnum(o, "storage", {"bf16", "fp32"});
  return storage == 0 ? Run<uint16_t>(env, op, o) : Run<float>(env, op, o);
#else
  clipo::throwError(env, "engineCudaBackward: the addon was built without CUDA (rebuild with `npm run build:cuda` where nvcc exists)");
#endif
}

void InitEngineCudaBackward(Napi::Env env, Napi::Object exports) {
  exports.Set("engineCudaBackward", Napi::Function::New(env, EngineCudaBackward));
}

}  // namespace

CLIPO_REGISTER_MODULE(engine_cuda_backward, InitEngineCudaBackward);
