// Host launchers of the CUDA pooling kernels (kernels/pool.cu): float32, contiguous NCHW or CHW,
// launched on `stream`, every launch checked, never synchronising -- except max_pool2d_backward,
// which waits for its kernel to learn whether an argmax index was out of range (then
// std::invalid_argument, as on the CPU). Each has two variants:
//   fast       32-bit index arithmetic, one warp per output for large adaptive windows, and
//              gather-based backwards (deterministic, no atomics, no zero-fill pass)
//   reference  one thread per output with 64-bit index arithmetic, backwards by atomicAdd scatter
//              after zero-filling the gradient
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/pool_args.h"

namespace pyfastdl {

enum class PoolVariant { fast, reference };

// indices may be null: then only y is written (no backward will need the argmax).
void max_pool2d_forward_cuda(const Pool2dArgs& a, const float* x, float* y, int64_t* indices, PoolVariant v,
                             cudaStream_t stream);
void max_pool2d_backward_cuda(const Pool2dArgs& a, const float* gy, const int64_t* indices, float* gx,
                              PoolVariant v, cudaStream_t stream);
void avg_pool2d_forward_cuda(const Pool2dArgs& a, const float* x, float* y, PoolVariant v, cudaStream_t stream);
void avg_pool2d_backward_cuda(const Pool2dArgs& a, const float* gy, float* gx, PoolVariant v, cudaStream_t stream);
void adaptive_avg_pool2d_forward_cuda(const Pool2dArgs& a, const float* x, float* y, PoolVariant v,
                                      cudaStream_t stream);
void adaptive_avg_pool2d_backward_cuda(const Pool2dArgs& a, const float* gy, float* gx, PoolVariant v,
                                       cudaStream_t stream);

}  // namespace pyfastdl
