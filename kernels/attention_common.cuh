// What every attention kernel file shares (included by the kernels/attention*.cu files only): the
// call's sizes flattened into a kernel argument, the element types, the mask, and the launchers
// each kernel file gives attention.cu, which picks among them.
//
// Launchers run on `stream`, check every launch and never synchronise (see attention.h). Pointers
// are the caller's arrays; `dt` names their element type where a launcher serves several.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "attention.h"
#include "runtime.h"

namespace pyfastdl::cuda::sdpa {

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

// ---- parameters and elementwise helpers ---------------------------------------------------------

// AttentionArgs flattened into a kernel argument (AttentionArgs itself holds a std::vector).
struct Params {
  int64_t B, H, L, S;
  int E, Ev;
  float scale;
  bool causal;
  MaskKind mask_kind;
  const void* mask;
  int64_t mstride[4];
};

inline Params make_params(const AttentionArgs& a, const void* mask) {
  Params p;
  p.B = a.B;
  p.H = a.H;
  p.L = a.L;
  p.S = a.S;
  p.E = static_cast<int>(a.E);
  p.Ev = static_cast<int>(a.Ev);
  p.scale = static_cast<float>(a.scale);
  p.causal = a.causal;
  p.mask_kind = a.mask;
  p.mask = mask;
  for (int d = 0; d < 4; ++d) p.mstride[d] = a.mask_stride[d];
  return p;
}

__device__ inline float to_float(float x) { return x; }
__device__ inline float to_float(__half x) { return __half2float(x); }
__device__ inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T>
__device__ inline T from_float(float x) {
  if constexpr (std::is_same_v<T, float>)
    return x;
  else if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(x);
  else
    return __float2bfloat16_rn(x);
}

// What the mask adds to score (b, h, i, j), in natural-log units: 0, the additive value, or -inf.
// The caller guarantees i < L and j < S.
template <class T>
__device__ inline float mask_bias(const Params& p, int64_t b, int64_t h, int64_t i, int64_t j) {
  if (p.causal) return j > i ? -INFINITY : 0.0f;
  if (p.mask_kind == MaskKind::none) return 0.0f;
  const int64_t off = b * p.mstride[0] + h * p.mstride[1] + i * p.mstride[2] + j * p.mstride[3];
  if (p.mask_kind == MaskKind::boolean) return static_cast<const uint8_t*>(p.mask)[off] ? 0.0f : -INFINITY;
  return to_float(static_cast<const T*>(p.mask)[off]);
}

// Keys [0, n) that query i can see.
__device__ inline int64_t visible_keys(const Params& p, int64_t i) {
  return p.causal ? (i + 1 < p.S ? i + 1 : p.S) : p.S;
}

// ---- host helpers -------------------------------------------------------------------------------

// A one-dimensional grid of `blocks` (B H times the tiles of one head); fails past CUDA's limit.
inline unsigned grid_1d(int64_t heads, int64_t rows, int64_t rows_per_block) {
  const int64_t blocks = heads * ((rows + rows_per_block - 1) / rows_per_block);
  check(blocks <= 0x7fffffff, "scaled_dot_product_attention: ", blocks,
        " thread blocks exceed CUDA's grid limit (2^31 - 1); split the batch");
  return static_cast<unsigned>(blocks);
}

// Calls f(T{}) with T the element type of dt.
template <class F>
void with_type(AttnDType dt, F&& f) {
  if (dt == AttnDType::f32)
    f(float{});
  else if (dt == AttnDType::f16)
    f(__half{});
  else
    f(__nv_bfloat16{});
}

// Calls f(std::integral_constant<int, D>{}) with D the head size, 64 or 128 (the fast kernels' sizes).
template <class F>
void with_head_dim(int64_t d, F&& f) {
  if (d == 64)
    f(std::integral_constant<int, 64>{});
  else
    f(std::integral_constant<int, 128>{});
}

// ---- the launchers of each kernel file ----------------------------------------------------------
// The backward ones take d = rowsum(dO * O) (B H L floats) from attention.cu's first pass.

// attention_reference.cu: any dtype, any E and Ev.
void forward_reference(const AttentionArgs& a, AttnDType dt, const Params& p, const void* q, const void* k,
                       const void* v, void* out, float* lse, cudaStream_t stream);
void backward_reference(const AttentionArgs& a, AttnDType dt, const Params& p, const void* q, const void* k,
                        const void* v, const float* lse, const void* grad_out, const float* d, void* grad_q,
                        void* grad_k, void* grad_v, cudaStream_t stream);

// attention_forward.cu and attention_backward.cu, the tensor-core kernels: float16 or bfloat16,
// E == Ev in {64, 128}, 16-byte aligned arrays. dq_acc: B H L E floats of workspace.
void forward_tensor_cores(const AttentionArgs& a, AttnDType dt, const Params& p, const void* q, const void* k,
                          const void* v, void* out, float* lse, cudaStream_t stream);
void backward_tensor_cores(const AttentionArgs& a, AttnDType dt, const Params& p, const void* q, const void* k,
                           const void* v, const float* lse, const void* grad_out, const float* d, float* dq_acc,
                           void* grad_q, void* grad_k, void* grad_v, cudaStream_t stream);

// attention_f32.cu, the SIMT kernels: float32, E == Ev in {64, 128}, 16-byte aligned arrays.
void forward_f32(const AttentionArgs& a, const Params& p, const float* q, const float* k, const float* v, float* out,
                 float* lse, cudaStream_t stream);
void backward_f32(const AttentionArgs& a, const Params& p, const float* q, const float* k, const float* v,
                  const float* lse, const float* grad_out, const float* d, float* grad_q, float* grad_k,
                  float* grad_v, cudaStream_t stream);

}  // namespace pyfastdl::cuda::sdpa
