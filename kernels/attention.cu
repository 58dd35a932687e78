// Scaled dot-product attention on the GPU: FlashAttention-2 style kernels on the tensor cores
// (float16 / bfloat16 operands, float32 accumulation), the same loop order in plain float32 FFMA,
// and a simple reference kernel set for any dtype and head size.
//
//   out_i = sum_j p_ij v_j,   p_ij = exp(s_ij - lse_i),   s_ij = scale q_i . k_j (+ mask)
//
// Versions (pick with variant= in pyfastdl.kernels; the benchmarks time both):
//   reference  one thread block per query row (forward, dQ) or key row (dK, dV), two-pass softmax:
//              pass 1 the row maximum, pass 2 exp and the weighted sum of V, keys taken in chunks
//              of blockDim so memory stays O(E). Float32 arithmetic, every dtype, any E, Ev.
//              Each block re-reads all of K and V: L2-bound, a few TFLOP/s at best.
//   flash      E == Ev in {64, 128} (other sizes fall back to the reference kernels):
//     float16 / bfloat16 forward: one CTA of W warps per (batch*head, 16 W query rows); each warp
//     owns 16 rows and keeps its Q fragments, the running max m, sum l and the 16 x Ev output tile
//     in registers. The CTA walks the keys in blocks of BC: S = Q K^T with mma.sync m16n8k16 (K
//     read from shared memory by ldmatrix), scale and log2(e) folded into one multiply so that
//     p = exp2(x - m), masks applied per element only on blocks that need them (the causal mask
//     skips the blocks above the diagonal), O rescaled by exp2(m_old - m_new), and O += P V where
//     P goes from the S accumulators straight into A fragments (the C and A layouts of m16n8k16
//     match) -- the L x S matrix never leaves registers. cp.async brings V in while S is computed
//     and the next K in while P V is computed. lse = (m + log2 l) ln 2 is saved for the backward.
//     float16 / bfloat16 backward: a pass computes D_i = dO_i . O_i and zeroes a float32 dQ
//     accumulator; one CTA of W warps per (batch*head, 16 W keys) walks the query blocks
//     (double-buffered with cp.async), each warp owning 16 keys: S^T = K Q^T, P^T = exp2(x - lse),
//     dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - D), dK += dS^T Q, all in registers;
//     dS^T goes through shared memory for dQ = dS K, added to the accumulator with atomics; a last
//     pass converts dQ to the element type. `scale` multiplies dK and dQ at the end, not dS (whose
//     small values would otherwise lose bits as float16 subnormals).
//     float32: the same online softmax in FFMA, four threads per row (see "fast float32" below);
//     the backward recomputes P in a query-major dQ kernel and a key-major dK/dV kernel (no atomics).
//
// Cost: forward 2 B H L S (E + Ev) flops (about half with is_causal), backward 2.5x that (five
// products, S recomputed; 3.5x for float32, which recomputes S twice); memory O(B H (L + S) E) --
// never L x S -- plus B H L floats of backward workspace (B H L (E + 1) on the tensor-core path).
// Fully masked rows give out = 0, lse = +inf and zero gradients (the CPU kernels' rule).
// What limits the tensor-core kernels: shared-memory bandwidth for the B operands (one 16x16
// ldmatrix per two mma.sync, since each warp owns only 16 rows), exp2 throughput at E = 64, and the
// dQ atomics in the backward; Hopper's wgmma / TMA (FlashAttention-3) are not used. The float32
// kernels are FFMA-bound with two shuffles per dot product, at 2 CTAs (8 warps) per SM.
#include "attention.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "runtime.h"

namespace pyfastdl::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

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

Params make_params(const AttentionArgs& a, const void* mask) {
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

// ---- block reductions (reference kernels) -------------------------------------------------------

template <bool kMax>
__device__ float block_reduce(float x, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) {
    float y = __shfl_xor_sync(0xffffffffu, x, o);
    x = kMax ? fmaxf(x, y) : x + y;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < nwarps ? scratch[lane] : (kMax ? -INFINITY : 0.0f);
  for (int o = 16; o > 0; o >>= 1) {
    float y = __shfl_xor_sync(0xffffffffu, x, o);
    x = kMax ? fmaxf(x, y) : x + y;
  }
  return x;
}

// sum_e a[e] * b[e] with a in shared memory (float) and b in global memory (element type).
template <class T>
__device__ inline float dot_sg(const float* a, const T* b, int n) {
  float s = 0.0f;
  for (int e = 0; e < n; ++e) s += a[e] * to_float(b[e]);
  return s;
}

constexpr int kRefThreads = 128;

// ---- reference kernels --------------------------------------------------------------------------

// One block per query row: two-pass softmax over the visible keys, chunk by chunk.
template <class T>
__global__ void __launch_bounds__(kRefThreads, 1)
    sdpa_forward_reference_kernel(Params p, const T* q, const T* k, const T* v, T* out, float* lse) {
  extern __shared__ float smem[];
  __shared__ float scratch[32];
  float* sq = smem;          // q_i * scale  (E)
  float* acc = sq + p.E;     // output row   (Ev)
  float* sp = acc + p.Ev;    // probabilities of one chunk of keys (blockDim)
  const int64_t row = blockIdx.x, bh = row / p.L, i = row % p.L, b = bh / p.H, h = bh % p.H;
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int e = tid; e < p.E; e += nt) sq[e] = to_float(q[row * p.E + e]) * p.scale;
  for (int e = tid; e < p.Ev; e += nt) acc[e] = 0.0f;
  __syncthreads();
  const int64_t n = visible_keys(p, i);
  auto score = [&](int64_t j) { return dot_sg(sq, k + (bh * p.S + j) * p.E, p.E) + mask_bias<T>(p, b, h, i, j); };

  float m = -INFINITY;  // pass 1: the row maximum
  for (int64_t j = tid; j < n; j += nt) m = fmaxf(m, score(j));
  m = block_reduce<true>(m, scratch);
  if (m == -INFINITY) {  // no key takes part: out = 0, lse = +inf
    for (int e = tid; e < p.Ev; e += nt) out[row * p.Ev + e] = from_float<T>(0.0f);
    if (tid == 0) lse[row] = INFINITY;
    return;
  }
  float l = 0.0f;  // pass 2: exponentials, their sum, and the weighted sum of V
  for (int64_t j0 = 0; j0 < n; j0 += nt) {
    const int64_t j = j0 + tid;
    const float pj = j < n ? expf(score(j) - m) : 0.0f;
    sp[tid] = pj;
    l += pj;
    __syncthreads();
    const int cnt = static_cast<int>(n - j0 < nt ? n - j0 : nt);
    for (int e = tid; e < p.Ev; e += nt) {
      float a = acc[e];
      for (int jj = 0; jj < cnt; ++jj) a += sp[jj] * to_float(v[(bh * p.S + j0 + jj) * p.Ev + e]);
      acc[e] = a;
    }
    __syncthreads();
  }
  l = block_reduce<false>(l, scratch);
  for (int e = tid; e < p.Ev; e += nt) out[row * p.Ev + e] = from_float<T>(acc[e] / l);
  if (tid == 0) lse[row] = m + logf(l);
}

