// Shape arithmetic of the convolution family, in one place for the CPU kernels, the CUDA kernels
// and the bindings. Plain C++ (nvcc includes it too).
//
// Everything is described as a 2-D convolution y = conv2d(x, w):
//   x  (N, C, H, W)          input
//   w  (K, C/groups, R, S)   weight: K output channels, kernel R x S
//   y  (N, K, P, Q)          output
//   P = (H + 2*pad_h - dil_h*(R-1) - 1) / stride_h + 1      (and Q likewise)
// conv1d is the case H = R = 1. conv_transpose2d(input, weight) is the input gradient of a conv2d
// whose output has the transposed convolution's input shape, so make_conv_transpose2d_args builds
// the Conv2dArgs of that conv2d: its x is the transposed convolution's output, its y the input.
#pragma once
#include <array>
#include <cstdint>

#include "common/check.h"

namespace pyfastdl {

using Pair = std::array<int64_t, 2>;  // (height, width) values of stride, padding, dilation

struct Conv2dArgs {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input x
  int64_t K = 0, R = 0, S = 0;         // output channels, kernel height and width
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;
  int64_t groups = 1;
  int64_t P = 0, Q = 0;  // output y height and width

  int64_t C_per_group() const { return C / groups; }
  int64_t K_per_group() const { return K / groups; }
  Shape x_shape() const { return {N, C, H, W}; }
  Shape w_shape() const { return {K, C / groups, R, S}; }
  Shape out_shape() const { return {N, K, P, Q}; }
  // Rows of one group's im2col matrix (C/groups * R * S) and its columns per image (P * Q).
  int64_t col_rows() const { return C / groups * R * S; }
  int64_t col_cols() const { return P * Q; }
  // Multiply-adds of the forward pass (each backward pass costs the same).
  int64_t macs() const { return N * K * P * Q * (C / groups) * R * S; }
  // Whether the convolution is a plain matrix product per image (1x1 kernel, stride 1, no padding).
  bool is_pointwise() const {
    return R == 1 && S == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0;
  }
};

namespace conv_detail {

inline void check_hyper(const char* op, const Pair& stride, const Pair& padding, const Pair& dilation,
                        int64_t groups) {
  check(stride[0] > 0 && stride[1] > 0, op, ": stride must be > 0, got (", stride[0], ", ", stride[1], ")");
  check(padding[0] >= 0 && padding[1] >= 0, op, ": padding must be >= 0, got (", padding[0], ", ", padding[1],
        ")");
  check(dilation[0] > 0 && dilation[1] > 0, op, ": dilation must be > 0, got (", dilation[0], ", ", dilation[1],
        ")");
  check(groups > 0, op, ": groups must be > 0, got ", groups);
}

// Output size of a convolution along one dimension, or fail naming the sizes. Every step is checked
// 64-bit arithmetic: padding=2**63-1 or dilation=2**62 must fail, not wrap to a plausible size.
inline int64_t out_size(const char* op, const char* dim, int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                        int64_t dil) {
  // extent of the dilated kernel
  int64_t span = add_or_fail(mul_or_fail(dil, kernel - 1, op, "dilation * (kernel size - 1)"), 1, op,
                             "the dilated kernel size (dilation * (kernel size - 1) + 1)");
  int64_t padded = add_or_fail(in, mul_or_fail(2, pad, op, "2 * padding"), op, "input size + 2 * padding");
  check(padded >= span, op, ": output ", dim, " would be < 1: padded input ", dim, " ", padded,
        " is smaller than the dilated kernel ", dim, " ", span, " (input ", in, ", padding ", pad, ", kernel ",
        kernel, ", dilation ", dil, ")");
  return (padded - span) / stride + 1;
}

// The sizes a kernel multiplies together (elements of x, w and y, and the multiply-adds) must fit in
// 64 bits; `macs` (N*K*P*Q * C/groups*R*S) bounds the output's and the im2col matrix's sizes too.
inline void check_products(const char* op, const Conv2dArgs& a) {
  int64_t n = 1;
  for (int64_t d : a.x_shape()) n = mul_or_fail(n, d, op, "the number of elements of x");
  n = 1;
  for (int64_t d : a.w_shape()) n = mul_or_fail(n, d, op, "the number of elements of weight");
  n = 1;
  for (int64_t d : {a.N, a.K, a.P, a.Q, a.C_per_group(), a.R, a.S})
    n = mul_or_fail(n, d, op, "the multiply-add count (N * K * P * Q * C/groups * R * S)");
}

// What both builders start with: input and weight 4-D and non-empty, valid hyperparameters, input
// channels divisible by groups. Returns Args holding the hyperparameters; the builder sets the sizes.
inline Conv2dArgs hyper_args(const char* op, const Shape& x, const Shape& w, const Pair& stride, const Pair& padding,
                             const Pair& dilation, int64_t groups) {
  check_rank(op, "input", x, 4);
  check_rank(op, "weight", w, 4);
  check_nonempty(op, "input", x);
  check_nonempty(op, "weight", w);
  check_hyper(op, stride, padding, dilation, groups);
  check(x[1] % groups == 0, op, ": input channels ", x[1], " must be divisible by groups ", groups,
        " (input shape ", shape_str(x), ")");
  Conv2dArgs a;
  a.stride_h = stride[0], a.stride_w = stride[1];
  a.pad_h = padding[0], a.pad_w = padding[1];
  a.dil_h = dilation[0], a.dil_w = dilation[1];
  a.groups = groups;
  return a;
}

}  // namespace conv_detail

// conv2d(x, w) with x (N, C, H, W) and w (K, C/groups, R, S).
inline Conv2dArgs make_conv2d_args(const Shape& x, const Shape& w, const Pair& stride, const Pair& padding,
                                   const Pair& dilation, int64_t groups) {
  const char* op = "conv2d";
  Conv2dArgs a = conv_detail::hyper_args(op, x, w, stride, padding, dilation, groups);
  check(w[0] % groups == 0, op, ": weight's out channels ", w[0], " must be divisible by groups ", groups,
        " (weight shape ", shape_str(w), ")");
  check(mul_or_fail(w[1], groups, op, "weight's channels * groups") == x[1], op, ": channel mismatch: input has ",
        x[1], " channels, weight ", shape_str(w), " expects ", w[1], " x groups ", groups, " = ", w[1] * groups);
  a.N = x[0], a.C = x[1], a.H = x[2], a.W = x[3];
  a.K = w[0], a.R = w[2], a.S = w[3];
  a.P = conv_detail::out_size(op, "height", a.H, a.R, a.stride_h, a.pad_h, a.dil_h);
  a.Q = conv_detail::out_size(op, "width", a.W, a.S, a.stride_w, a.pad_w, a.dil_w);
  conv_detail::check_products(op, a);
  return a;
}

// conv_transpose2d(input, weight) with input (N, Cin, Hin, Win) and weight (Cin, Cout/groups, R, S):
//   Hout = (Hin - 1)*stride - 2*padding + dilation*(R - 1) + output_padding + 1
// Returns the Args of the conv2d whose input gradient it is: x = output (N, Cout, Hout, Wout),
// y = input (P = Hin, Q = Win), K = Cin. output_padding must be smaller than stride or dilation
// (as in torch); with output_padding >= stride the rows it adds lie beyond the last output row of
// that conv2d, so P and Q are set to Hin and Win rather than recomputed.
inline Conv2dArgs make_conv_transpose2d_args(const Shape& x, const Shape& w, const Pair& stride,
                                             const Pair& padding, const Pair& output_padding, int64_t groups,
                                             const Pair& dilation) {
  const char* op = "conv_transpose2d";
  Conv2dArgs a = conv_detail::hyper_args(op, x, w, stride, padding, dilation, groups);
  for (int i = 0; i < 2; ++i)
    check(output_padding[i] >= 0 && (output_padding[i] < stride[i] || output_padding[i] < dilation[i]), op,
          ": output_padding must be >= 0 and smaller than stride or dilation, got output_padding (",
          output_padding[0], ", ", output_padding[1], "), stride (", stride[0], ", ", stride[1], "), dilation (",
          dilation[0], ", ", dilation[1], ")");
  check(w[0] == x[1], op, ": channel mismatch: input has ", x[1], " channels, weight ", shape_str(w),
        " expects ", w[0]);
  a.N = x[0], a.K = x[1], a.P = x[2], a.Q = x[3];
  a.C = mul_or_fail(w[1], groups, op, "weight's out channels per group * groups"), a.R = w[2], a.S = w[3];
  // (P - 1)*stride - 2*padding + dilation*(R - 1) + output_padding + 1, each step checked
  auto out = [op](int64_t in, int64_t stride, int64_t pad, int64_t dil, int64_t k, int64_t out_pad) {
    int64_t n = mul_or_fail(in - 1, stride, op, "(input size - 1) * stride");
    n = add_or_fail(n, mul_or_fail(dil, k - 1, op, "dilation * (kernel size - 1)"), op, "the output size");
    n = add_or_fail(n, out_pad + 1, op, "the output size");
    return add_or_fail(n, -mul_or_fail(2, pad, op, "2 * padding"), op, "the output size");
  };
  a.H = out(a.P, a.stride_h, a.pad_h, a.dil_h, a.R, output_padding[0]);
  a.W = out(a.Q, a.stride_w, a.pad_w, a.dil_w, a.S, output_padding[1]);
  check(a.H >= 1 && a.W >= 1, op, ": output size would be < 1: (", a.H, ", ", a.W, ") for input ", shape_str(x),
        ", weight ", shape_str(w), ", stride (", stride[0], ", ", stride[1], "), padding (", padding[0], ", ",
        padding[1], ")");
  conv_detail::check_products(op, a);
  return a;
}

}  // namespace pyfastdl
