// Validation at the JS -> C++ boundary. Every typed array, integer and enum that enters native code passes
// through one of these; a bad value throws a JS Error naming the argument (never a crash, never a silent copy).
#pragma once
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/resource.h>
#include <unistd.h>
#endif

namespace clipo {

// A view of a JS typed array's memory. Valid only while the JS object is alive (i.e. during the call).
template <typename T>
struct ArrayView {
  T* data = nullptr;
  size_t length = 0;
  T& operator[](size_t i) const { return data[i]; }
};

template <typename T> struct TypedArrayKind;
template <> struct TypedArrayKind<float> { static constexpr napi_typedarray_type value = napi_float32_array; static constexpr const char* name = "Float32Array"; };
template <> struct TypedArrayKind<double> { static constexpr napi_typedarray_type value = napi_float64_array; static constexpr const char* name = "Float64Array"; };
template <> struct TypedArrayKind<int32_t> { static constexpr napi_typedarray_type value = napi_int32_array; static constexpr const char* name = "Int32Array"; };
template <> struct TypedArrayKind<uint32_t> { static constexpr napi_typedarray_type value = napi_uint32_array; static constexpr const char* name = "Uint32Array"; };
template <> struct TypedArrayKind<uint8_t> { static constexpr napi_typedarray_type value = napi_uint8_array; static constexpr const char* name = "Uint8Array"; };
template <> struct TypedArrayKind<uint16_t> { static constexpr napi_typedarray_type value = napi_uint16_array; static constexpr const char* name = "Uint16Array"; };

[[noreturn]] inline void throwError(Napi::Env env, const std::string& msg) {
  throw Napi::Error::New(env, msg);
}

inline Napi::Object argObject(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsObject())
    throwError(info.Env(), std::string(what) + ": expected an options object");
  return info[index].As<Napi::Object>();
}

inline bool hasField(const Napi::Object& obj, const char* key) {
  return obj.Has(key) && !obj.Get(key).IsUndefined() && !obj.Get(key).IsNull();
}

// A typed array field of the exact element type and, when expected != SIZE_MAX, the exact length.
template <typename T>
ArrayView<T> getArray(const Napi::Object& obj, const char* key, size_t expected = SIZE_MAX) {
  Napi::Env env = obj.Env();
  if (!hasField(obj, key)) throwError(env, std::string(key) + ": required " + TypedArrayKind<T>::name + " is missing");
  Napi::Value v = obj.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TypedArrayKind<T>::value)
    throwError(env, std::string(key) + ": expected a " + TypedArrayKind<T>::name);
  auto arr = v.As<Napi::TypedArrayOf<T>>();
  if (expected != SIZE_MAX && arr.ElementLength() != expected)
    throwError(env, std::string(key) + ": expected length " + std::to_string(expected) + ", got " +
                        std::to_string(arr.ElementLength()));
  return ArrayView<T>{arr.Data(), arr.ElementLength()};
}

template <typename T>
ArrayView<T> getOptionalArray(const Napi::Object& obj, const char* key, size_t expected = SIZE_MAX) {
  if (!hasField(obj, key)) return ArrayView<T>{};
  return getArray<T>(obj, key, expected);
}

inline double getNumber(const Napi::Object& obj, const char* key) {
  Napi::Env env = obj.Env();
  if (!hasField(obj, key) || !obj.Get(key).IsNumber()) throwError(env, std::string(key) + ": expected a number");
  double v = obj.Get(key).As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v)) throwError(env, std::string(key) + ": must be finite, got " + std::to_string(v));
  return v;
}

inline double getNumberOr(const Napi::Object& obj, const char* key, double fallback) {
  return hasField(obj, key) ? getNumber(obj, key) : fallback;
}

// A non-negative integer no larger than maxValue.
inline int64_t getInt(const Napi::Object& obj, const char* key, int64_t minValue = 0, int64_t maxValue = INT32_MAX) {
  double v = getNumber(obj, key);
  if (v != std::floor(v) || v < static_cast<double>(minValue) || v > static_cast<double>(maxValue))
    throwError(obj.Env(), std::string(key) + ": expected an integer in [" + std::to_string(minValue) + ", " +
                              std::to_string(maxValue) + "], got " + std::to_string(v));
  return static_cast<int64_t>(v);
}

