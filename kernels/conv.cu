// Convolution on the GPU as an implicit GEMM: the im2col matrix is never built; each tile of it is
// gathered from the activations straight into shared memory, on the fly.
//
// The three products (per group g; G groups, Cg = C/G and Kg = K/G channels per group):
//   forward          y[m, k] = sum_(r,s,c) A[m, (r,s,c)] * B[k, (r,s,c)]   M = N*P*Q, N_gemm = Kg,  K_gemm = R*S*Cg
//                    A = x at input pixel (p*stride - pad + r*dil, ...), B = w
//   input gradient   dx[m, c] = sum_(r,s,k) dy at output pixel ((h + pad - r*dil)/stride, ...) * w[k, c, r, s]
//                    M = N*H*W, N_gemm = Cg, K_gemm = R*S*Kg; a tap contributes only where the division
//                    is exact (the "gather" form of the transposed convolution; no flipped copy needed)
//   weight gradient  dw[k, (r,s,c)] = sum_(n,p,q) dy[n, k, p, q] * x at input pixel of (p, q, r, s)
//                    M = Kg, N_gemm = R*S*Cg, K_gemm = N*P*Q, split across blocks (split-K)
// Each costs 2*N*K*P*Q*Cg*R*S flops. The fewest bytes are one read of each operand and one write of
// the result, so every layer of a real network is compute-bound: the whole game is keeping the
// FMA units (float32) or the tensor cores (float16/bfloat16) fed.
//
// Variants (selected by ConvVariant, by name in pyfastdl.kernels and the benchmarks):
//   reference  one thread per output element, a direct loop over its sum, float32 accumulation. Every
//              operand is re-read from L2/DRAM for every output it touches: memory-bound, ~1-3% of peak.
//              Kept so a reader can see what the tiling below buys.
//   fast       1. a prologue repacks the activations NCHW -> NHWC and the weights so the reduction
//                 index (r, s, c) runs over contiguous channels, each group's channels padded with
//                 zeros to a multiple of 16 bytes (workspace from the caller, i.e. cupy's pool).
//                 One extra pass over the activations buys 16-byte, aligned loads everywhere.
//              2. one block computes a 128x128 output tile (256 threads for float32, 128 for the
//                 16-bit types). The reduction runs in steps of BK (16 floats / 32 halves = 64 bytes
//                 per row) through a 3-4 stage ring of shared-memory buffers filled by cp.async
//                 (16 bytes per copy, zero-filled where the tap falls into the padding or off the
//                 tile): the loads of step t+2 fly while step t is computed. Shared rows are padded
//                 by 16 bytes, so the reads below are bank-conflict free.
//              3. the math: float32 - register blocking, each thread an 8x8 outer product (64 FFMA
//                 per 16 floats read from shared memory; no TF32). float16/bfloat16 - tensor cores
//                 through mma.sync.m16n8k16 (float32 accumulators), fragments loaded with ldmatrix;
//                 each warp a 64x64 tile (a 64x32 warp tile would make shared memory the limit).
//              4. the epilogue adds the bias, converts and writes NCHW directly (consecutive threads
//                 hold consecutive output pixels).
//              5. split-K where the output tiles alone leave the chip idle (deep layers, 14x14 and 7x7
//                 maps; always for the weight gradient, whose output is small and whose reduction is
//                 N*P*Q long): the reduction is cut into splits, one block per (tile, split), chosen to
//                 minimise waves x steps. Each block writes float32 partial sums to the workspace and
//                 a small kernel adds them in split order: deterministic, no atomics, one extra
//                 pass over splits x output floats.
// What limits "fast": float32 runs at the FFMA rate; Hopper's fastest path (wgmma, TMA) is not used,
// so float16/bfloat16 reach at best the mma.sync rate (about two thirds of the chip's peak). The
// repacking pass costs about one read and one write of the activations. The input gradient of a
// strided convolution gathers taps that are mostly absent: stride 2 wastes 3/4 of its MMAs on
// zero-filled tiles (the sub-pixel decomposition would avoid that). Channel counts far below a
// tile (the first layer, depthwise convolutions) waste most of a tile on padding.
#include "conv.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "runtime.h"

