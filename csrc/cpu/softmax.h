// CPU softmax-family kernels (csrc/cpu/softmax.cpp, compiled once per instruction set, cpu/isa.h):
// float and double, contiguous (rows, cols).
#pragma once
#include <cstdint>

#include "common/softmax_args.h"
#include "cpu/isa.h"

// The kernels, as an X-macro of (T, name, (parameters), (arguments)) (see cpu/isa.h).
// softmax_forward: y = softmax(x) (log: log_softmax(x)) along each row.
// softmax_backward: from the forward's output y, softmax gx = y (g - sum(g y)); log gx = g - exp(y) sum(g).
// cross_entropy_forward: per-row loss (0 for ignored rows) and lse = log sum exp of each row;
//   weight (cols,) or null. *first_bad = the first row whose target is neither a class nor
//   ignore_index (-1 if none); such a row gets loss NaN.
// cross_entropy_backward: grad_x = d loss_i / d x scaled per row by scale * (grad_rows ? grad_rows[i]
//   : 1) (the upstream gradient and the reduction's factor), from x and the forward's lse.
#define PYFASTDL_SOFTMAX_KERNELS(X, T)                                                                          \
  X(T, softmax_forward_cpu, (const SoftmaxArgs& a, const T* x, T* y, bool log), (a, x, y, log))                 \
  X(T, softmax_backward_cpu, (const SoftmaxArgs& a, const T* y, const T* grad_y, T* grad_x, bool log),          \
    (a, y, grad_y, grad_x, log))                                                                                \
  X(T, cross_entropy_forward_cpu,                                                                               \
    (const SoftmaxArgs& a, const T* x, const int64_t* target, const T* weight, T* loss, T* lse,                 \
     int64_t* first_bad),                                                                                       \
    (a, x, target, weight, loss, lse, first_bad))                                                               \
  X(T, cross_entropy_backward_cpu,                                                                              \
    (const SoftmaxArgs& a, const T* x, const int64_t* target, const T* weight, const T* lse,                    \
     const T* grad_rows, double scale, T* grad_x),                                                              \
    (a, x, target, weight, lse, grad_rows, scale, grad_x))
PYFASTDL_ISA_DECLARE(PYFASTDL_SOFTMAX_KERNELS)
