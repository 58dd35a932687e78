// Scaled dot-product attention on the GPU: the entry points, which pick a kernel set for each call,
// and the backward's first pass, which every kernel set shares.
//
//   out_i = sum_j p_ij v_j,   p_ij = exp(s_ij - lse_i),   s_ij = scale q_i . k_j (+ mask)
//
// Versions (pick with variant= in pyfastdl.kernels; the benchmarks time both), one file each:
//   reference  attention_reference.cu: one thread block per query row (forward, dQ) or key row
//              (dK, dV), two-pass softmax. Float32 arithmetic, every dtype, any E, Ev; L2-bound.
//   flash      E == Ev in {64, 128}, 16-byte aligned arrays (other calls fall back to the reference
//              kernels), FlashAttention-2's loop order: the online softmax over blocks of keys, the
//              L x S matrix never leaves registers, lse saved for the backward, which recomputes P.
//     float16 / bfloat16  on the tensor cores (mma.sync, float32 accumulation):
//                         attention_forward.cu, attention_backward.cu (building blocks in
//                         attention_mma.cuh)
//     float32             plain FFMA, four threads per row: attention_f32.cu
//
// Cost: forward 2 B H L S (E + Ev) flops (about half with is_causal), backward 2.5x that (five
// products, S recomputed; 3.5x for float32 and the reference kernels, which compute S twice);
// memory O(B H (L + S) E) -- never L x S -- plus B H L floats of backward workspace (B H L (E + 1)
// on the tensor-core path). Fully masked rows give out = 0, lse = +inf and zero gradients (the CPU
// kernels' rule). What limits each version is said in its file.
#include <cstdint>

#include "attention_common.cuh"

namespace pyfastdl::cuda {
namespace {

using sdpa::Params;
using sdpa::to_float;

// The backward's first pass, for every version: D_i = dO_i . O_i (one warp per row), and the row of
// the dQ accumulator zeroed when there is one.
template <class T>
__global__ void sdpa_backward_prepare_kernel(Params p, const T* out, const T* grad_out, float* d, float* dq_acc) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= p.B * p.H * p.L) return;
  float s = 0.0f;
  for (int e = lane; e < p.Ev; e += 32) s += to_float(out[row * p.Ev + e]) * to_float(grad_out[row * p.Ev + e]);
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) d[row] = s;
  if (dq_acc)
    for (int e = lane; e < p.E; e += 32) dq_acc[row * p.E + e] = 0.0f;
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// The fast kernels take E == Ev in {64, 128}: the tensor-core ones for float16 / bfloat16, the
// SIMT ones for float32. Everything else runs the reference kernels.
bool fast_shapes(const AttentionArgs& a, AttnVariant v) {
  return v == AttnVariant::fast && a.E == a.Ev && (a.E == 64 || a.E == 128);
}

bool shapes_fit_tensor_cores(const AttentionArgs& a, AttnDType dt, AttnVariant v) {
  return fast_shapes(a, v) && dt != AttnDType::f32;
}

}  // namespace

bool sdpa_uses_tensor_cores(const AttentionArgs& a, AttnDType dt, AttnVariant v) {
  return shapes_fit_tensor_cores(a, dt, v);
}

std::size_t sdpa_backward_workspace_bytes(const AttentionArgs& a, AttnDType dt, AttnVariant v) {
  const std::size_t rows = static_cast<std::size_t>(a.B * a.H * a.L);
  return (rows + (shapes_fit_tensor_cores(a, dt, v) ? rows * a.E : 0)) * sizeof(float);
}

void sdpa_forward_cuda(const AttentionArgs& a, AttnDType dt, AttnVariant v, const void* q, const void* k,
                       const void* val, const void* mask, void* out, float* lse, cudaStream_t stream) {
  const Params p = sdpa::make_params(a, mask);
  const bool fast = fast_shapes(a, v) && aligned16(q) && aligned16(k) && aligned16(val) && aligned16(out);
  if (!fast) return sdpa::forward_reference(a, dt, p, q, k, val, out, lse, stream);
  if (dt == AttnDType::f32)
    return sdpa::forward_f32(a, p, static_cast<const float*>(q), static_cast<const float*>(k),
                             static_cast<const float*>(val), static_cast<float*>(out), lse, stream);
  sdpa::forward_tensor_cores(a, dt, p, q, k, val, out, lse, stream);
}

void sdpa_backward_cuda(const AttentionArgs& a, AttnDType dt, AttnVariant v, const void* q, const void* k,
                        const void* val, const void* mask, const void* out, const float* lse, const void* grad_out,
                        void* grad_q, void* grad_k, void* grad_v, void* workspace, cudaStream_t stream) {
  const Params p = sdpa::make_params(a, mask);
  const bool fast = fast_shapes(a, v) && aligned16(q) && aligned16(k) && aligned16(val) && aligned16(grad_out) &&
                    aligned16(grad_q) && aligned16(grad_k) && aligned16(grad_v);
  // The tensor-core kernels sum dQ in the first B H L E floats of the workspace (first, so that the
  // float2 atomics find it 8-byte aligned), D follows.
  const int64_t rows = a.B * a.H * a.L;
  float* dq_acc = fast && dt != AttnDType::f32 ? static_cast<float*>(workspace) : nullptr;
  float* d = static_cast<float*>(workspace) + (dq_acc ? rows * a.E : 0);
  sdpa::with_type(dt, [&](auto tag) {
    using T = decltype(tag);
    sdpa_backward_prepare_kernel<T><<<sdpa::grid_1d(1, rows, 256 / 32), 256, 0, stream>>>(
        p, static_cast<const T*>(out), static_cast<const T*>(grad_out), d, dq_acc);
    check_launch("sdpa_backward_prepare_kernel");
  });
  if (!fast) return sdpa::backward_reference(a, dt, p, q, k, val, lse, grad_out, d, grad_q, grad_k, grad_v, stream);
  if (dt == AttnDType::f32)
    return sdpa::backward_f32(a, p, static_cast<const float*>(q), static_cast<const float*>(k),
                              static_cast<const float*>(val), lse, static_cast<const float*>(grad_out), d,
                              static_cast<float*>(grad_q), static_cast<float*>(grad_k), static_cast<float*>(grad_v),
                              stream);
  sdpa::backward_tensor_cores(a, dt, p, q, k, val, lse, grad_out, d, dq_acc, grad_q, grad_k, grad_v, stream);
}

}  // namespace pyfastdl::cuda
