// Embedding gather, RMSNorm (forward, backward, and fused with the residual add on the GPU) and rotary position
// embeddings: the CPU kernels (norm_rope.cpp, fp32) and their CUDA twins (norm_rope.cu, bf16 storage with fp32
// arithmetic, same data layout: row-major [rows x hidden], q/k/v packed in one row of stride rowStride).
// The scalar formulas are in formulas.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/config.h"

namespace clipo::engine {

// x[n] = table[tokens[n]] (rows of H floats)
void embedRows(const float* table, int64_t H, const int32_t* tokens, int64_t N, float* x, int threads);
// its backward: gTable[tokens[n]] += dx[n], the rows of one token added in position order
void embedRowsBackward(const float* dx, int64_t H, const int32_t* tokens, int64_t N, float* gTable, int threads);
// y = x * rstd * w per row of H; rstd[n] kept for the backward pass
void rmsnormRows(const float* x, const float* w, float* y, float* rstd, int64_t N, int64_t H, double eps, int threads);
// y = x * rstd * w:  dx += rstd * (w*dy) - x * rstd^3 / H * sum(w*dy*x);  gw += sum_n dy * x * rstd
void rmsnormBackward(const float* dy, const float* x, const float* rstd, const float* w, float* dx, float* gw,
                     int64_t N, int64_t H, int threads);

// cos/sin of pos * invFreq_i for positions [0, len), i < headDim/2, grown on demand (angles in double, stored fp32).
struct RopeTable {
  std::vector<double> invFreq;
  std::vector<float> cos, sin;  // [len][half]
  int64_t len = 0;
  int64_t half() const { return static_cast<int64_t>(invFreq.size()); }
  void ensure(int64_t positions);
};
// Rotates nHeads heads of headDim in each of N rows (x + n*rowStride) by its position pos[n]; inverse: the
// transpose (the backward pass).
void applyRope(const RopeTable& t, float* x, int64_t rowStride, int64_t N, int64_t nHeads, int64_t headDim,
               const int32_t* pos, bool inverse, int threads);

// ---- CUDA twins (norm_rope.cu; builds with CLIPO_WITH_CUDA). bf16 values are uint16_t (formulas.h). ----
// Device entries: every pointer is device memory, `stream` a cudaStream_t; nothing synchronizes. They return ""
// or an error message.
// x[n] = table[tokens[n]]; a token outside [0, vocab) gives a zero row (the host validates ids before this).
const char* embedRowsCuda(const uint16_t* table, int64_t vocab, int64_t H, const int32_t* tokens, int64_t N,
                          uint16_t* x, void* stream);
// RMSNorm with the residual add: r = delta ? bf16(residual + delta) : residual (written to residualOut when delta is
// given), rstd = 1/sqrt(mean(r^2) + eps) (sum of squares in double, as the CPU), y = bf16(r * rstd * w) with one
// rounding. rstd may be null. residualOut may alias residual.
const char* rmsnormResidualCuda(const uint16_t* residual, const uint16_t* delta, const uint16_t* w,
                                uint16_t* residualOut, uint16_t* y, float* rstd, int64_t N, int64_t H, double eps,
                                void* stream);
// RoPE in place on bf16 rows with the fp32 tables of RopeTable on the device (cos, sin: [positions][headDim/2]);
// q and k are contiguous in a packed row, so one call with nHeads = heads + kvHeads rotates both.
const char* ropeCuda(uint16_t* x, int64_t rowStride, int64_t N, int64_t nHeads, int64_t headDim, const int32_t* pos,
                     const float* cos, const float* sin, bool inverse, void* stream);
// fp32 storage (the engine's fp32 test mode): the same kernels, no rounding to bf16.
const char* embedRowsCuda(const float* table, int64_t vocab, int64_t H, const int32_t* tokens, int64_t N, float* x,
                          void* stream);
const char* rmsnormResidualCuda(const float* residual, const float* delta, const float* w, float* residualOut,
                                float* y, float* rstd, int64_t N, int64_t H, double eps, void* stream);
const char* ropeCuda(float* x, int64_t rowStride, int64_t N, int64_t nHeads, int64_t headDim, const int32_t* pos,
                     const float* cos, const float* sin, bool inverse, void* stream);
// Host wrappers for tests: host pointers in and out; copy, run, copy back, synchronize.
const char* embedRowsCudaHost(const uint16_t* table, int64_t vocab, int64_t H, const int32_t* tokens, int64_t N,
                              uint16_t* x);
const char* rmsnormResidualCudaHost(const uint16_t* residual, const uint16_t* delta, const uint16_t* w,
                                    uint16_t* residualOut, uint16_t* y, float* rstd, int64_t N, int64_t H, double eps);
const char* ropeCudaHost(uint16_t* x, int64_t rowStride, int64_t N, int64_t nHeads, int64_t headDim,
                         const int32_t* pos, const RopeTable& table, bool inverse);

// ---- backward twins (norm_rope.cu; builds with CLIPO_WITH_CUDA): storage T = uint16_t (bf16) or float (fp32), one
// entry overloaded on both; fp32 arithmetic; deterministic (no atomics: the same inputs give the same bits). ----
// RMSNorm backward fused with the residual stream's gradient (rmsnormBackward's twin): for y = x * rstd * w,
//   dx[n] = T(dx[n] + rstd * w * dy - x * k),  k = rstd^3 / H * sum_j w_j dy_j x_j  (one block per row, dot in double)
//   gw[c] += sum_n dy * x * rstd  (fp32; column sums over fixed row parts, the parts added in order; gw may be null)
// dx is the residual stream's gradient, updated in place. rstd: the forward's fp32 [N]. workspace:
// rmsnormBackwardCudaWorkspace(N, H) bytes (only used with gw).
size_t rmsnormBackwardCudaWorkspace(int64_t N, int64_t H);
const char* rmsnormBackwardCuda(const uint16_t* dy, const uint16_t* x, const float* rstd, const uint16_t* w,
                                uint16_t* dx, float* gw, int64_t N, int64_t H, void* workspace, void* stream);
const char* rmsnormBackwardCuda(const float* dy, const float* x, const float* rstd, const float* w, float* dx,
                                float* gw, int64_t N, int64_t H, void* workspace, void* stream);
// Embedding backward: gTable[t] += the dx rows of the positions holding token t, added in position order (as the
// CPU engine). The positions are grouped by token on the host (embedGradPlan: the engine knows the tokens there),
// then one block per distinct token owns its table row: no two writers, no atomics. With tied embeddings gTable is
// also the LM head's gradient (headLogprobsBackwardCuda adds into the same fp32 buffer, on the same stream).
struct EmbedGradPlan {
  std::vector<int32_t> order;     // positions sorted by token, stable (position order within a token)
  std::vector<int32_t> segStart;  // [distinct tokens + 1]: segment s is order[segStart[s], segStart[s + 1])
  std::vector<int32_t> segToken;  // [distinct tokens]: the token of segment s
};
// Fills *plan; returns "" or what is wrong with the tokens (an id outside [0, vocab)).
std::string embedGradPlan(const int32_t* tokens, int64_t N, int64_t vocab, EmbedGradPlan* plan);
const char* embedBackwardCuda(const uint16_t* dx, int64_t H, const int32_t* order, const int32_t* segStart,
                              const int32_t* segToken, int64_t nSeg, float* gTable, void* stream);
const char* embedBackwardCuda(const float* dx, int64_t H, const int32_t* order, const int32_t* segStart,
                              const int32_t* segToken, int64_t nSeg, float* gTable, void* stream);
// RoPE backward: the rotation is orthogonal, so its backward is the inverse rotation, ropeCuda(..., inverse = true)
// on the q and k gradients (checked as the transpose in scripts/cuda-emu/backward_check.cpp).
// Host wrappers for tests (host pointers; dx, gw, gTable are read and updated).
const char* rmsnormBackwardCudaHost(const uint16_t* dy, const uint16_t* x, const float* rstd, const uint16_t* w,
                                    uint16_t* dx, float* gw, int64_t N, int64_t H);
const char* rmsnormBackwardCudaHost(const float* dy, const float* x, const float* rstd, const float* w, float* dx,
                                    float* gw, int64_t N, int64_t H);
const char* embedBackwardCudaHost(const uint16_t* dx, int64_t H, const int32_t* tokens, int64_t N, int64_t vocab,
                                  float* gTable);
const char* embedBackwardCudaHost(const float* dx, int64_t H, const int32_t* tokens, int64_t N, int64_t vocab,
                                  float* gTable);

}  // namespace clipo::engine
