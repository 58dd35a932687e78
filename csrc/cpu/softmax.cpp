// Softmax, log-softmax and fused cross-entropy on the CPU, forward and backward, along rows.
//
// Algorithm. OpenMP splits the rows between threads; each row is a few vectorised passes over
// contiguous values that stay in L1/L2 between passes (a 32k-class row is 128 KiB of floats):
//   softmax:      m = max(x); y = exp(x - m) and s = sum(y) in one pass; y *= 1 / s
//   log_softmax:  m = max(x); s = sum(exp(x - m)); y = x - (m + log s)
//   backward:     softmax  gx = y (g - sum(g y));   log_softmax  gx = g - exp(y) sum(g)
//   cross-entropy forward: lse = m + log sum(exp(x - m)) and, with label smoothing, sum(w x);
//     loss = (1 - eps) w_t (lse - x_t) + eps / C (W lse - sum(w x)), W = sum(w). It writes
//     one loss and one lse per row, never the (rows, C) probabilities.
//   cross-entropy backward: from x and lse, p = exp(x - lse) and
//     gx_c = k ((1 - eps) w_t (p_c - [c == t]) + eps / C (W p_c - w_c))
//     one pass writing gx (k: the upstream gradient times the reduction's factor).
// Subtracting the row maximum keeps every exponent <= 0, so nothing overflows. float32 uses
// a polynomial exp on whole vectors (cpu/vec.h, within 2 ulp); float64 uses std::exp per value.
//
// Cost. About 3 reads and 1 write of the row (forward), 2 reads and 1 write (backward), and one
// exponential per value; the fused cross-entropy reads x twice in all (once per direction) where
// log_softmax + nll would write and re-read a (rows, C) array. Memory-bound for float32 on rows that
// leave L2; the exponentials dominate for rows that fit.
//
// Segmentation maps. Cross-entropy over (N, C, d1, ...) logits has one row per position, its C
// classes `inner` = d1 * ... apart: there the vectors run along kLanes neighbouring positions instead
// (each pass over the classes reads one contiguous vector per class), so the NCHW logits need no
// transposition to rows and back, and rows of a few classes (21 for VOC) fill whole vectors.
//
// Limits. A row is never split between threads: a single very long row runs on one core. NaN in a
// row makes its whole output NaN (the maximum, the sum and every exponential see it), as torch.
#include "cpu/softmax.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include "cpu/vec.h"

