// Scaled dot-product attention in float32 on the SIMT cores (plain FFMA, no TF32), forward and
// backward, E == Ev in {64, 128}: the flash loop order of attention_forward.cu without tensor cores.
//
// Four threads (a quad) own one row: thread t of the quad holds the float4 chunks t, t + 4, t + 8,
// ... of it, so the quad reads 64 contiguous bytes of a shared row and the eight quads of a warp read
// the same row (a broadcast): no bank conflicts. A dot product of two rows is the quad's partial sums
// and two shuffles. The forward gives each quad a query row and walks the key tiles with the online
// softmax (running max m and sum l, O rescaled by exp2(m_old - m_new)). The backward (after
// attention.cu's pass D_i = dO_i . O_i) recomputes P twice instead of summing dQ with atomics: a
// query-major kernel, the forward's loop, for dQ, and a key-major kernel, each quad a key row
// walking the query tiles, for dK and dV.
//
// Cost: forward 2 B H L S (E + Ev) flops (about half with is_causal), backward 3.5x that (S
// computed in both of its kernels); memory O(B H (L + S) E) -- never L x S. What limits it: FFMA
// throughput, with two shuffles per dot product, at 2 CTAs (8 warps) per SM.
#include "attention_common.cuh"

namespace pyfastdl::cuda::sdpa {
namespace {

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

}  // namespace

void forward_f32(const AttentionArgs& a, const Params& p, const float* q, const float* k, const float* v, float* out,
                 float* lse, cudaStream_t stream) {
  with_head_dim(a.E, [&](auto d) {
    const unsigned grid = grid_1d(a.B * a.H, a.L, kF32Rows);
    sdpa_query_rows_f32_kernel<decltype(d)::value, false><<<grid, kF32Threads, 0, stream>>>(
        p, q, k, v, nullptr, nullptr, nullptr, out, lse);
    check_launch("sdpa_query_rows_f32_kernel (forward)");
  });
}

void backward_f32(const AttentionArgs& a, const Params& p, const float* q, const float* k, const float* v,
                  const float* lse, const float* grad_out, const float* d, float* grad_q, float* grad_k,
                  float* grad_v, cudaStream_t stream) {
  with_head_dim(a.E, [&](auto hd) {
    constexpr int D = decltype(hd)::value;
    const unsigned qgrid = grid_1d(a.B * a.H, a.L, kF32Rows);
    sdpa_query_rows_f32_kernel<D, true><<<qgrid, kF32Threads, 0, stream>>>(p, q, k, v, lse, grad_out, d, grad_q,
                                                                            nullptr);
    check_launch("sdpa_query_rows_f32_kernel (dQ)");
    const unsigned kgrid = grid_1d(a.B * a.H, a.S, kF32Rows);
    sdpa_backward_dkv_f32_kernel<D><<<kgrid, kF32Threads, 0, stream>>>(p, q, k, v, lse, grad_out, d, grad_k, grad_v);
    check_launch("sdpa_backward_dkv_f32_kernel");
  });
}

}  // namespace pyfastdl::cuda::sdpa
