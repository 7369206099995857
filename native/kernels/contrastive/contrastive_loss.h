// Kernel 1 of CLIPO: fused pool -> project -> normalize -> similarity -> contrastive loss, forward and backward
// (docs/algorithm.md §2). Plain C++: no N-API here, so the engine can call the same functions.
//
//   h_i  = sum_t mask_it x_it / n_i                 (or given pooled h_i)
//   u_i  = W h_i            (linear)   or  W2 relu(W1 h_i)  (mlp)
//   z_i  = u_i / max(|u_i|, 1e-12)     (torch.nn.functional.normalize)
//   s_ij = z_i.z_j (cosine)  or  1 - sqrt(max(2 - 2 z_i.z_j, eps)) (l2)
//   l'_ij = s_ij/tau - max_j s_ij/tau  (row max over all j, self included; constant in the backward)
//   per-anchor losses infonce / supcon_in / supcon_out / soft_nn, batch loss = sum L_i / (valid + eps)
//   gradients of the batch loss with respect to W (and W1 for the mlp head).
#pragma once
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define CLIPO_HD __host__ __device__
#else
#define CLIPO_HD
#endif

namespace clipo::contrastive {

enum class LossType : int { InfoNCE = 0, SupConIn = 1, SupConOut = 2, SoftNN = 3 };
enum class Level : int { Group = 0, Cross = 1, Batch = 2 };
enum class Distance : int { Cosine = 0, L2 = 1 };
enum class Head : int { Linear = 0, Mlp = 1 };
enum class DType : int { F32 = 0, BF16 = 1 };

// Floor of the norm in normalize(), as torch.nn.functional.normalize (so a zero vector maps to zero, not NaN).
constexpr float kNormFloor = 1e-12f;

struct Params {
  int64_t batch = 0;   // B responses
  int64_t length = 0;  // L tokens per response (token input only)
  int64_t hidden = 0;  // H
  int64_t out = 0;     // D
  Head head = Head::Linear;
  LossType loss = LossType::InfoNCE;
  Level level = Level::Group;
  Distance distance = Distance::Cosine;
  float temperature = 0.05f;
  float eps = 1e-8f;
  int maskedLabel = 0;       // 0: correct anchors only, -1: all, 1: incorrect only
  bool skipTrivial = true;   // an anchor needs |P(i)| >= 1 and a negative in A(i)
  uint32_t seed = 0;         // InfoNCE positive draw (when no positives are given)
  bool computeGrad = true;   // false: forward only (the gradient outputs untouched)
  int threads = 0;           // CPU: OpenMP threads for this call (0: the OpenMP default)
};

// All pointers are host pointers for the CPU functions and device pointers for the CUDA device entry.
struct Inputs {
  const float* pooled = nullptr;    // [B*H]; or
  const void* tokens = nullptr;     // [B*L*H] f32 or bf16 (raw bits), with
  DType tokenType = DType::F32;
  const uint8_t* mask = nullptr;    // [B*L], nonzero = response token
  // The head's weights, row-major like nn.Linear.weight, named by role so that one name means one layer for both
  // heads (the JS options call them weight, or weight1 and weight2 for the mlp):
  const float* weightOut = nullptr;  // [D*H] the layer that maps to the output: W (linear) or W2 (mlp)
  const float* weightIn = nullptr;   // [H*H] the mlp's first layer W1 (nullptr for linear)
  const uint8_t* correct = nullptr; // [B] 0/1
  const int32_t* group = nullptr;   // [B]
  const int32_t* positives = nullptr;  // [B] optional given InfoNCE positives (-1 none); nullptr: draw by seed
};

struct Outputs {
  float* perSample = nullptr;     // [B]
  float* embeddings = nullptr;    // [B*D]
  float* gradWeightOut = nullptr;  // [D*H]  d loss / d weightOut (JS: gradWeight, mlp gradWeight2)
  float* gradWeightIn = nullptr;   // [H*H]  d loss / d weightIn (mlp only; JS: gradWeight1)
  int32_t* positives = nullptr;   // [B] InfoNCE positive used per anchor, -1 where none
  float* loss = nullptr;          // [1]
  int32_t* validAnchors = nullptr;  // [1]
};

// Counter-based choice of the InfoNCE positive: the k-th member (in index order) of P(i), k = hash(seed, i) mod |P(i)|.
// 32-bit integer mixing only, so the CPU, the CUDA kernel and the TypeScript reference pick the same one.
CLIPO_HD inline uint32_t positiveHash(uint32_t seed, uint32_t anchor) {
  uint32_t x = seed ^ ((anchor + 1u) * 0x9E3779B9u);
  x ^= x >> 16; x *= 0x7feb352du;
  x ^= x >> 15; x *= 0x846ca68bu;
  x ^= x >> 16;
  x += seed * 0x85ebca6bu;  // seed enters twice so that seed s and anchor permutations do not collide trivially
  x ^= x >> 16; x *= 0x7feb352du;
  x ^= x >> 15; x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// Masks of docs/algorithm.md §2 (j != i is the caller's job).
CLIPO_HD inline bool inAll(Level level, int32_t gi, int32_t gj) { return level != Level::Group || gi == gj; }
CLIPO_HD inline bool inPos(Level level, int32_t gi, int32_t gj, uint8_t yi, uint8_t yj) {
  const bool sameLabel = (yi != 0) == (yj != 0);
  return level == Level::Batch ? sameLabel : (gi == gj && sameLabel);
}
CLIPO_HD inline bool anchorLabelOk(int maskedLabel, uint8_t y) {
  return maskedLabel == -1 || (maskedLabel == 0 ? y != 0 : y == 0);
}
// Whether anchor i enters the batch loss, given |P(i)| and |A(i)|: its label passes the mask and, with skipTrivial,
// it has a positive and a negative. Without skipTrivial an anchor with no positive (or no negative) still counts,
// as in the official implementation: it adds to the number of valid anchors, and its loss is what the formula gives
// for an empty P(i) (docs/algorithm.md §2, "Anchors").
CLIPO_HD inline bool anchorValid(const Params& p, uint8_t y, int64_t nP, int64_t nA) {
  return anchorLabelOk(p.maskedLabel, y) && (!p.skipTrivial || (nP >= 1 && nA - nP >= 1));
}
// InfoNCE scores one drawn positive. A valid anchor without one (P(i) empty, or a given -1) has the empty sum as
// its loss (0, no gradient) and stays valid without skipTrivial; with skipTrivial a given -1 drops the anchor.
CLIPO_HD inline bool infoNceKeepsAnchor(const Params& p, int64_t pos) { return pos >= 0 || !p.skipTrivial; }

// bf16 raw bits -> float (bf16 is the high half of a float32).
CLIPO_HD inline float bf16ToFloat(uint16_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(static_cast<uint32_t>(b) << 16);
#else
  union { uint32_t u; float f; } v{static_cast<uint32_t>(b) << 16};
  return v.f;
#endif
}

// ---- CPU ----
// The fused kernel: one streaming pass over the tokens (OpenMP over responses), projection, normalize, loss, and the
// backward from the pooled vectors kept in memory (no second pass over the tokens).
void contrastiveCpu(const Params& p, const Inputs& in, const Outputs& out);

// The pooling pass of contrastiveCpu alone (fp32 tokens): Hm[i] = masked mean of response i's token rows, with
// `threads` OpenMP threads (0 = the current setting). For the benchmark, which compares this pass with the read
// bandwidth measured in the same run.
void poolTokensCpu(int64_t B, int64_t L, int64_t H, const float* X, const uint8_t* mask, float* Hm, int threads);

// The same math as separate passes with intermediate buffers (as eager framework code runs it): the baseline of
// `clipo bench contrastive`. Same outputs, same positive draw.
void contrastiveUnfusedCpu(const Params& p, const Inputs& in, const Outputs& out);

// The loss part shared by both CPU paths: from embeddings Z [B*D] to per-anchor losses, batch loss, positives and
// dLoss/dZ [B*D] (dZ may be nullptr for forward only). Returns the number of valid anchors.
// `norms` are the |u_i| of the forward: the self term z_i.z_i is taken as exactly 1 (|z_i|^2 of the exact math)
// instead of the rounded sum of squares, because for the l2 distance sqrt(max(2 - 2 z.z, eps)) turns a 1e-7 rounding
// error into a 3e-4 change of the row maximum, which the eps terms then see.
CLIPO_HD inline double selfDot(float norm) {
  const double r = static_cast<double>(norm) / kNormFloor;
  return norm > kNormFloor ? 1.0 : r * r;
}
int32_t lossFromEmbeddingsCpu(const Params& p, const float* Z, const float* norms, const uint8_t* correct,
                              const int32_t* group, const int32_t* givenPositives, float* perSample, int32_t* positives,
                              float* loss, float* dZ);

#if defined(CLIPO_WITH_CUDA)
// ---- CUDA ----
// Device entry: every pointer of `in` and `out` is a device pointer (loss and validAnchors too). Runs on `stream`
// (a cudaStream_t passed as void* so this header stays free of CUDA includes). `workspace` of
// contrastiveCudaWorkspaceBytes(p) bytes, device memory. Returns a cudaError_t as int (0 = success).
// contrastiveCudaWorkspaceBytes(p): p.length > 0 sizes it for token input, p.length == 0 for pooled input.
size_t contrastiveCudaWorkspaceBytes(const Params& p);
int contrastiveCudaDevice(const Params& p, const Inputs& in, const Outputs& out, void* workspace, void* stream);

// Host wrapper for the JS API: host pointers in and out; copies to the device, runs, copies back, synchronizes.
// Returns an error message, empty on success.
const char* contrastiveCudaHost(const Params& p, const Inputs& in, const Outputs& out);

// Number of CUDA devices visible (0 when none or no driver).
int cudaDeviceCount();

// Benchmark of the device entry on device-resident random inputs (no host buffers, no copies in the timing):
// median milliseconds of the whole call and of the pooling pass alone over `repeats` runs, timed with events.
// Returns an error message, empty on success.
const char* contrastiveCudaBenchmark(const Params& p, DType type, int repeats, double* ms, double* poolMs);
#endif

}  // namespace clipo::contrastive
