// Pooling on the CPU: max, average and adaptive average, forward and backward.
//
// Algorithm. OpenMP splits the N*C planes between threads; each plane is independent.
//   max / avg: the plane is first "staged" into a per-thread scratch where the padding is explicit
//   (-inf for max, 0 for avg) and every row is split into its stride phases (for stride 2: the even
//   columns, then the odd ones). Padded column c = ow*sw + kw*dw then lives in phase (kw*dw) % sw at
//   position ow + (kw*dw) / sw, so for a fixed window tap (kh, kw) the inputs of one output row are a
//   unit-stride run, and every tap is one vectorised loop over ow:
//       max:  take = v > m[ow] | v != v;  m = take ? v : m;  tap = take ? this tap : tap
//             (branch-free bit selects on 16-byte vectors: a data-dependent branch here would be
//             mispredicted half the time on real data)
//       avg:  acc[ow] += v, then multiply by 1 / the (separable) window count
//   There are no borders to special-case: padded cells hold -inf (never taken, as torch) or 0.
//   The avg backward runs the same loops with += into a zeroed stage and un-stages the result; the
//   max backward scatters gy to the saved argmax indices.
//   max with 2x2 windows of stride 2 (most models' pooling) reads the input rows in place instead
//   (max_2x2 below: no staging, whole vectors).
//   adaptive avg: windows vary in size, so each output row first sums its input rows into a row
//   buffer (vectorised over W), then each output sums its columns of that buffer. With one output
//   column (global pooling) a window is a contiguous run, summed through 8 partial sums.
//
// Cost. max/avg forward: KH*KW compare-or-adds per output plus one staging copy of the plane;
// memory traffic is one read of x and one write of y (and indices). Adaptive: about H*W + OH*W adds.
//
// Limits. For the small windows of real models (2x2, 3x3) the work per input element is a handful of
// vector instructions, so large inputs are bound by memory bandwidth and small ones by the per-plane
// overhead (staging, scratch setup); OpenMP is skipped for tiny inputs where its fork costs more.
// Max keeps torch's rules exactly: taps in row-major order, the first maximum wins ties, a NaN wins
// (the last NaN), and an all -inf window reports its first in-bounds position. A dilated window with
// no in-bounds cell at all gives -inf and index -1 (torch reports a position outside the plane).
#include "cpu/pool.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/vec.h"

namespace pyfastdl::cpu::PYFASTDL_ISA {
namespace {

// Below this many input elements the kernels run on one thread.
constexpr int64_t kParallelMin = int64_t{1} << 15;

bool run_parallel(const Pool2dArgs& a) { return a.planes > 1 && a.planes * a.h * a.w >= kParallelMin; }

// d[i*DS] = s[i*SS] for i < n; fixed small strides let the compiler vectorise the copy.
template <int DS, int SS, class T>
void copy_run(T* __restrict d, const T* __restrict s, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) d[i * DS] = s[i * SS];
}

template <class T>
void copy_strided(T* d, int64_t ds, const T* s, int64_t ss, int64_t n) {
  if (ds == 1 && ss == 1) return copy_run<1, 1>(d, s, n);
  if (ds == 1 && ss == 2) return copy_run<1, 2>(d, s, n);
  if (ds == 2 && ss == 1) return copy_run<2, 1>(d, s, n);
  for (int64_t i = 0; i < n; ++i) d[i * ds] = s[i * ss];
}

// ceil(a / b) for b > 0 and any a, without forming a + b - 1 (which overflows for huge strides).
int64_t ceil_div(int64_t a, int64_t b) { return a / b + (a % b > 0); }

// The padded, phase-split copy of one plane (see the file comment). Row r is padded input row r - ph;
// phase p of a row holds padded columns p, p + sw, p + 2*sw, ... (L of them). Only the phases a
// window tap reads are kept, min(sw, (KW-1)*dw + 1) of them: with a stride larger than the window
// the others hold columns that no window reaches (stride=10**12 must not stage 10**12 phases).
struct Stage {
  int64_t rows, phases, len;   // R, number of phases kept, L
  bool covers_input;           // every input column is in a staged phase run
  std::vector<int64_t> col;    // per kw: where tap kw's run starts within a staged row