namespace pyfastdl::cuda {
namespace {

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

// ---- reference kernels: one thread per output element ---------------------------------------------
// Plain int64 index arithmetic, no shared memory; the shapes live in this int64 copy of the Args'
// fields (Conv2dArgs's member functions are host-only).

struct Dims {
  int64_t N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, Cg, Kg;
};

Dims dims_of(const Conv2dArgs& a) {
  return {a.N, a.C, a.H, a.W, a.K, a.R, a.S, a.P, a.Q, a.stride_h, a.stride_w,
          a.pad_h, a.pad_w, a.dil_h, a.dil_w, a.C / a.groups, a.K / a.groups};
}

template <class T>
__global__ void forward_reference(Dims d, const T* __restrict__ x, const T* __restrict__ w,
                                  const T* __restrict__ bias, T* __restrict__ y) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= d.N * d.K * d.P * d.Q) return;
  int64_t q = i % d.Q, p = i / d.Q % d.P, k = i / (d.Q * d.P) % d.K, n = i / (d.Q * d.P * d.K);
  int64_t c0 = k / d.Kg * d.Cg;  // first input channel of k's group
  float acc = bias ? to_f32(bias[k]) : 0.f;
  for (int64_t c = 0; c < d.Cg; ++c)
    for (int64_t r = 0; r < d.R; ++r) {
      int64_t h = p * d.sh - d.ph + r * d.dh;
      if (h < 0 || h >= d.H) continue;
      for (int64_t s = 0; s < d.S; ++s) {
        int64_t v = q * d.sw - d.pw + s * d.dw;
        if (v < 0 || v >= d.W) continue;
        acc += to_f32(x[((n * d.C + c0 + c) * d.H + h) * d.W + v]) * to_f32(w[((k * d.Cg + c) * d.R + r) * d.S + s]);
      }
    }
  y[i] = from_f32<T>(acc);
}

// Output pixel o of input pixel i through tap t along one dimension (i = o*stride - pad + t*dil),
// or -1 where no output pixel reaches i through that tap.
__device__ __forceinline__ int64_t output_of(int64_t i, int64_t t, int64_t stride, int64_t pad, int64_t dil,
                                             int64_t out_size) {
  int64_t num = i + pad - t * dil;
  if (num < 0 || num % stride) return -1;
  return num / stride < out_size ? num / stride : -1;
}

template <class T>
__global__ void backward_input_reference(Dims d, const T* __restrict__ dy, const T* __restrict__ w,
                                         T* __restrict__ dx) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= d.N * d.C * d.H * d.W) return;
  int64_t v = i % d.W, h = i / d.W % d.H, ch = i / (d.W * d.H) % d.C, n = i / (d.W * d.H * d.C);
  int64_t k0 = ch / d.Cg * d.Kg, c = ch % d.Cg;
  float acc = 0.f;
  for (int64_t k = k0; k < k0 + d.Kg; ++k)
    for (int64_t r = 0; r < d.R; ++r) {
      int64_t p = output_of(h, r, d.sh, d.ph, d.dh, d.P);
      if (p < 0) continue;
      for (int64_t s = 0; s < d.S; ++s) {
        int64_t q = output_of(v, s, d.sw, d.pw, d.dw, d.Q);
        if (q < 0) continue;
        acc += to_f32(dy[((n * d.K + k) * d.P + p) * d.Q + q]) * to_f32(w[((k * d.Cg + c) * d.R + r) * d.S + s]);
      }
    }
  dx[i] = from_f32<T>(acc);
}

template <class T>
__global__ void backward_weight_reference(Dims d, const T* __restrict__ x, const T* __restrict__ dy,
                                          T* __restrict__ dw) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= d.K * d.Cg * d.R * d.S) return;
  int64_t s = i % d.S, r = i / d.S % d.R, c = i / (d.S * d.R) % d.Cg, k = i / (d.S * d.R * d.Cg);
  int64_t ch = k / d.Kg * d.Cg + c;
  float acc = 0.f;
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t p = 0; p < d.P; ++p) {
      int64_t h = p * d.sh - d.ph + r * d.dh;
      if (h < 0 || h >= d.H) continue;
      for (int64_t q = 0; q < d.Q; ++q) {
        int64_t v = q * d.sw - d.pw + s * d.dw;
        if (v < 0 || v >= d.W) continue;
        acc += to_f32(dy[((n * d.K + k) * d.P + p) * d.Q + q]) * to_f32(x[((n * d.C + ch) * d.H + h) * d.W + v]);
      }
    }
  dw[i] = from_f32<T>(acc);
}

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

// ---- forward and input gradient: activations x packed weights -> NCHW output ----------------------
// act: NHWC activations [N][Hi][Wi][G*Ci] (Ci = per-group channels padded to VEC).
// wgt: [G][Nn][R][S][Ci], so row n of B is contiguous along the reduction index (r, s, c).
// out: NCHW [N][G*Nn][Ho][Wo]. The tap (r, s) of output pixel (ho, wo) reads input pixel
//   forward:     hi = ho*stride - pad + r*dil
//   transposed:  hi = (ho + pad - r*dil) / stride, only where that division is exact (input gradient)

// Split-K: when the output tiles alone would leave SMs idle (deep layers: 14x14 and 7x7 maps), block
// z = split*G + g covers reduction steps [split*steps_per_split, +steps_per_split) and writes float32
// partial sums [split][G][Nn][M]; split_reduce adds them in split order, adds the bias and converts.
template <class T>
struct ActParams {
  const T* act;
  const T* wgt;
  const T* bias;  // [G*Nn] or null
  T* out;
  float* partial;  // null: no split, the epilogue writes `out`
  int G, Hi, Wi, Ci, act_pix;     // act_pix = G*Ci, elements per pixel
  int Ho, Wo, M, Nn, R, S, Kred;  // M = N*Ho*Wo, Kred = R*S*Ci
  int sh, sw, ph, pw, dh, dw;
  bool transposed;
  int steps_per_split;
  FastDiv div_howo, div_wo;
};

