// Shape arithmetic of the pooling family, in one place for the CPU kernels, the CUDA kernels and
// the bindings. Plain C++ (nvcc includes it too).
//
// An input is (N, C, H, W) or (C, H, W); pooling treats every leading index as one independent
// H x W "plane" (planes = N*C or C). The three kinds, with torch's rules:
//
//   max           window KH x KW, stride, padding (<= kernel/2, padded cells never win), dilation
//   avg           window KH x KW, stride, padding; divisor = window clipped to the padded input
//                 (count_include_pad) or to the input (otherwise), or divisor_override
//   adaptive_avg  output size given; row oh averages input rows [floor(oh*H/OH), ceil((oh+1)*H/OH))
//
//   out = floor_or_ceil((in + 2*pad - dilation*(k-1) - 1) / stride) + 1, and in ceil mode the last
//   window must start inside the input or its left padding (else it is dropped).
#pragma once
#include <algorithm>
#include <cstdint>

#include "common/check.h"

namespace pyfastdl {

enum class PoolKind { max, avg, adaptive_avg };

inline const char* pool_kind_name(PoolKind k) {
  switch (k) {
    case PoolKind::max: return "max_pool2d";
    case PoolKind::avg: return "avg_pool2d";
    case PoolKind::adaptive_avg: return "adaptive_avg_pool2d";
  }
  return "?";
}

struct Pool2dArgs {
  PoolKind kind = PoolKind::max;
  Shape in_shape, out_shape;  // same rank (3 or 4)
  int64_t planes = 0;         // product of the leading dimensions (N*C)
  int64_t h = 0, w = 0;       // input plane
  int64_t oh = 0, ow = 0;     // output plane
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;  // max and avg only
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg only
  int64_t divisor_override = 0;   // avg only; 0 means none

