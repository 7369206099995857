// N-API binding of the contrastive kernel. Every value that enters C++ is checked here again (the TypeScript layer
// checks first, with the same messages where it can): lengths, element types, enum names, ranges, the InfoNCE
// positives given by the caller, and responses without any response token.
//
//   contrastiveLoss(opts)          fused CPU kernel
//   contrastiveLossUnfused(opts)   the unfused CPU baseline (benchmarks, tests)
//   contrastiveLossCuda(opts)      CUDA twin through host copies (builds with CUDA only)
//   contrastiveCudaBench(opts)     the CUDA device entry timed on device-resident inputs (benchmarks)
#include <napi.h>

#include <string>

#include "common/napi_args.h"
#include "common/registry.h"
#include "common/variants.h"
#include "contrastive_loss.h"

namespace {

using namespace clipo::contrastive;
namespace variants = clipo::variants;

// The variant names every entry reads (one parser: common/variants.h).
void readVariants(const Napi::Object& o, Params& p) {
  p.head = variants::getOr(o, "head", Head::Linear);
  p.loss = variants::get<LossType>(o, "lossType");
  p.level = variants::get<Level>(o, "level");
  p.distance = variants::get<Distance>(o, "distance");
}

struct Parsed {
  Params p;
  Inputs in;
  Outputs out;
  Napi::Object result;
};

Parsed parse(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Env env = info.Env();
  Napi::Object o = clipo::argObject(info, 0, fn);
  Parsed r;
  Params& p = r.p;
  Inputs& in = r.in;
  p.batch = clipo::getInt(o, "batch", 1, 1 << 20);
  p.hidden = clipo::getInt(o, "hiddenSize", 1, 1 << 20);
  p.out = clipo::getInt(o, "outSize", 1, 1 << 20);
  readVariants(o, p);
  const double tau = clipo::getNumber(o, "temperature");
  // held in fp32 by the kernel: below this, similarities / tau overflow (and 1e-50 would become 0)
  if (!(tau >= 1e-4)) clipo::throwError(env, "temperature: must be >= 0.0001, got " + std::to_string(tau));
  p.temperature = static_cast<float>(tau);
  const double eps = clipo::getNumberOr(o, "eps", 1e-8);
  if (!(eps > 0.0)) clipo::throwError(env, "eps: must be > 0, got " + std::to_string(eps));
  p.eps = static_cast<float>(eps);
  p.maskedLabel = static_cast<int>(clipo::getInt(o, "maskedLabel", -1, 1));
  if (!clipo::hasField(o, "skipTrivial")) clipo::throwError(env, "skipTrivial: expected a boolean");
  p.skipTrivial = clipo::getBoolOr(o, "skipTrivial", true);
  p.seed = static_cast<uint32_t>(clipo::getIntOr(o, "seed", 0, 0, UINT32_MAX));
  p.computeGrad = clipo::getBoolOr(o, "grad", true);
  p.threads = static_cast<int>(clipo::getIntOr(o, "threads", 0, 0, 4096));
  const size_t B = static_cast<size_t>(p.batch), H = static_cast<size_t>(p.hidden), D = static_cast<size_t>(p.out);

  const bool hasPooled = clipo::hasField(o, "pooled"), hasTokens = clipo::hasField(o, "tokens");
  if (hasPooled == hasTokens) clipo::throwError(env, "pooled/tokens: give exactly one of them");
  if (hasPooled) {
    in.pooled = clipo::getArray<float>(o, "pooled", clipo::checkedSize(env, {p.batch, p.hidden}, "pooled")).data;
  } else {
    p.length = clipo::getInt(o, "length", 1, INT32_MAX);
    const size_t n = clipo::checkedSize(env, {p.batch, p.length, p.hidden}, "tokens");
    in.tokenType = variants::getOr(o, "dtype", DType::F32);
    in.tokens = in.tokenType == DType::BF16 ? static_cast<const void*>(clipo::getArray<uint16_t>(o, "tokens", n).data)
                                            : static_cast<const void*>(clipo::getArray<float>(o, "tokens", n).data);
    const size_t L = static_cast<size_t>(p.length);
    in.mask = clipo::getArray<uint8_t>(o, "mask", B * L).data;
    for (size_t i = 0; i < B; ++i) {
      size_t count = 0;
      for (size_t t = 0; t < L; ++t) {
        const uint8_t m = in.mask[i * L + t];
        if (m > 1) clipo::throwError(env, "mask: values must be 0 or 1, got " + std::to_string(m) + " at index " + std::to_string(i * L + t));
        count += m;
      }
      if (!count)
        clipo::throwError(env, "mask: response " + std::to_string(i) + " has no response token (an all-masked response has no mean)");
    }
  }
  if (p.head == Head::Linear) {
    in.weightOut = clipo::getArray<float>(o, "weight", clipo::checkedSize(env, {p.out, p.hidden}, "weight")).data;
  } else {
    in.weightIn = clipo::getArray<float>(o, "weight1", clipo::checkedSize(env, {p.hidden, p.hidden}, "weight1")).data;
    in.weightOut = clipo::getArray<float>(o, "weight2", clipo::checkedSize(env, {p.out, p.hidden}, "weight2")).data;
  }
  in.correct = clipo::getArray<uint8_t>(o, "correct", B).data;
  in.group = clipo::getArray<int32_t>(o, "group", B).data;
  for (size_t i = 0; i < B; ++i) {
    if (in.correct[i] > 1) clipo::throwError(env, "correct: values must be 0 or 1, got " + std::to_string(in.correct[i]) + " at index " + std::to_string(i));
    if (in.group[i] < 0) clipo::throwError(env, "group: ids must be >= 0, got " + std::to_string(in.group[i]) + " at index " + std::to_string(i));
  }
  if (clipo::hasField(o, "positives")) {
    in.positives = clipo::getArray<int32_t>(o, "positives", B).data;
    for (size_t i = 0; i < B; ++i) {
      const int32_t j = in.positives[i];
      if (j == -1) continue;
      const bool ok = j >= 0 && static_cast<size_t>(j) < B && static_cast<size_t>(j) != i &&
                      inAll(p.level, in.group[i], in.group[j]) &&
                      inPos(p.level, in.group[i], in.group[j], in.correct[i], in.correct[j]);
      if (!ok)
        clipo::throwError(env, "positives: entry " + std::to_string(i) + " = " + std::to_string(j) +
                                   " is not -1 and not in the positive set P(" + std::to_string(i) + ")");
    }
  }

  // outputs and the kernel's own scratch (B x B similarities and their gradient, B x D projections), checked
  // against what can be allocated before anything is
  {
    const double b = static_cast<double>(B), h = static_cast<double>(H), d = static_cast<double>(D);
    const double outputs = 2 * b + b * d + (p.computeGrad ? d * h + (p.head == Head::Mlp ? h * h : 0.0) : 0.0);
    const double scratch = 2 * b * b + 3 * b * d + (p.head == Head::Mlp ? 3 * b * h : b * h);
    clipo::checkAllocatable(env, 4.0 * (outputs + scratch), fn);
  }
  // outputs: allocated as JS typed arrays and written in place by the kernel
  Napi::Object res = Napi::Object::New(env);
  auto perSample = clipo::newArray<float>(env, B);
  auto embeddings = clipo::newArray<float>(env, B * D);
  auto positives = clipo::newArray<int32_t>(env, B);
  res.Set("perSample", perSample);
  res.Set("embeddings", embeddings);
  res.Set("positives", positives);
  r.out.perSample = perSample.Data();
  r.out.embeddings = embeddings.Data();
  r.out.positives = positives.Data();
  if (p.computeGrad) {
    auto gw = clipo::newArray<float>(env, D * H);
    if (p.head == Head::Linear) {
      res.Set("gradWeight", gw);
    } else {
      auto gw1 = clipo::newArray<float>(env, H * H);
      res.Set("gradWeight1", gw1);
      res.Set("gradWeight2", gw);
      r.out.gradWeightIn = gw1.Data();
    }
    r.out.gradWeightOut = gw.Data();
  }
  r.result = res;
  return r;
}

Napi::Value finish(Parsed& r, float loss, int32_t valid) {
  r.result.Set("loss", Napi::Number::New(r.result.Env(), loss));
  r.result.Set("validAnchors", Napi::Number::New(r.result.Env(), valid));
  return r.result;
}

Napi::Value ContrastiveLoss(const Napi::CallbackInfo& info) {
  Parsed r = parse(info, "contrastiveLoss");
  float loss = 0.f;
  int32_t valid = 0;
  r.out.loss = &loss;
  r.out.validAnchors = &valid;
  clipo::guardedCall(info.Env(), "contrastiveLoss", [&] { contrastiveCpu(r.p, r.in, r.out); });
  return finish(r, loss, valid);
}

Napi::Value ContrastiveLossUnfused(const Napi::CallbackInfo& info) {
  Parsed r = parse(info, "contrastiveLossUnfused");
  float loss = 0.f;
  int32_t valid = 0;
  r.out.loss = &loss;
  r.out.validAnchors = &valid;
  clipo::guardedCall(info.Env(), "contrastiveLossUnfused", [&] { contrastiveUnfusedCpu(r.p, r.in, r.out); });
  return finish(r, loss, valid);
}

#if defined(CLIPO_WITH_CUDA)
Napi::Value ContrastiveLossCuda(const Napi::CallbackInfo& info) {
  Parsed r = parse(info, "contrastiveLossCuda");
  if (cudaDeviceCount() <= 0) clipo::throwError(info.Env(), "contrastiveLoss: backend 'cuda' requested but no CUDA device is visible");
  float loss = 0.f;
  int32_t valid = 0;
  r.out.loss = &loss;
  r.out.validAnchors = &valid;
  const char* err = clipo::guardedCall(info.Env(), "contrastiveLoss (cuda)", [&] { return contrastiveCudaHost(r.p, r.in, r.out); });
  if (err && *err) clipo::throwError(info.Env(), std::string("contrastiveLoss (cuda): ") + err);
  return finish(r, loss, valid);
}

// contrastiveCudaBench({ batch, length, hiddenSize, outSize, head?, dtype?, repeats?, lossType, level, distance,
//   temperature, maskedLabel, skipTrivial }) -> { ms, poolMs, bytes }: the device entry on device-resident random
// inputs (full masks); bytes = tokens + mask read, weights read, weight gradient written.
Napi::Value ContrastiveCudaBench(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = clipo::argObject(info, 0, "contrastiveCudaBench");
  Params p;
  p.batch = clipo::getInt(o, "batch", 1, 4096);
  p.length = clipo::getInt(o, "length", 1, 1 << 20);
  p.hidden = clipo::getInt(o, "hiddenSize", 1, 1 << 16);
  p.out = clipo::getInt(o, "outSize", 1, 1 << 16);
  readVariants(o, p);
  p.temperature = static_cast<float>(clipo::getNumber(o, "temperature"));
  if (!(p.temperature > 0.f)) clipo::throwError(env, "temperature: must be > 0");
  p.maskedLabel = static_cast<int>(clipo::getInt(o, "maskedLabel", -1, 1));
  p.skipTrivial = clipo::getBoolOr(o, "skipTrivial", true);
  const DType type = variants::getOr(o, "dtype", DType::F32);
  const int repeats = static_cast<int>(clipo::getIntOr(o, "repeats", 20, 1, 10000));
  if (cudaDeviceCount() <= 0) clipo::throwError(env, "contrastiveCudaBench: no CUDA device is visible");
  double ms = 0, poolMs = 0;
  const char* err = contrastiveCudaBenchmark(p, type, repeats, &ms, &poolMs);
  if (err && *err) clipo::throwError(env, std::string("contrastiveCudaBench: ") + err);
  const double tokenBytes = static_cast<double>(p.batch) * p.length * p.hidden * (type == DType::BF16 ? 2 : 4);
  const double weightBytes = 2.0 * p.out * p.hidden * 4 + (p.head == Head::Mlp ? 2.0 * p.hidden * p.hidden * 4 : 0.0);
  Napi::Object res = Napi::Object::New(env);
  res.Set("ms", ms);
  res.Set("poolMs", poolMs);
  res.Set("bytes", tokenBytes + static_cast<double>(p.batch) * p.length + weightBytes);
  res.Set("poolBytes", tokenBytes + static_cast<double>(p.batch) * p.length);
  return res;
}
#endif

void InitContrastive(Napi::Env env, Napi::Object exports) {
  exports.Set("contrastiveLoss", Napi::Function::New(env, ContrastiveLoss, "contrastiveLoss"));
  exports.Set("contrastiveLossUnfused", Napi::Function::New(env, ContrastiveLossUnfused, "contrastiveLossUnfused"));
#if defined(CLIPO_WITH_CUDA)
  exports.Set("contrastiveLossCuda", Napi::Function::New(env, ContrastiveLossCuda, "contrastiveLossCuda"));
  exports.Set("contrastiveCudaBench", Napi::Function::New(env, ContrastiveCudaBench, "contrastiveCudaBench"));
#endif
}

}  // namespace

CLIPO_REGISTER_MODULE(contrastive, InitContrastive);
