// CPU normalisation kernels (csrc/cpu/norm.cpp): float and double, contiguous arrays.
// weight and bias may be null (1 and 0); the optional outputs of the backward may be null (not needed).
#pragma once
#include <cstdint>

#include "common/norm_args.h"

namespace pyfastdl::cpu {

// Batch norm forward. training: mean and invstd (C,) are computed from the batch and written, and
// running_mean / running_var (C,; each may be null) move towards them by `momentum` (the variance
// unbiased). Otherwise the running statistics are used and mean / invstd are written from them.
template <class T>
void batch_norm_forward_cpu(const NormArgs& a, const T* x, const T* weight, const T* bias, T* running_mean,
                            T* running_var, bool training, double momentum, T* mean, T* invstd, T* y);
// Batch norm backward from the input x and the statistics the forward used (batch_stats: they came
// from this batch, so the gradient flows through them too).
template <class T>
void batch_norm_backward_cpu(const NormArgs& a, const T* grad_y, const T* x, const T* weight, const T* mean,
                             const T* invstd, bool batch_stats, T* grad_x, T* grad_weight, T* grad_bias);

// Layer norm forward: mean and invstd per row (rows,), y = (x - mean) * invstd * weight + bias.
template <class T>
void layer_norm_forward_cpu(const NormArgs& a, const T* x, const T* weight, const T* bias, T* mean, T* invstd, T* y);
template <class T>
void layer_norm_backward_cpu(const NormArgs& a, const T* grad_y, const T* x, const T* weight, const T* mean,
                             const T* invstd, T* grad_x, T* grad_weight, T* grad_bias);

}  // namespace pyfastdl::cpu