  // Rows [begin, end) of the input averaged by adaptive output row o (the same rule serves columns).
  static int64_t adaptive_begin(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
  static int64_t adaptive_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }
};

namespace detail {

// The leading dimensions and the plane of a (N, C, H, W) or (C, H, W) input.
inline void pool_input_plane(const char* op, const Shape& in, Pool2dArgs& a) {
  check(in.size() == 3 || in.size() == 4, op, ": input must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape ",
        shape_str(in));
  // N may be 0 (an empty batch gives an empty output); every other dimension must be positive.
  for (size_t i = in.size() == 4 ? 1 : 0; i < in.size(); ++i)
    check(in[i] > 0, op, ": input has a zero-size non-batch dimension, shape ", shape_str(in));
  a.in_shape = in;
  a.planes = 1;
  for (size_t i = 0; i + 2 < in.size(); ++i) a.planes *= in[i];
  a.h = in[in.size() - 2];
  a.w = in[in.size() - 1];
  numel(in);  // throws if the size overflows 64 bits
}

inline void check_pair(const char* op, const char* name, const Shape& v) {
  check(v.size() == 2, op, ": ", name, " must have 2 values (height, width), got ", shape_str(v));
}

// torch's pooling_output_shape: floor or ceil division, and in ceil mode the last window must start
// inside the input or its left padding. Checked 64-bit arithmetic: huge strides, paddings and
// dilations fail (or give one output) instead of wrapping.
inline int64_t pool_out_size(const char* op, int64_t in, int64_t k, int64_t s, int64_t p, int64_t d,
                             bool ceil_mode) {
  const int64_t padded = add_or_fail(in, mul_or_fail(2, p, op, "2 * padding"), op, "input size + 2 * padding");
  const int64_t window = mul_or_fail(d, k - 1, op, "dilation * (kernel_size - 1)");
  const int64_t span = padded - window - 1;  // both terms are >= 0: no overflow
  // The (dilated) window does not fit even once: torch's rounding toward -inf still places one
  // window in ceil mode when span > -stride (it starts inside the input, and overhangs).
  if (span < 0) return ceil_mode && span > -s ? 1 : 0;
  int64_t out = span / s + (ceil_mode && span % s != 0 ? 1 : 0) + 1;
  if (ceil_mode && out - 1 > (in + p - 1) / s) --out;  // (out - 1) * s >= in + p, without the product
  return out;
}

// The taps of a window the kernels visit: tap k*d >= in + 2*p lies past the right padding for every
// window (the first starts at -p), so it reads nothing and counts in no divisor. Dropping those taps
// changes no result, and kernel_size=2**31 (one output in ceil mode) must not stage or visit 2**31
// rows: the kernels (and Pool2dArgs.kernel_size) see min(k, ceil((in + 2*p) / d)).
inline int64_t pool_reach(int64_t k, int64_t in, int64_t p, int64_t d) {
  const int64_t padded = in + 2 * p;  // (pool_out_size checked it)
  return std::min(k, padded / d + (padded % d != 0));
}

// Validates the window of max and avg pooling and fills kernel, stride, padding, dilation, output.
inline void pool_window(const char* op, Pool2dArgs& a, const Shape& kernel_size, const Shape& stride,
                        const Shape& padding, const Shape& dilation, bool ceil_mode) {
  check_pair(op, "kernel_size", kernel_size);
  check_pair(op, "stride", stride);
  check_pair(op, "padding", padding);
  check_pair(op, "dilation", dilation);
  check(kernel_size[0] > 0 && kernel_size[1] > 0, op, ": kernel_size must be > 0, got ", shape_str(kernel_size));
  check(stride[0] > 0 && stride[1] > 0, op, ": stride must be > 0, got ", shape_str(stride));
  check(dilation[0] > 0 && dilation[1] > 0, op, ": dilation must be > 0, got ", shape_str(dilation));
  check(padding[0] >= 0 && padding[1] >= 0, op, ": padding must be >= 0, got ", shape_str(padding));
  check(padding[0] <= kernel_size[0] / 2 && padding[1] <= kernel_size[1] / 2, op,
        ": padding must be at most half of kernel_size, got padding ", shape_str(padding), " for kernel_size ",
        shape_str(kernel_size));
  a.kh = kernel_size[0], a.kw = kernel_size[1];
  a.sh = stride[0], a.sw = stride[1];
  a.ph = padding[0], a.pw = padding[1];
  a.dh = dilation[0], a.dw = dilation[1];
  a.ceil_mode = ceil_mode;
  a.oh = pool_out_size(op, a.h, a.kh, a.sh, a.ph, a.dh, ceil_mode);
  a.ow = pool_out_size(op, a.w, a.kw, a.sw, a.pw, a.dw, ceil_mode);
  check(a.oh >= 1 && a.ow >= 1, op, ": output size is too small: input ", shape_str(a.in_shape), " with kernel_size ",
        shape_str(kernel_size), ", stride ", shape_str(stride), ", padding ", shape_str(padding), ", dilation ",
        shape_str(dilation), " gives a ", a.oh, " x ", a.ow, " output");
  a.kh = pool_reach(a.kh, a.h, a.ph, a.dh);
  a.kw = pool_reach(a.kw, a.w, a.pw, a.dw);
}

inline void pool_out_shape(Pool2dArgs& a) {
  a.out_shape = a.in_shape;
  a.out_shape[a.out_shape.size() - 2] = a.oh;
  a.out_shape[a.out_shape.size() - 1] = a.ow;
}

}  // namespace detail

inline Pool2dArgs make_max_pool2d_args(const Shape& in, const Shape& kernel_size, const Shape& stride,
                                       const Shape& padding, const Shape& dilation, bool ceil_mode) {
  const char* op = "max_pool2d";
  Pool2dArgs a;
  a.kind = PoolKind::max;
  detail::pool_input_plane(op, in, a);
  detail::pool_window(op, a, kernel_size, stride, padding, dilation, ceil_mode);
  detail::pool_out_shape(a);
  return a;
}

inline Pool2dArgs make_avg_pool2d_args(const Shape& in, const Shape& kernel_size, const Shape& stride,
                                       const Shape& padding, bool ceil_mode, bool count_include_pad,
                                       int64_t divisor_override) {
  const char* op = "avg_pool2d";
  Pool2dArgs a;
  a.kind = PoolKind::avg;
  detail::pool_input_plane(op, in, a);
  detail::pool_window(op, a, kernel_size, stride, padding, Shape{1, 1}, ceil_mode);
  check(divisor_override >= 0, op, ": divisor_override must be > 0 (or None), got ", divisor_override);
  a.count_include_pad = count_include_pad;
  a.divisor_override = divisor_override;
  detail::pool_out_shape(a);
  return a;
}

inline Pool2dArgs make_adaptive_avg_pool2d_args(const Shape& in, const Shape& output_size) {
  const char* op = "adaptive_avg_pool2d";
  Pool2dArgs a;
  a.kind = PoolKind::adaptive_avg;
  detail::pool_input_plane(op, in, a);
  detail::check_pair(op, "output_size", output_size);
  check(output_size[0] >= 1 && output_size[1] >= 1, op, ": output_size must be >= 1, got ", shape_str(output_size));
  a.oh = output_size[0], a.ow = output_size[1];
  detail::pool_out_shape(a);
  return a;
}

// max_pool2d_backward's indices must be what max_pool2d_forward wrote: -1 (a window with no input
// cell) or a flat position within the input plane. Anything else would be dropped silently, or
// written outside grad_input, so both devices reject it with this message (`at`: its flat position).
[[noreturn]] inline void fail_bad_argmax(const Pool2dArgs& a, int64_t at, int64_t value) {
  fail("max_pool2d_backward: indices holds ", value, " at flat position ", at,
       ": not -1 and outside the input plane [0, ", a.h * a.w, ") of input shape ", shape_str(a.in_shape));
}

}  // namespace pyfastdl
