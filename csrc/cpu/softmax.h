// CPU softmax-family kernels (csrc/cpu/softmax.cpp): float and double, contiguous (rows, cols).
#pragma once
#include <cstdint>

#include "common/softmax_args.h"

namespace pyfastdl::cpu {

// y = softmax(x) (log: log_softmax(x)) along each row.
template <class T> void softmax_forward_cpu(const SoftmaxArgs& a, const T* x, T* y, bool log);
// Gradient from the forward's output y: softmax  gx = y (g - sum(g y));  log  gx = g - exp(y) sum(g).
template <class T> void softmax_backward_cpu(const SoftmaxArgs& a, const T* y, const T* grad_y, T* grad_x, bool log);

// Per-row cross-entropy loss (0 for ignored rows) and lse = log sum exp of each row. weight: (cols,)
// or null. Returns the first row whose target is neither a class nor ignore_index (-1 if none);
// such a row gets loss NaN.
template <class T>
int64_t cross_entropy_forward_cpu(const SoftmaxArgs& a, const T* x, const int64_t* target, const T* weight, T* loss,
                                  T* lse);
// grad_x = d loss_i / d x scaled per row by scale * (grad_rows ? grad_rows[i] : 1) (the upstream
// gradient and the reduction's factor), from x and the forward's lse.
template <class T>
void cross_entropy_backward_cpu(const SoftmaxArgs& a, const T* x, const int64_t* target, const T* weight,
                                const T* lse, const T* grad_rows, double scale, T* grad_x);

}  // namespace pyfastdl::cpu
