// Scaled dot-product attention on the CPU (see attention.cpp for the algorithm).
// All arrays are C-contiguous with the shapes of common/attention_args.h; `mask` is null, a bool
// array (1 byte per element) or an additive array of T, read through args.mask_stride.
#pragma once
#include "common/attention_args.h"

namespace pyfastdl::cpu {

// Blocked online-softmax kernels (FlashAttention-2 style): O(seq * dim) memory.
template <class T>
void sdpa_forward_cpu(const AttentionArgs& a, const T* q, const T* k, const T* v, const void* mask, T* out, T* lse);
template <class T>
void sdpa_backward_cpu(const AttentionArgs& a, const T* q, const T* k, const T* v, const void* mask, const T* out,
                       const T* lse, const T* grad_out, T* grad_q, T* grad_k, T* grad_v);

// The reference variant: one query row at a time, two-pass softmax over its S scores.
template <class T>
void sdpa_forward_reference_cpu(const AttentionArgs& a, const T* q, const T* k, const T* v, const void* mask, T* out,
                                T* lse);
template <class T>
void sdpa_backward_reference_cpu(const AttentionArgs& a, const T* q, const T* k, const T* v, const void* mask,
                                 const T* out, const T* lse, const T* grad_out, T* grad_q, T* grad_k, T* grad_v);

}  // namespace pyfastdl::cpu
