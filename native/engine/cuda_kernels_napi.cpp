// engineCudaKernel(op, args): runs one of the engine's CUDA twins (norm_rope.cu, mlp.cu, head.cu, optim.cu) through its
// host wrapper, for the GPU test that compares them with an independent reference (test/engine-cuda-kernels.test.ts).
// bf16 values travel as Uint16Array (the top 16 bits of an fp32). In a build without CUDA it throws saying so.
//   'embed'   {table, vocab, hidden, tokens: Int32Array}                          -> Uint16Array [N*hidden]
//   'rmsnorm' {residual, delta?, weight, rows, hidden, eps}                        -> {y, residualOut?, rstd}
//   'rope'    {x, rowStride, rows, heads, headDim, positions: Int32Array, ropeTheta, ropeScaling?, inverse?}
//             (heads: q + k heads, contiguous from the start of each row)          -> Uint16Array (x rotated)
//   'swiglu'  {gu, rows, intermediate}                                             -> Uint16Array [rows*intermediate]
//   'head'    {xf, hidden, weight, vocab, rows: Int32Array, targets: Int32Array, chunkColumns?, entropy?,
//             impl?: 'auto' | 'builtin' | 'cublaslt' (the chunk products' GEMM)}  -> {logprobs, entropy?, used}
//   'adamw'   {weights, m, v, grad: Float32Array [n], segments: Int32Array (sizes, tiling the n values),
//             decay: Uint8Array (one flag a segment), step, lr, beta1?, beta2?, eps?, weightDecay?, maxGradNorm?}
//             -> {weights, m, v, bf16: Uint16Array, norm} (new arrays; the inputs are not changed)
#include <napi.h>

#include <string>
#include <vector>

#include "common/napi_args.h"
#include "common/registry.h"
#include "engine/config.h"
#include "engine/head.h"
#include "engine/mlp.h"
#include "engine/norm_rope.h"
#include "engine/optim.h"

