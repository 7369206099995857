// cudaDeviceInfo() and measureDeviceBandwidth() for `clipo bench` and the backend choice. Always exported: a
// CPU-only build reports { compiled: false, count: 0 } and measureDeviceBandwidth throws a clear Error.
#include <napi.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/napi_args.h"
#include "common/registry.h"
#ifdef CLIPO_WITH_CUDA
#include "bench/cuda_info.h"
#endif

namespace {

// cudaDeviceInfo() -> { compiled, count, devices: [{ index, name, memoryBytes, computeCapability, multiprocessors }],
//                       runtimeVersion, driverVersion, error? }
Napi::Value CudaDeviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array devices = Napi::Array::New(env);
#ifdef CLIPO_WITH_CUDA
  out.Set("compiled", true);
  std::string error;
  const int count = clipo::cudainfo::deviceCount(&error);
  int runtime = 0, driver = 0;
  clipo::cudainfo::versions(&runtime, &driver);
  out.Set("runtimeVersion", runtime);
  out.Set("driverVersion", driver);
  for (int i = 0; i < count; ++i) {
    clipo::cudainfo::Device d;
    if (!clipo::cudainfo::deviceProps(i, &d, &error)) continue;
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", i);
    o.Set("name", d.name);
    o.Set("memoryBytes", static_cast<double>(d.totalBytes));
    o.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    o.Set("multiprocessors", d.multiprocessors);
    devices.Set(devices.Length(), o);
  }
  out.Set("count", devices.Length());
  if (!error.empty()) out.Set("error", error);
#else
  out.Set("compiled", false);
  out.Set("count", 0);
#endif
  out.Set("devices", devices);
  return out;
}

// measureDeviceBandwidth({ megabytes?: 1024, repeats?: 20 }) -> { copyGBs (median), samples, bytes }
Napi::Value MeasureDeviceBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef CLIPO_WITH_CUDA
  Napi::Object opts = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  const int64_t mb = clipo::getIntOr(opts, "megabytes", 1024, 1, 1 << 16);
  const int64_t repeats = clipo::getIntOr(opts, "repeats", 20, 1, 10000);
  std::string error;
  if (clipo::cudainfo::deviceCount(&error) == 0)
    clipo::throwError(env, "measureDeviceBandwidth: no CUDA device (" + (error.empty() ? std::string("none found") : error) + ")");
  const size_t bytes = static_cast<size_t>(mb) << 20;
  std::vector<double> gbs(static_cast<size_t>(repeats));
  std::string err = clipo::cudainfo::measureCopy(bytes, static_cast<int>(repeats), gbs.data());
  if (!err.empty()) clipo::throwError(env, "measureDeviceBandwidth: " + err);
  std::vector<double> sorted = gbs;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double med = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  Napi::Object out = Napi::Object::New(env);
  out.Set("copyGBs", med);
  Napi::Array samples = Napi::Array::New(env, n);
  for (size_t i = 0; i < n; ++i) samples.Set(static_cast<uint32_t>(i), gbs[i]);
  out.Set("samples", samples);
  out.Set("bytes", static_cast<double>(bytes));
  return out;
#else
  clipo::throwError(env, "measureDeviceBandwidth: this build of the addon has no CUDA support (rebuild with `npm run build:cuda` where nvcc exists)");
#endif
}

void InitCudaInfo(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaDeviceInfo", Napi::Function::New(env, CudaDeviceInfo, "cudaDeviceInfo"));
  exports.Set("measureDeviceBandwidth", Napi::Function::New(env, MeasureDeviceBandwidth, "measureDeviceBandwidth"));
}

}  // namespace

CLIPO_REGISTER_MODULE(cuda_info, InitCudaInfo);
