// Scaled dot-product attention, backward on the tensor cores (FlashAttention-2 style): float16 /
// bfloat16 operands, float32 accumulation, E == Ev in {64, 128}.
//
//   dV = P^T dO,   dS = P * (dO V^T - D),   dK = scale dS^T Q,   dQ = scale dS K
//
// attention.cu's first pass has computed D_i = dO_i . O_i and zeroed a float32 dQ accumulator.
// One CTA of W warps per (batch*head, 16 W keys) walks the query blocks (double-buffered with
// cp.async), each warp owning 16 keys: S^T = K Q^T, P^T = exp2(x - lse), dV += P^T dO,
// dP^T = V dO^T, dS^T = P^T (dP^T - D), dK += dS^T Q, all in registers; dS^T goes through shared
// memory for dQ = dS K, added to the accumulator with atomics; a last pass converts dQ to the
// element type. `scale` multiplies dK and dQ at the end, not dS (whose small values would otherwise
// lose bits as float16 subnormals).
//
// Cost: five products, S recomputed: 2.5x the forward's 2 B H L S (E + Ev) flops; memory
// O(B H (L + S) E) -- never L x S -- plus B H L E floats of dQ accumulator. What limits it: the dQ
// atomics, and shared-memory bandwidth for the B operands (one ldmatrix per two mma.sync).
#include "attention_mma.cuh"

namespace pyfastdl::cuda::sdpa {
namespace {

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

// grad_q = scale times the float32 dQ accumulator, in the element type.
template <class T>
__global__ void sdpa_convert_dq_kernel(const float* dq_acc, float scale, T* grad_q, int64_t n) {
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x)
    grad_q[x] = from_float<T>(dq_acc[x] * scale);
}

// Tile shapes per head size: (head size, warps, queries per block).
template <int D>
using BwdTiles = std::conditional_t<D == 64, BwdConfig<64, 8, 64>, BwdConfig<128, 8, 32>>;

template <class T, int D>
void launch(const AttentionArgs& a, const Params& p, const T* q, const T* k, const T* v, const float* lse,
            const T* grad_out, const float* d, float* dq_acc, T* grad_q, T* grad_k, T* grad_v, cudaStream_t stream) {
  using C = BwdTiles<D>;
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

}  // namespace

void backward_tensor_cores(const AttentionArgs& a, AttnDType dt, const Params& p, const void* q, const void* k,
                           const void* v, const float* lse, const void* grad_out, const float* d, float* dq_acc,
                           void* grad_q, void* grad_k, void* grad_v, cudaStream_t stream) {
  with_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    with_head_dim(a.E, [&](auto hd) {
      launch<T, decltype(hd)::value>(a, p, static_cast<const T*>(q), static_cast<const T*>(k),
                                     static_cast<const T*>(v), lse, static_cast<const T*>(grad_out), d, dq_acc,
                                     static_cast<T*>(grad_q), static_cast<T*>(grad_k), static_cast<T*>(grad_v),
                                     stream);
    });
  });
}

}  // namespace pyfastdl::cuda::sdpa