  int64_t row_size() const { return phases * len; }
  int64_t size() const { return mul_or_fail(rows, row_size(), "pooling", "the staging buffer's size"); }

  explicit Stage(const Pool2dArgs& a)
      : rows((a.oh - 1) * a.sh + (a.kh - 1) * a.dh + 1),
        phases(std::min(a.sw, (a.kw - 1) * a.dw + 1)),
        len(a.ow + (a.kw - 1) * a.dw / a.sw),  // ceil(((ow-1)*sw + (kw-1)*dw + 1) / sw)
        col(a.kw) {
    for (int64_t kw = 0; kw < a.kw; ++kw) col[kw] = (kw * a.dw % a.sw) * len + kw * a.dw / a.sw;
    // (with every phase kept, sw <= (KW-1)*dw + 1 and len * sw stays near the padded width)
    covers_input = phases == a.sw && len * a.sw - a.pw >= a.w;
  }

  // Where window tap (kh, kw) of output row oh starts: the run of its inputs for ow = 0, 1, 2, ...
  int64_t run(const Pool2dArgs& a, int64_t oh, int64_t kh, int64_t kw) const {
    return (oh * a.sh + kh * a.dh) * row_size() + col[kw];
  }

  // Positions j of phase p whose padded column p + j*sw is inside the input: [j0, j1).
  void input_range(const Pool2dArgs& a, int64_t p, int64_t& j0, int64_t& j1) const {
    j0 = std::min(len, std::max<int64_t>(0, ceil_div(a.pw - p, a.sw)));
    j1 = std::max(j0, std::min(len, ceil_div(a.pw + a.w - p, a.sw)));
  }

  template <class T>
  void load(const Pool2dArgs& a, const T* plane, T fill, T* s) const {
    for (int64_t r = 0; r < rows; ++r) {
      T* row = s + r * row_size();
      int64_t ih = r - a.ph;
      if (ih < 0 || ih >= a.h) {
        std::fill(row, row + row_size(), fill);
        continue;
      }
      for (int64_t p = 0; p < phases; ++p) {
        T* ph = row + p * len;
        int64_t j0, j1;
        input_range(a, p, j0, j1);
        std::fill(ph, ph + j0, fill);
        copy_strided(ph + j0, 1, plane + ih * a.w + (p + j0 * a.sw - a.pw), a.sw, j1 - j0);
        std::fill(ph + j1, ph + len, fill);
      }
    }
  }

