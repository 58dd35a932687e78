// ReLU, leaky ReLU, GLU and dropout on the CPU, forward and backward: one pass over memory each.
//
// Algorithm: y[i] = x[i] > 0 ? x[i] : slope * x[i] -- a compare and a blend per value, on whole
// vectors of the file's instruction set (8 floats per AVX2 register). GLU (Dauphin et al. 2017,
// ConvS2S's gate) multiplies one half of the input by the sigmoid of the other: y = a * s,
// s = 1 / (1 + exp(-b)), float32's exp from fast_math.h (a polynomial on whole vectors; 2 ulp). Its
// backward recomputes s from x instead of keeping it (the autograd op saves only x): ga = g * s,
// gb = g * a * s * (1 - s). numpy took four passes and two temporaries for the forward alone (the
// split, exp, the select that keeps exp from overflowing, the product); ConvS2S's step spent 9% there.
// Dropout draws its own mask: 16-bit draws of a counter-based generator, SplitMix64 (cpu/splitmix.h:
// Steele, Lea & Flood 2014, passes TestU01's BigCrush), word k = mix(seed + (k + 1) * gamma), four draws
// a word, kept where draw >= threshold. The caller passes one 64-bit seed per call (Python draws it
// from the op's numpy generator); each block of 4,096 values computes words b / 4 .. from its own
// offset b, so the mask depends on neither the thread count nor the instruction set. One pass compares,
// writes the kept mask and the scaled values, where numpy took three (compare, multiply by the mask,
// scale) and two in the backward. What each step bought, (128, 16, 256) float32, 1 thread, thread CPU
// time, medians, Xeon (Sapphire Rapids class, AVX-512; shared with another job):
//   bits from numpy's PCG64 (random_raw cut into 16-bit draws) + this pass reading them   245 + 307 us
//   the draws made here, a block at a time into L1 (AVX-512: 8 words per multiply)        315 us
//   (of which the generator: ~25 us; the AVX2 copy 315 us, SSE2's scalar compare 770 us)
// Cost: read n values and write n (the backward reads two arrays); at about 1 flop per 8 bytes moved
// the kernels are bound by memory bandwidth, so the only aims are one pass and full vectors. numpy
// needs a pass more: np.maximum(x, 0) checks for NaN lane by lane (LeNet's 300k-value ReLU: 270 us
// against 62 us for a plain copy), and the backward g * (y > 0) writes a boolean mask and reads it back.
// Threads: blocks of 4,096 values are split evenly (static schedule) above kParallelMin values; a
// smaller call stays on the calling thread.
#include "cpu/activation.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "cpu/fast_math.h"
#include "cpu/splitmix.h"
#include "cpu/vec.h"

namespace pyfastdl::cpu::PYFASTDL_ISA {
namespace {

constexpr int64_t kBlock = 4096;

// Calls run(b, len) over [0, n) in blocks [b, b + len) of kBlock values, split between the threads
// when n >= kParallelMin.
template <class F>
void for_blocks(int64_t n, F run) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < n; b += kBlock) run(b, std::min(kBlock, n - b));
}

// Calls f(i, k) (k = Full{} or the tail's count, as vec::for_vectors) over [0, n), block by block.
template <class T, class F>
void for_block_vectors(int64_t n, F f) {
  for_blocks(n, [&](int64_t b, int64_t len) { for_vectors<T>(len, [&](int64_t i, auto k) { f(b + i, k); }); });
}

// sigmoid on a vector: float32 through exp_poly of -|v| (in (0, 1]: it never overflows, sigmoid(+inf) is
// 1 and sigmoid(-inf) 0, as torch's; below -87.3 exp_poly flushes to 0 where torch keeps a denormal),
// then 1 / (1 + e) or e / (1 + e) by sign; NaN stays NaN. double lane by lane through std::exp.
inline Vec<float> sigmoid(Vec<float> v) {
  const Vec<float> e = exp_poly(v > 0 ? -v : v), r = 1.0f / (1.0f + e);
  return v >= 0 ? r : e * r;
}
inline Vec<double> sigmoid(Vec<double> v) {
  Vec<double> s;
  for (int l = 0; l < kLanes<double>; ++l) s[l] = 1.0 / (1.0 + std::exp(-v[l]));
  return s;
}

// Calls f(base, o, i, k) over GLU's rows: row o of x, from x[base = 2 o half inner], holds a's
// half * inner values, then b's; (i, k) as for_vectors over one half. Rows are split between the
// threads above kParallelMin.
template <class T, class F>
void for_glu_rows(const GluArgs& a, F f) {
  const int64_t row = a.half * a.inner;
#pragma omp parallel for schedule(static) if (a.numel() >= kParallelMin)
  for (int64_t o = 0; o < a.outer; ++o) for_vectors<T>(row, [&](int64_t i, auto k) { f(o * 2 * row, o, i, k); });
}

}  // namespace

// The selects below are vector blends written with GCC's vector `?:`: a scalar loop with the
// multiply under the condition stays a branch (the multiply may trap, -ftrapping-math), which
// mispredicts on every other value of a random sign: 40x slower than the blend.
template <class T>
void leaky_relu_forward_cpu(const ActivationArgs& a, const T* x, T* y) {
  const Vec<T> slope = vec::splat(T(a.negative_slope)), zero = {};
  const bool relu = a.negative_slope == 0;
  for_block_vectors<T>(a.numel, [&](int64_t i, auto k) {
    const Vec<T> v = load_n(x + i, k, T(0));
    // ReLU: +0 for x <= 0 (slope * x would give -0 for a negative x) and NaN kept
    const Vec<T> other = relu ? (v != v ? v : zero) : slope * v;
    vec::store_n(y + i, v > zero ? v : other, k);
  });
}

