// CUDA device discovery and the device-to-device copy bandwidth probe (cuda_info.cu), in plain C++ types so the
// N-API side (cuda_info.cpp) needs no CUDA headers. Present only in builds with CLIPO_WITH_CUDA.
#pragma once
#include <cstddef>
#include <string>

namespace clipo {
namespace cudainfo {

struct Device {
  std::string name;
  size_t totalBytes = 0;
  int major = 0, minor = 0;  // compute capability
  int multiprocessors = 0;
};

// Number of usable devices; 0 with a reason in *error when there is no driver or no GPU (never throws or aborts).
int deviceCount(std::string* error);
bool deviceProps(int index, Device* out, std::string* error);
// Runtime and driver versions (e.g. 13000); driver 0 when no driver is installed.
void versions(int* runtime, int* driver);

// cudaMemcpyAsync device-to-device of `bytes`, timed with events after a warm-up; per-repeat GB/s counting
// read + write (2 * bytes) go to gbs[repeats]. Returns "" or an error message.
std::string measureCopy(size_t bytes, int repeats, double* gbs);

}  // namespace cudainfo
}  // namespace clipo