  // The inverse of load for a gradient: input cells take their staged value (cells that no window
  // reaches get 0).
  template <class T>
  void store(const Pool2dArgs& a, const T* s, T* plane) const {
    for (int64_t ih = 0; ih < a.h; ++ih) {
      int64_t r = ih + a.ph;
      T* out = plane + ih * a.w;
      if (r >= rows || !covers_input) std::fill(out, out + a.w, T(0));
      if (r >= rows) continue;
      const T* row = s + r * row_size();
      for (int64_t p = 0; p < phases; ++p) {
        int64_t j0, j1;
        input_range(a, p, j0, j1);
        copy_strided(out + (p + j0 * a.sw - a.pw), a.sw, row + p * len + j0, 1, j1 - j0);
      }
    }
  }
};

// First tap (kh or kw) of the window starting at padded position `start` that lands inside [0, n),
// or -1 when every tap is padding (possible only with dilation).
int64_t first_valid_tap(int64_t start, int64_t pad, int64_t k, int64_t d, int64_t n) {
  for (int64_t t = 0; t < k; ++t) {
    int64_t i = start - pad + t * d;
    if (i >= 0 && i < n) return t;
  }
  return -1;
}

// ---- max ----------------------------------------------------------------------------------------

// Tap numbers are kept in integers as wide as T, so one vector of values and one of taps have the
// same lanes (4 for float, 2 for double in the 16-byte vectors every x86-64 CPU has).
template <class T>
using TapInt = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

// The max update of one output element: take the new value if it is larger or NaN (torch's rule).
// Written as bit selects, so it is branch-free (the compare is unpredictable on real data).
template <class V, class M>
V select(M take, V a, V b) {
  return (V)(((M)a & take) | ((M)b & ~take));
}

// One output row of max pooling over the staged plane. m: the output row; tap: per output, the
// window tap (kh*KW + kw) holding the maximum so far. The inner loop is written with GCC/Clang
// vector types: the auto-vectoriser handles this loop in some builds and not in others (LTO).
template <class T, bool WithIndices>
void max_row(const Pool2dArgs& a, const Stage& st, const T* s, int64_t oh, T* __restrict m,
             TapInt<T>* __restrict tap) {
  using I = TapInt<T>;
  typedef T vec __attribute__((vector_size(16)));
  typedef I ivec __attribute__((vector_size(16)));
  constexpr int64_t L = 16 / sizeof(T);
  for (int64_t kh = 0; kh < a.kh; ++kh) {
    for (int64_t kw = 0; kw < a.kw; ++kw) {
      const T* v = s + st.run(a, oh, kh, kw);
      const I t = static_cast<I>(kh * a.kw + kw);
      const ivec tv = ivec{} + t;
      int64_t o = 0;
      for (; o + L <= a.ow; o += L) {
        vec x, cur;
        std::memcpy(&x, v + o, sizeof x);
        std::memcpy(&cur, m + o, sizeof cur);
        const ivec take = (x > cur) | (x != x);
        cur = select(take, x, cur);
        std::memcpy(m + o, &cur, sizeof cur);
        if constexpr (WithIndices) {
          ivec tp;
          std::memcpy(&tp, tap + o, sizeof tp);
          tp = select(take, tv, tp);
          std::memcpy(tap + o, &tp, sizeof tp);
        }
      }
      for (; o < a.ow; ++o) {  // the last few columns
        const bool take = (v[o] > m[o]) | (v[o] != v[o]);
        m[o] = take ? v[o] : m[o];
        if constexpr (WithIndices) tap[o] = take ? t : tap[o];
      }
    }
  }
}

template <class T, bool WithIndices>
void max_forward(const Pool2dArgs& a, const T* x, T* y, int64_t* indices) {
  const Stage st(a);
  // Per output column: the first in-bounds kw (the index torch reports for an all -inf window).
  std::vector<int64_t> kw0(a.ow);
  for (int64_t o = 0; o < a.ow; ++o) kw0[o] = first_valid_tap(o * a.sw, a.pw, a.kw, a.dw, a.w);
  // Flat offset of each tap from its window's origin, to turn taps into plane indices.
  std::vector<int64_t> tap_delta(a.kh * a.kw);
  for (int64_t kh = 0; kh < a.kh; ++kh)
    for (int64_t kw = 0; kw < a.kw; ++kw) tap_delta[kh * a.kw + kw] = kh * a.dh * a.w + kw * a.dw;

  const ThreadScratch<T> stages(st.size(), run_parallel(a));
  const ThreadScratch<TapInt<T>> taps(WithIndices ? a.ow : 0, run_parallel(a));
#pragma omp parallel if (run_parallel(a))
  {
    T* stage = stages.get();
    TapInt<T>* tap = taps.get();
#pragma omp for schedule(static)
    for (int64_t p = 0; p < a.planes; ++p) {
      st.load(a, x + p * a.h * a.w, -std::numeric_limits<T>::infinity(), stage);
      for (int64_t oh = 0; oh < a.oh; ++oh) {
        T* m = y + (p * a.oh + oh) * a.ow;
        std::fill(m, m + a.ow, -std::numeric_limits<T>::infinity());
        int64_t kh0 = first_valid_tap(oh * a.sh, a.ph, a.kh, a.dh, a.h);
        if constexpr (WithIndices)
          for (int64_t o = 0; o < a.ow; ++o)
            tap[o] = kh0 < 0 || kw0[o] < 0 ? -1 : static_cast<TapInt<T>>(kh0 * a.kw + kw0[o]);
        max_row<T, WithIndices>(a, st, stage, oh, m, tap);
        if constexpr (WithIndices) {
          int64_t* idx = indices + (p * a.oh + oh) * a.ow;
          int64_t origin = (oh * a.sh - a.ph) * a.w - a.pw;
          for (int64_t o = 0; o < a.ow; ++o) idx[o] = tap[o] < 0 ? -1 : origin + o * a.sw + tap_delta[tap[o]];
        }
      }
    }
  }
}

// 2x2 windows with stride 2, no padding or dilation, every window inside the plane (LeNet, VGG and
// FCN, YOLO): each output row reads its two input rows in place, with no staging copy. The window
// at column j is combined as (max of row 0's pair, max of row 1's pair), then the two: with the
// rules above (the first maximum, the last NaN) that equals the taps' row-major scan. Computed for
// every column j (whole vectors, branch-free; the odd j are wasted) into a row buffer whose even
// entries are the outputs. LeNet's pools at batch 64, one thread, with indices (Xeon, AVX-512):
// 6 x 28x28 641 -> 220 us, 16 x 10x10 375 -> 92 us (torch: 1,600 and 570 us).
bool plain_2x2(const Pool2dArgs& a) {
  return a.kh == 2 && a.kw == 2 && a.sh == 2 && a.sw == 2 && a.ph == 0 && a.pw == 0 && a.dh == 1 && a.dw == 1 &&
         2 * a.oh <= a.h && 2 * a.ow <= a.w;
}

template <class T, bool WithIndices>
void max_2x2(const Pool2dArgs& a, const T* x, T* y, int64_t* indices) {
  using I = TapInt<T>;
  constexpr int64_t L = kLanes<T>;
  const int64_t w = a.w, ow = a.ow, n = 2 * ow - 1;  // columns j < n: j + 1 stays in the row
  const int64_t padded = (n + L - 1) / L * L;          // whole vectors over a row's columns
  const T* end = x + a.planes * a.h * w;
  const ThreadScratch<T> bests(padded, run_parallel(a));
  const ThreadScratch<I> taps(padded, run_parallel(a));
#pragma omp parallel if (run_parallel(a))
  {
    T* __restrict best = bests.get();
    I* __restrict tap = taps.get();
#pragma omp for schedule(static)
    for (int64_t p = 0; p < a.planes; ++p)
      for (int64_t oh = 0; oh < a.oh; ++oh) {
        const T* __restrict r0 = x + (p * a.h + 2 * oh) * w;
        const T* __restrict r1 = r0 + w;
        // The windows at columns [j, j + k) of this row pair, in explicit vectors (GCC left the
        // scalar form branchy). k = Full{}: whole vectors, which may read past the row into the
        // next one (lanes never used) but not past the input's end.
        auto windows = [&](int64_t j, auto k) {
          const Vec<T> a0 = load_n(r0 + j, k, T(0)), b0 = load_n(r0 + j + 1, k, T(0));
          const Vec<T> a1 = load_n(r1 + j, k, T(0)), b1 = load_n(r1 + j + 1, k, T(0));
          const auto right0 = (b0 > a0) | (b0 != b0), right1 = (b1 > a1) | (b1 != b1);  // lanes of -1 / 0
          const Vec<T> m0 = right0 ? b0 : a0, m1 = right1 ? b1 : a1;
          const auto lower = (m1 > m0) | (m1 != m1);
          vec::store_n(best + j, lower ? m1 : m0, k);
          if constexpr (WithIndices) {
            const Vector<I> t = lower ? static_cast<I>(w) - right1 : -right0;
            vec::store_n(tap + j, t, k);
          }
        };
        for (int64_t j = 0; j < n; j += L) {
          if (r1 + j + 1 + L <= end)
            windows(j, vec::Full{});
          else
            windows(j, std::min(L, n - j));
        }
        T* m = y + (p * a.oh + oh) * ow;
        for (int64_t o = 0; o < ow; ++o) m[o] = best[2 * o];
        if constexpr (WithIndices) {
          int64_t* idx = indices + (p * a.oh + oh) * ow;
          for (int64_t o = 0; o < ow; ++o) idx[o] = 2 * oh * w + 2 * o + tap[2 * o];
        }
      }
  }
}

}  // namespace