namespace {

#ifdef CLIPO_WITH_CUDA
using clipo::getArray;
using clipo::getInt;
using clipo::throwError;

void check(Napi::Env env, const char* err, const std::string& op) {
  if (err && *err) throwError(env, "engineCudaKernel " + op + ": " + err);
}

Napi::Value Embed(Napi::Env env, const Napi::Object& o) {
  const int64_t V = getInt(o, "vocab", 1), H = getInt(o, "hidden", 1);
  auto table = getArray<uint16_t>(o, "table", clipo::checkedSize(env, {V, H}, "table"));
  auto tok = getArray<int32_t>(o, "tokens");
  for (size_t i = 0; i < tok.length; ++i)
    if (tok[i] < 0 || tok[i] >= V) throwError(env, "tokens[" + std::to_string(i) + "]: out of range [0, " + std::to_string(V) + ")");
  const int64_t N = static_cast<int64_t>(tok.length);
  auto out = clipo::newArray<uint16_t>(env, clipo::checkedSize(env, {N, H}, "output"));
  check(env, clipo::engine::embedRowsCudaHost(table.data, V, H, tok.data, N, out.Data()), "embed");
  return out;
}

Napi::Value Rmsnorm(Napi::Env env, const Napi::Object& o) {
  const int64_t N = getInt(o, "rows", 1), H = getInt(o, "hidden", 1);
  const size_t n = clipo::checkedSize(env, {N, H}, "residual");
  auto res = getArray<uint16_t>(o, "residual", n);
  auto delta = clipo::getOptionalArray<uint16_t>(o, "delta", n);
  auto w = getArray<uint16_t>(o, "weight", static_cast<size_t>(H));
  const double eps = clipo::getNumber(o, "eps");
  if (!(eps > 0)) throwError(env, "eps: must be > 0");
  auto y = clipo::newArray<uint16_t>(env, n);
  auto rstd = clipo::newArray<float>(env, static_cast<size_t>(N));
  Napi::Object out = Napi::Object::New(env);
  if (delta.data) {
    auto ro = clipo::newArray<uint16_t>(env, n);
    check(env, clipo::engine::rmsnormResidualCudaHost(res.data, delta.data, w.data, ro.Data(), y.Data(), rstd.Data(), N, H, eps), "rmsnorm");
    out.Set("residualOut", ro);
  } else {
    check(env, clipo::engine::rmsnormResidualCudaHost(res.data, nullptr, w.data, nullptr, y.Data(), rstd.Data(), N, H, eps), "rmsnorm");
  }
  out.Set("y", y);
  out.Set("rstd", rstd);
  return out;
}

Napi::Value Rope(Napi::Env env, const Napi::Object& o) {
  const int64_t N = getInt(o, "rows", 1), stride = getInt(o, "rowStride", 1), nh = getInt(o, "heads", 1);
  const int64_t hd = getInt(o, "headDim", 2);
  if (hd % 2) throwError(env, "headDim: must be even");
  if (nh * hd > stride) throwError(env, "heads * headDim: exceeds rowStride");
  auto x = getArray<uint16_t>(o, "x", clipo::checkedSize(env, {N, stride}, "x"));
  auto pos = getArray<int32_t>(o, "positions", static_cast<size_t>(N));
  int32_t maxPos = 0;
  for (size_t i = 0; i < pos.length; ++i) {
    if (pos[i] < 0 || pos[i] > (1 << 20)) throwError(env, "positions[" + std::to_string(i) + "]: out of range [0, 2^20]");
    maxPos = std::max(maxPos, pos[i]);
  }
  clipo::engine::ModelConfig c;
  c.vocab = c.hidden = c.intermediate = c.layers = 1;
  c.heads = c.kvHeads = 1;
  c.headDim = hd;
  c.ropeTheta = clipo::getNumber(o, "ropeTheta");
  if (clipo::hasField(o, "ropeScaling")) {
    if (!o.Get("ropeScaling").IsObject()) throwError(env, "ropeScaling: expected an object");
    Napi::Object rs = o.Get("ropeScaling").As<Napi::Object>();
    c.llama3Scaling = true;
    c.ropeFactor = clipo::getNumber(rs, "factor");
    c.lowFreqFactor = clipo::getNumber(rs, "lowFreqFactor");
    c.highFreqFactor = clipo::getNumber(rs, "highFreqFactor");
    c.originalMaxPositions = clipo::getNumber(rs, "originalMaxPositionEmbeddings");
  }
  clipo::engine::RopeTable t;
  clipo::guardedCall(env, "rope", [&] {
    clipo::engine::validateConfig(c);
    t.invFreq = clipo::engine::ropeInvFreq(c);
    t.ensure(static_cast<int64_t>(maxPos) + 1);
  });
  auto out = clipo::newArray<uint16_t>(env, x.length);
  std::copy(x.data, x.data + x.length, out.Data());
  check(env, clipo::engine::ropeCudaHost(out.Data(), stride, N, nh, hd, pos.data, t, clipo::getBoolOr(o, "inverse", false)), "rope");
  return out;
}

Napi::Value Swiglu(Napi::Env env, const Napi::Object& o) {
  const int64_t N = getInt(o, "rows", 1), I = getInt(o, "intermediate", 1);
  auto gu = getArray<uint16_t>(o, "gu", clipo::checkedSize(env, {N, 2, I}, "gu"));
  auto out = clipo::newArray<uint16_t>(env, clipo::checkedSize(env, {N, I}, "output"));
  check(env, clipo::engine::swigluCudaHost(gu.data, out.Data(), N, I), "swiglu");
  return out;
}

Napi::Value Head(Napi::Env env, const Napi::Object& o) {
  const int64_t H = getInt(o, "hidden", 1), V = getInt(o, "vocab", 1);
  auto xf = getArray<uint16_t>(o, "xf");
  if (xf.length % static_cast<size_t>(H)) throwError(env, "xf: length must be a multiple of hidden");
  auto w = getArray<uint16_t>(o, "weight", clipo::checkedSize(env, {V, H}, "weight"));
  auto rows = getArray<int32_t>(o, "rows");
  auto targets = getArray<int32_t>(o, "targets", rows.length);
  const int64_t chunk = clipo::getIntOr(o, "chunkColumns", 0, 0, INT32_MAX);
  const bool ent = clipo::getBoolOr(o, "entropy", true);
  // the GEMM of the chunk products: 'auto' (CLIPO_CUDA_GEMM's choice), 'builtin' or 'cublaslt'
  const auto impl = clipo::hasField(o, "impl") ? static_cast<clipo::engine::GemmImpl>(clipo::getEnum(o, "impl", {"auto", "builtin", "cublaslt"}))
                                               : clipo::engine::GemmImpl::Auto;
  const int64_t R = static_cast<int64_t>(rows.length), xfRows = static_cast<int64_t>(xf.length) / H;
  for (int64_t r = 0; r < R; ++r) {
    if (rows[r] < 0 || rows[r] >= xfRows) throwError(env, "rows[" + std::to_string(r) + "]: out of range");
    if (targets[r] < 0 || targets[r] >= V) throwError(env, "targets[" + std::to_string(r) + "]: out of range");
  }
  auto lp = clipo::newArray<float>(env, static_cast<size_t>(R));
  auto e = clipo::newArray<float>(env, ent ? static_cast<size_t>(R) : 0);
  const char* used = "builtin";
  check(env, clipo::engine::headLogprobsCudaHost(xf.data, xfRows, H, w.data, V, rows.data, targets.data, R, lp.Data(), ent ? e.Data() : nullptr, chunk, impl, &used), "head");
  Napi::Object out = Napi::Object::New(env);
  out.Set("logprobs", lp);
  out.Set("used", Napi::String::New(env, used));
  if (ent) out.Set("entropy", e);
  return out;
}

Napi::Value Adamw(Napi::Env env, const Napi::Object& o) {
  auto w = getArray<float>(o, "weights");
  const size_t n = w.length;
  auto m = getArray<float>(o, "m", n);
  auto v = getArray<float>(o, "v", n);
  auto g = getArray<float>(o, "grad", n);
  auto sizes = getArray<int32_t>(o, "segments");
  auto decay = getArray<uint8_t>(o, "decay", sizes.length);
  std::vector<clipo::engine::AdamwSegment> segs;
  int64_t off = 0;
  for (size_t k = 0; k < sizes.length; ++k) {
    if (sizes[k] < 0) throwError(env, "segments[" + std::to_string(k) + "]: must be >= 0");
    segs.push_back(clipo::engine::AdamwSegment{off, sizes[k], decay[k] != 0});
    off += sizes[k];
  }
  if (off != static_cast<int64_t>(n)) throwError(env, "segments: sizes add up to " + std::to_string(off) + ", expected " + std::to_string(n));
  clipo::engine::AdamwHyper h;
  h.lr = clipo::getNumber(o, "lr");
  h.beta1 = clipo::getNumberOr(o, "beta1", 0.9);
  h.beta2 = clipo::getNumberOr(o, "beta2", 0.999);
  h.eps = clipo::getNumberOr(o, "eps", 1e-8);
  h.weightDecay = clipo::getNumberOr(o, "weightDecay", 0);
  h.maxGradNorm = clipo::getNumberOr(o, "maxGradNorm", 0);
  if (h.lr < 0) throwError(env, "lr: must be >= 0");
  if (!(h.beta1 >= 0 && h.beta1 < 1) || !(h.beta2 >= 0 && h.beta2 < 1)) throwError(env, "beta1/beta2: must be in [0, 1)");
  if (!(h.eps > 0)) throwError(env, "eps: must be > 0");
  if (h.weightDecay < 0 || h.maxGradNorm < 0) throwError(env, "weightDecay/maxGradNorm: must be >= 0");
  const int64_t step = getInt(o, "step", 1);
  auto wo = clipo::newArray<float>(env, n), mo = clipo::newArray<float>(env, n), vo = clipo::newArray<float>(env, n);
  auto bo = clipo::newArray<uint16_t>(env, n);
  std::copy(w.data, w.data + n, wo.Data());
  std::copy(m.data, m.data + n, mo.Data());
  std::copy(v.data, v.data + n, vo.Data());
  double norm = 0;
  check(env, clipo::engine::adamwStepCudaHost(wo.Data(), mo.Data(), vo.Data(), g.data, bo.Data(), static_cast<int64_t>(n), segs.data(), segs.size(), h, step, &norm), "adamw");
  Napi::Object out = Napi::Object::New(env);
  out.Set("weights", wo);
  out.Set("m", mo);
  out.Set("v", vo);
  out.Set("bf16", bo);
  out.Set("norm", Napi::Number::New(env, norm));
  return out;
}
#endif

Napi::Value EngineCudaKernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef CLIPO_WITH_CUDA
  if (info.Length() < 1 || !info[0].IsString()) clipo::throwError(env, "engineCudaKernel: expected an op name");
  const std::string op = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = clipo::argObject(info, 1, "engineCudaKernel");
  if (op == "embed") return Embed(env, o);
  if (op == "rmsnorm") return Rmsnorm(env, o);
  if (op == "rope") return Rope(env, o);
  if (op == "swiglu") return Swiglu(env, o);
  if (op == "head") return Head(env, o);
  if (op == "adamw") return Adamw(env, o);
  clipo::throwError(env, "engineCudaKernel: unknown op '" + op + "' (expected embed, rmsnorm, rope, swiglu, head or adamw)");
#else
  clipo::throwError(env, "engineCudaKernel: the addon was built without CUDA (rebuild with `npm run build:cuda` where nvcc exists)");
#endif
}

void InitEngineCudaKernels(Napi::Env env, Napi::Object exports) {
  exports.Set("engineCudaKernel", Napi::Function::New(env, EngineCudaKernel));
}

}  // namespace

CLIPO_REGISTER_MODULE(engine_cuda_kernels, InitEngineCudaKernels);