// Input coordinate of output coordinate `base` (forward: o*stride - pad; transposed: o + pad) through
// tap t; false where it falls outside the input or (transposed) between input pixels.
__device__ __forceinline__ bool tap(int base, int t, int dil, int stride, int size, bool transposed, int& in) {
  if (!transposed) {
    in = base + t * dil;
    return unsigned(in) < unsigned(size);
  }
  int num = base - t * dil;
  if (num < 0) return false;
  if (stride != 1) {
    if (num % stride) return false;
    num /= stride;
  }
  in = num;
  return num < size;
}

template <class T>
struct ActLoader {
  using C = Cfg<T>;
  static constexpr int LD = Smem<T, true>::LD, CP = C::COPIES, STRIDE = C::THREADS / 4;  // rows apart
  const ActParams<T>& p;
  const T* act;                   // this group's channels
  int row0, kc;                   // tile row of this thread's first copy; its 16-byte column in the step
  int pix[CP], hb[CP], wb[CP];    // per copy row: first pixel of its image, output coordinates as taps' base
  bool m_ok[CP];
  const T* b_src[CP];  // weight rows
  bool n_ok[CP];
  int kk, kend;     // this thread's reduction index, advanced by BK per load; end of the split
  int c, r, s;      // kk as (r, s, c)

  __device__ ActLoader(const ActParams<T>& p_, int g, int m0, int n0, int kbegin, int kend_, int tid)
      : p(p_), act(p_.act + g * p_.Ci), row0(tid / 4), kc(tid % 4 * C::VEC), kk(kbegin + kc), kend(kend_) {
#pragma unroll
    for (int i = 0; i < CP; ++i) {
      int m = m0 + row0 + STRIDE * i;
      m_ok[i] = m < p.M;
      int mm = m_ok[i] ? m : 0;
      int img = p.div_howo.div(mm), rest = mm - img * p.Ho * p.Wo;
      int ho = p.div_wo.div(rest), wo = rest - ho * p.Wo;
      pix[i] = img * p.Hi * p.Wi;
      hb[i] = p.transposed ? ho + p.ph : ho * p.sh - p.ph;
      wb[i] = p.transposed ? wo + p.pw : wo * p.sw - p.pw;
      int n = n0 + row0 + STRIDE * i;
      n_ok[i] = n < p.Nn;
      b_src[i] = p.wgt + (int64_t(g) * p.Nn + (n_ok[i] ? n : 0)) * p.Kred;
    }
    int rs = kk / p.Ci;
    c = kk - rs * p.Ci, r = rs / p.S, s = rs - r * p.S;
  }
  __device__ __forceinline__ void normalize() {  // carry c into s, s into r
    while (c >= p.Ci) {
      c -= p.Ci;
      if (++s == p.S) s = 0, ++r;
    }
  }
  __device__ __forceinline__ void load(T* As, T* Bs) {
    bool k_ok = kk < kend;
#pragma unroll
    for (int i = 0; i < CP; ++i) {
      int h = 0, w = 0;
      bool ok = m_ok[i] && k_ok && tap(hb[i], r, p.dh, p.sh, p.Hi, p.transposed, h) &&
                tap(wb[i], s, p.dw, p.sw, p.Wi, p.transposed, w);
      const T* src = ok ? act + (pix[i] + h * p.Wi + w) * p.act_pix + c : p.act;
      cp_async16(As + (row0 + STRIDE * i) * LD + kc, src, ok);
      bool b_ok = n_ok[i] && k_ok;
      cp_async16(Bs + (row0 + STRIDE * i) * LD + kc, b_ok ? b_src[i] + kk : p.wgt, b_ok);
    }
    kk += C::BK, c += C::BK;
    normalize();
  }
};

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

template <class T>
__global__ void __launch_bounds__(Cfg<T>::THREADS, Cfg<T>::MIN_BLOCKS)
    act_gemm(const __grid_constant__ ActParams<T> p) {
  Math<T, true> math(threadIdx.x);
  const auto [g, split, m0, n0] = gemm_block<T, true, ActLoader>(p, math);

  if (p.partial) {  // [split][g][n][m]: consecutive threads, consecutive m
    float* out = p.partial + (int64_t(split) * p.G + g) * p.Nn * p.M;
#pragma unroll
    for (int i = 0; i < math.ROWS; ++i) {
      int m = m0 + math.row(i);
      if (m >= p.M) continue;
#pragma unroll
      for (int j = 0; j < math.COLS; ++j) {
        int n = n0 + math.col(j);
        if (n < p.Nn) out[int64_t(n) * p.M + m] = math.at(i, j);
      }
    }
    return;
  }
  const int HoWo = p.Ho * p.Wo, channels = p.G * p.Nn;
#pragma unroll
  for (int i = 0; i < math.ROWS; ++i) {
    int m = m0 + math.row(i);
    if (m >= p.M) continue;
    int img = p.div_howo.div(m);
    T* o = p.out + (int64_t(img) * channels + g * p.Nn) * HoWo + (m - img * HoWo);
#pragma unroll
    for (int j = 0; j < math.COLS; ++j) {
      int n = n0 + math.col(j);
      if (n >= p.Nn) continue;
      float v = math.at(i, j) + (p.bias ? to_f32(p.bias[g * p.Nn + n]) : 0.f);
      o[int64_t(n) * HoWo] = from_f32<T>(v);
    }
  }
}

