// Whole-vector helpers for the row kernels of the norm and softmax families, on cpu/isa.h's
// Vector<T> (one register of the instruction set the file is compiled for: GCC/Clang vector
// extensions, so the code stays portable). Reductions need explicit vectors: a float sum may only be
// split into lanes if the code says so (reassociation changes the rounding), and `#pragma omp simd
// reduction` was vectorised in some inlining contexts and left scalar in others (measured: layer
// norm 4x slower than torch).
//
//   for_vectors<T>(n, f)                  f(i, k) over [0, n): k = Full{} for whole vectors, then the tail
//   sum_vectors<T>(n, f)                  the sum of the vectors f(i, k) returns, in four accumulators
//   load_n(p, k, pad), store_n(p, v, k)   k values (Full: a whole vector); other lanes read as `pad`
//   hsum(v), hmax(v), vmax(a, b)          reductions (vmax and hmax keep NaN)
//   exp_vec(v)                            exp of each lane (cpu/fast_math.h's polynomial for float)
//   kParallelMin                          below this many values, one thread (with Vec, load_n and
//                                         for_vectors, in the ISA namespace itself)
//
// Everything lives in the instruction set's namespace: the copies compiled per set never share a
// symbol (see cpu/isa.h).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/fast_math.h"
#include "cpu/isa.h"

namespace pyfastdl::cpu::PYFASTDL_ISA::vec {

template <class T> using Vec = Vector<T>;

template <class T>
inline Vec<T> splat(T s) {
  Vec<T> v;
  for (int i = 0; i < kLanes<T>; ++i) v[i] = s;
  return v;
}

// A whole vector's worth of values (the count argument of a loop's main part).
struct Full {};

// k (< kLanes) values from p (the tail of a loop); lanes k.. hold pad.
template <class T>
inline Vec<T> load_n(const T* p, int64_t k, T pad) {
  Vec<T> v = splat(pad);
  for (int64_t i = 0; i < k; ++i) v[i] = p[i];
  return v;
}
// A whole vector at any address of a T: a vector of T aligned as a T. Loads and stores through it are
// accesses of T, so the compiler knows they touch no pointer or flag a loop reads (through memcpy, a
// store may alias anything: a loop over a lambda's captures reloaded every capture after each store,
// and ReLU ran at half the speed of a copy).
template <class T> struct UnalignedOf {
  typedef T type __attribute__((vector_size(kVectorBytes), aligned(alignof(T))));
};
template <class T> using Unaligned = typename UnalignedOf<T>::type;

template <class T>
inline Vec<T> load_n(const T* p, Full, T) {
  return *reinterpret_cast<const Unaligned<T>*>(p);
}

template <class T>
inline void store_n(T* p, Vec<T> v, int64_t k) {
  for (int64_t i = 0; i < k; ++i) p[i] = v[i];
}
template <class T>
inline void store_n(T* p, Vec<T> v, Full) {
  *reinterpret_cast<Unaligned<T>*>(p) = v;
}

// Calls f(i, Full{}) for each whole vector of [0, n) and f(i, n - i) for the tail, so the main
// loop's loads and stores are plain vector moves and only the tail pads.
template <class T, class F>
inline void for_vectors(int64_t n, F f) {
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) f(i, Full{});
  if (i < n) f(i, n - i);
}

// The sum of f(i, k) over [0, n) as for_vectors visits it, in four accumulators: a reduction's
// adds then overlap (each takes ~4 cycles) instead of every add waiting for the one before.
template <class T, class F>
inline Vec<T> sum_vectors(int64_t n, F f) {
  constexpr int64_t L = kLanes<T>;
  Vec<T> s0 = {}, s1 = {}, s2 = {}, s3 = {};
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    s0 += f(i, Full{});
    s1 += f(i + L, Full{});
    s2 += f(i + 2 * L, Full{});
    s3 += f(i + 3 * L, Full{});
  }
  for (; i + L <= n; i += L) s0 += f(i, Full{});
  if (i < n) s1 += f(i, n - i);
  return (s0 + s1) + (s2 + s3);
}

// The element type of a vector V.
template <class V> using Elem = std::remove_cv_t<std::remove_reference_t<decltype(V{}[0])>>;

template <class V>
inline Elem<V> hsum(V v) {
  Elem<V> s = 0;
  for (int64_t i = 0; i < kLanes<Elem<V>>; ++i) s += v[i];
  return s;
}

// Lane-wise maximum that keeps a NaN of either operand (a comparison alone would drop it).
template <class V>
inline V vmax(V a, V b) {
  return (a > b) | (a != a) ? a : b;
}

template <class V>
inline Elem<V> hmax(V v) {
  Elem<V> m = v[0];
  for (int64_t i = 1; i < kLanes<Elem<V>>; ++i) m = v[i] > m || v[i] != v[i] ? v[i] : m;
  return m;
}

// exp of each lane: cpu/fast_math.h's polynomial for float (within 2 ulp; exactly 0 below -87.34,
// clamped at 88), std::exp per lane for double.
inline Vec<float> exp_vec(Vec<float> x) { return exp_poly(x); }

inline Vec<double> exp_vec(Vec<double> x) {
  for (int64_t i = 0; i < kLanes<double>; ++i) x[i] = std::exp(x[i]);
  return x;
}

}  // namespace pyfastdl::cpu::PYFASTDL_ISA::vec

// What every row kernel file (norm, softmax, optim) shares.
namespace pyfastdl::cpu::PYFASTDL_ISA {

using vec::for_vectors;
using vec::load_n;
using vec::Vec;

// Below this many values a row kernel runs on one thread: forking the OpenMP team and joining it
// costs a few microseconds (much more on a busy machine), about what one core needs for 16k values.
inline constexpr int64_t kParallelMin = int64_t{1} << 14;

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
