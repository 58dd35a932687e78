// The pooling family's reference variant on the CPU: each output is its window's max or mean, in
// plain loops over the planes, one output at a time -- the definition, with no staging, no vector
// tricks and no threads (csrc/cpu/pool.cpp is the fast variant). The backward runs the same windows
// and scatters: max adds gy to the saved argmax, avg and adaptive avg share gy out over the window.
// Rules as torch's and the fast kernels': a window tap in the padding never wins a max; ties go to
// the first maximum in row-major order, a NaN wins (the last NaN); the avg divisor is the window
// clipped to the padded input (count_include_pad) or to the input, or divisor_override.
// Cost: KH*KW operations per output, the same as the fast variant, at scalar speed.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/pool.h"

namespace pyfastdl::cpu::PYFASTDL_ISA {
namespace {

// Rows [r0, r1) and columns [c0, c1) of one output's window: input cells for the means, window taps
// for max pooling.
struct Window {
  int64_t r0, r1, c0, c1;
};

// The taps of output (oh, ow)'s max-pooling window that land inside the input: tap (i, j) is input
// cell (hs + i*dh, ws + j*dw), where (hs, ws), returned too, is the window's first (padded) cell.
Window window(const Pool2dArgs& a, int64_t oh, int64_t ow, int64_t& hs, int64_t& ws) {
  hs = oh * a.sh - a.ph, ws = ow * a.sw - a.pw;
  auto first = [](int64_t start, int64_t d) { return start < 0 ? (-start + d - 1) / d : 0; };
  auto end = [](int64_t start, int64_t k, int64_t d, int64_t n) { return std::min(k, (n - start + d - 1) / d); };
  return {first(hs, a.dh), end(hs, a.kh, a.dh, a.h), first(ws, a.dw), end(ws, a.kw, a.dw, a.w)};
}

// The avg divisor of output (oh, ow).
int64_t avg_divisor(const Pool2dArgs& a, int64_t oh, int64_t ow) {
  if (a.divisor_override) return a.divisor_override;
  const int64_t hs = oh * a.sh - a.ph, ws = ow * a.sw - a.pw;
  const int64_t he = std::min(hs + a.kh, a.h + a.ph), we = std::min(ws + a.kw, a.w + a.pw);
  if (a.count_include_pad) return (he - hs) * (we - ws);
  return (std::min(he, a.h) - std::max(hs, int64_t(0))) * (std::min(we, a.w) - std::max(ws, int64_t(0)));
}

// The cells averaged by output (oh, ow) of avg (`adaptive` false) or adaptive avg pooling, and the divisor.
Window mean_window(const Pool2dArgs& a, bool adaptive, int64_t oh, int64_t ow, int64_t& divisor) {
  if (adaptive) {
    const Window w{Pool2dArgs::adaptive_begin(oh, a.h, a.oh), Pool2dArgs::adaptive_end(oh, a.h, a.oh),
                   Pool2dArgs::adaptive_begin(ow, a.w, a.ow), Pool2dArgs::adaptive_end(ow, a.w, a.ow)};
    divisor = (w.r1 - w.r0) * (w.c1 - w.c0);
    return w;
  }
  const int64_t hs = oh * a.sh - a.ph, ws = ow * a.sw - a.pw;
  divisor = avg_divisor(a, oh, ow);
  return {std::max(hs, int64_t(0)), std::min(hs + a.kh, a.h), std::max(ws, int64_t(0)), std::min(ws + a.kw, a.w)};
}

// Forward (Backward false): y = mean of each window; backward: gx = 0, then each gy shared over its window.
template <bool Backward, class T> void mean_pool(const Pool2dArgs& a, bool adaptive, const T* src, T* dst) {
  const int64_t plane = a.h * a.w, out_plane = a.oh * a.ow;
  if (Backward) std::fill(dst, dst + a.planes * plane, T(0));
  for (int64_t p = 0; p < a.planes; ++p)
    for (int64_t oh = 0; oh < a.oh; ++oh)
      for (int64_t ow = 0; ow < a.ow; ++ow) {
        int64_t divisor = 1;
        const Window w = mean_window(a, adaptive, oh, ow, divisor);
        const int64_t o = p * out_plane + oh * a.ow + ow;
        T sum = 0;
        for (int64_t r = w.r0; r < w.r1; ++r)
          for (int64_t c = w.c0; c < w.c1; ++c) {
            if (Backward)
              dst[p * plane + r * a.w + c] += src[o] / T(divisor);
            else
              sum += src[p * plane + r * a.w + c];
          }
        if (!Backward) dst[o] = sum / T(divisor);
      }
}

}  // namespace

template <class T>
void max_pool2d_forward_reference_cpu(const Pool2dArgs& a, const T* x, T* y, int64_t* indices) {
  const int64_t plane = a.h * a.w, out_plane = a.oh * a.ow;
  for (int64_t p = 0; p < a.planes; ++p)
    for (int64_t oh = 0; oh < a.oh; ++oh)
      for (int64_t ow = 0; ow < a.ow; ++ow) {
        int64_t hs = 0, ws = 0;
        const Window w = window(a, oh, ow, hs, ws);
        T m = -std::numeric_limits<T>::infinity();
        int64_t arg = -1;
        for (int64_t i = w.r0; i < w.r1; ++i)
          for (int64_t j = w.c0; j < w.c1; ++j) {
            const int64_t pos = (hs + i * a.dh) * a.w + ws + j * a.dw;
            const T v = x[p * plane + pos];
            if (arg < 0 || v > m || std::isnan(v)) m = v, arg = pos;
          }
        y[p * out_plane + oh * a.ow + ow] = m;
        if (indices) indices[p * out_plane + oh * a.ow + ow] = arg;
      }
}

template <class T>
void max_pool2d_backward_reference_cpu(const Pool2dArgs& a, const T* gy, const int64_t* indices, T* gx) {
  const int64_t plane = a.h * a.w, out_plane = a.oh * a.ow;
  std::fill(gx, gx + a.planes * plane, T(0));
  for (int64_t p = 0; p < a.planes; ++p)
    for (int64_t o = 0; o < out_plane; ++o) {
      const int64_t at = indices[p * out_plane + o];
      if (at >= 0 && at < plane) gx[p * plane + at] += gy[p * out_plane + o];
    }
}

template <class T> void avg_pool2d_forward_reference_cpu(const Pool2dArgs& a, const T* x, T* y) {
  mean_pool<false>(a, false, x, y);
}
template <class T> void avg_pool2d_backward_reference_cpu(const Pool2dArgs& a, const T* gy, T* gx) {
  mean_pool<true>(a, false, gy, gx);
}
template <class T> void adaptive_avg_pool2d_forward_reference_cpu(const Pool2dArgs& a, const T* x, T* y) {
  mean_pool<false>(a, true, x, y);
}
template <class T> void adaptive_avg_pool2d_backward_reference_cpu(const Pool2dArgs& a, const T* gy, T* gx) {
  mean_pool<true>(a, true, gy, gx);
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_POOL_REFERENCE_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