// out[img][g*Nn + n][pix] = bias + sum over splits of partial[split][g][n][img*HoWo + pix], in split order.
template <class T>
__global__ void split_reduce(const float* __restrict__ partial, const T* __restrict__ bias, T* __restrict__ out,
                             int splits, int G, int Nn, int M, int HoWo) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= int64_t(M) * G * Nn) return;
  int pix = int(i % HoWo), ch = int(i / HoWo % (G * Nn));
  int64_t img = i / (int64_t(HoWo) * G * Nn);
  const float* src = partial + int64_t(ch) * M + img * HoWo + pix;  // row g*Nn + n of [G][Nn][M]
  float sum = bias ? to_f32(bias[ch]) : 0.f;
  for (int sp = 0; sp < splits; ++sp) sum += src[int64_t(sp) * G * Nn * M];
  out[i] = from_f32<T>(sum);
}

// ---- weight gradient: NHWC dy x NHWC x -> float32 partial sums per split --------------------------
// A[m = k][kk = (n,p,q)] = dy[n][p][q][g*Kp + k]  (stored [BK][BM], contiguous along k)
// B[kk][col = (r,s,c)]   = x[n][p*sh - ph + r*dh][q*sw - pw + s*dw][g*Cp + c]
// Block z = split * G + g covers reduction steps [split*steps_per_split, +steps_per_split).

struct WgradParams {
  const void* dy;  // [N*P*Q][G*Kp]
  const void* x;   // [N][H][W][G*Cp]
  float* partial;  // [splits][G][Kg][Ncol]
  int G, Kg, Kp, Cp, H, W, P, Q, S, Ncol, Kred;  // Ncol = R*S*Cp, Kred = N*P*Q
  int sh, sw, ph, pw, dh, dw;
  int steps_per_split;
  FastDiv div_pq, div_q;
};

template <class T>
struct WgradLoader {
  using C = Cfg<T>;
  static constexpr int CPR = C::BM / C::VEC;           // 16-byte copies per tile row
  static constexpr int ROWS = C::THREADS / CPR;        // tile rows covered by one pass of the block
  static constexpr int CP = C::COPIES;
  static constexpr int LD = Smem<T, false>::LD;
  const WgradParams& p;
  const T* dy;  // this thread's channel chunk of dy's group
  const T* x;   // this thread's channel chunk of x's group
  int row0, col;
  bool a_ok, b_ok;
  int roff, soff;  // r*dh - ph and s*dw - pw of this thread's column chunk
  int kk, kend;    // reduction index of this thread's first row in the next step; end of the split

  __device__ WgradLoader(const WgradParams& p_, int g, int m0, int n0, int kbegin, int kend_, int tid)
      : p(p_), row0(tid / CPR), col(tid % CPR * C::VEC), kk(kbegin + tid / CPR), kend(kend_) {
    int m = m0 + col, n = n0 + col;
    a_ok = m < p.Kp;
    b_ok = n < p.Ncol;
    n = b_ok ? n : 0;
    int rs = n / p.Cp, c = n - rs * p.Cp, r = rs / p.S, s = rs - r * p.S;
    roff = r * p.dh - p.ph;
    soff = s * p.dw - p.pw;
    dy = static_cast<const T*>(p.dy) + g * p.Kp + (a_ok ? m : 0);
    x = static_cast<const T*>(p.x) + g * p.Cp + c;
  }
  __device__ __forceinline__ void load(T* As, T* Bs) {
#pragma unroll
    for (int i = 0; i < CP; ++i) {
      int k = kk + ROWS * i;
      bool k_ok = k < kend;
      int kq = k_ok ? k : 0;
      int img = p.div_pq.div(kq), pq = kq - img * p.P * p.Q;
      int pp = p.div_q.div(pq), q = pq - pp * p.Q;
      int h = pp * p.sh + roff, w = q * p.sw + soff;
      bool ok = b_ok && k_ok && unsigned(h) < unsigned(p.H) && unsigned(w) < unsigned(p.W);
      int xoff = ((img * p.H + h) * p.W + w) * (p.G * p.Cp);
      cp_async16(Bs + (row0 + ROWS * i) * LD + col, ok ? x + xoff : x, ok);
      bool aok = a_ok && k_ok;
      cp_async16(As + (row0 + ROWS * i) * LD + col, aok ? dy + int64_t(kq) * (p.G * p.Kp) : dy, aok);
    }
    kk += C::BK;
  }
};

