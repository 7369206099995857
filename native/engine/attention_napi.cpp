// engineCudaAttention(op, args): runs the engine's attention CUDA twins (attention.cu) through their host wrappers,
// for the GPU test that compares them with an independent float64 reference (test/engine-cuda-attention.test.ts).
// The storage follows the type of `qkv`: Uint16Array = bf16 (the top 16 bits of an fp32), Float32Array = fp32; the
// other tensors of the call must have the same type (lse is always Float32Array). In a build without CUDA it throws
// saying so. Common shape fields: heads, kvHeads, headDim, rowStride? (default heads*headDim + 2*kvHeads*headDim).
//   'spans'         {qkv [rows*rowStride], rows, spanStarts, spanLengths: Int32Array}      -> {o [rows*qd], lse [rows*heads]}
//   'spansBackward' {qkv, o, lse, dO, rows, spanStarts, spanLengths}                       -> dqkv [rows*rowStride]
//   'cacheWrite'    {qkv, rows, slots: Int32Array [rows], numBlocks, blockSize, kCache, vCache [numBlocks*blockSize*kvHeads*headDim]}
//                   -> {kCache, vCache} (new arrays; the inputs are not changed)
//   'decode'        {qkv [seqs*rowStride], seqs, blockTables: Int32Array [seqs*maxBlocksPerSeq], maxBlocksPerSeq,
//                   seqLens: Int32Array [seqs], numBlocks, blockSize, kCache, vCache}       -> o [seqs*qd]
#include <napi.h>

#include <string>
#include <vector>

#include "common/napi_args.h"
#include "common/registry.h"
#include "engine/attention.h"
#include "engine/config.h"

