// The addon's side of clipo_gpulibs.so (cuBLASLt + NCCL, see gpulibs_abi.h): opened with dlopen on first use, never
// linked, so the addon itself depends on neither library. Exports:
//   gpuLibsInfo()               what the build found (paths, or why not), whether the library loads now and why not,
//                               and the versions it reports at run time
//   gpuLibsGemmBf16(opts)       the cuBLASLt bf16 GEMM probe        (throws a clear Error where it cannot run)
//   gpuLibsAllReduce(opts)      the one-rank NCCL all-reduce probe  (likewise)
//   gpuLibsLtPlans()            the cuBLASLt plans the CUDA engine's GEMM made so far (engine/gemm.cu)
// The library is opened by gpulibs_loader.cpp, which the engine's GEMM dispatch shares.
#include <napi.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/napi_args.h"
#include "common/registry.h"
#include "gpulibs/gpulibs_abi.h"
#include "gpulibs/gpulibs_loader.h"

// Written by CMake (configure_file): what the build looked for and found. A node-gyp build has no such header.
#if defined(__has_include)
#if __has_include("clipo_gpulibs_build.h")
#include "clipo_gpulibs_build.h"
#endif
#endif
#ifndef CLIPO_GPULIBS_BUILT
#define CLIPO_GPULIBS_BUILT 0
#define CLIPO_GPULIBS_WHY "this addon was built by node-gyp (binding.gyp), which builds no GPU libraries; build with cmake-js (npm run build:native)"
#define CLIPO_GPULIBS_CUBLASLT_INCLUDE ""
#define CLIPO_GPULIBS_CUBLASLT_LIBRARY ""
#define CLIPO_GPULIBS_CUBLASLT_WHY "not searched"
#define CLIPO_GPULIBS_NCCL_INCLUDE ""
#define CLIPO_GPULIBS_NCCL_LIBRARY ""
#define CLIPO_GPULIBS_NCCL_WHY "not searched"
#define CLIPO_GPULIBS_SEARCHED ""
#endif

namespace {

using clipo::gpulibs::Library;
const Library& load() { return clipo::gpulibs::library(); }

Napi::Object found(Napi::Env env, const char* include, const char* library, const char* why) {
  Napi::Object o = Napi::Object::New(env);
  const bool ok = library[0] != '\0';
  o.Set("found", ok);
  if (ok) {
    o.Set("include", include);
    o.Set("library", library);
  } else {
    o.Set("why", why);
  }
  return o;
}

Napi::Value GpuLibsInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("built", static_cast<bool>(CLIPO_GPULIBS_BUILT));
  Napi::Object build = Napi::Object::New(env);
  if (!CLIPO_GPULIBS_BUILT) build.Set("why", CLIPO_GPULIBS_WHY);
  build.Set("cublasLt", found(env, CLIPO_GPULIBS_CUBLASLT_INCLUDE, CLIPO_GPULIBS_CUBLASLT_LIBRARY, CLIPO_GPULIBS_CUBLASLT_WHY));
  build.Set("nccl", found(env, CLIPO_GPULIBS_NCCL_INCLUDE, CLIPO_GPULIBS_NCCL_LIBRARY, CLIPO_GPULIBS_NCCL_WHY));
  build.Set("searched", CLIPO_GPULIBS_SEARCHED);
  out.Set("build", build);
  const Library& L = load();
  out.Set("path", L.path);
  out.Set("loaded", L.loaded());
  if (!L.info) {
    out.Set("error", L.error);
    return out;
  }
  ClipoGpuLibsInfo r{};
  L.info(&r);
  Napi::Object rt = Napi::Object::New(env);
  rt.Set("cublasLt", static_cast<bool>(r.cublasLtCompiled));
  rt.Set("cublasLtVersion", static_cast<double>(r.cublasLtVersion));
  rt.Set("nccl", static_cast<bool>(r.ncclCompiled));
  rt.Set("ncclVersion", r.ncclVersion);
  rt.Set("cudaRuntimeVersion", r.cudaRuntimeVersion);
  rt.Set("cudaDriverVersion", r.cudaDriverVersion);
  rt.Set("deviceCount", r.deviceCount);
  out.Set("runtime", rt);
  return out;
}

const Library& requireLoaded(Napi::Env env, const char* what) {
  const Library& L = load();
  if (!L.info) clipo::throwError(env, std::string(what) + ": the GPU libraries are not available (" + L.error + ")");
  return L;
}

Napi::Array samples(Napi::Env env, const std::vector<double>& v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), v[i]);
  return a;
}

