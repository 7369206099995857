// Kernel 2: the clipped surrogate policy loss of GRPO / DAPO (mode token), GSPO (mode sequence) and GMPO
// (mode geo_mean), forward and backward in one pass, plus the optional low-variance KL to a reference policy.
// Plain C++ (no N-API, no CUDA headers): the CPU kernel, the unfused CPU version for the benchmark, and the
// signatures of the CUDA twin (device-pointer entry for the engine, host wrapper for the JS API).
//
// Notation (docs/algorithm.md §3): delta_t = logp_t - oldLogp_t, rho_t = exp(delta_t), A_i the sequence advantage,
// M the response mask, n_i = sum_t M_it, N = sum_i n_i, Bv = number of rows with n_i > 0.
//
// Aggregation weights w_i (the policy loss is sum_i w_i sum_t M l_t, the KL term likewise):
//   token-mean            w_i = 1/N
//   seq-mean-token-mean   w_i = 1/(n_i Bv)
//   seq-mean-token-sum    w_i = 1/Bv
// geo_mean's policy loss is always -(1/Bv) sum_i A_i R_i (GMPO is a sequence-level objective); agg then only
// weighs the KL term. All-masked rows contribute nothing and are not counted in Bv (their gradient is 0).
#pragma once
#include <cstddef>
#include <cstdint>

#ifdef __CUDACC__
#define CLIPO_HD __host__ __device__
#else
#define CLIPO_HD
#endif

namespace clipo {
namespace surrogate {

enum class Mode : int { Token = 0, Sequence = 1, GeoMean = 2 };
enum class Agg : int { TokenMean = 0, SeqMeanTokenMean = 1, SeqMeanTokenSum = 2 };

// Clamps taken from verl (core_algos.py): token log-ratio to [-20, 20] before exp, GSPO's sequence log-ratio to at
// most 10, and the KL's log-ratio to [-20, 20] with the estimate clamped to [-10, 10]. Gradients are 0 where a clamp
// is active (as torch.clamp's are).
constexpr float kTokenLogRatioClamp = 20.f;
constexpr float kSeqLogRatioMax = 10.f;
constexpr float kKlLogRatioClamp = 20.f;
constexpr float kKlValueClamp = 10.f;

struct Params {
  int64_t batch = 0;     // B
  int64_t length = 0;    // T
  Mode mode = Mode::Token;
  Agg agg = Agg::TokenMean;
  float clipLow = 0.2f;  // eps_low  (token/sequence: ratio >= 1 - clipLow; geo_mean: log-ratio >= -clipLow)
  float clipHigh = 0.2f; // eps_high (token/sequence: ratio <= 1 + clipHigh; geo_mean: log-ratio <= clipHigh)
  float dualClip = 0.f;  // c > 1 enables the dual clip for A < 0 (token mode only); 0 = off
  float klCoef = 0.f;    // coefficient of the KL-to-reference term (used only when refLogp is given)
  // CUDA only: N and Bv when the caller already knows them (the engine knows its response lengths; the host wrapper
  // counts the host mask while uploading it). Both >= 0 skip the counting launch and its pass over the mask; they
  // must equal the mask's counts. -1: counted on the device.
  int64_t knownTokens = -1;
  int64_t knownSequences = -1;
};

// Row-major [B*T] arrays; refLogp may be null (no KL term). advantages is [B].
struct Inputs {
  const float* logp = nullptr;
  const float* oldLogp = nullptr;
  const float* refLogp = nullptr;
  const float* advantages = nullptr;
  const uint8_t* mask = nullptr;
};

// Scalars of one call. Fractions and approxKl are means over the N response tokens.
struct Result {
  double loss = 0;          // pgLoss + klCoef * klLoss
  double pgLoss = 0;        // the policy (surrogate) part
  double klLoss = 0;        // aggregated low_var_kl to the reference (0 without refLogp), before klCoef
  double clipFracHigh = 0;  // A > 0 and the upper clip active (gradient cut): ratio > 1 + clipHigh
  double clipFracLow = 0;   // A < 0 and the lower clip active: ratio < 1 - clipLow
  double dualClipFrac = 0;  // A < 0 and the dual clip active: ratio > c (verl's pg_clipfrac_lower)
  double approxKl = 0;      // verl's ppo_kl: mean over response tokens of -(logp - oldLogp)
  int64_t tokens = 0;       // N
  int64_t sequences = 0;    // Bv
};

// w_i of the aggregation (see the top of this file); 0 for an all-masked row.
CLIPO_HD inline double aggWeight(Agg agg, int64_t n, int64_t N, int64_t Bv) {
  if (n == 0) return 0.0;
  switch (agg) {
    case Agg::TokenMean: return 1.0 / static_cast<double>(N);
    case Agg::SeqMeanTokenMean: return 1.0 / (static_cast<double>(n) * static_cast<double>(Bv));
    case Agg::SeqMeanTokenSum: return 1.0 / static_cast<double>(Bv);
  }
  return 0.0;
}

// Fused CPU kernel. gradLogp [B*T] receives d loss / d logp (0 on masked tokens). Masked positions are never read
// into the arithmetic (they may hold anything, NaN included).
Result lossCpu(const Params& p, const Inputs& in, float* gradLogp);

// The same math as separate passes over [B*T] intermediate buffers (what eager tensor code does); benchmark only.
Result lossUnfusedCpu(const Params& p, const Inputs& in, float* gradLogp);

// CUDA twin (surrogate_loss.cu; only in builds with CLIPO_WITH_CUDA).
// Device entry: every pointer in `in`, gradLogp and `result` is device memory; nothing is copied to the host and
// nothing synchronizes, so the engine can chain it on its stream. `workspace` is device memory of at least
// cudaWorkspaceBytes(p) bytes, zeroed once before its first use (a block counter in it must start at 0; every call
// leaves it at 0 again, so one workspace serves any number of calls on one stream, never two at once). `stream` is a cudaStream_t (void* here to keep CUDA headers out of this file).
// The Result written to `result` has the same fields as the CPU one. Returns a non-empty error string on failure.
size_t cudaWorkspaceBytes(const Params& p);
const char* lossCudaDevice(const Params& p, const Inputs& in, float* gradLogp, Result* result, void* workspace,
                           void* stream);
// Host wrapper for the JS API: host pointers in and out; copies, runs, copies back, synchronizes. poisonOutput fills
// the device gradient with NaN first (tests use it to catch unwritten elements). countOnDevice ignores the host
// mask's counts and takes the counting-launch path (tests cover both). Returns "" or an error message.
const char* lossCudaHost(const Params& p, const Inputs& in, float* gradLogp, Result* result, bool poisonOutput,
                         bool countOnDevice = false);
// N and Bv of a host mask (what the host wrapper passes as knownTokens / knownSequences).
void countMask(const Params& p, const uint8_t* mask, int64_t* tokens, int64_t* sequences);
// Benchmark: inputs copied to the device once per set, then `repeats` timed calls of the device entry (CUDA events),
// cycling through as many input/output sets as it takes to exceed 3x the L2 cache, so no call finds its inputs in
// L2 (as in training); the per-call milliseconds go to msOut[repeats]; the last call's gradient and scalars come
// back to grad and result, and the rotation used to *rotation (may be null). Returns "" or an error message.
struct TimedRotation {
  int sets = 1;
  double l2Bytes = 0, bytesPerSet = 0;
};
const char* lossCudaTimed(const Params& p, const Inputs& in, int repeats, double* msOut, float* grad, Result* result,
                          TimedRotation* rotation = nullptr);

}  // namespace surrogate
}  // namespace clipo
