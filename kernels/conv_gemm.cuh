// The implicit-GEMM engine of the fast convolution kernels (conv_gemm.cu: forward and input
// gradient; conv_wgrad.cu: weight gradient): block tiles, the cp.async pipeline, and the math of
// one reduction step on the FMA units (float32) or the tensor cores (float16 / bfloat16).
//
// One block computes a 128x128 output tile (256 threads for float32, 128 for the 16-bit types).
// The reduction runs in steps of BK (16 floats / 32 halves = 64 bytes per row) through a 3-4 stage
// ring of shared-memory buffers filled by cp.async (16 bytes per copy, zero-filled where the tap
// falls into the padding or off the tile): the loads of step t+2 fly while step t is computed.
// Shared rows are padded by 16 bytes, so the reads below are bank-conflict free.
// The math: float32 - register blocking, each thread an 8x8 outer product (64 FFMA per 16 floats
// read from shared memory; no TF32). float16/bfloat16 - tensor cores through mma.sync.m16n8k16
// (float32 accumulators), fragments loaded with ldmatrix; each warp a 64x64 tile (a 64x32 warp tile
// would make shared memory the limit).
//
// Cost per block and step: 2 x 128 x 128 x BK flops for 2 x 128 x BK elements brought into shared
// memory. What limits it: float32 runs at the FFMA rate; Hopper's fastest path (wgmma, TMA) is not
// used, so float16/bfloat16 reach at best the mma.sync rate (about two thirds of the chip's peak).
#pragma once
#include <stdexcept>
#include <string>

#include "conv_common.cuh"

namespace pyfastdl::cuda::conv {

// ---- tile configuration ---------------------------------------------------------------------------

template <class T>
struct Cfg {
  static constexpr int VEC = 16 / int(sizeof(T));  // elements per 16-byte copy
  static constexpr int BM = 128, BN = 128;         // block tile
  static constexpr int BK = 4 * VEC;               // reduction step: 64 bytes per tile row
  // float32: 16 x 16 threads, each an 8x8 register tile. float16/bfloat16: 4 warps, each a 64x64
  // tile of MMAs (the warp tile that keeps shared-memory reads under the tensor cores' rate).
  static constexpr int THREADS = sizeof(T) == 4 ? 256 : 128;
  static constexpr int COPIES = BM * BK / VEC / THREADS;  // 16-byte copies per thread per operand and step
  static constexpr int STAGES = sizeof(T) == 4 ? 3 : 4;
  // float32 needs ~170 registers (one block per SM); the MMA kernels fit two blocks per SM.
  static constexpr int MIN_BLOCKS = sizeof(T) == 4 ? 1 : 2;
};

// Shared-memory tiles of one stage. KC (k-contiguous): A is [BM][BK] and B is [BN][BK], rows of the
// reduction index; used by forward and input gradient, whose packed operands are contiguous along
// the reduction. MN-contiguous (!KC): A is [BK][BM] and B is [BK][BN]; used by the weight gradient,
// whose operands (NHWC dy and x) are contiguous along the channels, i.e. along M and N. Each row is
// padded by 16 bytes, which spreads 8 consecutive rows over all 32 banks.
template <class T, bool KC>
struct Smem {
  using C = Cfg<T>;
  static constexpr int LD = KC ? C::BK + C::VEC : C::BM + C::VEC;  // row pitch, elements
  static constexpr int A_ELEMS = (KC ? C::BM : C::BK) * LD;
  static constexpr int STAGE_ELEMS = 2 * A_ELEMS;  // BM == BN: A and B tiles have the same shape
  static constexpr int BYTES = C::STAGES * STAGE_ELEMS * int(sizeof(T));
};

// ---- cp.async: 16-byte global -> shared copies that bypass the registers --------------------------

// Copies 16 bytes, or writes 16 zero bytes when !valid (src-size 0: nothing is read).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ---- fast division by a run-time constant (as CUTLASS's FastDivmod), for 0 <= n < 2^31 -----------

struct FastDiv {
  int d = 1;
  unsigned mul = 0, shr = 0;
  FastDiv() = default;
  explicit FastDiv(int divisor) : d(divisor) {
    if (d == 1) return;
    unsigned log2 = 0;
    while ((1u << log2) < unsigned(d)) ++log2;  // ceil(log2(d))
    unsigned p = 31 + log2;
    mul = unsigned(((1ull << p) + unsigned(d) - 1) / unsigned(d));
    shr = p - 32;
  }
  __device__ __forceinline__ int div(int n) const { return d == 1 ? n : int(__umulhi(unsigned(n), mul) >> shr); }
};

// ---- the math of one stage ------------------------------------------------------------------------
// Both flavours own a ROWS x COLS set of float accumulators per thread and say which tile row and
// column each one is (row(i), col(j)), so the epilogues below serve both.

// float16/bfloat16: mma.sync.m16n8k16, float32 accumulate. 4 warps as 2 (M) x 2 (N), each warp a
// 64x64 tile = 4 x 8 MMA tiles of 16x8: per 16-step of the reduction a warp reads 8 fragments
// (ldmatrix.x4) from shared memory for 32 MMAs.
__device__ __forceinline__ void mma16816(float* d, const unsigned* a, const unsigned* b, __half) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma16816(float* d, const unsigned* a, const unsigned* b, __nv_bfloat16) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Four 8x8 16-bit matrices; lane l supplies the address of row l%8 of matrix l/8. Without .trans
// lane t receives row t/4, columns 2(t%4) and 2(t%4)+1 of each; with .trans, of each transpose.
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

template <class T, bool KC>
struct Math {  // the tensor-core flavour (T = __half or __nv_bfloat16)
  static constexpr int BK = Cfg<T>::BK, LD = Smem<T, KC>::LD, ROWS = 8, COLS = 16;
  float acc[4][8][4] = {};  // [m16 tile][n8 tile][fragment]
  int lane, wm, wn;         // warp's tile: rows wm*64.., columns wn*64..

