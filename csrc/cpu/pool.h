// CPU pooling kernels (csrc/cpu/pool.cpp): float and double, NCHW or CHW, contiguous.
#pragma once
#include <cstdint>

#include "common/pool_args.h"

namespace pyfastdl::cpu {

// y = max over each window; indices (int64, flat ih*W+iw within the plane) written when not null.
template <class T> void max_pool2d_forward_cpu(const Pool2dArgs& a, const T* x, T* y, int64_t* indices);
// gx = 0, then gx[plane, indices[o]] += gy[o]; an index of -1 (a window with no input cell) is
// skipped, and every other index must lie in [0, H*W) (the binding checks).
template <class T> void max_pool2d_backward_cpu(const Pool2dArgs& a, const T* gy, const int64_t* indices, T* gx);

template <class T> void avg_pool2d_forward_cpu(const Pool2dArgs& a, const T* x, T* y);
template <class T> void avg_pool2d_backward_cpu(const Pool2dArgs& a, const T* gy, T* gx);

template <class T> void adaptive_avg_pool2d_forward_cpu(const Pool2dArgs& a, const T* x, T* y);
template <class T> void adaptive_avg_pool2d_backward_cpu(const Pool2dArgs& a, const T* gy, T* gx);

}  // namespace pyfastdl::cpu