namespace pyfastdl::cpu::PYFASTDL_ISA {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// max(x) of a row; NaN if the row holds one.
template <class T>
T row_max(const T* x, int64_t n) {
  Vec<T> m = vec::splat(T(kNegInf));
  for_vectors<T>(n, [&](int64_t i, auto k) { m = vec::vmax(m, load_n(x + i, k, T(kNegInf))); });
  return vec::hmax(m);
}

// sum(exp(x - m)) of a row (padding lanes hold -inf: exp gives 0).
template <class T>
T row_exp_sum(const T* x, int64_t n, T m) {
  return vec::hsum(
      vec::sum_vectors<T>(n, [&](int64_t i, auto k) { return vec::exp_vec(load_n(x + i, k, T(kNegInf)) - m); }));
}

// log sum exp of a row.
template <class T>
T row_lse(const T* x, int64_t n) {
  const T m = row_max(x, n);
  return m + std::log(row_exp_sum(x, n, m));
}

// sum(x) of a row.
template <class T>
T row_sum(const T* x, int64_t n) {
  return vec::hsum(vec::sum_vectors<T>(n, [&](int64_t i, auto k) { return load_n(x + i, k, T(0)); }));
}

// sum(a * b) of a row.
template <class T>
T row_dot(const T* a, const T* b, int64_t n) {
  return vec::hsum(vec::sum_vectors<T>(
      n, [&](int64_t i, auto k) { return load_n(a + i, k, T(0)) * load_n(b + i, k, T(0)); }));
}

bool parallel(const SoftmaxArgs& a) { return a.rows > 1 && a.rows * a.cols >= kParallelMin; }

// sum(w) over the classes (C without weights).
template <class T>
T class_weight_sum(const SoftmaxArgs& a, const T* weight) {
  return weight ? row_sum(weight, a.cols) : T(a.cols);
}

// How many lanes a for_vectors step covers.
template <class T> int64_t lanes(vec::Full) { return kLanes<T>; }
template <class T> int64_t lanes(int64_t k) { return k; }

// Runs f(xb, r0, k) over each group of up to kLanes positions of the (N, C, inner) logits: xb points
// at the group's first position in class 0 (class c lies c * inner further on), r0 is the row of its
// first position, k its lane count (Full or a tail count). OpenMP splits the images.
template <class T, class F>
void for_position_vectors(const SoftmaxArgs& a, const T* x, F f) {
  const int64_t C = a.cols, inner = a.inner, N = a.rows / inner;
#pragma omp parallel for schedule(static) if (parallel(a) && N > 1)
  for (int64_t n = 0; n < N; ++n)
    for_vectors<T>(inner, [&](int64_t i, auto k) { f(x + n * C * inner + i, n * inner + i, k); });
}

// The cross-entropy forward of segmentation maps (see the file comment): per group of positions, the
// running maximum and the sum of exponentials over the classes as vectors, then each lane's loss.
template <class T>
void cross_entropy_forward_positions(const SoftmaxArgs& a, const T* x, const int64_t* target, const T* weight,
                                     T* loss, T* lse, int64_t& first_bad) {
  const int64_t C = a.cols, inner = a.inner;
  const T eps = T(a.label_smoothing), total_w = class_weight_sum(a, weight);
  for_position_vectors(a, x, [&](const T* xb, int64_t r0, auto k) {
    Vec<T> m = vec::splat(T(kNegInf)), s = {}, wx = {};
    for (int64_t c = 0; c < C; ++c) m = vec::vmax(m, load_n(xb + c * inner, k, T(kNegInf)));
    for (int64_t c = 0; c < C; ++c) s += vec::exp_vec(load_n(xb + c * inner, k, T(kNegInf)) - m);
    if (eps > 0)
      for (int64_t c = 0; c < C; ++c) wx += (weight ? weight[c] : T(1)) * load_n(xb + c * inner, k, T(0));
    for (int64_t j = 0; j < lanes<T>(k); ++j) {
      const int64_t r = r0 + j, t = target[r];
      const T l = m[j] + std::log(s[j]);
      lse[r] = l;
      if (t == a.ignore_index) {
        loss[r] = 0;
      } else if (t < 0 || t >= C) {
        loss[r] = std::numeric_limits<T>::quiet_NaN();
#pragma omp critical(pyfastdl_cross_entropy_bad)
        if (first_bad < 0 || r < first_bad) first_bad = r;
      } else {
        const T w_t = weight ? weight[t] : T(1);
        loss[r] = (1 - eps) * w_t * (l - xb[t * inner + j]) + (eps > 0 ? eps / T(C) * (total_w * l - wx[j]) : T(0));
      }
    }
  });
}

// The backward of segmentation maps: each lane's coefficients first, then one vector pass over the
// classes writing p_c times them, then each lane's target class (or, ignored, all its classes: 0).
template <class T>
void cross_entropy_backward_positions(const SoftmaxArgs& a, const T* x, const int64_t* target, const T* weight,
                                      const T* lse, const T* grad_rows, double scale, T* grad_x) {
  const int64_t C = a.cols, inner = a.inner;
  const T eps = T(a.label_smoothing), total_w = class_weight_sum(a, weight);
  for_position_vectors(a, x, [&](const T* xb, int64_t r0, auto k) {
    T* gb = grad_x + (xb - x);
    Vec<T> pk = {}, soft = {}, l = {};
    T hard[kLanes<T>];
    for (int64_t j = 0; j < lanes<T>(k); ++j) {
      const int64_t r = r0 + j, t = target[r];
      const bool valid = t != a.ignore_index && t >= 0 && t < C;
      const T kr = valid ? T(scale) * (grad_rows ? grad_rows[r] : T(1)) : T(0);
      hard[j] = kr * (1 - eps) * (valid && weight ? weight[t] : T(1));
      soft[j] = kr * eps / T(C);
      pk[j] = hard[j] + soft[j] * total_w;
      l[j] = lse[r];
    }
    for (int64_t c = 0; c < C; ++c) {
      const Vec<T> p = vec::exp_vec(load_n(xb + c * inner, k, T(0)) - l);
      vec::store_n(gb + c * inner, pk * p - soft * (weight ? weight[c] : T(1)), k);
    }
    for (int64_t j = 0; j < lanes<T>(k); ++j) {
      const int64_t t = target[r0 + j];
      if (t != a.ignore_index && t >= 0 && t < C) {
        gb[t * inner + j] -= hard[j];
      } else {
        for (int64_t c = 0; c < C; ++c) gb[c * inner + j] = 0;
      }
    }
  });
}

}  // namespace

