// N-API binding of the surrogate loss: surrogateLossCpu, surrogateLossUnfused and (CUDA builds) surrogateLossCuda,
// surrogateLossCudaTimed. Every value is validated here (again, after the TypeScript wrapper) with napi_args.h.
#include <napi.h>
#include <omp.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "common/napi_args.h"
#include "common/registry.h"
#include "common/variants.h"
#include "kernels/surrogate/surrogate_args.h"
#include "kernels/surrogate/surrogate_loss.h"

namespace {

using namespace clipo;
using clipo::surrogate::Agg;
using clipo::surrogate::Inputs;
using clipo::surrogate::Mode;
using clipo::surrogate::Params;
using clipo::surrogate::Result;

struct Call {
  Params p;
  int threads = 0;  // CPU: OpenMP threads for this call (0 = the current setting)
  Inputs in;
  float* grad = nullptr;
  Napi::Float32Array gradArray;
};

Call parseCall(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Env env = info.Env();
  Napi::Object o = argObject(info, 0, fn);
  Call c;
  c.p.batch = getInt(o, "batch", 1, INT32_MAX);
  c.p.length = getInt(o, "length", 1, INT32_MAX);
  const size_t n = checkedSize(env, {c.p.batch, c.p.length}, "batch*length");
  const int64_t batch = c.p.batch, length = c.p.length;
  c.p = surrogate::parseSettings(o);
  c.p.batch = batch;
  c.p.length = length;
  c.in.logp = getArray<float>(o, "logp", n).data;
  c.in.oldLogp = getArray<float>(o, "oldLogp", n).data;
  c.in.refLogp = getOptionalArray<float>(o, "refLogp", n).data;
  c.in.advantages = getArray<float>(o, "advantages", static_cast<size_t>(c.p.batch)).data;
  c.in.mask = getArray<uint8_t>(o, "mask", n).data;
  if (c.p.klCoef != 0 && !c.in.refLogp) throwError(env, "klCoef: a KL coefficient needs refLogp");
  // the gradient goes into `out` when given (reused across calls), else into a new array
  if (hasField(o, "out")) {
    getArray<float>(o, "out", n);
    c.gradArray = o.Get("out").As<Napi::Float32Array>();
  } else {
    c.gradArray = newArray<float>(env, n);
  }
  c.grad = c.gradArray.Data();
  c.threads = static_cast<int>(getIntOr(o, "threads", 0, 0, 4096));
  const size_t B = static_cast<size_t>(c.p.batch);
  const std::pair<const void*, size_t> inputs[] = {{c.in.logp, n * 4}, {c.in.oldLogp, n * 4}, {c.in.refLogp, n * 4},
                                                   {c.in.advantages, B * 4}, {c.in.mask, n}};
  for (const auto& in : inputs)
    if (overlaps(c.grad, n * 4, in.first, in.second)) throwError(env, "out: must not overlap an input array");
  return c;
}

Napi::Object toJs(Napi::Env env, const Result& r, const Napi::Float32Array& grad) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", r.loss);
  out.Set("pgLoss", r.pgLoss);
  out.Set("klLoss", r.klLoss);
  out.Set("gradLogp", grad);
  out.Set("clipFracHigh", r.clipFracHigh);
  out.Set("clipFracLow", r.clipFracLow);
  out.Set("dualClipFrac", r.dualClipFrac);
  out.Set("approxKl", r.approxKl);
  out.Set("tokens", static_cast<double>(r.tokens));
  out.Set("sequences", static_cast<double>(r.sequences));
  return out;
}

// Sets the OpenMP thread count for one call and restores the caller's setting afterwards.
struct ThreadCount {
  int prev = omp_get_max_threads();
  bool set;
  explicit ThreadCount(int n) : set(n > 0) {
    if (set) omp_set_num_threads(n);
  }
  ~ThreadCount() {
    if (set) omp_set_num_threads(prev);
  }
};

Napi::Value LossCpu(const Napi::CallbackInfo& info) {
  Call c = parseCall(info, "surrogateLossCpu");
  ThreadCount scope(c.threads);
  Result r = guardedCall(info.Env(), "surrogateLoss", [&] { return surrogate::lossCpu(c.p, c.in, c.grad); });
  return toJs(info.Env(), r, c.gradArray);
}

Napi::Value LossUnfused(const Napi::CallbackInfo& info) {
  Call c = parseCall(info, "surrogateLossUnfused");
  ThreadCount scope(c.threads);
  Result r = guardedCall(info.Env(), "surrogateLossUnfused", [&] { return surrogate::lossUnfusedCpu(c.p, c.in, c.grad); });
  return toJs(info.Env(), r, c.gradArray);
}

#ifdef CLIPO_WITH_CUDA
Napi::Value LossCuda(const Napi::CallbackInfo& info) {
  Call c = parseCall(info, "surrogateLossCuda");
  const bool poison = getBoolOr(info[0].As<Napi::Object>(), "poisonOutput", false);
  const bool countOnDevice = getBoolOr(info[0].As<Napi::Object>(), "countOnDevice", false);
  Result r;
  const char* err = guardedCall(info.Env(), "surrogateLossCuda", [&] { return surrogate::lossCudaHost(c.p, c.in, c.grad, &r, poison, countOnDevice); });
  if (err && *err) throwError(info.Env(), std::string("surrogateLossCuda: ") + err);
  return toJs(info.Env(), r, c.gradArray);
}

// surrogateLossCudaTimed({...same fields..., repeats}) -> { ms: number[], result, sets, l2Bytes, bytesPerSet }:
// device-resident inputs rotated through `sets` copies larger than the L2 together, N and Bv passed in (as the
// engine will), CUDA events
Napi::Value LossCudaTimed(const Napi::CallbackInfo& info) {
  Call c = parseCall(info, "surrogateLossCudaTimed");
  const int repeats = static_cast<int>(getIntOr(info[0].As<Napi::Object>(), "repeats", 10, 1, 10000));
  std::vector<double> ms(repeats);
  Result r;
  surrogate::TimedRotation rot;
  const char* err = guardedCall(info.Env(), "surrogateLossCudaTimed", [&] { return surrogate::lossCudaTimed(c.p, c.in, repeats, ms.data(), c.grad, &r, &rot); });
  if (err && *err) throwError(info.Env(), std::string("surrogateLossCudaTimed: ") + err);
  Napi::Env env = info.Env();
  Napi::Array times = Napi::Array::New(env, ms.size());
  for (size_t i = 0; i < ms.size(); ++i) times.Set(static_cast<uint32_t>(i), ms[i]);
  Napi::Object out = Napi::Object::New(env);
  out.Set("ms", times);
  out.Set("result", toJs(env, r, c.gradArray));
  out.Set("sets", rot.sets);
  out.Set("l2Bytes", rot.l2Bytes);
  out.Set("bytesPerSet", rot.bytesPerSet);
  return out;
}
#endif

void InitSurrogate(Napi::Env env, Napi::Object exports) {
  exports.Set("surrogateLossCpu", Napi::Function::New(env, LossCpu, "surrogateLossCpu"));
  exports.Set("surrogateLossUnfused", Napi::Function::New(env, LossUnfused, "surrogateLossUnfused"));
#ifdef CLIPO_WITH_CUDA
  exports.Set("surrogateLossCuda", Napi::Function::New(env, LossCuda, "surrogateLossCuda"));
  exports.Set("surrogateLossCudaTimed", Napi::Function::New(env, LossCudaTimed, "surrogateLossCudaTimed"));
#endif
}

}  // namespace

CLIPO_REGISTER_MODULE(surrogate, InitSurrogate);
