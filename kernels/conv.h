// CUDA kernels of the convolution family (kernels/conv*.cu; conv.cu says which file holds which).
// All arrays are C-contiguous NCHW with the shapes of Conv2dArgs:
//   x (N, C, H, W), w (K, C/groups, R, S), bias (K) or nullptr, y (N, K, P, Q).
// Outputs are overwritten, never accumulated into. Every launcher runs on `stream`, checks each
// launch, never synchronises and never allocates: the "fast" variant needs a workspace of
// conv2d_workspace_bytes(...) bytes (the caller takes it from cupy's memory pool, on the same
// stream); the "reference" variant needs none.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "common/conv_args.h"

namespace pyfastdl::cuda {

enum class ConvDType { f32, f16, bf16 };  // element type of every array; accumulation is float32
enum class ConvVariant { reference, fast };
enum class ConvOp { forward, backward_input, backward_weight };

// Bytes of workspace the call (op, dtype, variant) needs; 0 for the reference variant.
// backward_weight's size depends on the current device's multiprocessor count (its split-K factor).
std::size_t conv2d_workspace_bytes(const Conv2dArgs& a, ConvOp op, ConvDType dt, ConvVariant v);

// y = conv2d(x, w) + bias
void conv2d_forward_cuda(const Conv2dArgs& a, ConvDType dt, ConvVariant v, const void* x, const void* w,
                         const void* bias, void* y, void* workspace, cudaStream_t stream);
// dx = input gradient of conv2d from dy (N, K, P, Q) and w (also conv_transpose2d's forward)
void conv2d_backward_input_cuda(const Conv2dArgs& a, ConvDType dt, ConvVariant v, const void* dy, const void* w,
                                void* dx, void* workspace, cudaStream_t stream);
// dw = weight gradient of conv2d from x and dy (split-K partial sums in the workspace, then a
// deterministic reduction: no atomics, the same bits on every run)
void conv2d_backward_weight_cuda(const Conv2dArgs& a, ConvDType dt, ConvVariant v, const void* x, const void* dy,
                                 void* dw, void* workspace, cudaStream_t stream);

}  // namespace pyfastdl::cuda
