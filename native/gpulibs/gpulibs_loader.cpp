// See gpulibs_loader.h.
#include "gpulibs/gpulibs_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

// Written by CMake (configure_file): what the build looked for and found. A node-gyp build has no such header.
#if defined(__has_include)
#if __has_include("clipo_gpulibs_build.h")
#include "clipo_gpulibs_build.h"
#endif
#endif
#ifndef CLIPO_GPULIBS_BUILT
#define CLIPO_GPULIBS_BUILT 0
#define CLIPO_GPULIBS_WHY "this addon was built by node-gyp (binding.gyp), which builds no GPU libraries; build with cmake-js (npm run build:native)"
#endif

namespace clipo::gpulibs {

namespace {

void anchor() {}

// Next to clipo.node unless CLIPO_GPULIBS_PATH names the file.
std::string libraryPath() {
  if (const char* env = std::getenv("CLIPO_GPULIBS_PATH"); env && *env) return env;
  Dl_info di{};
  std::string dir = ".";
  if (dladdr(reinterpret_cast<void*>(&anchor), &di) && di.dli_fname) {
    std::string self = di.dli_fname;
    const size_t slash = self.rfind('/');
    if (slash != std::string::npos) dir = self.substr(0, slash);
  }
  return dir + "/clipo_gpulibs.so";
}

template <typename F>
F symbol(void* handle, const char* name) {
  return reinterpret_cast<F>(dlsym(handle, name));
}

void open(Library& L) {
  L.path = libraryPath();
  if (!CLIPO_GPULIBS_BUILT && !std::getenv("CLIPO_GPULIBS_PATH")) {
    L.error = std::string("not built: ") + CLIPO_GPULIBS_WHY;
    return;
  }
  dlerror();
  void* handle = dlopen(L.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = dlerror();
    L.error = std::string("cannot load ") + L.path + ": " + (e ? e : "unknown dlopen error");
    return;
  }
  auto abi = symbol<ClipoGpuLibsAbiFn>(handle, CLIPO_GPULIBS_SYM_ABI);
  if (!abi || abi() != CLIPO_GPULIBS_ABI) {
    L.error = L.path + " is from another build (interface version " + (abi ? std::to_string(abi()) : "?") +
              ", this addon expects " + std::to_string(CLIPO_GPULIBS_ABI) + "): rebuild with `npm run build:native`";
    dlclose(handle);
    return;
  }
  auto info = symbol<ClipoGpuLibsInfoFn>(handle, CLIPO_GPULIBS_SYM_INFO);
  L.gemm = symbol<ClipoGemmBf16Fn>(handle, CLIPO_GPULIBS_SYM_GEMM);
  L.allReduce = symbol<ClipoAllReduceFn>(handle, CLIPO_GPULIBS_SYM_ALLREDUCE);
  L.ltMatmul = symbol<ClipoLtMatmulFn>(handle, CLIPO_GPULIBS_SYM_LT_MATMUL);
  L.ltRelease = symbol<ClipoLtReleaseFn>(handle, CLIPO_GPULIBS_SYM_LT_RELEASE);
  L.ltPlans = symbol<ClipoLtPlansFn>(handle, CLIPO_GPULIBS_SYM_LT_PLANS);
  if (!info || !L.gemm || !L.allReduce || !L.ltMatmul || !L.ltRelease || !L.ltPlans) {
    L.error = L.path + " lacks an expected symbol: rebuild with `npm run build:native`";
    L.gemm = nullptr, L.allReduce = nullptr, L.ltMatmul = nullptr, L.ltRelease = nullptr, L.ltPlans = nullptr;
    return;  // left open: harmless, and its code may not be unloaded under a caller
  }
  L.info = info;
}

}  // namespace

const Library& library() {
  static Library L;
  static std::once_flag once;
  std::call_once(once, [] { open(L); });
  return L;
}

bool built() { return CLIPO_GPULIBS_BUILT; }
const char* whyNotBuilt() { return CLIPO_GPULIBS_WHY; }

}  // namespace clipo::gpulibs
