// Branch-free float helpers for the surrogate kernels, written so that loops over them vectorize (glibc's expf is
// scalar without -ffast-math, and the kernel evaluates one or two exponentials per token).
#pragma once
#include <cstdint>

namespace clipo {
namespace surrogate {

// Clamp that propagates NaN (std::fmin/fmax would replace a NaN by the bound and hide a bad input).
// Both comparisons are evaluated unconditionally: a comparison that only runs on one arm of a select counts as a
// conditional (possibly trapping) operation for GCC and stops if-conversion, hence vectorization.
inline float clampNan(float x, float lo, float hi) {
  const bool below = x < lo, above = x > hi;
  return below ? lo : (above ? hi : x);
}

// e^x, relative error below 3e-7 on [-87, 88] (inputs outside are clamped; NaN stays NaN).
// x = n ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), e^r by its degree-6 Taylor polynomial
// (truncation error r^7/7! < 1.3e-7), then 2^n assembled in the exponent bits.
inline float expApprox(float x) {
  x = clampNan(x, -87.0f, 88.0f);
  // 1.5 * 2^23: adding it rounds x log2(e) to an integer n that then sits in the low mantissa bits, so n is read
  // from the bits (no float->int conversion, which -ftrapping-math would keep GCC from vectorizing)
  const float kMagic = 12582912.0f;
  const float t = x * 1.44269504088896341f + kMagic;
  const float n = t - kMagic;
  const int32_t ni = __builtin_bit_cast(int32_t, t) - 0x4B400000;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * __builtin_bit_cast(float, (ni + 127) << 23);  // p * 2^n
}

}  // namespace surrogate
}  // namespace clipo
