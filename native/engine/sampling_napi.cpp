// engineCudaSample(args): runs the CUDA sampler (sampling.cu) through its host wrapper, for the GPU test that compares
// it with the CPU sampler and the softmax (test/engine-cuda-sampling.test.ts). In a build without CUDA it throws saying so.
//   {logits: Float32Array [rows*vocab], rows, vocab, u: Float64Array [rows],
//    temperature?, topP?, minP?, repetitionPenalty?: Float64Array [rows] (defaults 1, 1, 0, 1),
//    topK?, topLogprobs?: Int32Array [rows] (default 0),
//    history?: Int32Array + historyOffsets: Int32Array [rows+1] (row r's tokens: history[off[r]..off[r+1])),
//    biasTokens?: Int32Array + biasValues: Float32Array + biasOffsets: Int32Array [rows+1], maxTop? (default 0)}
//   -> {tokens: Int32Array [rows], logprobs: Float32Array [rows], topTokens: Int32Array, topLogprobs: Float32Array
//       ([rows*maxTop], -1 / 0 past each row's list)}
#include <napi.h>

#include <string>
#include <vector>

#include "common/napi_args.h"
#include "common/registry.h"
#include "engine/sampling.h"

namespace {

Napi::Value EngineCudaSample(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef CLIPO_WITH_CUDA
  Napi::Object o = clipo::argObject(info, 0, "engineCudaSample");
  const int64_t R = clipo::getInt(o, "rows", 1), V = clipo::getInt(o, "vocab", 1);
  auto z = clipo::getArray<float>(o, "logits", clipo::checkedSize(env, {R, V}, "logits"));
  auto u = clipo::getArray<double>(o, "u", static_cast<size_t>(R));
  const size_t n = static_cast<size_t>(R);
  auto temp = clipo::getOptionalArray<double>(o, "temperature", n);
  auto topP = clipo::getOptionalArray<double>(o, "topP", n);
  auto minP = clipo::getOptionalArray<double>(o, "minP", n);
  auto pen = clipo::getOptionalArray<double>(o, "repetitionPenalty", n);
  auto topK = clipo::getOptionalArray<int32_t>(o, "topK", n);
  auto topL = clipo::getOptionalArray<int32_t>(o, "topLogprobs", n);
  auto hist = clipo::getOptionalArray<int32_t>(o, "history");
  auto histOff = clipo::getOptionalArray<int32_t>(o, "historyOffsets", n + 1);
  auto bt = clipo::getOptionalArray<int32_t>(o, "biasTokens");
  auto bv = clipo::getOptionalArray<float>(o, "biasValues", bt.length);
  auto bOff = clipo::getOptionalArray<int32_t>(o, "biasOffsets", n + 1);
  const int64_t maxTop = clipo::getIntOr(o, "maxTop", 0, 0, 1024);
  if (hist.data && !histOff.data) clipo::throwError(env, "engineCudaSample: history needs historyOffsets");
  if (bt.data && !bOff.data) clipo::throwError(env, "engineCudaSample: biasTokens needs biasOffsets");
  auto checkOffsets = [&](const clipo::ArrayView<int32_t>& off, size_t total, const char* what) {
    if (!off.data) return;
    if (off.data[0] != 0 || static_cast<size_t>(off.data[n]) != total)
      clipo::throwError(env, std::string("engineCudaSample: ") + what + " must start at 0 and end at the array's length");
    for (size_t r = 0; r < n; ++r)
      if (off.data[r + 1] < off.data[r]) clipo::throwError(env, std::string("engineCudaSample: ") + what + " must not decrease");
  };
  checkOffsets(histOff, hist.length, "historyOffsets");
  checkOffsets(bOff, bt.length, "biasOffsets");
  std::vector<clipo::engine::SampleRowParams> P(n);
  for (size_t r = 0; r < n; ++r) {
    auto& q = P[r];
    q.u = u.data[r];
    if (temp.data) q.temperature = temp.data[r];
    if (topP.data) q.topP = topP.data[r];
    if (minP.data) q.minP = minP.data[r];
    if (pen.data) q.repetitionPenalty = pen.data[r];
    if (topK.data) q.topK = topK.data[r];
    if (topL.data) q.topLogprobs = topL.data[r];
    if (histOff.data) {
      q.penaltyBegin = histOff.data[r];
      q.penaltyEnd = histOff.data[r + 1];
    }
    if (bOff.data) {
      q.biasBegin = bOff.data[r];
      q.biasEnd = bOff.data[r + 1];
    }
  }
  auto tokens = Napi::Int32Array::New(env, n);
  auto lps = Napi::Float32Array::New(env, n);
  auto tt = Napi::Int32Array::New(env, n * static_cast<size_t>(maxTop));
  auto tl = Napi::Float32Array::New(env, n * static_cast<size_t>(maxTop));
  const int32_t zeroI = 0;
  const float zeroF = 0.f;
  const char* err = clipo::engine::sampleRowsCudaHost(
      z.data, R, V, P.data(), hist.data ? hist.data : &zeroI, static_cast<int64_t>(hist.length),
      bt.data ? bt.data : &zeroI, bv.data ? bv.data : &zeroF, static_cast<int64_t>(bt.length), maxTop, tokens.Data(),
      lps.Data(), tt.Data(), tl.Data());
  if (err && *err) clipo::throwError(env, std::string("engineCudaSample: ") + err);
  Napi::Object out = Napi::Object::New(env);
  out.Set("tokens", tokens);
  out.Set("logprobs", lps);
  out.Set("topTokens", tt);
  out.Set("topLogprobs", tl);
  return out;
#else
  clipo::throwError(env, "engineCudaSample: the addon was built without CUDA (rebuild with `npm run build:cuda` where nvcc exists)");
#endif
}

void InitEngineCudaSampling(Napi::Env env, Napi::Object exports) {
  exports.Set("engineCudaSample", Napi::Function::New(env, EngineCudaSample));
}

}  // namespace

CLIPO_REGISTER_MODULE(engine_cuda_sampling, InitEngineCudaSampling);