template <class T>
__global__ void __launch_bounds__(Cfg<T>::THREADS, Cfg<T>::MIN_BLOCKS)
    wgrad_gemm(const __grid_constant__ WgradParams p) {
  Math<T, false> math(threadIdx.x);
  const auto [g, split, m0, n0] = gemm_block<T, false, WgradLoader>(p, math);

  float* out = p.partial + (int64_t(split) * p.G + g) * p.Kg * p.Ncol;
#pragma unroll
  for (int i = 0; i < math.ROWS; ++i) {
    int m = m0 + math.row(i);
    if (m >= p.Kg) continue;
#pragma unroll
    for (int j = 0; j < math.COLS; ++j) {
      int n = n0 + math.col(j);
      if (n < p.Ncol) out[int64_t(m) * p.Ncol + n] = math.at(i, j);
    }
  }
}

// dw[k][c][r][s] = sum over splits of partial[split][g][k % Kg][(r*S + s)*Cp + c], in split order.
template <class T>
__global__ void wgrad_reduce(const float* __restrict__ partial, T* __restrict__ dw, int splits, int G, int Kg,
                             int Cg, int Cp, int RS) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t total = int64_t(G) * Kg * Cg * RS;
  if (i >= total) return;
  int rs = int(i % RS), c = int(i / RS % Cg);
  int64_t k = i / (int64_t(RS) * Cg);  // over all groups: (g, k % Kg) is row k of [G][Kg]
  int64_t ncol = int64_t(RS) * Cp;
  const float* src = partial + k * ncol + int64_t(rs) * Cp + c;
  float sum = 0.f;
  for (int sp = 0; sp < splits; ++sp) sum += src[int64_t(sp) * G * Kg * ncol];
  dw[i] = from_f32<T>(sum);
}

// ---- prologue: repacking ---------------------------------------------------------------------------
// Elements are moved as raw bits (E = float or uint16_t); zero bits are +0.0 in every format.

// dst[n][pix][g*Cp + c] = src[n][g*Cg + c][pix] for c < Cg, 0 for Cg <= c < Cp.
// 32x32 tiles through shared memory: reads coalesced along pixels, writes along channels.
template <class E>
__global__ void nchw_to_nhwc(const E* __restrict__ src, E* __restrict__ dst, int C, int HW, int G, int Cg,
                             int Cp) {
  __shared__ E tile[32][33];
  const int n = blockIdx.z, pix0 = blockIdx.x * 32, ch0 = blockIdx.y * 32, tx = threadIdx.x, ty = threadIdx.y;
  const int GCp = G * Cp;
  src += int64_t(n) * C * HW;
  dst += int64_t(n) * HW * GCp;
#pragma unroll
  for (int j = 0; j < 32; j += 8) {
    int ch = ch0 + ty + j, pix = pix0 + tx, g = ch / Cp, c = ch - g * Cp;
    bool ok = ch < GCp && pix < HW && c < Cg;
    tile[ty + j][tx] = ok ? src[int64_t(g * Cg + c) * HW + pix] : E(0);
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < 32; j += 8) {
    int pix = pix0 + ty + j, ch = ch0 + tx;
    if (pix < HW && ch < GCp) dst[int64_t(pix) * GCp + ch] = tile[tx][ty + j];
  }
}

// Weights (K, Cg, R, S) -> [G][O][R][S][Ip], zero for i >= I.
//   forward (!swap):       O = Kg, I = Cg: dst[g][k][r][s][c] = w[g*Kg + k][c][r][s]
//   input gradient (swap): O = Cg, I = Kg: dst[g][c][r][s][k] = w[g*Kg + k][c][r][s]
template <class E>
__global__ void pack_weight(const E* __restrict__ w, E* __restrict__ dst, int G, int O, int RS, int I, int Ip,
                            bool swap) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= int64_t(G) * O * RS * Ip) return;
  int ii = int(i % Ip), rs = int(i / Ip % RS);
  int64_t go = i / (int64_t(Ip) * RS);  // g*O + o
  int g = int(go / O), o = int(go % O);
  E v = E(0);
  if (ii < I) {
    int k = swap ? ii : o, c = swap ? o : ii, Cg = swap ? O : I, Kg = swap ? I : O;
    v = w[(int64_t(g * Kg + k) * Cg + c) * RS + rs];
  }
  dst[i] = v;
}

// ---- host side ------------------------------------------------------------------------------------

template <class T>
struct Bits {  // the raw-bits type the repacking kernels move T as
  using type = uint16_t;
};
template <>
struct Bits<float> {
  using type = float;
};

int round_up(int64_t v, int64_t m) { return int((v + m - 1) / m * m); }
std::size_t align256(std::size_t b) { return (b + 255) / 256 * 256; }

void check_int32(const char* op, const char* what, int64_t n) {
  check(n <= std::numeric_limits<int32_t>::max(), op, ": ", what, " has ", n,
        " elements, more than this kernel's 32-bit indexing allows (2^31 - 1)");
}

// Channels per group as packed (padded to whole 16-byte vectors).
int64_t padded(int64_t ch, std::size_t elem) { return round_up(ch, int64_t(16 / elem)); }