template <class T>
void max_pool2d_forward_cpu(const Pool2dArgs& a, const T* x, T* y, int64_t* indices) {
  if (plain_2x2(a))
    return indices ? max_2x2<T, true>(a, x, y, indices) : max_2x2<T, false>(a, x, y, nullptr);
  if (indices)
    max_forward<T, true>(a, x, y, indices);
  else
    max_forward<T, false>(a, x, y, nullptr);
}

template <class T>
void max_pool2d_backward_cpu(const Pool2dArgs& a, const T* gy, const int64_t* indices, T* gx) {
  const int64_t plane = a.h * a.w, out_plane = a.oh * a.ow;
#pragma omp parallel for schedule(static) if (run_parallel(a))
  for (int64_t p = 0; p < a.planes; ++p) {
    T* g = gx + p * plane;
    std::fill(g, g + plane, T(0));
    const int64_t* idx = indices + p * out_plane;
    const T* go = gy + p * out_plane;
    for (int64_t o = 0; o < out_plane; ++o)
      if (idx[o] >= 0) g[idx[o]] += go[o];  // the binding checked idx[o] < plane
  }
}

// ---- avg: the window counts are separable, count(oh, ow) = rows(oh) * cols(ow) -------------------

namespace {

// Divisor factor of output o along one axis: the window clipped to the padded input
// (count_include_pad) or to the input.
int64_t avg_count(const Pool2dArgs& a, int64_t o, int64_t s, int64_t p, int64_t k, int64_t n) {
  int64_t start = o * s - p;
  int64_t end = std::min(start + k, n + p);
  return a.count_include_pad ? end - start : std::min(end, n) - std::max<int64_t>(start, 0);
}

// 1 / divisor for every output, as rows(oh) and cols(ow) factors.
template <class T>
void avg_inverse_counts(const Pool2dArgs& a, std::vector<T>& rows, std::vector<T>& cols) {
  rows.resize(a.oh);
  cols.resize(a.ow);
  for (int64_t o = 0; o < a.oh; ++o)
    rows[o] = a.divisor_override ? T(1) / T(a.divisor_override) : T(1) / T(avg_count(a, o, a.sh, a.ph, a.kh, a.h));
  for (int64_t o = 0; o < a.ow; ++o)
    cols[o] = a.divisor_override ? T(1) : T(1) / T(avg_count(a, o, a.sw, a.pw, a.kw, a.w));
}

}  // namespace

