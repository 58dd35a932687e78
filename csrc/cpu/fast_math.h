// exp(x) for float32 in a form the compiler vectorises (std::exp does not): Cephes' expf.
// x = n ln2 + r with |r| <= ln2 / 2, exp(r) by a degree-7 polynomial (within 2 ulp), 2^n built in the
// exponent bits. Branch-free (selects only); a vector form (below) for loops GCC does not vectorise. Inputs below -87.34 (where
// the result would be denormal) give exactly 0, so exp(-inf) = 0; inputs above 88 are clamped to 88
// (e^88 ~ 1.7e38, still finite), which keeps sigmoid and tanh built on it exact at the extremes.
#pragma once
#include <cstdint>
#include <cstring>

#include "cpu/isa.h"

namespace pyfastdl::cpu::PYFASTDL_ISA {

// One function for a float and for a vector of floats (Vector<float>, cpu/isa.h): loops that the
// compiler does not vectorise by itself (GCC leaves the selects below as branches in AVX2 code) call
// the vector form on kLanes<float> values at a time. NaN gives NaN.
namespace exp_detail {
inline int32_t to_int(float x) { return static_cast<int32_t>(x); }
inline float from_bits(int32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
typedef int32_t VectorInt __attribute__((vector_size(kVectorBytes)));
inline VectorInt to_int(Vector<float> x) { return __builtin_convertvector(x, VectorInt); }
inline Vector<float> from_bits(VectorInt b) { return (Vector<float>)b; }  // the same bits
}  // namespace exp_detail

template <class F>
inline F exp_poly(F x) {
  const F lo = F{} - 87.3365447f, hi = F{} + 88.0f, zero = F{};
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  F xc = x < lo ? lo : x;              // keeps the integer conversion below in range (x = -inf)
  xc = xc > hi ? hi : xc;
  const F n = (xc * 1.44269504088896341f + shifter) - shifter;
  const F r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;  // x - n ln2, in two parts
  F p = zero + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n from its exponent bits, n in [-126, 88]. A NaN x leaves n NaN, whose conversion to int is
  // undefined (and INT_MIN in practice, which the shift then overflows): it takes n = 0 here, and
  // its NaN reaches the result through r and p.
  const F scale = exp_detail::from_bits((exp_detail::to_int(n == n ? n : zero) + 127) << 23);
  return x < lo ? zero : p * scale;
}

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