// gpuLibsGemmBf16({ m, n, k, repeats?: 20, warmup?: 5, checkSamples?: 256, seed?: 1 })
Napi::Value GpuLibsGemmBf16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) clipo::throwError(env, "gpuLibsGemmBf16: expected an options object { m, n, k }");
  Napi::Object o = info[0].As<Napi::Object>();
  ClipoGemmArgs a{};
  a.m = clipo::getInt(o, "m", 1, int64_t(1) << 20);
  a.n = clipo::getInt(o, "n", 1, int64_t(1) << 20);
  a.k = clipo::getInt(o, "k", 1, int64_t(1) << 20);
  a.repeats = static_cast<int>(clipo::getIntOr(o, "repeats", 20, 1, 10000));
  a.warmup = static_cast<int>(clipo::getIntOr(o, "warmup", 5, 0, 10000));
  a.checkSamples = static_cast<int>(clipo::getIntOr(o, "checkSamples", 256, 1, 1 << 20));
  a.seed = static_cast<uint64_t>(clipo::getIntOr(o, "seed", 1, 0, int64_t(1) << 52));
  const Library& L = requireLoaded(env, "gpuLibsGemmBf16");
  std::vector<double> ms(a.repeats);
  ClipoGemmResult r{};
  char err[512] = {0};
  if (L.gemm(&a, ms.data(), &r, err, sizeof err)) clipo::throwError(env, std::string("gpuLibsGemmBf16: ") + err);
  Napi::Object out = Napi::Object::New(env);
  out.Set("msMedian", r.msMedian);
  out.Set("msMin", r.msMin);
  out.Set("tflops", r.tflops);
  out.Set("maxScaledError", r.maxScaledError);
  out.Set("checked", r.checked);
  out.Set("workspaceBytes", r.workspaceBytes);
  out.Set("samples", samples(env, ms));
  return out;
}

// gpuLibsAllReduce({ megabytes?: 256, repeats?: 20, warmup?: 3 })
Napi::Value GpuLibsAllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  ClipoAllReduceArgs a{};
  a.bytes = clipo::getIntOr(o, "megabytes", 256, 1, 1 << 16) << 20;
  a.repeats = static_cast<int>(clipo::getIntOr(o, "repeats", 20, 1, 10000));
  a.warmup = static_cast<int>(clipo::getIntOr(o, "warmup", 3, 0, 10000));
  const Library& L = requireLoaded(env, "gpuLibsAllReduce");
  std::vector<double> ms(a.repeats);
  ClipoAllReduceResult r{};
  char err[512] = {0};
  if (L.allReduce(&a, ms.data(), &r, err, sizeof err)) clipo::throwError(env, std::string("gpuLibsAllReduce: ") + err);
  Napi::Object out = Napi::Object::New(env);
  out.Set("bytes", static_cast<double>(a.bytes));
  out.Set("nranks", r.nranks);
  out.Set("msMedian", r.msMedian);
  out.Set("msMin", r.msMin);
  out.Set("algGBs", r.algGBs);
  out.Set("maxAbsError", r.maxAbsError);
  out.Set("samples", samples(env, ms));
  return out;
}

// gpuLibsLtPlans() -> [{ op, inType, outType, shapeClass, bias, accumulate, device, fixed: [a, b], supported,
// algoId, tile, stages, splitK, reductionScheme, candidates, wavesCount, workspaceBytes, calls }]: the cuBLASLt plans
// the engine's GEMM made so far in this process (empty when the library is not loaded).
Napi::Value GpuLibsLtPlans(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Library& L = load();
  Napi::Array out = Napi::Array::New(env);
  if (!L.loaded()) return out;
  std::vector<ClipoLtPlanInfo> plans(static_cast<size_t>(std::max(0, L.ltPlans(nullptr, 0))) + 16);
  const int n = std::min<int>(L.ltPlans(plans.data(), static_cast<int>(plans.size())), static_cast<int>(plans.size()));
  static const char* ops[] = {"nt", "nn", "tn"};
  static const char* types[] = {"bf16", "fp32"};
  static const char* classes[] = {"wide", "rows"};
  for (int i = 0; i < n; ++i) {
    const ClipoLtPlanInfo& p = plans[static_cast<size_t>(i)];
    Napi::Object o = Napi::Object::New(env);
    o.Set("op", ops[p.op >= 0 && p.op <= 2 ? p.op : 0]);
    o.Set("inType", types[p.inType & 1]);
    o.Set("outType", types[p.outType & 1]);
    o.Set("shapeClass", classes[p.shapeClass & 1]);
    o.Set("bias", static_cast<bool>(p.bias));
    o.Set("accumulate", static_cast<bool>(p.accumulate));
    o.Set("device", p.device);
    Napi::Array fixed = Napi::Array::New(env, 2);
    fixed.Set(0u, static_cast<double>(p.fixed0));
    fixed.Set(1u, static_cast<double>(p.fixed1));
    o.Set("fixed", fixed);
    o.Set("supported", static_cast<bool>(p.supported));
    o.Set("algoId", p.algoId);
    o.Set("tile", p.tile);
    o.Set("stages", p.stages);
    o.Set("splitK", p.splitK);
    o.Set("reductionScheme", p.reductionScheme);
    o.Set("candidates", p.candidates);
    o.Set("wavesCount", p.wavesCount);
    o.Set("workspaceBytes", p.workspaceBytes);
    o.Set("calls", static_cast<double>(p.calls));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

void InitGpuLibs(Napi::Env env, Napi::Object exports) {
  exports.Set("gpuLibsLtPlans", Napi::Function::New(env, GpuLibsLtPlans, "gpuLibsLtPlans"));
  exports.Set("gpuLibsInfo", Napi::Function::New(env, GpuLibsInfo, "gpuLibsInfo"));
  exports.Set("gpuLibsGemmBf16", Napi::Function::New(env, GpuLibsGemmBf16, "gpuLibsGemmBf16"));
  exports.Set("gpuLibsAllReduce", Napi::Function::New(env, GpuLibsAllReduce, "gpuLibsAllReduce"));
}

}  // namespace

CLIPO_REGISTER_MODULE(gpulibs, InitGpuLibs);
