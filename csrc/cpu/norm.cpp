// Batch norm and layer norm on the CPU, forward and backward.
//
// Algorithm. Both normalise a group of n values (a channel over batch and space, or a row) by its
// mean and invstd = 1 / sqrt(var + eps), then apply the affine map y = x_hat * w + b. OpenMP splits
// the groups (channels, rows) between threads; a group is `outer` runs of `inner` contiguous values
// (see common/norm_args.h), and every inner loop is one vectorised pass over a run.
//   forward:  pass 1 sums x (the mean), pass 2 sums (x - mean)^2 (the variance: two passes are exact
//             where sum(x^2) - n mean^2 would cancel), pass 3 writes y. For batch norm the affine map
//             folds into y = x * scale + shift with scale = w * invstd, shift = b - mean * scale.
//   backward: with g the output gradient and x_hat = (x - mean) * invstd,
//             d bias = sum(g),  d weight = sum(g * x_hat)   (over the group for batch norm; over
//             the rows, per feature, for layer norm), and with batch statistics
//             d x = w invstd (g - mean(g) - x_hat mean(g x_hat))   (layer norm: g' = g w inside)
//             which for batch norm is again one fused multiply-add per value: d x = g k1 + x k2 + k3.
//             Pass 1 forms both sums, pass 2 writes d x.
//
// Memory. What the backward needs is x and the two statistics per group, not x_hat: the forward
// writes only y (plus 2 values per group), the backward reads g and x and writes d x. A channel of a
// CIFAR ResNet (32 x 32 x 32 floats = 128 KiB) or a Transformer row stays in L2/L1 between the
// passes, so each array crosses the memory bus once per call. Accumulation: float runs are summed in
// float across the vector lanes (short runs together, up to about 1,024 values), and the runs of a
// group in double.
//
// Limits. Memory-bound: about 2 bytes moved per flop. Batch norm parallelises over channels only
// (16 to 64 in ResNets: enough for a few threads, not for many). Layer norm's weight and bias
// gradients are column sums over the rows: each thread sums its rows into a private buffer and the
// buffers are added in thread order (deterministic for a given thread count).
#include "cpu/norm.h"

#include <omp.h>

#include <cmath>
#include <vector>

#include "cpu/vec.h"

