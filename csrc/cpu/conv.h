// CPU kernels of the convolution family (see conv.cpp for the algorithms), compiled once per
// instruction set (cpu/isa.h). All arrays are C-contiguous NCHW with the shapes of Conv2dArgs:
//   x (N, C, H, W), w (K, C/groups, R, S), bias (K) or nullptr, y (N, K, P, Q).
// Outputs are overwritten, never accumulated into.
#pragma once
#include "common/conv_args.h"
#include "cpu/isa.h"

// The kernels, as an X-macro of (T, name, (parameters), (arguments)) (see cpu/isa.h), per variant:
// "im2col" (conv.cpp): im2col + GEMM (OpenBLAS); a 1x1 stride-1 unpadded convolution is a plain GEMM.
//   forward; backward_input = conv2d's input gradient (also conv_transpose2d's forward): GEMM W^T dY,
//   then col2im; backward_weight = sum over the batch of dY @ im2col(x)^T.
// "winograd" (conv_winograd.cpp): Winograd F(4x4, 3x3), for 3x3 kernels with stride 1, dilation 1,
//   groups 1 and padding <= 2 only (winograd_applies; a ValueError otherwise).
// "direct" (conv_direct.cpp): direct convolution with packed weights and register tiles, for dilation 1
//   and groups 1 (and stride 1, padding < kernel for the input gradient; direct_applies; a ValueError
//   otherwise).
// "fast" (conv.cpp): per shape and pass, the variant measured fastest there, unless an operand's NaN or
//   Inf would meet the zero padding or a Winograd tile there (then im2col or reference; see conv.cpp).
// "reference": direct loops, one output element per innermost sum; kept for study and comparison.
// V is the variant's infix: empty for "fast", _im2col, _winograd, _direct, _reference.
#define PYFASTDL_CONV_VARIANT_KERNELS(X, T, V)                                                                 \
  X(T, conv2d_forward##V##_cpu, (const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y),             \
    (a, x, w, bias, y))                                                                                        \
  X(T, conv2d_backward_input##V##_cpu, (const Conv2dArgs& a, const T* dy, const T* w, T* dx), (a, dy, w, dx))  \
  X(T, conv2d_backward_weight##V##_cpu, (const Conv2dArgs& a, const T* x, const T* dy, T* dw), (a, x, dy, dw))
#define PYFASTDL_CONV_KERNELS(X, T)                                                                  \
  PYFASTDL_CONV_VARIANT_KERNELS(X, T, ) PYFASTDL_CONV_VARIANT_KERNELS(X, T, _im2col)                 \
  PYFASTDL_CONV_VARIANT_KERNELS(X, T, _reference)
#define PYFASTDL_CONV_WINOGRAD_KERNELS(X, T) PYFASTDL_CONV_VARIANT_KERNELS(X, T, _winograd)
#define PYFASTDL_CONV_DIRECT_KERNELS(X, T) PYFASTDL_CONV_VARIANT_KERNELS(X, T, _direct)
PYFASTDL_ISA_DECLARE(PYFASTDL_CONV_KERNELS)
PYFASTDL_ISA_DECLARE(PYFASTDL_CONV_WINOGRAD_KERNELS)
PYFASTDL_ISA_DECLARE(PYFASTDL_CONV_DIRECT_KERNELS)

namespace pyfastdl::cpu {
namespace {  // internal linkage: each instruction set's copy keeps its own

// Whether the winograd variant computes this convolution.
inline bool winograd_applies(const Conv2dArgs& a) {
  return a.R == 3 && a.S == 3 && a.stride_h == 1 && a.stride_w == 1 && a.dil_h == 1 && a.dil_w == 1 &&
         a.groups == 1 && a.pad_h == a.pad_w && a.pad_h <= 2;
}

// Whether the direct variant computes this convolution's forward and weight gradient (and, with
// input_gradient, its input gradient: the forward of dy with the flipped weights, which needs stride 1
// and a padding smaller than the kernel).
inline bool direct_applies(const Conv2dArgs& a, bool input_gradient) {
  const bool any = a.dil_h == 1 && a.dil_w == 1 && a.groups == 1;
  return any && (!input_gradient || (a.stride_h == 1 && a.stride_w == 1 && a.pad_h < a.R && a.pad_w < a.S));
}

}  // namespace
}  // namespace pyfastdl::cpu