  __device__ explicit Math(int tid) : lane(tid % 32), wm(tid / 32 % 2), wn(tid / 64) {}

  __device__ __forceinline__ void step(const T* As, const T* Bs) {
#pragma unroll
    for (int ks = 0; ks < BK; ks += 16) {
      unsigned a[4][4], b[8][2];
      // A fragment of tile mt: matrices (rows 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15).
      // B fragments of tiles 2np, 2np+1: (n 0-7, k 0-7), (0-7, 8-15), (8-15, 0-7), (8-15, 8-15).
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        int m = wm * 64 + mt * 16;
        if constexpr (KC)
          ldmatrix_x4<false>(a[mt], As + (m + lane % 16) * LD + ks + lane / 16 * 8);
        else
          ldmatrix_x4<true>(a[mt], As + (ks + lane % 8 + lane / 16 * 8) * LD + m + lane / 8 % 2 * 8);
      }
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        int n = wn * 64 + np * 16;
        unsigned r[4];
        if constexpr (KC)
          ldmatrix_x4<false>(r, Bs + (n + lane % 8 + lane / 16 * 8) * LD + ks + lane / 8 % 2 * 8);
        else
          ldmatrix_x4<true>(r, Bs + (ks + lane % 8 + lane / 8 % 2 * 8) * LD + n + lane / 16 * 8);
        b[2 * np][0] = r[0], b[2 * np][1] = r[1], b[2 * np + 1][0] = r[2], b[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) mma16816(acc[mt][nt], a[mt], b[nt], T{});
    }
  }
  // Accumulator (i, j) of this thread, i < ROWS, j < COLS: fragment element c0..c3 of an m16n8 tile
  // sits at row lane/4 (+8 for c2, c3) and columns 2(lane%4) + {0, 1}.
  __device__ __forceinline__ int row(int i) const { return wm * 64 + i / 2 * 16 + i % 2 * 8 + lane / 4; }
  __device__ __forceinline__ int col(int j) const { return wn * 64 + j / 2 * 8 + lane % 4 * 2 + j % 2; }
  __device__ __forceinline__ float at(int i, int j) const { return acc[i / 2][j / 2][i % 2 * 2 + j % 2]; }
};

template <bool KC>
struct Math<float, KC> {  // the float32 flavour: 16 x 16 threads, each an 8x8 register tile
  static constexpr int BK = Cfg<float>::BK, LD = Smem<float, KC>::LD, ROWS = 8, COLS = 8;
  float acc[8][8] = {};
  int tm, tn;

  __device__ explicit Math(int tid) : tm(tid % 16), tn(tid / 16) {}

  // KC: thread rows tm + 16i, so the 8 lanes of a quarter-warp read 8 different rows (conflict-free
  // at pitch 20 floats) and consecutive lanes write consecutive output pixels; each float4 read
  // carries 4 steps of the reduction. !KC: rows 4tm + 64(i/4) + i%4, read as float4 along M.
  __device__ __forceinline__ int row(int i) const { return KC ? tm + 16 * i : i / 4 * 64 + 4 * tm + i % 4; }
  __device__ __forceinline__ int col(int j) const { return KC ? tn + 16 * j : j / 4 * 64 + 4 * tn + j % 4; }
  __device__ __forceinline__ float at(int i, int j) const { return acc[i][j]; }

  __device__ __forceinline__ void step(const float* As, const float* Bs) {
    if constexpr (KC) {
#pragma unroll
      for (int k4 = 0; k4 < BK; k4 += 4) {
        float4 a[8], b[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) a[i] = *reinterpret_cast<const float4*>(As + row(i) * LD + k4);
#pragma unroll
        for (int j = 0; j < 8; ++j) b[j] = *reinterpret_cast<const float4*>(Bs + col(j) * LD + k4);
        fma4(a, b);
      }
    } else {
#pragma unroll
      for (int k = 0; k < BK; ++k) {
        float4 a[2], b[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          a[h] = *reinterpret_cast<const float4*>(As + k * LD + row(4 * h));
          b[h] = *reinterpret_cast<const float4*>(Bs + k * LD + col(4 * h));
        }
        const float* af = reinterpret_cast<const float*>(a);
        const float* bf = reinterpret_cast<const float*>(b);
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(af[i], bf[j], acc[i][j]);
      }
    }
  }