// Sizes of the fast variant's packed operands, in elements.
struct Packed {
  int64_t Cp, Kp;     // per-group channels of x and dy, padded
  int64_t x, dy;      // NHWC activations
  int64_t w_fwd, w_bwd;  // [G][Kg][R][S][Cp] and [G][Cg][R][S][Kp]
};
Packed packed_sizes(const Conv2dArgs& a, std::size_t elem) {
  Packed s;
  int64_t G = a.groups, RS = a.R * a.S;
  s.Cp = padded(a.C / G, elem), s.Kp = padded(a.K / G, elem);
  s.x = a.N * a.H * a.W * G * s.Cp;
  s.dy = a.N * a.P * a.Q * G * s.Kp;
  s.w_fwd = a.K * RS * s.Cp;
  s.w_bwd = a.C * RS * s.Kp;
  return s;
}

int multiprocessors() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();
    return 132;  // an H100's count: only the split factor (speed) depends on it, never the result
  }
  return sms;
}

// What a fast-variant call needs to know before it launches: one group's GEMM, its split of the
// reduction, and where each part of the workspace lies. conv2d_workspace_bytes and the launchers
// build it the same way, so the caller's workspace always fits.
struct Plan {
  Packed s;
  int64_t M = 0, Nn = 0, Kred = 0;  // one group's GEMM
  int splits = 1, steps_per_split = 0;
  std::size_t x = 0, dy = 0, w = 0, partial = 0, bytes = 0;  // workspace byte offsets, and its size
};

// Splits of the reduction: the count that minimises (waves of blocks) x (steps per block), where a
// wave is one block per block slot of the chip; fewest splits on a tie, each split >= 4 steps long.
void choose_splits(Plan& pl, int64_t G, int64_t slots, int64_t max_splits, int64_t BK) {
  const int64_t tiles = (pl.M + 127) / 128 * ((pl.Nn + 127) / 128) * G, steps = (pl.Kred + BK - 1) / BK;
  auto cost = [&](int64_t s) { return (tiles * s + slots - 1) / slots * ((steps + s - 1) / s); };
  int64_t best = 1;
  for (int64_t s = 2; s <= max_splits && 4 * s <= steps && G * s <= 65535; ++s)
    if (cost(s) < cost(best)) best = s;
  int64_t per = (steps + best - 1) / best;
  pl.steps_per_split = int(per);
  pl.splits = int((steps + per - 1) / per);  // no empty split
}

Plan make_plan(const Conv2dArgs& a, ConvOp op, std::size_t elem) {
  Plan pl;
  pl.s = packed_sizes(a, elem);
  const Packed& s = pl.s;
  const int64_t G = a.groups, RS = a.R * a.S, BK = 64 / int64_t(elem);
  // Blocks resident per SM: float32's act_gemm needs more than half the register file.
  const int64_t slots = multiprocessors() * (elem == 4 && op != ConvOp::backward_weight ? 1 : 2);
  if (op == ConvOp::forward)
    pl.M = a.N * a.P * a.Q, pl.Nn = a.K / G, pl.Kred = RS * s.Cp;
  else if (op == ConvOp::backward_input)
    pl.M = a.N * a.H * a.W, pl.Nn = a.C / G, pl.Kred = RS * s.Kp;
  else
    pl.M = a.K / G, pl.Nn = RS * s.Cp, pl.Kred = a.N * a.P * a.Q;
  choose_splits(pl, G, slots, op == ConvOp::backward_weight ? 64 : 16, BK);

  std::size_t at = 0;
  auto take = [&at](int64_t bytes) {
    std::size_t off = at;
    at += align256(std::size_t(bytes));
    return off;
  };
  if (op != ConvOp::backward_input) pl.x = take(s.x * int64_t(elem));
  if (op != ConvOp::forward) pl.dy = take(s.dy * int64_t(elem));
  if (op != ConvOp::backward_weight) pl.w = take((op == ConvOp::forward ? s.w_fwd : s.w_bwd) * int64_t(elem));
  // The weight gradient always goes through its partial sums (they hold the padded channels).
  if (pl.splits > 1 || op == ConvOp::backward_weight) pl.partial = take(pl.splits * G * pl.Nn * pl.M * 4);
  pl.bytes = at;
  return pl;
}

std::size_t elem_size(ConvDType dt) { return dt == ConvDType::f32 ? 4 : 2; }

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

template <class E>
void repack_activations(const char* op, const E* src, E* dst, int64_t N, int64_t C, int64_t HW, int64_t G,
                        int64_t Cp, cudaStream_t st) {
  check(N <= 65535, op, ": batch ", N, " is larger than this kernel's limit of 65535");
  dim3 grid(ceil_div(HW, 32), ceil_div(G * Cp, 32), unsigned(N));
  nchw_to_nhwc<E><<<grid, dim3(32, 8), 0, st>>>(src, dst, int(C), int(HW), int(G), int(C / G), int(Cp));
  check_launch("conv2d nchw_to_nhwc");
}

