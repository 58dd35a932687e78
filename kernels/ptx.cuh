// The PTX instructions of the tensor-core kernels (conv_gemm.cuh, attention_mma.cuh), written once:
// the m16n8k16 matrix multiply-add, ldmatrix (shared memory -> MMA fragments) and cp.async
// (global -> shared memory without passing through registers, sm_80 and later).
//
// mma.sync m16n8k16 fragments (g = lane / 4, t = lane % 4), each register two 16-bit values:
//   A 16x16 (row-major): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B 16x8  ("col"):     b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   C 16x8  (float):     c0, c1 = C[g][2t..2t+1], c2, c3 = C[g+8][2t..2t+1]
// ldmatrix.x4 loads four 8x8 blocks: lane l gives the address of row l % 8 of block l / 8, and lane t
// receives row t / 4, columns 2(t % 4) and 2(t % 4) + 1 of each block (of its transpose with .trans,
// which turns a matrix stored k-major into a B operand).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace pyfastdl::cuda {

// c (16x8, float) += a (16x16) * b (16x8), T = __half or __nv_bfloat16; b0, b1 are the B fragment.
// The two element types differ only in the instruction's type name.
#define PYFASTDL_MMA16816(TYPE)                                                                          \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TYPE "." TYPE ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, " \
               "{%8,%9}, {%0,%1,%2,%3};\n"                                                               \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                          \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))
template <class T>
__device__ __forceinline__ void mma16816(float* c, const unsigned* a, unsigned b0, unsigned b1) {
  static_assert(std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>, "mma16816: 16-bit types only");
  if constexpr (std::is_same_v<T, __half>)
    PYFASTDL_MMA16816("f16");
  else
    PYFASTDL_MMA16816("bf16");
}
#undef PYFASTDL_MMA16816

// Four 8x8 16-bit matrices from shared memory into r[0..3] (see the file comment), transposed when TRANS.
template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(unsigned* r, const void* smem) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  if constexpr (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

// Copies 16 bytes global -> shared, or writes 16 zero bytes when !valid (src-size 0: nothing is read).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0));
}
// Closes this thread's group of copies issued since the last commit.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace pyfastdl::cuda
