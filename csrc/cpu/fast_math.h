// exp(x) for float32 in a form the compiler vectorises (std::exp does not): Cephes' expf.
// x = n ln2 + r with |r| <= ln2 / 2, exp(r) by a degree-7 polynomial (within 2 ulp), 2^n built in the
// exponent bits. Branch-free (selects only), so loops over it vectorise. Inputs below -87.34 (where
// the result would be denormal) give exactly 0, so exp(-inf) = 0; inputs above 88 are clamped to 88
// (e^88 ~ 1.7e38, still finite), which keeps sigmoid and tanh built on it exact at the extremes.
#pragma once
#include <cstdint>
#include <cstring>

namespace pyfastdl::cpu::PYFASTDL_ISA {

inline float exp_poly(float x) {
  const float lo = -87.3365447f;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float xc = x < lo ? lo : x;          // keeps the integer conversion below in range (x = -inf)
  xc = xc > 88.0f ? 88.0f : xc;
  const float n = (xc * 1.44269504088896341f + shifter) - shifter;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;  // x - n ln2, in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x < lo ? 0.0f : p * scale;
}

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
