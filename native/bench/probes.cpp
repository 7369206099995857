// Building blocks for `clipo bench`'s interleaved measurements: one read pass over a caller-owned buffer (the
// bandwidth limit, probed between the kernel's repeats so both see the same load), CPU-time clocks that are
// exact on short calls, and a file-backed shared mapping so that a peer process (PyTorch) reads the very same
// input pages instead of a second copy.
//
// CPU time: CLOCK_PROCESS_CPUTIME_ID (and getrusage) sum each thread's accounted run time, but a thread running on
// another core is only accounted at its next scheduler tick or context switch, so a call shorter than a tick can
// miss the other threads' time entirely. A thread's own CLOCK_THREAD_CPUTIME_ID is exact (the kernel adds the
// running slice), so poolCpuSeconds has every thread of the OpenMP team read its own clock.
#include <napi.h>
#include <omp.h>
#include <time.h>

#include <chrono>
#include <cstring>
#include <string>

#ifndef _WIN32
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "common/napi_args.h"
#include "common/registry.h"

namespace {

double wallNow() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double threadCpuNow() {
#ifdef _WIN32
  return 0.0;
#else
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
#endif
}

typedef float v8f __attribute__((vector_size(32), aligned(4)));

// Sum of a[0..n) read as S sequential streams in flight at once (the buffer cut into S segments, one 256-byte
// block from each per step, through windows of S segments). One core's read rate depends on how many streams it keeps in flight (eight reach
// about 1.4x one here) and on the exact pattern, and the kernels stream several rows at once, so the probe is the
// fastest of a few stream counts and window sizes: a single-stream probe would under-read the machine and let a kernel show more
// than 100% of "the limit".
constexpr size_t kBlock = 64;
// (streams, floats per stream per window): (8, 12 Ki), (8, 32 Ki), (8, 128 Ki), (16, 32 Ki); two whose segments are
// not a power of two (8 x 32256 and 16 x 16064 floats, 126 KiB and 62.75 KiB): segments a power of two apart map to
// the same DRAM banks, and a kernel whose rows are not a power of two long (the pooling pass at H = 3584) streams
// about 5% faster than any power-of-two pattern here; and two with six streams (6 x 31 Ki, segments a whole number
// of pages apart, and 6 x 32256), the pattern the pooling pass uses for rows a whole number of pages long (H = 1024):
// with two threads, twelve streams in all read faster than sixteen, and a probe without them let that pass show 1.1x
// "the limit".
constexpr int kPatterns = 8;

template <int S, size_t seg>
float sumStreams(const float* a, size_t n) {
  // The streams run through windows of S * seg floats: S segments far apart (n / S, a power of two for a
  // power-of-two buffer) would hit the same DRAM banks at once and under-read the memory by 5-10%.
  v8f acc[8] = {};
  size_t w = 0;
  for (; w + S * seg <= n; w += S * seg)
    for (size_t i = 0; i < seg; i += kBlock)
      for (int s = 0; s < S; ++s) {
        const float* p = a + w + s * seg + i;
        for (int q = 0; q < 8; ++q) acc[q] += *reinterpret_cast<const v8f*>(p + 8 * q);
      }
  float total = 0.f;
  for (int q = 0; q < 8; ++q)
    for (int j = 0; j < 8; ++j) total += acc[q][j];
  for (size_t i = w; i < n; ++i) total += a[i];
  return total;
}

float sumPattern(int pattern, const float* a, size_t n) {
  switch (pattern) {
    case 0: return sumStreams<8, 12 * 1024>(a, n);
    case 1: return sumStreams<8, 32 * 1024>(a, n);
    case 2: return sumStreams<8, 128 * 1024>(a, n);
    case 3: return sumStreams<16, 32 * 1024>(a, n);
    case 4: return sumStreams<8, 32256>(a, n);
    case 5: return sumStreams<16, 16064>(a, n);
    case 6: return sumStreams<6, 31744>(a, n);
    default: return sumStreams<6, 32256>(a, n);
  }
}
const char* const kPatternNames[kPatterns] = {"8 x 12 Ki", "8 x 32 Ki", "8 x 128 Ki", "16 x 32 Ki", "8 x 32256", "16 x 16064", "6 x 31 Ki", "6 x 32256"};

// readPass({ data: Float32Array, pattern: 0..7, threads? }) -> { seconds, cpuSeconds, bytes, threads, sum }
//   one timed read of the whole buffer in one pattern (each thread a contiguous slice read as 8 or 16 streams
//   through windows of a few hundred KiB); cpuSeconds is the team's CPU time (each thread's own clock), which
//   excludes descheduled time. The caller times every pattern in every round and takes as the limit the pattern
//   whose median is fastest: the kernels' figures are medians of single passes, and the best of six noisy passes
//   per round would sit a few percent above any one pattern's typical rate.
Napi::Value ReadPass(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = clipo::argObject(info, 0, "readPass");
  auto data = clipo::getArray<float>(o, "data");
  const int pattern = static_cast<int>(clipo::getIntOr(o, "pattern", 0, 0, kPatterns - 1));
  const int64_t req = clipo::getIntOr(o, "threads", 0, 0, 4096);
  const int threads = req > 0 ? static_cast<int>(req) : omp_get_max_threads();
  const size_t n = data.length;
  double cpu = 0.0;
  float sum = 0.f;
  const double t0 = wallNow();
#pragma omp parallel num_threads(threads) reduction(+ : cpu, sum)
  {
    const double c0 = threadCpuNow();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const size_t lo = n * t / nt / kBlock * kBlock, hi = t == nt - 1 ? n : n * (t + 1) / nt / kBlock * kBlock;
    sum += sumPattern(pattern, data.data + lo, hi - lo);
    cpu += threadCpuNow() - c0;
  }
  const double wall = wallNow() - t0;
  Napi::Object out = Napi::Object::New(env);
  out.Set("seconds", wall);
  out.Set("cpuSeconds", cpu);
  out.Set("bytes", static_cast<double>(n) * sizeof(float));
  out.Set("threads", threads);
  out.Set("sum", sum);
  return out;
}

// readPatterns() -> the read patterns' names, "streams x floats per stream per window", indexed as readPass's pattern
Napi::Value ReadPatterns(const Napi::CallbackInfo& info) {
  Napi::Array names = Napi::Array::New(info.Env(), kPatterns);
  for (int k = 0; k < kPatterns; ++k) names.Set(static_cast<uint32_t>(k), kPatternNames[k]);
  return names;
}

// copyPass({ src: Float32Array, dst: Float32Array (same length), threads? }) -> { seconds, cpuSeconds, bytes }
//   one timed memcpy, each thread its contiguous slice; bytes counts read + write.
Napi::Value CopyPass(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = clipo::argObject(info, 0, "copyPass");
  auto src = clipo::getArray<float>(o, "src");
  auto dst = clipo::getArray<float>(o, "dst", src.length);
  const int64_t req = clipo::getIntOr(o, "threads", 0, 0, 4096);
  const int threads = req > 0 ? static_cast<int>(req) : omp_get_max_threads();
  const size_t n = src.length;
  double cpu = 0.0;
  const double t0 = wallNow();
#pragma omp parallel num_threads(threads) reduction(+ : cpu)
  {
    const double c0 = threadCpuNow();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const size_t lo = n * t / nt, hi = n * (t + 1) / nt;
    std::memcpy(dst.data + lo, src.data + lo, (hi - lo) * sizeof(float));
    cpu += threadCpuNow() - c0;
  }
  const double t1 = wallNow();
  Napi::Object out = Napi::Object::New(env);
  out.Set("seconds", t1 - t0);
  out.Set("cpuSeconds", cpu);
  out.Set("bytes", 2.0 * static_cast<double>(n) * sizeof(float));
  return out;
}

// threadCpuSeconds() -> CPU seconds of the calling thread (exact, including the running slice)
Napi::Value ThreadCpuSeconds(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), threadCpuNow()); }