// D_i = dO_i . O_i (one warp per row), and the row of the dQ accumulator zeroed when there is one.
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

// dQ row i: scale sum_j p_ij (dO_i . v_j - D_i) k_j, one block per query row.
template <class T>
__global__ void __launch_bounds__(kRefThreads, 1)
    sdpa_backward_dq_reference_kernel(Params p, const T* q, const T* k, const T* v, const float* lse,
                                      const T* grad_out, const float* d, T* grad_q) {
  extern __shared__ float smem[];
  float* sq = smem;         // q_i * scale (E)
  float* sdo = sq + p.E;    // dO_i        (Ev)
  float* acc = sdo + p.Ev;  // dQ_i        (E)
  float* sds = acc + p.E;   // dS of one chunk of keys (blockDim)
  const int64_t row = blockIdx.x, bh = row / p.L, i = row % p.L, b = bh / p.H, h = bh % p.H;
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int e = tid; e < p.E; e += nt) {
    sq[e] = to_float(q[row * p.E + e]) * p.scale;
    acc[e] = 0.0f;
  }
  for (int e = tid; e < p.Ev; e += nt) sdo[e] = to_float(grad_out[row * p.Ev + e]);
  __syncthreads();
  const int64_t n = visible_keys(p, i);
  const float lse_i = lse[row], d_i = d[row];
  for (int64_t j0 = 0; j0 < n; j0 += nt) {
    const int64_t j = j0 + tid;
    float ds = 0.0f;
    if (j < n) {
      const float s = dot_sg(sq, k + (bh * p.S + j) * p.E, p.E) + mask_bias<T>(p, b, h, i, j);
      ds = expf(s - lse_i) * (dot_sg(sdo, v + (bh * p.S + j) * p.Ev, p.Ev) - d_i);
    }
    sds[tid] = ds;
    __syncthreads();
    const int cnt = static_cast<int>(n - j0 < nt ? n - j0 : nt);
    for (int e = tid; e < p.E; e += nt) {
      float a = acc[e];
      for (int jj = 0; jj < cnt; ++jj) a += sds[jj] * to_float(k[(bh * p.S + j0 + jj) * p.E + e]);
      acc[e] = a;
    }
    __syncthreads();
  }
  for (int e = tid; e < p.E; e += nt) grad_q[row * p.E + e] = from_float<T>(acc[e] * p.scale);
}

// dK_j = scale sum_i dS_ij q_i and dV_j = sum_i p_ij dO_i, one block per key row.
template <class T>
__global__ void __launch_bounds__(kRefThreads, 1)
    sdpa_backward_dkv_reference_kernel(Params p, const T* q, const T* k, const T* v, const float* lse,
                                       const T* grad_out, const float* d, T* grad_k, T* grad_v) {
  extern __shared__ float smem[];
  float* sk = smem;           // k_j * scale (E)
  float* sv = sk + p.E;       // v_j         (Ev)
  float* acck = sv + p.Ev;    // dK_j        (E)
  float* accv = acck + p.E;   // dV_j        (Ev)
  float* sp = accv + p.Ev;    // p of one chunk of queries  (blockDim)
  float* sds = sp + blockDim.x;  // dS of the same chunk    (blockDim)
  const int64_t row = blockIdx.x, bh = row / p.S, j = row % p.S, b = bh / p.H, h = bh % p.H;
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int e = tid; e < p.E; e += nt) {
    sk[e] = to_float(k[row * p.E + e]) * p.scale;
    acck[e] = 0.0f;
  }
  for (int e = tid; e < p.Ev; e += nt) {
    sv[e] = to_float(v[row * p.Ev + e]);
    accv[e] = 0.0f;
  }
  __syncthreads();
  const int64_t istart = p.causal ? j : 0;  // earlier queries do not see key j
  for (int64_t i0 = istart; i0 < p.L; i0 += nt) {
    const int64_t i = i0 + tid;
    float pi = 0.0f, ds = 0.0f;
    if (i < p.L) {
      const int64_t qrow = bh * p.L + i;
      const float s = dot_sg(sk, q + qrow * p.E, p.E) + mask_bias<T>(p, b, h, i, j);
      pi = expf(s - lse[qrow]);
      ds = pi * (dot_sg(sv, grad_out + qrow * p.Ev, p.Ev) - d[qrow]);
    }
    sp[tid] = pi;
    sds[tid] = ds;
    __syncthreads();
    const int cnt = static_cast<int>(p.L - i0 < nt ? p.L - i0 : nt);
    for (int e = tid; e < p.E; e += nt) {
      float a = acck[e];
      for (int ii = 0; ii < cnt; ++ii) a += sds[ii] * to_float(q[(bh * p.L + i0 + ii) * p.E + e]);
      acck[e] = a;
    }
    for (int e = tid; e < p.Ev; e += nt) {
      float a = accv[e];
      for (int ii = 0; ii < cnt; ++ii) a += sp[ii] * to_float(grad_out[(bh * p.L + i0 + ii) * p.Ev + e]);
      accv[e] = a;
    }
    __syncthreads();
  }
  for (int e = tid; e < p.E; e += nt) grad_k[row * p.E + e] = from_float<T>(acck[e] * p.scale);
  for (int e = tid; e < p.Ev; e += nt) grad_v[row * p.Ev + e] = from_float<T>(accv[e]);
}