template <class T>
void avg_pool2d_forward_cpu(const Pool2dArgs& a, const T* x, T* y) {
  const Stage st(a);
  std::vector<T> inv_rows, inv_cols;
  avg_inverse_counts(a, inv_rows, inv_cols);
  const ThreadScratch<T> stages(st.size(), run_parallel(a));
#pragma omp parallel if (run_parallel(a))
  {
    T* stage = stages.get();
#pragma omp for schedule(static)
    for (int64_t p = 0; p < a.planes; ++p) {
      st.load(a, x + p * a.h * a.w, T(0), stage);
      for (int64_t oh = 0; oh < a.oh; ++oh) {
        T* __restrict acc = y + (p * a.oh + oh) * a.ow;
        std::fill(acc, acc + a.ow, T(0));
        for (int64_t kh = 0; kh < a.kh; ++kh)
          for (int64_t kw = 0; kw < a.kw; ++kw) {
            const T* __restrict v = stage + st.run(a, oh, kh, kw);
#pragma omp simd
            for (int64_t o = 0; o < a.ow; ++o) acc[o] += v[o];
          }
        const T r = inv_rows[oh];
        const T* __restrict c = inv_cols.data();
        for (int64_t o = 0; o < a.ow; ++o) acc[o] *= r * c[o];
      }
    }
  }
}

