// Scaled dot-product attention on the CPU (see attention.cpp for the algorithm), compiled once per
// instruction set (cpu/isa.h). The arrays have the shapes of common/attention_args.h; q, k, v, out
// and the gradients are read and written through the strides in `s` (rows of contiguous features),
// lse is C-contiguous; `mask` is null, a bool array (1 byte per element) or an additive array of T,
// read through args.mask_stride.
#pragma once
#include "common/attention_args.h"
#include "cpu/isa.h"

// The kernels, as an X-macro of (T, name, (parameters), (arguments)) (see cpu/isa.h).
// "fast": blocked online-softmax kernels (flash-attention style, FlashAttention-2): O(seq * dim) memory.
// "reference": one query row at a time, two-pass softmax over its S scores.
// V is the variant's infix: empty for "fast", _reference for "reference".
#define PYFASTDL_ATTENTION_VARIANT_KERNELS(X, T, V)                                                            \
  X(T, sdpa_forward##V##_cpu,                                                                                  \
    (const AttentionArgs& a, const SdpaLayout& s, const T* q, const T* k, const T* v, const void* mask, T* out, \
     T* lse),                                                                                                  \
    (a, s, q, k, v, mask, out, lse))                                                                           \
  X(T, sdpa_backward##V##_cpu,                                                                                 \
    (const AttentionArgs& a, const SdpaLayout& s, const T* q, const T* k, const T* v, const void* mask,        \
     const T* out, const T* lse, const T* grad_out, T* grad_q, T* grad_k, T* grad_v),                          \
    (a, s, q, k, v, mask, out, lse, grad_out, grad_q, grad_k, grad_v))
#define PYFASTDL_ATTENTION_KERNELS(X, T) \
  PYFASTDL_ATTENTION_VARIANT_KERNELS(X, T, ) PYFASTDL_ATTENTION_VARIANT_KERNELS(X, T, _reference)
PYFASTDL_ISA_DECLARE(PYFASTDL_ATTENTION_KERNELS)