// grad_q = scale times the float32 dQ accumulator, in the element type.
template <class T>
__global__ void sdpa_convert_dq_kernel(const float* dq_acc, float scale, T* grad_q, int64_t n) {
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x)
    grad_q[x] = from_float<T>(dq_acc[x] * scale);
}

// ---- tensor-core building blocks ----------------------------------------------------------------
// mma.sync m16n8k16 fragments (g = lane / 4, t = lane % 4):
//   A 16x16 (row-major): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B 16x8  ("col"):     b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   C 16x8  (float):     c0, c1 = C[g][2t..2t+1], c2, c3 = C[g+8][2t..2t+1]
// so the C fragments of two adjacent 16x8 tiles are, packed in pairs, the A fragment of a 16x16.
// ldmatrix.x4 loads four 8x8 blocks, lanes 8m..8m+7 giving the row addresses of block m; with
// .trans each block arrives transposed (a matrix stored k-major becomes a B operand).

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

// ---- fast forward -------------------------------------------------------------------------------

template <int D, int W, int BC>
struct FwdConfig {
  static constexpr int kThreads = 32 * W, kBR = 16 * W, kBC = BC, kLd = D + 8;
  static constexpr int kSmemBytes = (kBR + 2 * BC) * kLd * 2;  // Q, K, V tiles
};

template <class T, int D, int W, int BC>
__global__ void __launch_bounds__(32 * W)
    sdpa_forward_kernel(Params p, const T* q, const T* k, const T* v, T* out, float* lse) {
  using C = FwdConfig<D, W, BC>;
  constexpr int BR = C::kBR, LD = C::kLd;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK = sQ + BR * LD;
  T* sV = sK + BC * LD;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t nqb = (p.L + BR - 1) / BR;
  const int64_t bh = blockIdx.x / nqb, b = bh / p.H, h = bh % p.H;
  const int64_t i0 = (nqb - 1 - blockIdx.x % nqb) * BR;  // the longest causal rows start first
  const T* qh = q + bh * p.L * D;
  const T* kh = k + bh * p.S * D;
  const T* vh = v + bh * p.S * D;

  load_tile<BR, D, C::kThreads>(sQ, qh, i0, p.L);
  load_tile<BC, D, C::kThreads>(sK, kh, 0, p.S);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  uint32_t qf[D / 16][4];  // this warp's 16 query rows, all of E, as A fragments
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) ldsm_x4(qf[kk], a_frag_addr(sQ, LD, warp * 16, kk * 16));

  float o[D / 8][4];
  zero(o);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows g and g + 8
  const float scale_log2 = p.scale * kLog2e;
  const int64_t kend = p.causal ? (p.S < i0 + BR ? p.S : i0 + BR) : p.S;  // later keys are all masked
  const int nkb = static_cast<int>((kend + BC - 1) / BC);
  for (int kb = 0; kb < nkb; ++kb) {
    const int64_t j0 = static_cast<int64_t>(kb) * BC;
    load_tile<BC, D, C::kThreads>(sV, vh, j0, p.S);
    cp_async_commit();

    float s[BC / 8][4];
    zero(s);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
      for (int np = 0; np < BC / 16; ++np) {
        uint32_t bk[4];
        ldsm_x4(bk, b_frag_addr(sK, LD, np * 16, kk * 16));
        mma16816<T>(s[2 * np], qf[kk], bk[0], bk[1]);
        mma16816<T>(s[2 * np + 1], qf[kk], bk[2], bk[3]);
      }

    // x = log2(e) (scale s + mask): masks only where the block needs them.
    const bool edge = j0 + BC > p.S || p.mask_kind != MaskKind::none || (p.causal && j0 + BC - 1 > i0);
#pragma unroll
    for (int nt = 0; nt < BC / 8; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float x = s[nt][c] * scale_log2;
        if (edge) {
          const int64_t i = i0 + warp * 16 + g + 8 * (c >> 1), j = j0 + nt * 8 + 2 * t + (c & 1);
          if (j >= p.S)
            x = -INFINITY;
          else if (i < p.L)
            x += mask_bias<T>(p, b, h, i, j) * kLog2e;
        }
        s[nt][c] = x;
      }

    // Online softmax: new running max, rescale of l and O, p = exp2(x - m).
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = m[r];
#pragma unroll
      for (int nt = 0; nt < BC / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));  // the 4 lanes of a quad share the row
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float base = mx == -INFINITY ? 0.0f : mx;  // a row with nothing seen yet keeps p = 0
      const float alpha = exp2f(m[r] - base);
      m[r] = mx;
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < BC / 8; ++nt)
#pragma unroll
        for (int c = 2 * r; c < 2 * r + 2; ++c) {
          s[nt][c] = exp2f(s[nt][c] - base);
          sum += s[nt][c];
        }
      l[r] = l[r] * alpha + sum;
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt) {
        o[nt][2 * r] *= alpha;
        o[nt][2 * r + 1] *= alpha;
      }
    }
    uint32_t pf[BC / 16][4];
    acc_to_a<T>(pf, s);

    cp_async_wait<0>();  // V has arrived; every warp is done with K
    __syncthreads();
    if (kb + 1 < nkb) {
      load_tile<BC, D, C::kThreads>(sK, kh, j0 + BC, p.S);
      cp_async_commit();
    }
    mma_a_reg_b_kmajor<T>(o, pf, sV, LD, 0);  // O += P V
    cp_async_wait<0>();  // the next K has arrived; every warp is done with V
    __syncthreads();
  }

  // out = O / l, lse = (m + log2 l) ln 2; a row that saw no key: out = 0, lse = +inf.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    const int64_t i = i0 + warp * 16 + g + 8 * r;
    if (i >= p.L) continue;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    uint32_t* orow = reinterpret_cast<uint32_t*>(out + (bh * p.L + i) * D);
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) orow[nt * 4 + t] = pack2<T>(o[nt][2 * r] * inv, o[nt][2 * r + 1] * inv);
    if (t == 0) lse[bh * p.L + i] = l[r] > 0.0f ? (m[r] + log2f(l[r])) * kLn2 : INFINITY;
  }
}