 private:
  // acc[i][j] += sum over the 4 reduction steps packed in a[i] and b[j]
  __device__ __forceinline__ void fma4(const float4* a, const float4* b) {
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        acc[i][j] = fmaf(a[i].x, b[j].x, acc[i][j]);
        acc[i][j] = fmaf(a[i].y, b[j].y, acc[i][j]);
        acc[i][j] = fmaf(a[i].z, b[j].z, acc[i][j]);
        acc[i][j] = fmaf(a[i].w, b[j].w, acc[i][j]);
      }
  }
};

// ---- the pipelined main loop ----------------------------------------------------------------------
// loader.load(As, Bs) issues the cp.async copies of the next reduction step into one stage's tiles.
// Stage t lives in buffer t % STAGES; STAGES - 1 steps are in flight while one is computed.
template <class T, bool KC, class Loader>
__device__ __forceinline__ void main_loop(Loader& loader, int steps, T* smem, Math<T, KC>& math) {
  constexpr int STAGES = Cfg<T>::STAGES, STAGE = Smem<T, KC>::STAGE_ELEMS, A = Smem<T, KC>::A_ELEMS;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < steps) loader.load(smem + s * STAGE, smem + s * STAGE + A);
    cp_async_commit();  // an empty group keeps the count of groups in step with the stages
  }
  for (int t = 0; t < steps; ++t) {
    cp_async_wait<STAGES - 2>();  // this thread's copies of step t have landed...
    __syncthreads();              // ...everyone's too, and everyone is done with step t - 1's buffer
    int next = t + STAGES - 1;
    if (next < steps) {
      T* buf = smem + next % STAGES * STAGE;
      loader.load(buf, buf + A);
    }
    cp_async_commit();
    const T* buf = smem + t % STAGES * STAGE;
    math.step(buf, buf + A);
  }
  cp_async_wait<0>();
}

// The block's place in a split-K GEMM: group g, split, and the first row and column of its tile.
struct BlockTile {
  int g, split, m0, n0;
};

// The part both GEMMs share: this block's tile of group g and split `split` (blockIdx.z), its
// reduction range, and the main loop, with Loader<T> fetching the operands into shared memory and
// `math` accumulating. The kernels differ only in their loader and their epilogue.
template <class T, bool A, template <class> class Loader, class P>
__device__ __forceinline__ BlockTile gemm_block(const P& p, Math<T, A>& math) {
  using C = Cfg<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  const BlockTile t{int(blockIdx.z) % p.G, int(blockIdx.z) / p.G, int(blockIdx.x) * C::BM, int(blockIdx.y) * C::BN};
  const int kbegin = t.split * p.steps_per_split * C::BK;
  const int kend = min(p.Kred, kbegin + p.steps_per_split * C::BK);
  Loader<T> loader(p, t.g, t.m0, t.n0, kbegin, kend, threadIdx.x);
  main_loop<T, A>(loader, max(0, (kend - kbegin + C::BK - 1) / C::BK), smem, math);
  return t;
}

// Writes the block's float32 accumulators to one split's partial sums: tile element (m, n) at
// out[m * m_stride + n * n_stride], for m < rows and n < cols.
template <class M>
__device__ __forceinline__ void store_partial(const M& math, float* out, int m0, int n0, int rows, int cols,
                                              int64_t m_stride, int64_t n_stride) {
#pragma unroll
  for (int i = 0; i < M::ROWS; ++i) {
    const int m = m0 + math.row(i);
    if (m >= rows) continue;
#pragma unroll
    for (int j = 0; j < M::COLS; ++j) {
      const int n = n0 + math.col(j);
      if (n < cols) out[m * m_stride + n * n_stride] = math.at(i, j);
    }
  }
}

// ---- host side ----------------------------------------------------------------------------------

// Launches one fast-variant GEMM kernel with its dynamic shared memory (above the 48 KB default).
template <class Kernel, class Params>
void launch_gemm(Kernel kernel, int threads, int smem, dim3 grid, const Params& p, cudaStream_t st,
                 const char* name) {
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string(name) + ": cannot reserve shared memory: " + cudaGetErrorString(err));
  }
  kernel<<<grid, threads, smem, st>>>(p);
  check_launch(name);
}

// The grid of an act_gemm / wgrad_gemm launch, checked against CUDA's limits.
inline dim3 gemm_grid(const char* op, int64_t M, int64_t Ncols, int64_t z) {
  int64_t gy = (Ncols + 127) / 128;
  check(gy <= 65535 && z <= 65535, op, ": too many output tiles or groups for one launch");
  return dim3(ceil_div(M, 128), unsigned(gy), unsigned(z));
}

}  // namespace pyfastdl::cuda::conv