template <class E>
void repack_weight(const E* w, E* dst, int64_t G, int64_t O, int64_t RS, int64_t I, int64_t Ip, bool swap,
                   cudaStream_t st) {
  int64_t total = G * O * RS * Ip;
  pack_weight<E><<<ceil_div(total, 256), 256, 0, st>>>(w, dst, int(G), int(O), int(RS), int(I), int(Ip), swap);
  check_launch("conv2d pack_weight");
}

// The grid of an act_gemm / wgrad_gemm launch, checked against CUDA's limits.
dim3 gemm_grid(const char* op, int64_t M, int64_t Ncols, int64_t z) {
  int64_t gy = (Ncols + 127) / 128;
  check(gy <= 65535 && z <= 65535, op, ": too many output tiles or groups for one launch");
  return dim3(ceil_div(M, 128), unsigned(gy), unsigned(z));
}

// Forward (transposed = false) or input gradient (true) through act_gemm.
template <class T>
void act_gemm_fast(const char* op, const Conv2dArgs& a, bool transposed, const void* act_nchw, const void* w,
                   const void* bias, void* out, void* workspace, cudaStream_t st) {
  using E = typename Bits<T>::type;
  const Plan pl = make_plan(a, transposed ? ConvOp::backward_input : ConvOp::forward, sizeof(T));
  const Packed& s = pl.s;
  auto* ws = static_cast<unsigned char*>(workspace);
  const int64_t G = a.groups, Cg = a.C / G, Kg = a.K / G, RS = a.R * a.S;
  // Activations in (x for forward, dy for the input gradient) and their geometry.
  const int64_t Ci = transposed ? s.Kp : s.Cp, Hi = transposed ? a.P : a.H, Wi = transposed ? a.Q : a.W;
  const int64_t Ho = transposed ? a.H : a.P, Wo = transposed ? a.W : a.Q;
  E* act = reinterpret_cast<E*>(ws + (transposed ? pl.dy : pl.x));
  E* wgt = reinterpret_cast<E*>(ws + pl.w);
  check_int32(op, "the packed input", transposed ? s.dy : s.x);
  check_int32(op, "the packed weight", transposed ? s.w_bwd : s.w_fwd);
  check_int32(op, "the partial sums", pl.splits * G * pl.Nn * pl.M);
  repack_activations(op, static_cast<const E*>(act_nchw), act, a.N, transposed ? a.K : a.C, Hi * Wi, G, Ci, st);
  repack_weight(static_cast<const E*>(w), wgt, G, pl.Nn, RS, transposed ? Kg : Cg, Ci, transposed, st);

  ActParams<T> p{};
  p.act = reinterpret_cast<const T*>(act);
  p.wgt = reinterpret_cast<const T*>(wgt);
  p.bias = static_cast<const T*>(bias);
  p.out = static_cast<T*>(out);
  p.partial = pl.splits > 1 ? reinterpret_cast<float*>(ws + pl.partial) : nullptr;
  p.G = int(G), p.Hi = int(Hi), p.Wi = int(Wi), p.Ci = int(Ci), p.act_pix = int(G * Ci);
  p.Ho = int(Ho), p.Wo = int(Wo), p.M = int(pl.M), p.Nn = int(pl.Nn);
  p.R = int(a.R), p.S = int(a.S), p.Kred = int(pl.Kred);
  p.sh = int(a.stride_h), p.sw = int(a.stride_w), p.ph = int(a.pad_h), p.pw = int(a.pad_w);
  p.dh = int(a.dil_h), p.dw = int(a.dil_w);
  p.transposed = transposed;
  p.steps_per_split = pl.steps_per_split;
  p.div_howo = FastDiv(p.Ho * p.Wo), p.div_wo = FastDiv(p.Wo);
  launch_gemm(act_gemm<T>, Cfg<T>::THREADS, Smem<T, true>::BYTES, gemm_grid(op, pl.M, pl.Nn, G * pl.splits), p, st,
              transposed ? "conv2d_backward_input act_gemm" : "conv2d_forward act_gemm");
  if (pl.splits > 1) {
    split_reduce<T><<<ceil_div(pl.M * G * pl.Nn, 256), 256, 0, st>>>(p.partial, p.bias, p.out, pl.splits, p.G,
                                                                       p.Nn, p.M, p.Ho * p.Wo);
    check_launch(transposed ? "conv2d_backward_input split_reduce" : "conv2d_forward split_reduce");
  }
}

