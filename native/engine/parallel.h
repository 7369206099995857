// OpenMP sizing shared by the CPU engine's kernels.
#pragma once
#include <cstdint>

namespace clipo::engine {

// Threads worth using for `work` element operations: waking a second thread costs more than ~32k simple ops.
inline int threadsFor(int64_t work, int threads) { return work < (int64_t{1} << 15) ? 1 : threads; }

}  // namespace clipo::engine
