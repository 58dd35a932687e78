// The tensor-core building blocks of the float16 / bfloat16 attention kernels
// (attention_forward.cu, attention_backward.cu): mma.sync m16n8k16, ldmatrix, cp.async, and the
// fragment bookkeeping between them. tools/attention_cuda_fragments.py checks this bookkeeping
// against numpy without a GPU.
//
// mma.sync m16n8k16 fragments (g = lane / 4, t = lane % 4):
//   A 16x16 (row-major): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B 16x8  ("col"):     b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   C 16x8  (float):     c0, c1 = C[g][2t..2t+1], c2, c3 = C[g+8][2t..2t+1]
// so the C fragments of two adjacent 16x8 tiles are, packed in pairs, the A fragment of a 16x16.
// ldmatrix.x4 loads four 8x8 blocks, lanes 8m..8m+7 giving the row addresses of block m; with
// .trans each block arrives transposed (a matrix stored k-major becomes a B operand).
#pragma once
#include <cstring>
#include <stdexcept>
#include <string>

#include "attention_common.cuh"

namespace pyfastdl::cuda::sdpa {

template <class T>
__device__ inline uint32_t pack2(float lo, float hi) {
  uint32_t r;
  if constexpr (std::is_same_v<T, __half>) {
    __half2 v = __floats2half2_rn(lo, hi);
    memcpy(&r, &v, 4);
  } else {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    memcpy(&r, &v, 4);
  }
  return r;
}

template <class T>
__device__ inline void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ inline void ldsm_x4(uint32_t (&r)[4], const void* smem_ptr) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_ptr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ inline void ldsm_x4_trans(uint32_t (&r)[4], const void* smem_ptr) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_ptr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 16 bytes global -> shared without passing through registers; zero-filled when !valid.
__device__ inline void cp_async16(void* smem_ptr, const void* gmem_ptr, bool valid) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_ptr));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(gmem_ptr), "r"(src_bytes));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ inline void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Rows [row0, row0 + ROWS) of a (rows, D) matrix into shared memory (row stride D + 8 elements,
// so that ldmatrix's eight row addresses fall in different banks); rows >= nrows become zeros.
template <int ROWS, int D, int THREADS, class T>
__device__ inline void load_tile(T* smem, const T* g, int64_t row0, int64_t nrows) {
  constexpr int kChunks = D / 8;  // 16-byte pieces per row
  for (int c = threadIdx.x; c < ROWS * kChunks; c += THREADS) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const bool valid = row0 + r < nrows;
    cp_async16(smem + r * (D + 8) + col, valid ? g + (row0 + r) * D + col : g, valid);
  }
}

// Address of this lane's row for an ldmatrix.x4 of the 16x16 block at (r0, c0) of a shared matrix
// with row stride ld, in the three arrangements the kernels use.
template <class T>
__device__ inline const T* a_frag_addr(const T* s, int ld, int r0, int c0) {  // A operand, row-major
  const int lane = threadIdx.x % 32;
  return s + (r0 + (lane & 15)) * ld + c0 + (lane >> 4) * 8;
}
template <class T>
__device__ inline const T* b_frag_addr(const T* s, int ld, int n0, int k0) {  // B = s^T: rows n, cols k
  const int lane = threadIdx.x % 32;
  return s + (n0 + (lane & 7) + (lane >> 4) * 8) * ld + k0 + ((lane >> 3) & 1) * 8;
}
template <class T>
__device__ inline const T* bt_frag_addr(const T* s, int ld, int k0, int n0) {  // B = s: rows k, cols n (.trans)
  const int lane = threadIdx.x % 32;
  return s + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8;
}

// acc[n-tile] += A (16 x 16*KC, fragments in registers) times the matrix s (rows k, NT*8 columns
// from n0), read transposed from shared memory.
template <class T, int KC, int NT>
__device__ inline void mma_a_reg_b_kmajor(float (&acc)[NT][4], const uint32_t (&a)[KC][4], const T* s, int ld,
                                          int n0) {
#pragma unroll
  for (int kc = 0; kc < KC; ++kc)
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t b[4];
      ldsm_x4_trans(b, bt_frag_addr(s, ld, kc * 16, n0 + np * 16));
      mma16816<T>(acc[2 * np], a[kc], b[0], b[1]);
      mma16816<T>(acc[2 * np + 1], a[kc], b[2], b[3]);
    }
}

// acc (16 x NT*8) += A (rows r0.. of sa, KC*16 columns) times s^T, where s holds NT*8 rows of KC*16
// columns (the "NT" product X Y^T of two row-major tiles).
template <class T, int KC, int NT>
__device__ inline void mma_a_smem_b_nmajor(float (&acc)[NT][4], const T* sa, int r0, const T* s, int ld) {
#pragma unroll
  for (int kc = 0; kc < KC; ++kc) {
    uint32_t a[4];
    ldsm_x4(a, a_frag_addr(sa, ld, r0, kc * 16));
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t b[4];
      ldsm_x4(b, b_frag_addr(s, ld, np * 16, kc * 16));
      mma16816<T>(acc[2 * np], a, b[0], b[1]);
      mma16816<T>(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// The A fragments (16 x NT*8) made from float accumulators (16 x NT*8) in the element type.
template <class T, int NT>
__device__ inline void acc_to_a(uint32_t (&a)[NT / 2][4], const float (&c)[NT][4]) {
#pragma unroll
  for (int kc = 0; kc < NT / 2; ++kc) {
    a[kc][0] = pack2<T>(c[2 * kc][0], c[2 * kc][1]);
    a[kc][1] = pack2<T>(c[2 * kc][2], c[2 * kc][3]);
    a[kc][2] = pack2<T>(c[2 * kc + 1][0], c[2 * kc + 1][1]);
    a[kc][3] = pack2<T>(c[2 * kc + 1][2], c[2 * kc + 1][3]);
  }
}

template <int NT>
__device__ inline void zero(float (&c)[NT][4]) {
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int x = 0; x < 4; ++x) c[n][x] = 0.0f;
}

// ---- host side ----------------------------------------------------------------------------------

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Lets `kernel` take `bytes` of dynamic shared memory (above the 48 KiB default).
template <class Kernel>
void allow_smem(Kernel kernel, int bytes, const char* name) {
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), name);
}

// Calls f(T{}) with T the element type of dt, float16 or bfloat16.
template <class F>
void with_half_type(AttnDType dt, F&& f) {
  if (dt == AttnDType::f16)
    f(__half{});
  else
    f(__nv_bfloat16{});
}

}  // namespace pyfastdl::cuda::sdpa