template <class T>
void avg_pool2d_backward_cpu(const Pool2dArgs& a, const T* gy, T* gx) {
  const Stage st(a);
  std::vector<T> inv_rows, inv_cols;
  avg_inverse_counts(a, inv_rows, inv_cols);
  const int64_t stage_size = st.size();
  const ThreadScratch<T> stages(stage_size, run_parallel(a)), grads(a.ow, run_parallel(a));
#pragma omp parallel if (run_parallel(a))
  {
    T* stage = stages.get();
    T* g = grads.get();
#pragma omp for schedule(static)
    for (int64_t p = 0; p < a.planes; ++p) {
      std::fill(stage, stage + stage_size, T(0));
      for (int64_t oh = 0; oh < a.oh; ++oh) {
        const T* __restrict grow = gy + (p * a.oh + oh) * a.ow;
        const T r = inv_rows[oh];
        for (int64_t o = 0; o < a.ow; ++o) g[o] = grow[o] * r * inv_cols[o];
        for (int64_t kh = 0; kh < a.kh; ++kh)
          for (int64_t kw = 0; kw < a.kw; ++kw) {
            T* __restrict v = stage + st.run(a, oh, kh, kw);
            const T* __restrict gv = g;
#pragma omp simd
            for (int64_t o = 0; o < a.ow; ++o) v[o] += gv[o];
          }
      }
      st.store(a, stage, gx + p * a.h * a.w);
    }
  }
}

// ---- adaptive avg -------------------------------------------------------------------------------

namespace {

// Sum of n contiguous values in 32-byte vectors (8 floats; one running sum is a serial chain the
// compiler may not reorder without -ffast-math). The last, partial vector is read whole where that
// stays below `end` (the next plane's values, masked off), else value by value. Global pooling's
// planes are short (ResNet's 5x5 to 7x7): 8 scalar partial sums ran at 0.5x torch on 7x7 planes,
// and AVX-512's 16 lanes lost on 2x2 to 5x5 planes to their masked tails and 16-lane sums.
template <class T>
T sum_run(const T* __restrict v, int64_t n, const T* end) {
  typedef T V __attribute__((vector_size(32)));
  typedef TapInt<T> IV __attribute__((vector_size(32)));
  constexpr int64_t L = 32 / sizeof(T);
  V acc = {};
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    V x;
    std::memcpy(&x, v + i, sizeof x);
    acc += x;
  }
  if (i < n && v + i + L <= end) {
    V x;
    std::memcpy(&x, v + i, sizeof x);
    IV lane;
    for (int64_t j = 0; j < L; ++j) lane[j] = static_cast<TapInt<T>>(j);
    acc += (V)((IV)x & (lane < static_cast<TapInt<T>>(n - i)));
    i = n;
  }
  T s = 0;
  for (; i < n; ++i) s += v[i];
  for (int64_t j = 0; j < L; ++j) s += acc[j];
  return s;
}

}  // namespace

// Global average pooling (an output of 1x1: NIN's and ResNet's heads) sums each plane as one run. It
// moves 4 bytes per add: a team of threads pays only on planes of a megabyte and more (the general
// loop below, with its integer divisions per plane and a team for 128 KiB, ran at 0.4-0.6x torch on
// ResNet's 512 x 7x7 planes and far below that beside a busy process).
constexpr int64_t kGlobalParallelMin = int64_t{1} << 18;