// ---- fast backward ------------------------------------------------------------------------------

template <int D, int W, int BR>
struct BwdConfig {
  static constexpr int kThreads = 32 * W, kBC = 16 * W, kBR = BR, kLd = D + 8, kLdS = BR + 8;
  // K, V, two buffers of Q and dO, dS^T (element type); two buffers of lse and D (float)
  static constexpr int kSmemBytes = ((2 * kBC + 4 * BR) * kLd + kBC * kLdS) * 2 + 4 * BR * 4;
};

template <class T, int D, int W, int BR>
__global__ void __launch_bounds__(32 * W)
    sdpa_backward_kernel(Params p, const T* q, const T* k, const T* v, const float* lse, const T* grad_out,
                         const float* dvec, float* dq_acc, T* grad_k, T* grad_v) {
  using C = BwdConfig<D, W, BR>;
  constexpr int BC = C::kBC, LD = C::kLd, LDS = C::kLdS;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sK = reinterpret_cast<T*>(smem_raw);
  T* sV = sK + BC * LD;
  T* sQ = sV + BC * LD;      // [2][BR * LD]
  T* sdO = sQ + 2 * BR * LD;  // [2][BR * LD]
  T* sdS = sdO + 2 * BR * LD;  // dS^T: [BC][LDS]
  float* sL = reinterpret_cast<float*>(sdS + BC * LDS);  // [2][BR] lse * log2(e)
  float* sD = sL + 2 * BR;                               // [2][BR] D
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t nkb = (p.S + BC - 1) / BC;
  const int64_t bh = blockIdx.x / nkb, b = bh / p.H, h = bh % p.H;
  const int64_t j0 = (blockIdx.x % nkb) * BC;
  const T* qh = q + bh * p.L * D;
  const T* doh = grad_out + bh * p.L * D;

  load_tile<BC, D, C::kThreads>(sK, k + bh * p.S * D, j0, p.S);
  load_tile<BC, D, C::kThreads>(sV, v + bh * p.S * D, j0, p.S);
  const int64_t istart = p.causal ? j0 / BR * BR : 0;  // earlier queries see none of these keys
  const int nqb = istart < p.L ? static_cast<int>((p.L - istart + BR - 1) / BR) : 0;
  auto load_queries = [&](int it, int buf) {
    const int64_t i0 = istart + static_cast<int64_t>(it) * BR;
    load_tile<BR, D, C::kThreads>(sQ + buf * BR * LD, qh, i0, p.L);
    load_tile<BR, D, C::kThreads>(sdO + buf * BR * LD, doh, i0, p.L);
    for (int x = threadIdx.x; x < BR; x += C::kThreads) {
      const int64_t i = i0 + x;  // rows past L: p = 0 and dS = 0
      sL[buf * BR + x] = i < p.L ? lse[bh * p.L + i] * kLog2e : INFINITY;
      sD[buf * BR + x] = i < p.L ? dvec[bh * p.L + i] : 0.0f;
    }
  };
  if (nqb > 0) load_queries(0, 0);
  cp_async_commit();

  float dk[D / 8][4], dv[D / 8][4];
  zero(dk);
  zero(dv);
  const float scale_log2 = p.scale * kLog2e;
  for (int it = 0; it < nqb; ++it) {
    const int buf = it & 1;
    const int64_t i0 = istart + static_cast<int64_t>(it) * BR;
    if (it + 1 < nqb) {
      load_queries(it + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* cQ = sQ + buf * BR * LD;
    const T* cdO = sdO + buf * BR * LD;
    const float* cL = sL + buf * BR;
    const float* cD = sD + buf * BR;

    // P^T = exp2(x - lse log2 e) for this warp's 16 keys against the BR queries.
    float st[BR / 8][4];
    zero(st);
    mma_a_smem_b_nmajor<T, D / 16, BR / 8>(st, sK, warp * 16, cQ, LD);
    const bool edge = j0 + BC > p.S || i0 + BR > p.L || p.mask_kind != MaskKind::none ||
                      (p.causal && j0 + BC - 1 > i0);
#pragma unroll
    for (int nt = 0; nt < BR / 8; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int col = nt * 8 + 2 * t + (c & 1);
        float x = st[nt][c] * scale_log2;
        if (edge) {
          const int64_t j = j0 + warp * 16 + g + 8 * (c >> 1), i = i0 + col;
          if (j >= p.S)
            x = -INFINITY;
          else if (i < p.L)
            x += mask_bias<T>(p, b, h, i, j) * kLog2e;
        }
        st[nt][c] = exp2f(x - cL[col]);
      }
    uint32_t pf[BR / 16][4];
    acc_to_a<T>(pf, st);
    mma_a_reg_b_kmajor<T>(dv, pf, cdO, LD, 0);  // dV += P^T dO

    float dpt[BR / 8][4];  // dP^T = V dO^T
    zero(dpt);
    mma_a_smem_b_nmajor<T, D / 16, BR / 8>(dpt, sV, warp * 16, cdO, LD);
#pragma unroll
    for (int nt = 0; nt < BR / 8; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) st[nt][c] *= dpt[nt][c] - cD[nt * 8 + 2 * t + (c & 1)];  // dS^T / scale
    acc_to_a<T>(pf, st);
    mma_a_reg_b_kmajor<T>(dk, pf, cQ, LD, 0);  // dK += dS^T Q (/ scale)

    // dS^T to shared memory, then dQ (BR x D) += dS K in 16 x 32 pieces spread over the warps.
#pragma unroll
    for (int nt = 0; nt < BR / 8; ++nt) {
      const int key = warp * 16 + g;
      *reinterpret_cast<uint32_t*>(sdS + key * LDS + nt * 8 + 2 * t) = pf[nt / 2][(nt & 1) * 2];
      *reinterpret_cast<uint32_t*>(sdS + (key + 8) * LDS + nt * 8 + 2 * t) = pf[nt / 2][(nt & 1) * 2 + 1];
    }
    __syncthreads();
    for (int u = warp; u < (BR / 16) * (D / 32); u += W) {
      const int rt = u / (D / 32), cg = u % (D / 32);
      float acc[4][4];
      zero(acc);
#pragma unroll
      for (int kc = 0; kc < BC / 16; ++kc) {
        uint32_t a[4];
        ldsm_x4_trans(a, sdS + (kc * 16 + (lane & 7) + (lane >> 4) * 8) * LDS + rt * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
        for (int np = 0; np < 2; ++np) {
          uint32_t bk[4];
          ldsm_x4_trans(bk, bt_frag_addr(sK, LD, kc * 16, cg * 32 + np * 16));
          mma16816<T>(acc[2 * np], a, bk[0], bk[1]);
          mma16816<T>(acc[2 * np + 1], a, bk[2], bk[3]);
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int64_t i = i0 + rt * 16 + g + 8 * r;
        if (i >= p.L) continue;
        float* dst = dq_acc + (bh * p.L + i) * D + cg * 32 + 2 * t;
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
#if __CUDA_ARCH__ >= 900
          atomicAdd(reinterpret_cast<float2*>(dst + nt * 8), make_float2(acc[nt][2 * r], acc[nt][2 * r + 1]));
#else
          atomicAdd(dst + nt * 8, acc[nt][2 * r]);
          atomicAdd(dst + nt * 8 + 1, acc[nt][2 * r + 1]);
#endif
        }
      }
    }
    __syncthreads();  // every warp is done with this buffer and with dS^T
  }
  cp_async_wait<0>();  // (only pending when no query block sees these keys)

  // dK and dV rows g and g + 8 of this warp's 16 keys.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t j = j0 + warp * 16 + g + 8 * r;
    if (j >= p.S) continue;
    uint32_t* dkrow = reinterpret_cast<uint32_t*>(grad_k + (bh * p.S + j) * D);
    uint32_t* dvrow = reinterpret_cast<uint32_t*>(grad_v + (bh * p.S + j) * D);
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      dkrow[nt * 4 + t] = pack2<T>(dk[nt][2 * r] * p.scale, dk[nt][2 * r + 1] * p.scale);
      dvrow[nt * 4 + t] = pack2<T>(dv[nt][2 * r], dv[nt][2 * r + 1]);
    }
  }
}

// ---- fast float32 (SIMT) ------------------------------------------------------------------------
// Plain FFMA, the flash loop order of the kernels above. Four threads (a quad) own one row: thread
// t of the quad holds the float4 chunks t, t + 4, t + 8, ... of it, so the quad reads 64 contiguous
// bytes of a shared row and the eight quads of a warp read the same row (a broadcast): no bank
// conflicts. A dot product of two rows is the quad's partial sums and two shuffles. The forward
// and dQ kernels give each quad a query row and walk the key tiles; the dK/dV kernel gives each
// quad a key row and walks the query tiles -- dQ is recomputed rather than summed with atomics.

constexpr int kF32Threads = 128, kF32Rows = kF32Threads / 4, kF32Tile = 32;  // rows per CTA, per tile

// The quad's share of a D-float row, times mul; zeros when !valid.
template <int D>
__device__ inline void load_row_quad(float4 (&dst)[D / 16], const float* row, bool valid, float mul) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int c = 0; c < D / 16; ++c) {
    float4 x = valid ? reinterpret_cast<const float4*>(row)[4 * c + t] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    dst[c] = make_float4(x.x * mul, x.y * mul, x.z * mul, x.w * mul);
  }
}