template <class T>
void leaky_relu_backward_cpu(const ActivationArgs& a, const T* ref, const T* grad_y, T* grad_x) {
  const Vec<T> slope = vec::splat(T(a.negative_slope)), zero = {};
  const bool relu = a.negative_slope == 0;
  for_block_vectors<T>(a.numel, [&](int64_t i, auto k) {
    const Vec<T> r = load_n(ref + i, k, T(0)), g = load_n(grad_y + i, k, T(0));
    // ReLU as torch's threshold_backward: 0 where ref <= 0, the gradient elsewhere (NaN ref too)
    vec::store_n(grad_x + i, relu ? (r <= zero ? zero : g) : (r > zero ? g : slope * g), k);
  });
}

template <class T>
void glu_forward_cpu(const GluArgs& a, const T* x, T* y) {
  const int64_t row = a.half * a.inner;
  for_glu_rows<T>(a, [&](int64_t base, int64_t o, int64_t i, auto k) {
    const Vec<T> va = load_n(x + base + i, k, T(0)), vb = load_n(x + base + row + i, k, T(0));
    vec::store_n(y + o * row + i, va * sigmoid(vb), k);
  });
}

template <class T>
void glu_backward_cpu(const GluArgs& a, const T* x, const T* grad_y, T* grad_x) {
  const int64_t row = a.half * a.inner;
  for_glu_rows<T>(a, [&](int64_t base, int64_t o, int64_t i, auto k) {
    const Vec<T> va = load_n(x + base + i, k, T(0)), vb = load_n(x + base + row + i, k, T(0));
    const Vec<T> g = load_n(grad_y + o * row + i, k, T(0)), s = sigmoid(vb), gs = g * s;
    vec::store_n(grad_x + base + i, gs, k);
    vec::store_n(grad_x + base + row + i, gs * va * (T(1) - s), k);
  });
}

// A float vector's worth of dropout draws (16-bit), of their comparison (0 or -1 per lane) and of mask
// bytes. (GCC ignores vector_size in a typedef whose size depends on a template parameter.)
typedef uint16_t FloatDraws __attribute__((vector_size(kVectorBytes / 2), aligned(2)));
typedef int16_t FloatKept __attribute__((vector_size(kVectorBytes / 2)));
typedef uint8_t FloatBytes __attribute__((vector_size(kVectorBytes / 4), aligned(1)));

// y = x * (kept * scale): a dropped NaN stays NaN (as x * mask * scale does in torch). Block by block: the
// block's draws first (SplitMix64 words, whole vectors of them, into 8 KB that stay in L1), then one pass
// over x that compares them. Arithmetic, not a branch (the mask is random); for float on whole vectors:
// kLanes draws compared at once, the 0/1 lanes converted to the mask's bytes and to floats (GCC left the
// scalar loop over three element types unvectorised: 5x slower).
template <class T>
void dropout_forward_cpu(const DropoutArgs& a, const T* x, uint64_t seed, T* y, uint8_t* keep) {
  const T scale = T(a.scale);
  const uint16_t threshold = uint16_t(a.threshold);
  for_blocks(a.numel, [&](int64_t b, int64_t len) {
    alignas(kVectorBytes) uint16_t draws[kBlock];  // values b .. b + len - 1: words b / 4 .. of the stream
    splitmix::fill_draws<Vec<uint64_t>>(seed, uint64_t(b) / 4, (len + 3) / 4, draws);
    for_vectors<T>(len, [&](int64_t j, auto k) {
      constexpr bool full = std::is_same_v<decltype(k), vec::Full>;
      const int64_t i = b + j;
      if constexpr (full && std::is_same_v<T, float> && kLanes<float> >= 8) {  // (double: the scalar loop)
        const FloatKept kept = -(*reinterpret_cast<const FloatDraws*>(draws + j) >= FloatDraws{} + threshold);
        *reinterpret_cast<FloatBytes*>(keep + i) = __builtin_convertvector(kept, FloatBytes);
        vec::store_n(y + i, load_n(x + i, k, T(0)) * (__builtin_convertvector(kept, Vec<float>) * scale), k);
      } else {
        int64_t n = kLanes<T>;
        if constexpr (!full) n = k;
        for (int64_t l = 0; l < n; ++l) {
          keep[i + l] = draws[j + l] >= threshold;
          y[i + l] = x[i + l] * (T(keep[i + l]) * scale);
        }
      }
    });
  });
}

template <class T>
void dropout_backward_cpu(const DropoutArgs& a, const T* grad_y, const uint8_t* keep, T* grad_x) {
  const T scale = T(a.scale);
  for_blocks(a.numel, [&](int64_t b, int64_t len) {
    const T* __restrict g = grad_y + b;
    const uint8_t* __restrict kb = keep + b;
    T* __restrict gx = grad_x + b;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) gx[j] = g[j] * (T(kb[j]) * scale);
  });
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_ACTIVATION_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
