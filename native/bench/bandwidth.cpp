// Memory-bandwidth probes for `clipo bench`: the physical limit the kernels are measured against, taken in the
// same run as the kernels. Two figures: a read stream (sum of a large buffer: bytes read / time) and a copy
// (memcpy: read + write bytes / time). Buffers are far larger than the last-level cache.
#include <napi.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "common/napi_args.h"
#include "common/registry.h"

namespace {

double nowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// measureBandwidth({ megabytes?: 256, repeats?: 7, threads?: 0 (all) })
//   -> { readGBs, copyGBs, bytes, threads }  (medians over repeats, GB = 1e9 bytes)
Napi::Value MeasureBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  const int64_t mb = clipo::getIntOr(opts, "megabytes", 256, 1, 1 << 16);
  const int64_t repeats = clipo::getIntOr(opts, "repeats", 7, 1, 1000);
  const int64_t threadsReq = clipo::getIntOr(opts, "threads", 0, 0, 4096);
  clipo::checkAllocatable(env, 2.0 * static_cast<double>(mb) * (1 << 20), "megabytes");
  const int threads = threadsReq > 0 ? static_cast<int>(threadsReq) : omp_get_max_threads();
  const size_t n = static_cast<size_t>(mb) * (1 << 20) / sizeof(float);
  std::vector<float> a(n), b(n);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; ++i) { a[i] = static_cast<float>(i & 1023) * 1e-3f; b[i] = 0.f; }  // first touch

  std::vector<double> readT, copyT;
  volatile float sink = 0.f;
  for (int64_t r = 0; r < repeats + 1; ++r) {
    double t0 = nowSeconds();
    float total = 0.f;
    // 16 independent partial sums per thread: a single float sum is one serial dependency chain and would
    // measure the adder's latency, not the memory.
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      int t = omp_get_thread_num(), nt = omp_get_num_threads();
      size_t lo = (n / 16) * t / nt * 16, hi = (n / 16) * (t + 1) / nt * 16;
      float acc[16] = {0};
      for (size_t i = lo; i < hi; i += 16)
        for (int j = 0; j < 16; ++j) acc[j] += a[i + j];
      for (int j = 0; j < 16; ++j) total += acc[j];
    }
    double t1 = nowSeconds();
    sink = sink + total;
#pragma omp parallel num_threads(threads)
    {
      // each thread copies its own contiguous slice, as a parallel memcpy would
      int t = omp_get_thread_num(), nt = omp_get_num_threads();
      size_t lo = n * t / nt, hi = n * (t + 1) / nt;
      std::memcpy(b.data() + lo, a.data() + lo, (hi - lo) * sizeof(float));
    }
    double t2 = nowSeconds();
    sink = sink + b[n / 2];
    if (r == 0) continue;  // warm-up
    readT.push_back(t1 - t0);
    copyT.push_back(t2 - t1);
  }
  const double bytes = static_cast<double>(n) * sizeof(float);
  Napi::Object out = Napi::Object::New(env);
  out.Set("readGBs", bytes / median(readT) / 1e9);
  out.Set("copyGBs", 2.0 * bytes / median(copyT) / 1e9);
  out.Set("bytes", bytes);
  out.Set("threads", threads);
  return out;
}

void InitBandwidth(Napi::Env env, Napi::Object exports) {
  exports.Set("measureBandwidth", Napi::Function::New(env, MeasureBandwidth, "measureBandwidth"));
}

}  // namespace

CLIPO_REGISTER_MODULE(bandwidth, InitBandwidth);