template <class T>
void wgrad_fast(const Conv2dArgs& a, const void* x, const void* dy, void* dw, void* workspace, cudaStream_t st) {
  using E = typename Bits<T>::type;
  const char* op = "conv2d_backward_weight";
  const Plan pl = make_plan(a, ConvOp::backward_weight, sizeof(T));
  const Packed& s = pl.s;
  auto* ws = static_cast<unsigned char*>(workspace);
  const int64_t G = a.groups, Kg = a.K / G, RS = a.R * a.S;
  check_int32(op, "the packed input", s.x);
  check_int32(op, "the packed output gradient", s.dy);
  check_int32(op, "the partial sums", pl.splits * G * pl.Nn * pl.M);
  E* xp = reinterpret_cast<E*>(ws + pl.x);
  E* dyp = reinterpret_cast<E*>(ws + pl.dy);
  repack_activations(op, static_cast<const E*>(x), xp, a.N, a.C, a.H * a.W, G, s.Cp, st);
  repack_activations(op, static_cast<const E*>(dy), dyp, a.N, a.K, a.P * a.Q, G, s.Kp, st);

  WgradParams p{};
  p.dy = dyp, p.x = xp, p.partial = reinterpret_cast<float*>(ws + pl.partial);
  p.G = int(G), p.Kg = int(Kg), p.Kp = int(s.Kp), p.Cp = int(s.Cp);
  p.H = int(a.H), p.W = int(a.W), p.P = int(a.P), p.Q = int(a.Q), p.S = int(a.S);
  p.Ncol = int(pl.Nn), p.Kred = int(pl.Kred);
  p.sh = int(a.stride_h), p.sw = int(a.stride_w), p.ph = int(a.pad_h), p.pw = int(a.pad_w);
  p.dh = int(a.dil_h), p.dw = int(a.dil_w);
  p.steps_per_split = pl.steps_per_split;
  p.div_pq = FastDiv(p.P * p.Q), p.div_q = FastDiv(p.Q);
  launch_gemm(wgrad_gemm<T>, Cfg<T>::THREADS, Smem<T, false>::BYTES, gemm_grid(op, Kg, p.Ncol, G * pl.splits), p, st,
              "conv2d_backward_weight wgrad_gemm");

  int64_t total = a.K * (a.C / G) * RS;
  wgrad_reduce<T><<<ceil_div(total, 256), 256, 0, st>>>(p.partial, static_cast<T*>(dw), pl.splits, int(G),
                                                        int(Kg), int(a.C / G), int(s.Cp), int(RS));
  check_launch("conv2d_backward_weight wgrad_reduce");
}

template <class Fn>
void by_dtype(ConvDType dt, Fn&& fn) {
  switch (dt) {
    case ConvDType::f32: fn(float{}); break;
    case ConvDType::f16: fn(__half{}); break;
    case ConvDType::bf16: fn(__nv_bfloat16{}); break;
  }
}

void check_m(const char* op, const Conv2dArgs& a) {
  check_int32(op, "the output", a.N * a.K * a.P * a.Q);
  check_int32(op, "the input", a.N * a.C * a.H * a.W);
}

}  // namespace

std::size_t conv2d_workspace_bytes(const Conv2dArgs& a, ConvOp op, ConvDType dt, ConvVariant v) {
  return v == ConvVariant::reference ? 0 : make_plan(a, op, elem_size(dt)).bytes;
}

void conv2d_forward_cuda(const Conv2dArgs& a, ConvDType dt, ConvVariant v, const void* x, const void* w,
                         const void* bias, void* y, void* workspace, cudaStream_t st) {
  check_m("conv2d_forward", a);
  by_dtype(dt, [&](auto t) {
    using T = decltype(t);
    if (v == ConvVariant::fast) return act_gemm_fast<T>("conv2d_forward", a, false, x, w, bias, y, workspace, st);
    int64_t total = a.N * a.K * a.P * a.Q;
    forward_reference<T><<<ceil_div(total, 256), 256, 0, st>>>(dims_of(a), static_cast<const T*>(x),
                                                               static_cast<const T*>(w),
                                                               static_cast<const T*>(bias), static_cast<T*>(y));
    check_launch("conv2d_forward_reference");
  });
}

void conv2d_backward_input_cuda(const Conv2dArgs& a, ConvDType dt, ConvVariant v, const void* dy, const void* w,
                                void* dx, void* workspace, cudaStream_t st) {
  check_m("conv2d_backward_input", a);
  by_dtype(dt, [&](auto t) {
    using T = decltype(t);
    if (v == ConvVariant::fast)
      return act_gemm_fast<T>("conv2d_backward_input", a, true, dy, w, nullptr, dx, workspace, st);
    int64_t total = a.N * a.C * a.H * a.W;
    backward_input_reference<T><<<ceil_div(total, 256), 256, 0, st>>>(
        dims_of(a), static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<T*>(dx));
    check_launch("conv2d_backward_input_reference");
  });
}

void conv2d_backward_weight_cuda(const Conv2dArgs& a, ConvDType dt, ConvVariant v, const void* x, const void* dy,
                                 void* dw, void* workspace, cudaStream_t st) {
  check_m("conv2d_backward_weight", a);
  by_dtype(dt, [&](auto t) {
    using T = decltype(t);
    if (v == ConvVariant::fast) return wgrad_fast<T>(a, x, dy, dw, workspace, st);
    int64_t total = a.K * (a.C / a.groups) * a.R * a.S;
    backward_weight_reference<T><<<ceil_div(total, 256), 256, 0, st>>>(
        dims_of(a), static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dw));
    check_launch("conv2d_backward_weight_reference");
  });
}

}  // namespace pyfastdl::cuda
