// The engine's scalar formulas, defined once and compiled into both backends: the CPU kernels (fp32, *.cpp) and
// their CUDA twins (*.cu; bf16 storage, fp32 arithmetic). Plain C++ with __host__ __device__ under nvcc; no CUDA
// header, so the host emulation of scripts/cuda-emu/ and the CPU build include it as is.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define CLIPO_ENGINE_HD __host__ __device__
#else
#define CLIPO_ENGINE_HD
#endif

namespace clipo::engine {

// ---- bf16 storage (the CUDA engine's weights and activations): the top 16 bits of an fp32 ----
// Kept as uint16_t rather than __nv_bfloat16 so that the CPU reference, the host emulation and the device round
// identically (round to nearest even, NaN kept a quiet NaN).
CLIPO_ENGINE_HD inline uint32_t floatBits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
CLIPO_ENGINE_HD inline float bitsFloat(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}
CLIPO_ENGINE_HD inline float bf16ToFloat(uint16_t h) { return bitsFloat(static_cast<uint32_t>(h) << 16); }
CLIPO_ENGINE_HD inline uint16_t floatToBf16(float f) {
  const uint32_t u = floatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN stays NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// ---- bf16 master weights with stochastic rounding (optimizer option `bf16-sr`) ----
// x rounded to one of its two bf16 neighbours, up with probability (x - lower) / (upper - lower): adding 16 random
// bits below the kept half and truncating does exactly that, so E[round(x)] = x and small updates are not lost on
// average (round to nearest would drop every update below half an ulp, about 0.4% of the weight). NaN and infinity
// pass through; a finite value may round up to infinity only from within one ulp of the largest finite bf16.
CLIPO_ENGINE_HD inline float stochasticRoundBf16(float x, uint32_t random) {
  const uint32_t u = floatBits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;  // NaN, infinity
  return bitsFloat((u + (random & 0xffffu)) & 0xffff0000u);
}
// The random bits of element `index` at optimizer step `step`: a counter-based hash (splitmix64's finalizer of the
// three mixed together), so the CPU, the device and any thread count draw the same bits for the same element.
CLIPO_ENGINE_HD inline uint32_t roundingBits(uint64_t seed, uint64_t step, uint64_t index) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + step * 0xbf58476d1ce4e5b9ull + index * 0x94d049bb133111ebull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return static_cast<uint32_t>((z ^ (z >> 31)) >> 32);
}

// ---- RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps), the sum of squares in double ----
CLIPO_ENGINE_HD inline float rmsRstd(double sumSquares, int64_t H, double eps) {
  return static_cast<float>(1.0 / sqrt(sumSquares / static_cast<double>(H) + eps));
}

// ---- RoPE: the pair (x_i, x_{i+d/2}) rotated by the angle whose cosine and sine are c, s (s negated: inverse) ----
CLIPO_ENGINE_HD inline void ropeRotate(float a, float b, float c, float s, float* outA, float* outB) {
  *outA = a * c - b * s;
  *outB = b * c + a * s;
}

// ---- SwiGLU: act = silu(gate) * up, silu(g) = g * sigmoid(g) ----
CLIPO_ENGINE_HD inline float sigmoidOf(float x) { return 1.f / (1.f + expf(-x)); }
CLIPO_ENGINE_HD inline float swigluValue(float gate, float up) { return gate * sigmoidOf(gate) * up; }
// d gate = dact * up * silu'(gate), d up = dact * silu(gate)
CLIPO_ENGINE_HD inline void swigluGrad(float gate, float up, float dact, float* dgate, float* dup) {
  const float s = sigmoidOf(gate), silu = gate * s;
  *dgate = dact * up * s * (1.f + gate * (1.f - s));
  *dup = dact * silu;
}

// ---- log-softmax over the vocabulary, a chunk of columns at a time ----
// State of one row after some chunks: mx = the largest logit seen, sum = sum exp(z - mx), sumZ = sum exp(z - mx)
// (z - mx). Chunks merge in any grouping (up to rounding): lse = mx + log(sum), entropy = log(sum) - sumZ / sum
// (H = lse - E_p[z]). A chunk with no entries has mx = -inf, sum = sumZ = 0.
struct SoftmaxState {
  float mx;
  double sum, sumZ;
};
CLIPO_ENGINE_HD inline SoftmaxState softmaxEmpty() { return SoftmaxState{-INFINITY, 0.0, 0.0}; }
CLIPO_ENGINE_HD inline SoftmaxState softmaxMerge(SoftmaxState a, SoftmaxState b) {
  if (b.sum == 0.0) return a;
  if (a.sum == 0.0) return b;
  const float m = a.mx > b.mx ? a.mx : b.mx;
  // moving a state's reference point from mx to m: sum' = sum e^(mx-m), sumZ' = e^(mx-m) (sumZ + (mx-m) sum)
  const double da = static_cast<double>(a.mx) - m, db = static_cast<double>(b.mx) - m;
  const double ea = exp(da), eb = exp(db);
  return SoftmaxState{m, a.sum * ea + b.sum * eb, ea * (a.sumZ + da * a.sum) + eb * (b.sumZ + db * b.sum)};
}
CLIPO_ENGINE_HD inline double softmaxLse(SoftmaxState s) { return static_cast<double>(s.mx) + log(s.sum); }
CLIPO_ENGINE_HD inline double softmaxEntropy(SoftmaxState s) { return log(s.sum) - s.sumZ / s.sum; }

// ---- the sampler's random stream: one uniform in [0, 1) per (seed, prompt, sample, step), counter-based ----
CLIPO_ENGINE_HD inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}
CLIPO_ENGINE_HD inline double uniformAt(uint64_t seed, uint64_t prompt, uint64_t sample, uint64_t step) {
  uint64_t k = splitmix64(seed);
  k = splitmix64(k ^ prompt);
  k = splitmix64(k ^ (sample * 0xD1B54A32D192ED03ULL));
  k = splitmix64(k ^ (step * 0xAEF17502108EF2D9ULL));
  return static_cast<double>(k >> 11) * (1.0 / 9007199254740992.0);
}

