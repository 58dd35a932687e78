// CPU kernels of the convolution family (see conv2d.cpp for the algorithms).
// All arrays are C-contiguous NCHW with the shapes of Conv2dArgs:
//   x (N, C, H, W), w (K, C/groups, R, S), bias (K) or nullptr, y (N, K, P, Q).
// Outputs are overwritten, never accumulated into.
#pragma once
#include "common/conv_args.h"

namespace pyfastdl::cpu {

// "fast": the best of the variants below for the shape (conv_dispatch.cpp): Winograd for 3x3 stride-1
// convolutions with enough channels, im2col + GEMM otherwise.
template <class T>
void conv2d_forward_cpu(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y);
template <class T>
void conv2d_backward_input_cpu(const Conv2dArgs& a, const T* dy, const T* w, T* dx);
template <class T>
void conv2d_backward_weight_cpu(const Conv2dArgs& a, const T* x, const T* dy, T* dw);

// "im2col": im2col + GEMM (OpenBLAS); a 1x1 stride-1 unpadded convolution is a plain GEMM.
template <class T>
void conv2d_forward_im2col_cpu(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y);
// dx = conv2d's input gradient (also conv_transpose2d's forward): GEMM W^T dY, then col2im.
template <class T>
void conv2d_backward_input_im2col_cpu(const Conv2dArgs& a, const T* dy, const T* w, T* dx);
// dw = sum over the batch of dY @ im2col(x)^T.
template <class T>
void conv2d_backward_weight_im2col_cpu(const Conv2dArgs& a, const T* x, const T* dy, T* dw);

// "reference": direct loops, one output element per innermost sum; kept for study and comparison.
template <class T>
void conv2d_forward_reference_cpu(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y);
template <class T>
void conv2d_backward_input_reference_cpu(const Conv2dArgs& a, const T* dy, const T* w, T* dx);
template <class T>
void conv2d_backward_weight_reference_cpu(const Conv2dArgs& a, const T* x, const T* dy, T* dw);

}  // namespace pyfastdl::cpu