template <class T>
void adaptive_avg_pool2d_forward_cpu(const Pool2dArgs& a, const T* x, T* y) {
  if (a.oh == 1 && a.ow == 1) {
    const int64_t n = a.h * a.w;
#pragma omp parallel for schedule(static) if (a.planes * n >= kGlobalParallelMin)
    for (int64_t p = 0; p < a.planes; ++p) y[p] = sum_run(x + p * n, n, x + a.planes * n) / T(n);
    return;
  }
  const ThreadScratch<T> rowsums(a.w, run_parallel(a));
#pragma omp parallel if (run_parallel(a))
  {
#pragma omp for schedule(static)
    for (int64_t p = 0; p < a.planes; ++p) {
      const T* plane = x + p * a.h * a.w;
      for (int64_t oh = 0; oh < a.oh; ++oh) {
        int64_t h0 = Pool2dArgs::adaptive_begin(oh, a.h, a.oh), h1 = Pool2dArgs::adaptive_end(oh, a.h, a.oh);
        if (a.ow == 1) {  // whole rows: one contiguous run
          y[p * a.oh + oh] = sum_run(plane + h0 * a.w, (h1 - h0) * a.w, x + a.planes * a.h * a.w) /
                             T((h1 - h0) * a.w);
          continue;
        }
        T* __restrict sum = rowsums.get();
        std::copy(plane + h0 * a.w, plane + (h0 + 1) * a.w, sum);
        for (int64_t ih = h0 + 1; ih < h1; ++ih) {
          const T* __restrict in = plane + ih * a.w;
          for (int64_t iw = 0; iw < a.w; ++iw) sum[iw] += in[iw];
        }
        T* out = y + (p * a.oh + oh) * a.ow;
        for (int64_t ow = 0; ow < a.ow; ++ow) {
          int64_t w0 = Pool2dArgs::adaptive_begin(ow, a.w, a.ow), w1 = Pool2dArgs::adaptive_end(ow, a.w, a.ow);
          T s = 0;
          for (int64_t iw = w0; iw < w1; ++iw) s += sum[iw];
          out[ow] = s / T((h1 - h0) * (w1 - w0));
        }
      }
    }
  }
}

template <class T>
void adaptive_avg_pool2d_backward_cpu(const Pool2dArgs& a, const T* gy, T* gx) {
  if (a.oh == 1 && a.ow == 1) {  // global: every input of a plane gets the same share
    const int64_t n = a.h * a.w;
#pragma omp parallel for schedule(static) if (a.planes * n >= kGlobalParallelMin)
    for (int64_t p = 0; p < a.planes; ++p) std::fill(gx + p * n, gx + (p + 1) * n, gy[p] / T(n));
    return;
  }
  const ThreadScratch<T> rowgrads(a.w, run_parallel(a));
#pragma omp parallel if (run_parallel(a))
  {
#pragma omp for schedule(static)
    for (int64_t p = 0; p < a.planes; ++p) {
      T* plane = gx + p * a.h * a.w;
      std::fill(plane, plane + a.h * a.w, T(0));
      for (int64_t oh = 0; oh < a.oh; ++oh) {
        int64_t h0 = Pool2dArgs::adaptive_begin(oh, a.h, a.oh), h1 = Pool2dArgs::adaptive_end(oh, a.h, a.oh);
        // What output row oh sends to each input column, then to each of its input rows.
        T* __restrict g = rowgrads.get();
        std::fill(g, g + a.w, T(0));
        const T* grow = gy + (p * a.oh + oh) * a.ow;
        for (int64_t ow = 0; ow < a.ow; ++ow) {
          int64_t w0 = Pool2dArgs::adaptive_begin(ow, a.w, a.ow), w1 = Pool2dArgs::adaptive_end(ow, a.w, a.ow);
          T share = grow[ow] / T((h1 - h0) * (w1 - w0));
          for (int64_t iw = w0; iw < w1; ++iw) g[iw] += share;
        }
        for (int64_t ih = h0; ih < h1; ++ih) {
          T* __restrict out = plane + ih * a.w;
          for (int64_t iw = 0; iw < a.w; ++iw) out[iw] += g[iw];
        }
      }
    }
  }
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_POOL_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
