// The MLP's element-wise parts (SwiGLU forward and backward) and the row helpers around the projections (bias add,
// residual add, bias-gradient column sums): the CPU kernels (mlp.cpp, fp32) and the CUDA twin of SwiGLU (mlp.cu,
// bf16 storage, fp32 arithmetic). Layout: gu is [N x 2I] with gate in columns [0, I) and up in [I, 2I) (the fused
// gate/up projection's output), act is [N x I]. Formulas in formulas.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace clipo::engine {

void addBias(float* Y, const float* b, int64_t N, int64_t cols, int threads);
void addInPlace(float* y, const float* x, int64_t n, int threads);
// act[n, i] = silu(gu[n, i]) * gu[n, I + i]
void swiglu(const float* gu, float* act, int64_t N, int64_t I, int threads);
// dgu from dact: d gate = dact * up * silu'(gate), d up = dact * silu(gate)
void swigluBackward(const float* gu, const float* dact, float* dgu, int64_t N, int64_t I, int threads);
// gb[c] += sum_n dY[n, c]
void colSumAccumulate(const float* dY, int64_t N, int64_t cols, float* gb, int threads);

// ---- CUDA twin (mlp.cu; builds with CLIPO_WITH_CUDA): act = bf16(silu(gate) * up), one rounding ----
// Device entry (device pointers, stream a cudaStream_t, nothing synchronizes) and host wrapper for tests.
// Return "" or an error message.
const char* swigluCuda(const uint16_t* gu, uint16_t* act, int64_t N, int64_t I, void* stream);
// fp32 storage (the engine's test mode): the same kernel, no rounding
const char* swigluCuda(const float* gu, float* act, int64_t N, int64_t I, void* stream);
const char* swigluCudaHost(const uint16_t* gu, uint16_t* act, int64_t N, int64_t I);

// ---- backward twins (mlp.cu): storage T = uint16_t (bf16) or float (fp32), one entry overloaded on both; fp32
// arithmetic; deterministic (no atomics). Device entries and host wrappers for tests as above. ----
// dgu [N x 2I] from gu [N x 2I] and dact [N x I] (swigluBackward's twin, formulas.h swigluGrad), one rounding each.
const char* swigluBackwardCuda(const uint16_t* gu, const uint16_t* dact, uint16_t* dgu, int64_t N, int64_t I,
                               void* stream);
const char* swigluBackwardCuda(const float* gu, const float* dact, float* dgu, int64_t N, int64_t I, void* stream);
// gb[c] += sum_n dY[n, c] in fp32 (colSumAccumulate's twin, the bias gradients): the rows cut into parts that depend
// only on N, each part summed in row order, the parts added in order. workspace: colSumAccumulateCudaWorkspace bytes.
size_t colSumAccumulateCudaWorkspace(int64_t N, int64_t cols);
const char* colSumAccumulateCuda(const uint16_t* dY, int64_t N, int64_t cols, float* gb, void* workspace,
                                 void* stream);
const char* colSumAccumulateCuda(const float* dY, int64_t N, int64_t cols, float* gb, void* workspace, void* stream);
const char* swigluBackwardCudaHost(const uint16_t* gu, const uint16_t* dact, uint16_t* dgu, int64_t N, int64_t I);
const char* swigluBackwardCudaHost(const float* gu, const float* dact, float* dgu, int64_t N, int64_t I);
const char* colSumAccumulateCudaHost(const uint16_t* dY, int64_t N, int64_t cols, float* gb);
const char* colSumAccumulateCudaHost(const float* dY, int64_t N, int64_t cols, float* gb);

}  // namespace clipo::engine
