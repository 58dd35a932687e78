// The tensor-core building blocks of the float16 / bfloat16 attention kernels
// (attention_forward.cu, attention_backward.cu): the fragment bookkeeping between the PTX
// instructions of ptx.cuh (mma.sync m16n8k16, ldmatrix, cp.async; fragment layouts there).
// tools/attention_cuda_fragments.py checks this bookkeeping against numpy without a GPU.
// The C fragments of two adjacent 16x8 tiles are, packed in pairs, the A fragment of a 16x16.
#pragma once
#include <cstring>
#include <stdexcept>
#include <string>

#include "attention_common.cuh"
#include "ptx.cuh"  // mma16816, ldmatrix_x4, cp_async16

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
      ldmatrix_x4<true>(b, bt_frag_addr(s, ld, kc * 16, n0 + np * 16));
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
    ldmatrix_x4<false>(a, a_frag_addr(sa, ld, r0, kc * 16));
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t b[4];
      ldmatrix_x4<false>(b, b_frag_addr(s, ld, np * 16, kc * 16));
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