template <int D>
__device__ inline void store_row_quad(float* row, const float4 (&src)[D / 16], float mul) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int c = 0; c < D / 16; ++c)
    reinterpret_cast<float4*>(row)[4 * c + t] = make_float4(src[c].x * mul, src[c].y * mul, src[c].z * mul,
                                                            src[c].w * mul);
}

// a . row over the whole row (every lane of the warp must call it).
template <int D>
__device__ inline float quad_dot(const float4 (&a)[D / 16], const float4* row) {
  const int t = threadIdx.x & 3;
  float s = 0.0f;
#pragma unroll
  for (int c = 0; c < D / 16; ++c) {
    const float4 b = row[4 * c + t];
    s = fmaf(a[c].x, b.x, fmaf(a[c].y, b.y, fmaf(a[c].z, b.z, fmaf(a[c].w, b.w, s))));
  }
  s += __shfl_xor_sync(0xffffffffu, s, 1);
  return s + __shfl_xor_sync(0xffffffffu, s, 2);
}

// acc += x * row (the quad's share)
template <int D>
__device__ inline void quad_axpy(float4 (&acc)[D / 16], float x, const float4* row) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int c = 0; c < D / 16; ++c) {
    const float4 b = row[4 * c + t];
    acc[c] = make_float4(fmaf(x, b.x, acc[c].x), fmaf(x, b.y, acc[c].y), fmaf(x, b.z, acc[c].z),
                         fmaf(x, b.w, acc[c].w));
  }
}