namespace pyfastdl::cpu::PYFASTDL_ISA {
namespace {

// The vector sums of one run: x, (x - m)^2 and a * (b - m) (padding lanes hold 0, m, and 0 and m: they
// add 0); run_sum below is the first's lanes added up.
template <class T>
Vec<T> run_sum_v(const T* x, int64_t n) {
  return vec::sum_vectors<T>(n, [&](int64_t i, auto k) { return load_n(x + i, k, T(0)); });
}

template <class T>
Vec<T> run_sq_dev_v(const T* x, int64_t n, T m) {
  return vec::sum_vectors<T>(n, [&](int64_t i, auto k) {
    const Vec<T> d = load_n(x + i, k, m) - m;
    return d * d;
  });
}

template <class T>
Vec<T> run_dot_dev_v(const T* a, const T* b, int64_t n, T m) {
  return vec::sum_vectors<T>(n, [&](int64_t i, auto k) { return load_n(a + i, k, T(0)) * (load_n(b + i, k, m) - m); });
}

template <class T>
T run_sum(const T* x, int64_t n) {
  return vec::hsum(run_sum_v(x, n));
}

// The sum over a group's `outer` runs of `inner` values of run(o), a run's vector sum: the runs'
// vectors are added lane-wise in T until they hold about kFoldValues values, then folded into a
// double. (Folding every run cost most of batch norm's time on 5x5 maps: runs of 25 values, each
// ending in a horizontal sum; the lanes' float sums stay as long as a run of a 32x32 map's.)
constexpr int64_t kFoldValues = 1024;

template <class T, class Run>
double group_sum(int64_t outer, int64_t inner, Run run) {
  double s = 0;
  Vec<T> acc = {};
  int64_t held = 0;
  for (int64_t o = 0; o < outer; ++o) {
    acc += run(o);
    held += inner;
    if (held >= kFoldValues) {
      s += vec::hsum(acc);
      acc = Vec<T>{};
      held = 0;
    }
  }
  return s + vec::hsum(acc);
}

// Mean and biased variance of a group of `outer` runs of `inner` values, `stride` apart.
template <class T>
void group_stats(const T* x, int64_t outer, int64_t inner, int64_t stride, double& mean, double& var) {
  const double n = double(outer * inner);
  mean = group_sum<T>(outer, inner, [&](int64_t o) { return run_sum_v(x + o * stride, inner); }) / n;
  const T m = T(mean);
  var = group_sum<T>(outer, inner, [&](int64_t o) { return run_sq_dev_v(x + o * stride, inner, m); }) / n;
}

}  // namespace

template <class T>
void batch_norm_forward_cpu(const NormArgs& a, const T* x, const T* weight, const T* bias, T* running_mean,
                            T* running_var, bool training, double momentum, T* mean, T* invstd, T* y) {
  const int64_t C = a.groups, inner = a.inner, stride = C * inner;
#pragma omp parallel for schedule(static) if (a.numel() >= kParallelMin && C > 1)
  for (int64_t c = 0; c < C; ++c) {
    const T* xc = x + c * inner;
    double m, v;
    if (training) {
      group_stats(xc, a.outer, inner, stride, m, v);
      if (running_mean) running_mean[c] = T((1 - momentum) * running_mean[c] + momentum * m);
      if (running_var)
        running_var[c] = T((1 - momentum) * running_var[c] + momentum * v * a.count / double(a.count - 1));
    } else {
      m = running_mean[c];
      v = running_var[c];
    }
    const double is = 1 / std::sqrt(v + a.eps);
    mean[c] = T(m);
    invstd[c] = T(is);
    const T scale = T((weight ? weight[c] : 1) * is);
    const T shift = T((bias ? bias[c] : 0) - m * (weight ? weight[c] : 1) * is);
    for (int64_t o = 0; o < a.outer; ++o) {
      const T* __restrict xr = xc + o * stride;
      T* __restrict yr = y + c * inner + o * stride;
#pragma omp simd
      for (int64_t i = 0; i < inner; ++i) yr[i] = xr[i] * scale + shift;
    }
  }
}

template <class T>
void batch_norm_backward_cpu(const NormArgs& a, const T* grad_y, const T* x, const T* weight, const T* mean,
                             const T* invstd, bool batch_stats, T* grad_x, T* grad_weight, T* grad_bias) {
  const int64_t C = a.groups, inner = a.inner, stride = C * inner;
#pragma omp parallel for schedule(static) if (a.numel() >= kParallelMin && C > 1)
  for (int64_t c = 0; c < C; ++c) {
    const T m = mean[c];
    const T* gc = grad_y + c * inner;
    const T* xc = x + c * inner;
    const double sum_g = group_sum<T>(a.outer, inner, [&](int64_t o) { return run_sum_v(gc + o * stride, inner); });
    const double sum_gc = group_sum<T>(  // sum(g * (x - mean))
        a.outer, inner, [&](int64_t o) { return run_dot_dev_v(gc + o * stride, xc + o * stride, inner, m); });
    const double is = invstd[c], w = weight ? weight[c] : 1;
    if (grad_bias) grad_bias[c] = T(sum_g);
    if (grad_weight) grad_weight[c] = T(sum_gc * is);
    if (!grad_x) continue;
    // d x = g k1 + x k2 + k3 (see the file comment); with fixed statistics k2 = k3 = 0.
    const double k1 = w * is;
    const double k2 = batch_stats ? -k1 * is * is * sum_gc / double(a.count) : 0;
    const double k3 = batch_stats ? -k1 * sum_g / double(a.count) - m * k2 : 0;
    const T t1 = T(k1), t2 = T(k2), t3 = T(k3);
    for (int64_t o = 0; o < a.outer; ++o) {
      const T* __restrict g = grad_y + c * inner + o * stride;
      const T* __restrict xr = x + c * inner + o * stride;
      T* __restrict gx = grad_x + c * inner + o * stride;
#pragma omp simd
      for (int64_t i = 0; i < inner; ++i) gx[i] = g[i] * t1 + xr[i] * t2 + t3;
    }
  }
}

template <class T>
void layer_norm_forward_cpu(const NormArgs& a, const T* x, const T* weight, const T* bias, T* mean, T* invstd,
                            T* y) {
  const int64_t d = a.inner;
#pragma omp parallel for schedule(static) if (a.numel() >= kParallelMin && a.groups > 1)
  for (int64_t r = 0; r < a.groups; ++r) {
    const T* __restrict xr = x + r * d;
    T* __restrict yr = y + r * d;
    double m, v;
    group_stats(xr, 1, d, d, m, v);
    const T mt = T(m), is = T(1 / std::sqrt(v + a.eps));
    mean[r] = mt;
    invstd[r] = is;
    if (weight && bias) {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - mt) * is * weight[j] + bias[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j)
        yr[j] = (xr[j] - mt) * is * (weight ? weight[j] : T(1)) + (bias ? bias[j] : T(0));
    }
  }
}

