// What every convolution kernel file shares (included by the kernels/conv*.cu files only): element
// conversions, the dtype dispatch, the fast variant's workspace plan, and the launchers each kernel
// file gives conv.cu, which picks among them.
//
// Launchers run on `st`, check every launch and never synchronise (see conv.h). `op` names the
// call in error messages ("conv2d_forward", ...).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>
#include <limits>

#include "conv.h"
#include "runtime.h"

namespace pyfastdl::cuda::conv {

// ---- element types ------------------------------------------------------------------------------

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Calls fn(T{}) with T the element type of dt.
template <class Fn>
void by_dtype(ConvDType dt, Fn&& fn) {
  switch (dt) {
    case ConvDType::f32: fn(float{}); break;
    case ConvDType::f16: fn(__half{}); break;
    case ConvDType::bf16: fn(__nv_bfloat16{}); break;
  }
}

inline std::size_t elem_size(ConvDType dt) { return dt == ConvDType::f32 ? 4 : 2; }

inline void check_int32(const char* op, const char* what, int64_t n) {
  check(n <= std::numeric_limits<int32_t>::max(), op, ": ", what, " has ", n,
        " elements, more than this kernel's 32-bit indexing allows (2^31 - 1)");
}

// ---- the fast variant's workspace plan (conv_plan.cu) -------------------------------------------

// Sizes of the fast variant's packed operands, in elements.
struct Packed {
  int64_t Cp, Kp;     // per-group channels of x and dy, padded
  int64_t x, dy;      // NHWC activations
  int64_t w_fwd, w_bwd;  // [G][Kg][R][S][Cp] and [G][Cg][R][S][Kp]
};

// What a fast-variant call needs to know before it launches: one group's GEMM, its split of the
// reduction, and where each part of the workspace lies. conv2d_workspace_bytes and the launchers
// build it the same way, so the caller's workspace always fits.
struct Plan {
  Packed s;
  int64_t M = 0, Nn = 0, Kred = 0;  // one group's GEMM
  int splits = 1, steps_per_split = 0;
  std::size_t x = 0, dy = 0, w = 0, partial = 0, bytes = 0;  // workspace byte offsets, and its size
};

Plan make_plan(const Conv2dArgs& a, ConvOp op, std::size_t elem);

// The prologue's repacking (E: the element type's raw bits, float or uint16_t):
// NCHW activations (N, C, HW) -> NHWC with each group's channels padded to Cp ...
template <class E>
void repack_activations(const char* op, const E* src, E* dst, int64_t N, int64_t C, int64_t HW, int64_t G,
                        int64_t Cp, cudaStream_t st);
// ... and the weights (K, Cg, R, S) -> [G][O][R][S][Ip] (swap: O = Cg and I = Kg, else O = Kg, I = Cg).
template <class E>
void repack_weight(const E* w, E* dst, int64_t G, int64_t O, int64_t RS, int64_t I, int64_t Ip, bool swap,
                   cudaStream_t st);

template <class T>
struct Bits {  // the raw-bits type the repacking kernels move T as
  using type = uint16_t;
};
template <>
struct Bits<float> {
  using type = float;
};

// ---- the launchers of each kernel file ----------------------------------------------------------
// in0, in1: x and w (forward), dy and w (backward_input), x and dy (backward_weight); bias only
// for the forward (or null); out: y, dx or dw.

// conv_reference.cu: the direct loops, no workspace.
void reference(ConvOp op, const Conv2dArgs& a, ConvDType dt, const void* in0, const void* in1, const void* bias,
               void* out, cudaStream_t st);
// conv_gemm.cu: forward and input gradient as implicit GEMMs over packed activations.
void act_gemm_fast(const char* op, const Conv2dArgs& a, ConvDType dt, bool transposed, const void* act_nchw,
                   const void* w, const void* bias, void* out, void* workspace, cudaStream_t st);
// conv_wgrad.cu: the weight gradient as a split-K implicit GEMM.
void wgrad_fast(const Conv2dArgs& a, ConvDType dt, const void* x, const void* dy, void* dw, void* workspace,
                cudaStream_t st);

}  // namespace pyfastdl::cuda::conv
