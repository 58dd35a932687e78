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
// Steele, Lea & Flood 2014; passes TestU01's BigCrush), word k = mix(seed + (k + 1) * gamma), four draws
// a word, kept where draw >= threshold. The caller passes one 64-bit seed per call (Python draws it from
// the op's numpy generator); each block of 4,096 values computes words b / 4 .. from its own offset b,
// so the mask depends on neither the thread count nor the instruction set. One pass compares, writes
// the kept mask and the scaled values, where numpy took three (compare, multiply by the mask, scale) and
// two in the backward. What each step bought, (128, 16, 256) float32 (float64), 1 thread, out= given,
// thread CPU time, medians, on a 2-core Sapphire Rapids-class Xeon shared with another job (+-5%):
//                                                              AVX-512      AVX2        SSE2
//   numpy's PCG64 bits (237 us) + this pass reading them       528 (1230)   515 (1190)  1170 (1180)
//   draws made in the kernel, a block at a time into L1        315 (720)    315 (720)   770 (825)
//   whole vectors for double and SSE2 too; the multiplier as   292 (462)    305 (465)   395 (665)
//   the compare's lanes and-ed with scale's bits, not 0/1 converted to T and multiplied
// The generator costs little beside the memory traffic: two 64-bit multiplies and six shifts/xors per
// four values (AVX-512DQ: 8 words per multiply; AVX2 builds each from three 32-bit multiplies, +25 us);
// the rest is the pass over 4.5 MB of memory (for scale, numpy's y = x * 2, 4 MB: 172 us).
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

// A vector of T's worth of dropout draws (16-bit), of their comparison (0 or -1 per lane), of mask bytes
// and of integers as wide as T. (GCC ignores vector_size in a typedef whose size depends on a template
// parameter: one specialisation per type.)
template <class T> struct DropoutVectors;
template <> struct DropoutVectors<float> {
  typedef uint16_t Draws __attribute__((vector_size(kVectorBytes / 2), aligned(2)));
  typedef int16_t Kept __attribute__((vector_size(kVectorBytes / 2)));
  typedef uint8_t Bytes __attribute__((vector_size(kVectorBytes / 4), aligned(1)));
  using Int = Vector<int32_t>;
};
template <> struct DropoutVectors<double> {
  typedef uint16_t Draws __attribute__((vector_size(kVectorBytes / 4), aligned(2)));
  typedef int16_t Kept __attribute__((vector_size(kVectorBytes / 4)));
  typedef uint8_t Bytes __attribute__((vector_size(kVectorBytes / 8), aligned(1)));
  using Int = Vector<int64_t>;
};

// y = x * (kept ? scale : 0): a dropped NaN stays NaN (as x * mask * scale does in torch). Block by block:
// the block's draws first (SplitMix64 words, whole vectors of them, into 8 KB that stay in L1), then one
// pass over x on whole vectors of every type and set: kLanes draws compared at once, the 0/-1 lanes
// negated into the mask's bytes and, widened to T's width, and-ed with scale's bits for the multiplier.
// Arithmetic, not a branch (the mask is random). The inner loop captures by value: its byte stores may
// alias anything, and captured references were reloaded on every vector.
template <class T>
void dropout_forward_cpu(const DropoutArgs& a, const T* x, uint64_t seed, T* y, uint8_t* keep) {
  using V = DropoutVectors<T>;
  using Int = typename V::Int;
  const T scale = T(a.scale);
  const uint16_t threshold = uint16_t(a.threshold);
  const typename V::Draws thresholds = typename V::Draws{} + threshold;
  const Int scale_bits = (Int)vec::splat(scale);
  for_blocks(a.numel, [&](int64_t b, int64_t len) {
    alignas(kVectorBytes) uint16_t draws[kBlock];  // values b .. b + len - 1: words b / 4 .. of the stream
    splitmix::fill_draws<Vector<uint64_t>>(seed, uint64_t(b) / 4, (len + 3) / 4, draws);
    const uint16_t* d = draws;
    const T* xb = x + b;
    T* yb = y + b;
    uint8_t* kb = keep + b;
    for_vectors<T>(len, [=](int64_t j, auto k) {
      if constexpr (std::is_same_v<decltype(k), vec::Full>) {
        const typename V::Kept kept = *reinterpret_cast<const typename V::Draws*>(d + j) >= thresholds;
        *reinterpret_cast<typename V::Bytes*>(kb + j) = __builtin_convertvector(-kept, typename V::Bytes);
        const Vec<T> multiplier = (Vec<T>)(__builtin_convertvector(kept, Int) & scale_bits);  // scale or +0
        vec::store_n(yb + j, load_n(xb + j, k, T(0)) * multiplier, k);
      } else {
        for (int64_t l = j; l < j + k; ++l) {
          kb[l] = d[l] >= threshold;
          yb[l] = xb[l] * (kb[l] ? scale : T(0));
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
