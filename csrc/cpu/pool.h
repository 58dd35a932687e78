// CPU pooling kernels (csrc/cpu/pool.cpp, the reference variant csrc/cpu/pool_reference.cpp; both
// compiled once per instruction set, cpu/isa.h): float and double, NCHW or CHW, contiguous.
#pragma once
#include <cstdint>

#include "common/pool_args.h"
#include "cpu/isa.h"

// The kernels, as an X-macro of (T, name, (parameters), (arguments)) (see cpu/isa.h).
// max forward: y = max over each window; indices (int64, flat ih*W+iw within the plane) written when
// not null. max backward: gx = 0, then gx[plane, indices[o]] += gy[o] (an index outside the plane is
// skipped).
// V is the variant's infix: empty for "fast", _reference for "reference".
#define PYFASTDL_POOL_VARIANT_KERNELS(X, T, V)                                                                 \
  X(T, max_pool2d_forward##V##_cpu, (const Pool2dArgs& a, const T* x, T* y, int64_t* indices),                  \
    (a, x, y, indices))                                                                                        \
  X(T, max_pool2d_backward##V##_cpu, (const Pool2dArgs& a, const T* gy, const int64_t* indices, T* gx),         \
    (a, gy, indices, gx))                                                                                      \
  X(T, avg_pool2d_forward##V##_cpu, (const Pool2dArgs& a, const T* x, T* y), (a, x, y))                        \
  X(T, avg_pool2d_backward##V##_cpu, (const Pool2dArgs& a, const T* gy, T* gx), (a, gy, gx))                   \
  X(T, adaptive_avg_pool2d_forward##V##_cpu, (const Pool2dArgs& a, const T* x, T* y), (a, x, y))               \
  X(T, adaptive_avg_pool2d_backward##V##_cpu, (const Pool2dArgs& a, const T* gy, T* gx), (a, gy, gx))
#define PYFASTDL_POOL_KERNELS(X, T) PYFASTDL_POOL_VARIANT_KERNELS(X, T, )
#define PYFASTDL_POOL_REFERENCE_KERNELS(X, T) PYFASTDL_POOL_VARIANT_KERNELS(X, T, _reference)
PYFASTDL_ISA_DECLARE(PYFASTDL_POOL_KERNELS)
PYFASTDL_ISA_DECLARE(PYFASTDL_POOL_REFERENCE_KERNELS)
