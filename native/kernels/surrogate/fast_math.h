// Branch-free float helpers for the surrogate kernels, written so that loops over them vectorize (glibc's expf is
// scalar without -ffast-math, and the kernel evaluates one or two exponentials per token).
#pragma once
#include <cstdint>
#include <cstring>

namespace clipo {
namespace surrogate {

// Clamp that propagates NaN (std::fmin/fmax would replace a NaN by the bound and hide a bad input).
inline float clampNan(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

// e^x, relative error below 3e-7 on [-87, 88] (inputs outside are clamped; NaN stays NaN).
// x = n ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), e^r by its degree-6 Taylor polynomial
// (truncation error r^7/7! < 1.3e-7), then 2^n assembled in the exponent bits.
inline float expApprox(float x) {
  x = clampNan(x, -87.0f, 88.0f);
  const float kMagic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer
  float n = (x * 1.44269504088896341f + kMagic) - kMagic;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace surrogate
}  // namespace clipo