template <int D>
__device__ inline void zero_quad(float4 (&acc)[D / 16]) {
#pragma unroll
  for (int c = 0; c < D / 16; ++c) acc[c] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

template <int D>
__device__ inline void scale_quad(float4 (&acc)[D / 16], float x) {
#pragma unroll
  for (int c = 0; c < D / 16; ++c) acc[c] = make_float4(acc[c].x * x, acc[c].y * x, acc[c].z * x, acc[c].w * x);
}

// Rows [row0, row0 + ROWS) of a (rows, D) float matrix into shared memory; rows >= nrows are zeros.
template <int ROWS, int D>
__device__ inline void load_tile_f32(float4* s, const float* g, int64_t row0, int64_t nrows) {
  for (int x = threadIdx.x; x < ROWS * D / 4; x += kF32Threads) {
    const int r = x / (D / 4), c = x % (D / 4);
    s[x] = row0 + r < nrows ? reinterpret_cast<const float4*>(g + (row0 + r) * D)[c]
                            : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
}

// The query-major kernels: forward (kDq = false) or dQ (kDq = true), one quad per query row.
template <int D, bool kDq>
__global__ void __launch_bounds__(kF32Threads, 1)
    sdpa_query_rows_f32_kernel(Params p, const float* q, const float* k, const float* v, const float* lse,
                               const float* grad_out, const float* dvec, float* out, float* lse_out) {
  constexpr int BC = kF32Tile;
  __shared__ float4 sK[BC * D / 4], sV[BC * D / 4];
  const int64_t nqb = (p.L + kF32Rows - 1) / kF32Rows;
  const int64_t bh = blockIdx.x / nqb, b = bh / p.H, h = bh % p.H;
  const int64_t i0 = (nqb - 1 - blockIdx.x % nqb) * kF32Rows, i = i0 + threadIdx.x / 4;
  const bool row_ok = i < p.L;
  const float scale_log2 = p.scale * kLog2e;
  float4 qr[D / 16], acc[D / 16], dor[D / 16];  // q_i scale log2(e); O_i or dQ_i; dO_i (dQ only)
  load_row_quad<D>(qr, q + (bh * p.L + i) * D, row_ok, scale_log2);
  zero_quad<D>(acc);
  float m = -INFINITY, l = 0.0f, lse2 = 0.0f, di = 0.0f;
  if constexpr (kDq) {
    load_row_quad<D>(dor, grad_out + (bh * p.L + i) * D, row_ok, 1.0f);
    lse2 = row_ok ? lse[bh * p.L + i] * kLog2e : INFINITY;
    di = row_ok ? dvec[bh * p.L + i] : 0.0f;
  }
  const int64_t kend = p.causal ? (p.S < i0 + kF32Rows ? p.S : i0 + kF32Rows) : p.S;
  for (int64_t j0 = 0; j0 < kend; j0 += BC) {
    __syncthreads();  // every quad is done with the previous tiles
    load_tile_f32<BC, D>(sK, k + bh * p.S * D, j0, p.S);
    load_tile_f32<BC, D>(sV, v + bh * p.S * D, j0, p.S);
    __syncthreads();
    const bool edge = j0 + BC > p.S || p.mask_kind != MaskKind::none || (p.causal && j0 + BC - 1 > i0);
    // x = log2(e) (scale q_i . k_j + mask)
    auto score = [&](int jj) {
      float x = quad_dot<D>(qr, sK + jj * D / 4);
      if (edge) {
        const int64_t j = j0 + jj;
        if (j >= p.S)
          x = -INFINITY;
        else if (row_ok)
          x += mask_bias<float>(p, b, h, i, j) * kLog2e;
      }
      return x;
    };
    if constexpr (kDq) {  // dQ_i += (p_ij (dO_i . v_j - D_i)) k_j
#pragma unroll 2
      for (int jj = 0; jj < BC; ++jj) {
        const float ds = exp2f(score(jj) - lse2) * (quad_dot<D>(dor, sV + jj * D / 4) - di);
        quad_axpy<D>(acc, ds, sK + jj * D / 4);
      }
    } else {  // online softmax, as in the tensor-core kernel
      float s[BC];
#pragma unroll
      for (int jj = 0; jj < BC; ++jj) s[jj] = score(jj);
      float mx = m;
#pragma unroll
      for (int jj = 0; jj < BC; ++jj) mx = fmaxf(mx, s[jj]);
      const float base = mx == -INFINITY ? 0.0f : mx;
      const float alpha = exp2f(m - base);
      m = mx;
      l *= alpha;
      scale_quad<D>(acc, alpha);
#pragma unroll
      for (int jj = 0; jj < BC; ++jj) {
        const float pj = exp2f(s[jj] - base);
        l += pj;
        quad_axpy<D>(acc, pj, sV + jj * D / 4);
      }
    }
  }
  if (!row_ok) return;
  if constexpr (kDq) {
    store_row_quad<D>(out + (bh * p.L + i) * D, acc, p.scale);
  } else {
    store_row_quad<D>(out + (bh * p.L + i) * D, acc, l > 0.0f ? 1.0f / l : 0.0f);
    if (threadIdx.x % 4 == 0) lse_out[bh * p.L + i] = l > 0.0f ? (m + log2f(l)) * kLn2 : INFINITY;
  }
}

// dK and dV, one quad per key row, walking the query tiles.
template <int D>
__global__ void __launch_bounds__(kF32Threads, 1)
    sdpa_backward_dkv_f32_kernel(Params p, const float* q, const float* k, const float* v, const float* lse,
                                 const float* grad_out, const float* dvec, float* grad_k, float* grad_v) {
  constexpr int BQ = kF32Tile;
  __shared__ float4 sQ[BQ * D / 4], sdO[BQ * D / 4];
  __shared__ float sL[BQ], sD[BQ];
  const int64_t nkb = (p.S + kF32Rows - 1) / kF32Rows;
  const int64_t bh = blockIdx.x / nkb, b = bh / p.H, h = bh % p.H;
  const int64_t j0 = (blockIdx.x % nkb) * kF32Rows, j = j0 + threadIdx.x / 4;
  const bool key_ok = j < p.S;
  float4 kr[D / 16], vr[D / 16], dk[D / 16], dv[D / 16];
  load_row_quad<D>(kr, k + (bh * p.S + j) * D, key_ok, p.scale * kLog2e);
  load_row_quad<D>(vr, v + (bh * p.S + j) * D, key_ok, 1.0f);
  zero_quad<D>(dk);
  zero_quad<D>(dv);
  const int64_t istart = p.causal ? j0 / BQ * BQ : 0;  // earlier queries see none of these keys
  for (int64_t i0 = istart; i0 < p.L; i0 += BQ) {
    __syncthreads();
    load_tile_f32<BQ, D>(sQ, q + bh * p.L * D, i0, p.L);
    load_tile_f32<BQ, D>(sdO, grad_out + bh * p.L * D, i0, p.L);
    for (int x = threadIdx.x; x < BQ; x += kF32Threads) {
      const int64_t i = i0 + x;  // rows past L: p = 0, dS = 0
      sL[x] = i < p.L ? lse[bh * p.L + i] * kLog2e : INFINITY;
      sD[x] = i < p.L ? dvec[bh * p.L + i] : 0.0f;
    }
    __syncthreads();
    const bool edge = p.mask_kind != MaskKind::none || (p.causal && j0 + kF32Rows - 1 > i0);
#pragma unroll 2
    for (int ii = 0; ii < BQ; ++ii) {
      float x = quad_dot<D>(kr, sQ + ii * D / 4);
      const int64_t i = i0 + ii;
      if (edge && key_ok && i < p.L) x += mask_bias<float>(p, b, h, i, j) * kLog2e;
      const float pj = exp2f(x - sL[ii]);
      const float ds = pj * (quad_dot<D>(vr, sdO + ii * D / 4) - sD[ii]);
      quad_axpy<D>(dv, pj, sdO + ii * D / 4);
      quad_axpy<D>(dk, ds, sQ + ii * D / 4);
    }
  }
  if (!key_ok) return;
  store_row_quad<D>(grad_k + (bh * p.S + j) * D, dk, p.scale);
  store_row_quad<D>(grad_v + (bh * p.S + j) * D, dv, 1.0f);
}

// ---- host side ----------------------------------------------------------------------------------

// Tile shapes per head size: forward (warps, keys per block), backward (warps, queries per block).
template <int D>
struct Tiles;
template <>
struct Tiles<64> {
  using Fwd = FwdConfig<64, 4, 128>;
  using Bwd = BwdConfig<64, 8, 64>;
};
template <>
struct Tiles<128> {
  using Fwd = FwdConfig<128, 4, 64>;
  using Bwd = BwdConfig<128, 8, 32>;
};

void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

template <class Kernel>
void allow_smem(Kernel kernel, int bytes, const char* name) {
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), name);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// A one-dimensional grid of `blocks` (B H times the tiles of one head); fails past CUDA's limit.
unsigned grid_1d(int64_t heads, int64_t rows, int64_t rows_per_block) {
  const int64_t blocks = heads * ((rows + rows_per_block - 1) / rows_per_block);
  check(blocks <= 0x7fffffff, "scaled_dot_product_attention: ", blocks,
        " thread blocks exceed CUDA's grid limit (2^31 - 1); split the batch");
  return static_cast<unsigned>(blocks);
}

// The fast kernels take E == Ev in {64, 128}: the tensor-core ones for float16 / bfloat16, the
// SIMT ones for float32. Everything else runs the reference kernels.
bool fast_shapes(const AttentionArgs& a, AttnVariant v) {
  return v == AttnVariant::fast && a.E == a.Ev && (a.E == 64 || a.E == 128);
}

bool shapes_fit_tensor_cores(const AttentionArgs& a, AttnDType dt, AttnVariant v) {
  return fast_shapes(a, v) && dt != AttnDType::f32;
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

template <class F>
void with_head_dim(int64_t d, F&& f) {
  if (d == 64)
    f(std::integral_constant<int, 64>{});
  else
    f(std::integral_constant<int, 128>{});
}

size_t reference_smem_bytes(const AttentionArgs& a, int floats_per_dim_pair, int chunks) {
  const size_t bytes = (static_cast<size_t>(floats_per_dim_pair) * (a.E + a.Ev) + chunks * kRefThreads) * 4;
  if (bytes > 48 * 1024)
    fail("scaled_dot_product_attention: the CUDA reference kernels keep rows of E + Ev floats in shared memory "
         "and would need ", bytes, " bytes per block (more than 48 KiB) for E = ", a.E, ", Ev = ", a.Ev);
  return bytes;
}

template <class T>
void forward_reference(const AttentionArgs& a, const Params& p, const T* q, const T* k, const T* v, T* out,
                       float* lse, cudaStream_t stream) {
  const size_t smem = reference_smem_bytes(a, 1, 1);
  sdpa_forward_reference_kernel<T><<<grid_1d(a.B * a.H, a.L, 1), kRefThreads, smem, stream>>>(
      p, q, k, v, out, lse);
  check_launch("sdpa_forward_reference_kernel");
}

template <class T, int D>
void forward_fast(const AttentionArgs& a, const Params& p, const T* q, const T* k, const T* v, T* out, float* lse,
                  cudaStream_t stream) {
  if constexpr (std::is_same_v<T, float>) {
    const unsigned grid = grid_1d(a.B * a.H, a.L, kF32Rows);
    sdpa_query_rows_f32_kernel<D, false><<<grid, kF32Threads, 0, stream>>>(p, q, k, v, nullptr, nullptr, nullptr,
                                                                            out, lse);
    check_launch("sdpa_query_rows_f32_kernel (forward)");
  } else {
    using C = typename Tiles<D>::Fwd;
    auto kernel = sdpa_forward_kernel<T, D, C::kThreads / 32, C::kBC>;
    allow_smem(kernel, C::kSmemBytes, "sdpa_forward_kernel");
    const unsigned grid = grid_1d(a.B * a.H, a.L, C::kBR);
    kernel<<<grid, C::kThreads, C::kSmemBytes, stream>>>(p, q, k, v, out, lse);
    check_launch("sdpa_forward_kernel");
  }
}

template <class T>
void backward_reference(const AttentionArgs& a, const Params& p, const T* q, const T* k, const T* v,
                        const float* lse, const T* grad_out, const float* d, T* grad_q, T* grad_k, T* grad_v,
                        cudaStream_t stream) {
  const size_t smem_q = reference_smem_bytes(a, 1, 1) + a.E * 4;
  const size_t smem_kv = reference_smem_bytes(a, 2, 2);
  sdpa_backward_dq_reference_kernel<T><<<grid_1d(a.B * a.H, a.L, 1), kRefThreads, smem_q, stream>>>(
      p, q, k, v, lse, grad_out, d, grad_q);
  check_launch("sdpa_backward_dq_reference_kernel");
  sdpa_backward_dkv_reference_kernel<T><<<grid_1d(a.B * a.H, a.S, 1), kRefThreads, smem_kv, stream>>>(
      p, q, k, v, lse, grad_out, d, grad_k, grad_v);
  check_launch("sdpa_backward_dkv_reference_kernel");
}

template <class T, int D>
void backward_fast(const AttentionArgs& a, const Params& p, const T* q, const T* k, const T* v, const float* lse,
                   const T* grad_out, const float* d, float* dq_acc, T* grad_q, T* grad_k, T* grad_v,
                   cudaStream_t stream) {
  if constexpr (std::is_same_v<T, float>) {
    const unsigned qgrid = grid_1d(a.B * a.H, a.L, kF32Rows);
    sdpa_query_rows_f32_kernel<D, true><<<qgrid, kF32Threads, 0, stream>>>(p, q, k, v, lse, grad_out, d, grad_q,
                                                                            nullptr);
    check_launch("sdpa_query_rows_f32_kernel (dQ)");
    const unsigned kgrid = grid_1d(a.B * a.H, a.S, kF32Rows);
    sdpa_backward_dkv_f32_kernel<D><<<kgrid, kF32Threads, 0, stream>>>(p, q, k, v, lse, grad_out, d, grad_k, grad_v);
    check_launch("sdpa_backward_dkv_f32_kernel");
  } else {
    using C = typename Tiles<D>::Bwd;
    auto kernel = sdpa_backward_kernel<T, D, C::kThreads / 32, C::kBR>;
    allow_smem(kernel, C::kSmemBytes, "sdpa_backward_kernel");
    const unsigned grid = grid_1d(a.B * a.H, a.S, C::kBC);
    kernel<<<grid, C::kThreads, C::kSmemBytes, stream>>>(p, q, k, v, lse, grad_out, d, dq_acc, grad_k, grad_v);
    check_launch("sdpa_backward_kernel");
    const int64_t n = a.B * a.H * a.L * a.E;
    const unsigned blocks = ceil_div(n, 256) < 65536u ? ceil_div(n, 256) : 65536u;
    sdpa_convert_dq_kernel<T><<<blocks, 256, 0, stream>>>(dq_acc, p.scale, grad_q, n);
    check_launch("sdpa_convert_dq_kernel");
  }
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
  const Params p = make_params(a, mask);
  const bool fast = fast_shapes(a, v) && aligned16(q) && aligned16(k) && aligned16(val) && aligned16(out);
  with_type(dt, [&](auto tag) {
    using T = decltype(tag);
    auto Q = static_cast<const T*>(q);
    auto K = static_cast<const T*>(k);
    auto V = static_cast<const T*>(val);
    auto O = static_cast<T*>(out);
    if (!fast) return forward_reference(a, p, Q, K, V, O, lse, stream);
    with_head_dim(a.E, [&](auto d) { forward_fast<T, decltype(d)::value>(a, p, Q, K, V, O, lse, stream); });
  });
}

void sdpa_backward_cuda(const AttentionArgs& a, AttnDType dt, AttnVariant v, const void* q, const void* k,
                        const void* val, const void* mask, const void* out, const float* lse, const void* grad_out,
                        void* grad_q, void* grad_k, void* grad_v, void* workspace, cudaStream_t stream) {
  const Params p = make_params(a, mask);
  const bool fast = fast_shapes(a, v) && aligned16(q) && aligned16(k) && aligned16(val) && aligned16(grad_out) &&
                    aligned16(grad_q) && aligned16(grad_k) && aligned16(grad_v);
  // The tensor-core kernels sum dQ in the first B H L E floats of the workspace (first, so that the
  // float2 atomics find it 8-byte aligned), D follows.
  const int64_t rows = a.B * a.H * a.L;
  float* dq_acc = fast && dt != AttnDType::f32 ? static_cast<float*>(workspace) : nullptr;
  float* d = static_cast<float*>(workspace) + (dq_acc ? rows * a.E : 0);
  with_type(dt, [&](auto tag) {
    using T = decltype(tag);
    auto Q = static_cast<const T*>(q);
    auto K = static_cast<const T*>(k);
    auto V = static_cast<const T*>(val);
    auto dO = static_cast<const T*>(grad_out);
    auto dQ = static_cast<T*>(grad_q);
    auto dK = static_cast<T*>(grad_k);
    auto dV = static_cast<T*>(grad_v);
    sdpa_backward_prepare_kernel<T><<<grid_1d(1, rows, 256 / 32), 256, 0, stream>>>(p, static_cast<const T*>(out),
                                                                                   dO, d, dq_acc);
    check_launch("sdpa_backward_prepare_kernel");
    if (!fast) return backward_reference(a, p, Q, K, V, lse, dO, d, dQ, dK, dV, stream);
    with_head_dim(a.E, [&](auto hd) {
      backward_fast<T, decltype(hd)::value>(a, p, Q, K, V, lse, dO, d, dq_acc, dQ, dK, dV, stream);
    });
  });
}

}  // namespace pyfastdl::cuda
