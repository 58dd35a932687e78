// CPU kernels of the convolution family (see conv.cpp for the algorithms), compiled once per
// instruction set (cpu/isa.h). All arrays are C-contiguous NCHW with the shapes of Conv2dArgs:
//   x (N, C, H, W), w (K, C/groups, R, S), bias (K) or nullptr, y (N, K, P, Q).
// Outputs are overwritten, never accumulated into.
#pragma once
#include "common/conv_args.h"
#include "cpu/isa.h"

// The kernels, as an X-macro of (T, name, (parameters), (arguments)) (see cpu/isa.h).
// "fast": im2col + GEMM (OpenBLAS); a 1x1 stride-1 unpadded convolution is a plain GEMM.
//   forward; backward_input = conv2d's input gradient (also conv_transpose2d's forward): GEMM W^T dY,
//   then col2im; backward_weight = sum over the batch of dY @ im2col(x)^T.
// "reference": direct loops, one output element per innermost sum; kept for study and comparison.
// V is the variant's infix: empty for "fast", _reference for "reference".
#define PYFASTDL_CONV_VARIANT_KERNELS(X, T, V)                                                                 \
  X(T, conv2d_forward##V##_cpu, (const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y),             \
    (a, x, w, bias, y))                                                                                        \
  X(T, conv2d_backward_input##V##_cpu, (const Conv2dArgs& a, const T* dy, const T* w, T* dx), (a, dy, w, dx))  \
  X(T, conv2d_backward_weight##V##_cpu, (const Conv2dArgs& a, const T* x, const T* dy, T* dw), (a, x, dy, dw))
#define PYFASTDL_CONV_KERNELS(X, T) \
  PYFASTDL_CONV_VARIANT_KERNELS(X, T, ) PYFASTDL_CONV_VARIANT_KERNELS(X, T, _reference)
PYFASTDL_ISA_DECLARE(PYFASTDL_CONV_KERNELS)
