// CUDA device discovery and the device-to-device copy bandwidth probe: the limit the CUDA kernels are compared
// against in `clipo bench --backend cuda`, measured in the same run.
#include <cuda_runtime.h>

#include <string>

#include "bench/cuda_info.h"

namespace clipo {
namespace cudainfo {

int deviceCount(std::string* error) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (error) *error = cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return n;
}

bool deviceProps(int index, Device* out, std::string* error) {
  cudaDeviceProp p;
  cudaError_t e = cudaGetDeviceProperties(&p, index);
  if (e != cudaSuccess) {
    if (error) *error = cudaGetErrorString(e);
    return false;
  }
  out->name = p.name;
  out->totalBytes = p.totalGlobalMem;
  out->major = p.major;
  out->minor = p.minor;
  out->multiprocessors = p.multiProcessorCount;
  return true;
}

void versions(int* runtime, int* driver) {
  *runtime = 0;
  *driver = 0;
  cudaRuntimeGetVersion(runtime);
  cudaDriverGetVersion(driver);
}

std::string measureCopy(size_t bytes, int repeats, double* gbs) {
  void *a = nullptr, *b = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  std::string err;
  auto check = [&](cudaError_t e) {
    if (e != cudaSuccess && err.empty()) err = cudaGetErrorString(e);
    return e == cudaSuccess;
  };
  if (check(cudaMalloc(&a, bytes)) && check(cudaMalloc(&b, bytes)) && check(cudaMemset(a, 1, bytes)) &&
      check(cudaEventCreate(&start)) && check(cudaEventCreate(&stop))) {
    for (int w = 0; w < 3 && err.empty(); ++w) check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0));
    for (int r = 0; r < repeats && err.empty(); ++r) {
      float ms = 0;
      check(cudaEventRecord(start, 0));
      check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0));
      check(cudaEventRecord(stop, 0));
      check(cudaEventSynchronize(stop));
      check(cudaEventElapsedTime(&ms, start, stop));
      gbs[r] = 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
    }
  }
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  if (a) cudaFree(a);
  if (b) cudaFree(b);
  return err;
}

}  // namespace cudainfo
}  // namespace clipo