template <class T>
void softmax_forward_cpu(const SoftmaxArgs& a, const T* x, T* y, bool log) {
  const int64_t n = a.cols;
#pragma omp parallel for schedule(static) if (parallel(a))
  for (int64_t r = 0; r < a.rows; ++r) {
    const T* __restrict xr = x + r * n;
    T* __restrict yr = y + r * n;
    // One pass for both: e = exp(x - m) and its sum s (softmax keeps e), then y = e / s or
    // y = x - (m + log s).
    const T m = row_max(xr, n);
    Vec<T> s = {};
    for_vectors<T>(n, [&](int64_t i, auto k) {
      const Vec<T> e = vec::exp_vec(load_n(xr + i, k, T(kNegInf)) - m);
      if (!log) vec::store_n(yr + i, e, k);
      s += e;
    });
    if (log) {
      const T shift = m + std::log(vec::hsum(s));
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] - shift;
    } else {
      const T inv = T(1) / vec::hsum(s);
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
    }
  }
}

template <class T>
void softmax_backward_cpu(const SoftmaxArgs& a, const T* y, const T* grad_y, T* grad_x, bool log) {
  const int64_t n = a.cols;
#pragma omp parallel for schedule(static) if (parallel(a))
  for (int64_t r = 0; r < a.rows; ++r) {
    const T* __restrict yr = y + r * n;
    const T* __restrict g = grad_y + r * n;
    T* __restrict gx = grad_x + r * n;
    if (log) {
      const T s = row_sum(g, n);
      for_vectors<T>(n, [&](int64_t i, auto k) {
        vec::store_n(gx + i, load_n(g + i, k, T(0)) - vec::exp_vec(load_n(yr + i, k, T(0))) * s, k);
      });
    } else {
      const T s = row_dot(g, yr, n);
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) gx[i] = yr[i] * (g[i] - s);
    }
  }
}

template <class T>
void cross_entropy_forward_cpu(const SoftmaxArgs& a, const T* x, const int64_t* target, const T* weight, T* loss,
                               T* lse, int64_t* first_bad_row) {
  int64_t first_bad = -1;
  if (a.inner > 1 && a.rows > 0) {
    cross_entropy_forward_positions(a, x, target, weight, loss, lse, first_bad);
    *first_bad_row = first_bad;
    return;
  }
  const int64_t C = a.cols;
  const T eps = T(a.label_smoothing), total_w = class_weight_sum(a, weight);
#pragma omp parallel for schedule(static) if (parallel(a))
  for (int64_t r = 0; r < a.rows; ++r) {
    const T* __restrict xr = x + r * C;
    const int64_t t = target[r];
    const T l = row_lse(xr, C);
    lse[r] = l;
    if (t == a.ignore_index) {
      loss[r] = 0;
      continue;
    }
    if (t < 0 || t >= C) {
      loss[r] = std::numeric_limits<T>::quiet_NaN();
#pragma omp critical(pyfastdl_cross_entropy_bad)
      if (first_bad < 0 || r < first_bad) first_bad = r;
      continue;
    }
    const T w_t = weight ? weight[t] : T(1);
    T value = (1 - eps) * w_t * (l - xr[t]);
    if (eps > 0) {
      const T wx = weight ? row_dot(weight, xr, C) : row_sum(xr, C);  // sum_c w_c x_c
      value += eps / T(C) * (total_w * l - wx);
    }
    loss[r] = value;
  }
  *first_bad_row = first_bad;
}

template <class T>
void cross_entropy_backward_cpu(const SoftmaxArgs& a, const T* x, const int64_t* target, const T* weight,
                                const T* lse, const T* grad_rows, double scale, T* grad_x) {
  if (a.inner > 1 && a.rows > 0) return cross_entropy_backward_positions(a, x, target, weight, lse, grad_rows, scale,
                                                                          grad_x);
  const int64_t C = a.cols;
  const T eps = T(a.label_smoothing), total_w = class_weight_sum(a, weight);
#pragma omp parallel for schedule(static) if (parallel(a))
  for (int64_t r = 0; r < a.rows; ++r) {
    const T* __restrict xr = x + r * C;
    T* __restrict gx = grad_x + r * C;
    const int64_t t = target[r];
    if (t == a.ignore_index || t < 0 || t >= C) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) gx[c] = 0;
      continue;
    }
    const T k = T(scale) * (grad_rows ? grad_rows[r] : T(1));
    const T hard = k * (1 - eps) * (weight ? weight[t] : T(1));  // coefficient of p_c - [c == t]
    const T soft = k * eps / T(C);                               // coefficient of W p_c - w_c
    const T pk = hard + soft * total_w, l = lse[r];
    for_vectors<T>(C, [&](int64_t c, auto k) {
      const Vec<T> w = weight ? load_n(weight + c, k, T(0)) : vec::splat(T(1));
      vec::store_n(gx + c, pk * vec::exp_vec(load_n(xr + c, k, T(0)) - l) - soft * w, k);
    });
    gx[t] -= hard;
  }
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_SOFTMAX_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