inline int64_t getIntOr(const Napi::Object& obj, const char* key, int64_t fallback, int64_t minValue = 0,
                        int64_t maxValue = INT32_MAX) {
  return hasField(obj, key) ? getInt(obj, key, minValue, maxValue) : fallback;
}

inline bool getBoolOr(const Napi::Object& obj, const char* key, bool fallback) {
  if (!hasField(obj, key)) return fallback;
  if (!obj.Get(key).IsBoolean()) throwError(obj.Env(), std::string(key) + ": expected a boolean");
  return obj.Get(key).As<Napi::Boolean>().Value();
}

// One of a fixed set of names; returns its index.
inline int getEnum(const Napi::Object& obj, const char* key, const std::vector<std::string>& names) {
  Napi::Env env = obj.Env();
  if (!hasField(obj, key) || !obj.Get(key).IsString()) throwError(env, std::string(key) + ": expected a string");
  std::string v = obj.Get(key).As<Napi::String>().Utf8Value();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == v) return static_cast<int>(i);
  std::string all;
  for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
  throwError(env, std::string(key) + ": unknown value '" + v + "' (expected one of: " + all + ")");
}

// Size product with overflow check, for shapes that come from JS.
inline size_t checkedSize(Napi::Env env, std::initializer_list<int64_t> dims, const char* what) {
  size_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) throwError(env, std::string(what) + ": negative dimension");
    if (d != 0 && n > SIZE_MAX / static_cast<size_t>(d)) throwError(env, std::string(what) + ": size overflows");
    n *= static_cast<size_t>(d);
  }
  return n;
}

// --- allocation limits -------------------------------------------------------------------------------------------
// V8 aborts the process (FatalProcessOutOfMemory) when a typed array's memory cannot be allocated, and Linux's
// overcommit lets a big std::vector "succeed" and then kills the process when it is touched. So every size that
// comes from JS is checked against what this process can allocate before any work starts: physical memory, lowered
// by a cgroup memory limit (containers) and by RLIMIT_AS / RLIMIT_DATA.
inline uint64_t allocatableBytes() {
  static const uint64_t limit = [] {
    uint64_t lim = UINT64_MAX;
#if defined(__unix__) || defined(__APPLE__)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) lim = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
    for (int res : {RLIMIT_AS, RLIMIT_DATA}) {
      struct rlimit rl;
      if (getrlimit(res, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) lim = std::min<uint64_t>(lim, rl.rlim_cur);
    }
    for (const char* f : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
      if (FILE* fp = std::fopen(f, "r")) {
        unsigned long long v = 0;
        if (std::fscanf(fp, "%llu", &v) == 1 && v > 0) lim = std::min<uint64_t>(lim, v);
        std::fclose(fp);
      }
    }
#endif
    return lim;
  }();
  return limit;
}

inline std::string formatBytes(double b) {
  char buf[64];
  if (b >= 1e9) std::snprintf(buf, sizeof buf, "%.1f GB", b / 1e9);
  else std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  return buf;
}

// Throws unless `bytes` (a total, computed in double so that it cannot wrap) fits what the process can allocate.
inline void checkAllocatable(Napi::Env env, double bytes, const std::string& what) {
  const double limit = static_cast<double>(allocatableBytes());
  if (!(bytes <= limit))
    throwError(env, what + ": needs " + formatBytes(bytes) + " of memory, more than this process can allocate (" +
                        formatBytes(limit) + ")");
}

// A new typed array for an output, its size checked first (see allocatableBytes).
template <typename T>
Napi::TypedArrayOf<T> newArray(Napi::Env env, size_t n, const char* what = "output") {
  checkAllocatable(env, static_cast<double>(n) * sizeof(T), what);
  return Napi::TypedArrayOf<T>::New(env, n);
}

// Runs a native computation, turning allocation failures and C++ exceptions into JS Errors named after `what`
// (an uncaught C++ exception would abort the process).
template <typename F>
auto guardedCall(Napi::Env env, const char* what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, std::string(what) + ": out of memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string(what) + ": " + e.what());
  }
}

// True when the byte ranges of two arrays overlap.
inline bool overlaps(const void* a, size_t aBytes, const void* b, size_t bBytes) {
  if (!a || !b || !aBytes || !bBytes) return false;
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + bBytes && y < x + aBytes;
}

}  // namespace clipo