template <class T>
void layer_norm_backward_cpu(const NormArgs& a, const T* grad_y, const T* x, const T* weight, const T* mean,
                             const T* invstd, T* grad_x, T* grad_weight, T* grad_bias) {
  const int64_t d = a.inner, rows = a.groups;
  const bool sums = grad_weight || grad_bias;
  const bool parallel = a.numel() >= kParallelMin && rows > 1;
  const int threads = parallel ? omp_get_max_threads() : 1;
  // Per thread: d partial sums of g * x_hat, then d of g.
  std::vector<T> partial(sums ? size_t(threads) * 2 * size_t(d) : 0, T(0));
#pragma omp parallel num_threads(threads) if (parallel)
  {
    T* gw_part = sums ? partial.data() + size_t(omp_get_thread_num()) * 2 * d : nullptr;
    T* gb_part = sums ? gw_part + d : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* __restrict g = grad_y + r * d;
      const T* __restrict xr = x + r * d;
      const T m = mean[r], is = invstd[r];
      // g' = g w and x_hat of one run of values; pass 1 adds to the column sums and forms
      // sum(g') and sum(g' x_hat), pass 2 writes d x.
      auto terms = [&](int64_t j, auto k, Vec<T>& gv, Vec<T>& gw, Vec<T>& xh) {
        gv = load_n(g + j, k, T(0));
        gw = weight ? gv * load_n(weight + j, k, T(0)) : gv;
        xh = (load_n(xr + j, k, m) - m) * is;
      };
      Vec<T> s1 = {}, s2 = {};
      for_vectors<T>(d, [&](int64_t j, auto k) {
        Vec<T> gv, gw, xh;
        terms(j, k, gv, gw, xh);
        if (sums) {
          vec::store_n(gw_part + j, load_n(gw_part + j, k, T(0)) + gv * xh, k);
          vec::store_n(gb_part + j, load_n(gb_part + j, k, T(0)) + gv, k);
        }
        s1 += gw;
        s2 += gw * xh;
      });
      if (!grad_x) continue;
      const T mean_g = vec::hsum(s1) / T(d), mean_gx = vec::hsum(s2) / T(d);
      T* __restrict gx = grad_x + r * d;
      for_vectors<T>(d, [&](int64_t j, auto k) {
        Vec<T> gv, gw, xh;
        terms(j, k, gv, gw, xh);
        vec::store_n(gx + j, is * (gw - mean_g - xh * mean_gx), k);
      });
    }
    // (the loop's barrier: every partial sum is complete) the column sums, in thread order
    if (sums) {
#pragma omp for schedule(static)
      for (int64_t j = 0; j < d; ++j) {
        T sw = 0, sb = 0;
        for (int t = 0; t < threads; ++t) {
          sw += partial[size_t(t) * 2 * d + j];
          sb += partial[size_t(t) * 2 * d + d + j];
        }
        if (grad_weight) grad_weight[j] = sw;
        if (grad_bias) grad_bias[j] = sb;
      }
    }
  }
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_NORM_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
