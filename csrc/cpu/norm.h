// CPU normalisation kernels (csrc/cpu/norm.cpp, compiled once per instruction set, cpu/isa.h):
// float and double, contiguous arrays. weight and bias may be null (1 and 0); the optional outputs
// of the backward may be null (not needed).
#pragma once
#include <cstdint>

#include "common/norm_args.h"
#include "cpu/isa.h"

// The kernels, as an X-macro of (T, name, (parameters), (arguments)) (see cpu/isa.h).
// batch_norm_forward: training -- mean and invstd (C,) are computed from the batch and written, and
//   running_mean / running_var (C,; each may be null) move towards them by `momentum` (the variance
//   unbiased); otherwise the running statistics are used and mean / invstd are written from them.
// batch_norm_backward: from the input x and the statistics the forward used (batch_stats: they came
//   from this batch, so the gradient flows through them too).
// layer_norm_forward: mean and invstd per row, y = (x - mean) * invstd * weight + bias.
#define PYFASTDL_NORM_KERNELS(X, T)                                                                             \
  X(T, batch_norm_forward_cpu,                                                                                  \
    (const NormArgs& a, const T* x, const T* weight, const T* bias, T* running_mean, T* running_var,            \
     bool training, double momentum, T* mean, T* invstd, T* y),                                                 \
    (a, x, weight, bias, running_mean, running_var, training, momentum, mean, invstd, y))                       \
  X(T, batch_norm_backward_cpu,                                                                                 \
    (const NormArgs& a, const T* grad_y, const T* x, const T* weight, const T* mean, const T* invstd,           \
     bool batch_stats, T* grad_x, T* grad_weight, T* grad_bias),                                                \
    (a, grad_y, x, weight, mean, invstd, batch_stats, grad_x, grad_weight, grad_bias))                          \
  X(T, layer_norm_forward_cpu,                                                                                  \
    (const NormArgs& a, const T* x, const T* weight, const T* bias, T* mean, T* invstd, T* y),                  \
    (a, x, weight, bias, mean, invstd, y))                                                                      \
  X(T, layer_norm_backward_cpu,                                                                                 \
    (const NormArgs& a, const T* grad_y, const T* x, const T* weight, const T* mean, const T* invstd,           \
     T* grad_x, T* grad_weight, T* grad_bias),                                                                  \
    (a, grad_y, x, weight, mean, invstd, grad_x, grad_weight, grad_bias))
PYFASTDL_ISA_DECLARE(PYFASTDL_NORM_KERNELS)