// poolCpuSeconds({ threads? }) -> sum of the CPU clocks of the OpenMP team of that size (the calling thread
// included). The team's threads persist between parallel regions, so the difference of two readings is the
// CPU time the team spent in between, exact on sub-tick calls (spin-waiting counts: it is CPU the call held).
Napi::Value PoolCpuSeconds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  const int64_t req = clipo::getIntOr(o, "threads", 0, 0, 4096);
  const int threads = req > 0 ? static_cast<int>(req) : omp_get_max_threads();
  double cpu = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : cpu)
  cpu += threadCpuNow();
  return Napi::Number::New(env, cpu);
}

// mapSharedFloat32({ path, length }) -> Float32Array backed by a new file mapped MAP_SHARED (the file is created
// exclusively, mode 0600, and sized to length floats). Another process that maps the same file sees the same
// pages; the mapping lives until the array is garbage-collected. Used only by the benchmark's peer comparison.
Napi::Value MapSharedFloat32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = clipo::argObject(info, 0, "mapSharedFloat32");
  if (!o.Get("path").IsString()) clipo::throwError(env, "mapSharedFloat32: path: expected a string");
  const std::string path = o.Get("path").As<Napi::String>();
  // V8 here refuses external array buffers over 4 GiB, and a refused one crashes in N-API's cleanup: refuse first
  constexpr int64_t kMaxFloats = int64_t{1} << 30;
  const int64_t length = clipo::getInt(o, "length", 1, kMaxFloats);
#ifdef _WIN32
  clipo::throwError(env, "mapSharedFloat32: not supported on Windows");
#else
  const size_t bytes = static_cast<size_t>(length) * sizeof(float);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) clipo::throwError(env, "mapSharedFloat32: cannot create " + path + ": " + std::strerror(errno));
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const std::string why = std::strerror(errno);
    close(fd);
    clipo::throwError(env, "mapSharedFloat32: cannot size " + path + ": " + why);
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) clipo::throwError(env, "mapSharedFloat32: cannot map " + path + ": " + std::strerror(errno));
  auto buf = Napi::ArrayBuffer::New(env, p, bytes, [bytes](Napi::Env, void* data) { munmap(data, bytes); });
  return Napi::Float32Array::New(env, static_cast<size_t>(length), buf, 0);
#endif
}

void InitProbes(Napi::Env env, Napi::Object exports) {
  exports.Set("readPass", Napi::Function::New(env, ReadPass, "readPass"));
  exports.Set("readPatterns", Napi::Function::New(env, ReadPatterns, "readPatterns"));
  exports.Set("copyPass", Napi::Function::New(env, CopyPass, "copyPass"));
  exports.Set("threadCpuSeconds", Napi::Function::New(env, ThreadCpuSeconds, "threadCpuSeconds"));
  exports.Set("poolCpuSeconds", Napi::Function::New(env, PoolCpuSeconds, "poolCpuSeconds"));
  exports.Set("mapSharedFloat32", Napi::Function::New(env, MapSharedFloat32, "mapSharedFloat32"));
}

}  // namespace

CLIPO_REGISTER_MODULE(probes, InitProbes);
