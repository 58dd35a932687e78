// CUDA kernels of scaled dot-product attention (kernels/attention*.cu; attention.cu says which file
// holds which version).
// All arrays are C-contiguous with the shapes of AttentionArgs (csrc/common/attention_args.h):
//   q (B, H, L, E), k (B, H, S, E), v (B, H, S, Ev), out (B, H, L, Ev), lse (B, H, L) float32;
//   the gradients have the shapes of q, k, v. `mask` is null, a bool array (1 byte per element) or
//   an additive array of the element type, read through args.mask_stride.
// Every launcher runs on `stream`, checks each launch, never synchronises and never allocates: the
// backward takes sdpa_backward_workspace_bytes(...) bytes of scratch that the caller takes from
// cupy's memory pool on the same stream. Outputs are overwritten, never accumulated into.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "common/attention_args.h"

namespace pyfastdl::cuda {

enum class AttnDType { f32, f16, bf16 };  // element type of q, k, v, out and the grads; lse is float32
enum class AttnVariant { reference, fast };

// True when `variant` runs the tensor-core kernels for these shapes and dtype (f16/bf16 with
// E == Ev in {64, 128}); everything else runs the reference kernels.
bool sdpa_uses_tensor_cores(const AttentionArgs& a, AttnDType dt, AttnVariant v);

// Bytes of scratch the backward needs: D = rowsum(dO * O) (B H L floats), after the float32 dQ
// accumulator (B H L E floats) for the tensor-core kernels. The workspace must be 16-byte aligned
// (cupy's pool aligns to 256).
std::size_t sdpa_backward_workspace_bytes(const AttentionArgs& a, AttnDType dt, AttnVariant v);

// out = softmax(scale q k^T + mask) v, lse = log-sum-exp of each row (+inf for a fully masked row)
void sdpa_forward_cuda(const AttentionArgs& a, AttnDType dt, AttnVariant v, const void* q, const void* k,
                       const void* val, const void* mask, void* out, float* lse, cudaStream_t stream);

// grad_q, grad_k, grad_v from grad_out, recomputing the probabilities from q, k and the saved lse
void sdpa_backward_cuda(const AttentionArgs& a, AttnDType dt, AttnVariant v, const void* q, const void* k,
                        const void* val, const void* mask, const void* out, const float* lse, const void* grad_out,
                        void* grad_q, void* grad_k, void* grad_v, void* workspace, cudaStream_t stream);

}  // namespace pyfastdl::cuda