// ---- the sampler's repetition penalty (vLLM/CTRL): a positive logit divided by r, a negative one multiplied ----
// On the device the division is the correctly rounded one even under --use_fast_math (the CPU's and the device's
// processed logits are then the same floats).
CLIPO_ENGINE_HD inline float repetitionPenalized(float z, float r) {
#ifdef __CUDA_ARCH__
  return z > 0.f ? __fdiv_rn(z, r) : __fmul_rn(z, r);
#else
  return z > 0.f ? z / r : z * r;
#endif
}

// ---- AdamW (torch.optim.AdamW, decoupled weight decay) with torch.nn.utils.clip_grad_norm_'s global clipping ----
// Per step: clip = min(1, maxNorm / (norm + 1e-6)) when maxNorm > 0 (norm: the L2 norm of the whole gradient);
// bias corrections bc1 = 1 - b1^t, bc2 = 1 - b2^t, in double on the host, handed to the element update as floats.
CLIPO_ENGINE_HD inline double adamwClipScale(double norm, double maxNorm) {
  if (!(maxNorm > 0)) return 1.0;
  const double c = maxNorm / (norm + 1e-6);
  return c < 1.0 ? c : 1.0;
}
struct AdamwScalars {
  float b1, b2, stepSize, sqrtBc2, eps;  // stepSize = lr / bc1, sqrtBc2 = sqrt(bc2)
};
inline AdamwScalars adamwScalars(double lr, double beta1, double beta2, double eps, int64_t step) {
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  return AdamwScalars{static_cast<float>(beta1), static_cast<float>(beta2), static_cast<float>(lr / bc1),
                      static_cast<float>(std::sqrt(bc2)), static_cast<float>(eps)};
}
// The decay factor of a tensor: 1 - lr * wd on matrices, 1 on vectors (norm weights, biases).
inline float adamwDecay(double lr, double weightDecay, bool decayed) {
  return decayed ? static_cast<float>(1.0 - lr * weightDecay) : 1.f;
}
// One element, g already scaled by the clip factor:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p = p * decay - stepSize * m / (sqrt(v) / sqrt(bc2) + eps)
// On the device the square root and the division are the correctly rounded ones even under --use_fast_math.
CLIPO_ENGINE_HD inline void adamwElement(float g, float decay, const AdamwScalars& s, float* p, float* m, float* v) {
  const float mi = s.b1 * *m + (1.f - s.b1) * g;
  const float vi = s.b2 * *v + (1.f - s.b2) * g * g;
  *m = mi;
  *v = vi;
#ifdef __CUDA_ARCH__
  *p = *p * decay - __fdiv_rn(s.stepSize * mi, __fdiv_rn(__fsqrt_rn(vi), s.sqrtBc2) + s.eps);
#else
  *p = *p * decay - s.stepSize * mi / (std::sqrt(vi) / s.sqrtBc2 + s.eps);
#endif
}

}  // namespace clipo::engine