namespace {

#ifdef CLIPO_WITH_CUDA
using clipo::getArray;
using clipo::getInt;
using clipo::throwError;
using namespace clipo::engine;

void check(Napi::Env env, const char* err, const std::string& op) {
  if (err && *err) throwError(env, "engineCudaAttention " + op + ": " + err);
}

AttnShape shapeOf(const Napi::Object& o) {
  AttnShape s;
  s.heads = getInt(o, "heads", 1, 65535);
  s.kvHeads = getInt(o, "kvHeads", 1, 65535);
  s.headDim = getInt(o, "headDim", 1, 4096);
  s.qd = s.heads * s.headDim;
  s.rowStride = clipo::getIntOr(o, "rowStride", s.qd + 2 * s.kvHeads * s.headDim, 1);
  return s;
}

std::vector<Span> spansOf(const Napi::Object& o) {
  auto st = getArray<int32_t>(o, "spanStarts");
  auto ln = getArray<int32_t>(o, "spanLengths", st.length);
  std::vector<Span> spans(st.length);
  for (size_t i = 0; i < st.length; ++i) {
    spans[i].start = st[i];
    spans[i].length = ln[i];
  }
  return spans;
}

KvCacheShape cacheOf(const Napi::Object& o, const AttnShape& s) {
  KvCacheShape c;
  c.numBlocks = getInt(o, "numBlocks", 1);
  c.blockSize = getInt(o, "blockSize", 1, 65536);
  c.kvHeads = s.kvHeads;
  c.headDim = s.headDim;
  return c;
}

template <typename T>
Napi::Value Spans(Napi::Env env, const Napi::Object& o) {
  const AttnShape s = shapeOf(o);
  const int64_t N = getInt(o, "rows", 1);
  auto qkv = getArray<T>(o, "qkv", clipo::checkedSize(env, {N, s.rowStride}, "qkv"));
  const auto spans = spansOf(o);
  auto out = clipo::newArray<T>(env, clipo::checkedSize(env, {N, s.qd}, "o"));
  auto lse = clipo::newArray<float>(env, clipo::checkedSize(env, {N, s.heads}, "lse"));
  check(env, attentionSpansCudaHost(s, spans, N, qkv.data, out.Data(), lse.Data()), "spans");
  Napi::Object r = Napi::Object::New(env);
  r.Set("o", out);
  r.Set("lse", lse);
  return r;
}

template <typename T>
Napi::Value SpansBackward(Napi::Env env, const Napi::Object& o) {
  const AttnShape s = shapeOf(o);
  const int64_t N = getInt(o, "rows", 1);
  const size_t nq = clipo::checkedSize(env, {N, s.qd}, "o");
  auto qkv = getArray<T>(o, "qkv", clipo::checkedSize(env, {N, s.rowStride}, "qkv"));
  auto out = getArray<T>(o, "o", nq);
  auto lse = getArray<float>(o, "lse", clipo::checkedSize(env, {N, s.heads}, "lse"));
  auto dO = getArray<T>(o, "dO", nq);
  const auto spans = spansOf(o);
  auto dqkv = clipo::newArray<T>(env, clipo::checkedSize(env, {N, s.rowStride}, "dqkv"));
  check(env, attentionSpansBackwardCudaHost(s, spans, N, qkv.data, out.data, lse.data, dO.data, dqkv.Data()),
        "spansBackward");
  return dqkv;
}

template <typename T>
Napi::Value CacheWrite(Napi::Env env, const Napi::Object& o) {
  const AttnShape s = shapeOf(o);
  const KvCacheShape c = cacheOf(o, s);
  const int64_t N = getInt(o, "rows", 1);
  auto qkv = getArray<T>(o, "qkv", clipo::checkedSize(env, {N, s.rowStride}, "qkv"));
  auto slots = getArray<int32_t>(o, "slots", static_cast<size_t>(N));
  const size_t cn = clipo::checkedSize(env, {c.numBlocks, c.blockSize, s.kvHeads, s.headDim}, "cache");
  auto k = getArray<T>(o, "kCache", cn);
  auto v = getArray<T>(o, "vCache", cn);
  auto ko = clipo::newArray<T>(env, cn, "kCache");
  auto vo = clipo::newArray<T>(env, cn, "vCache");
  std::copy(k.data, k.data + cn, ko.Data());
  std::copy(v.data, v.data + cn, vo.Data());
  check(env, kvCacheWriteCudaHost(c, s, qkv.data, slots.data, N, ko.Data(), vo.Data()), "cacheWrite");
  Napi::Object r = Napi::Object::New(env);
  r.Set("kCache", ko);
  r.Set("vCache", vo);
  return r;
}

template <typename T>
Napi::Value Decode(Napi::Env env, const Napi::Object& o) {
  const AttnShape s = shapeOf(o);
  const KvCacheShape c = cacheOf(o, s);
  const int64_t nSeq = getInt(o, "seqs", 1, 65535), maxBlocks = getInt(o, "maxBlocksPerSeq", 1);
  auto qkv = getArray<T>(o, "qkv", clipo::checkedSize(env, {nSeq, s.rowStride}, "qkv"));
  auto tables = getArray<int32_t>(o, "blockTables", clipo::checkedSize(env, {nSeq, maxBlocks}, "blockTables"));
  auto lens = getArray<int32_t>(o, "seqLens", static_cast<size_t>(nSeq));
  const size_t cn = clipo::checkedSize(env, {c.numBlocks, c.blockSize, s.kvHeads, s.headDim}, "cache");
  auto k = getArray<T>(o, "kCache", cn);
  auto v = getArray<T>(o, "vCache", cn);
  auto out = clipo::newArray<T>(env, clipo::checkedSize(env, {nSeq, s.qd}, "o"));
  check(env, attentionDecodeCudaHost(c, s, qkv.data, nSeq, tables.data, maxBlocks, lens.data, k.data, v.data, out.Data()),
        "decode");
  return out;
}

template <typename T>
Napi::Value Dispatch(Napi::Env env, const std::string& op, const Napi::Object& o) {
  if (op == "spans") return Spans<T>(env, o);
  if (op == "spansBackward") return SpansBackward<T>(env, o);
  if (op == "cacheWrite") return CacheWrite<T>(env, o);
  if (op == "decode") return Decode<T>(env, o);
  throwError(env, "engineCudaAttention: unknown op '" + op + "' (expected spans, spansBackward, cacheWrite or decode)");
}
#endif

Napi::Value EngineCudaAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef CLIPO_WITH_CUDA
  if (info.Length() < 1 || !info[0].IsString()) clipo::throwError(env, "engineCudaAttention: expected an op name");
  const std::string op = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = clipo::argObject(info, 1, "engineCudaAttention");
  if (!clipo::hasField(o, "qkv") || !o.Get("qkv").IsTypedArray())
    clipo::throwError(env, "qkv: expected a Uint16Array (bf16) or a Float32Array (fp32)");
  const napi_typedarray_type t = o.Get("qkv").As<Napi::TypedArray>().TypedArrayType();
  if (t == napi_uint16_array) return Dispatch<uint16_t>(env, op, o);
  if (t == napi_float32_array) return Dispatch<float>(env, op, o);
  clipo::throwError(env, "qkv: expected a Uint16Array (bf16) or a Float32Array (fp32)");
#else
  clipo::throwError(env, "engineCudaAttention: the addon was built without CUDA (rebuild with `npm run build:cuda` where nvcc exists)");
#endif
}

void InitEngineCudaAttention(Napi::Env env, Napi::Object exports) {
  exports.Set("engineCudaAttention", Napi::Function::New(env, EngineCudaAttention));
}

}  // namespace

CLIPO_REGISTER_MODULE(engine_cuda_attention, InitEngineCudaAttention);
