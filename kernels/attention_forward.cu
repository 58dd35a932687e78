// Scaled dot-product attention, forward on the tensor cores (FlashAttention-2 style): float16 /
// bfloat16 operands, float32 accumulation, E == Ev in {64, 128}.
//
//   out_i = sum_j p_ij v_j,   p_ij = exp(s_ij - lse_i),   s_ij = scale q_i . k_j (+ mask)
//
// One CTA of W warps per (batch*head, 16 W query rows); each warp owns 16 rows and keeps its Q
// fragments, the running max m, sum l and the 16 x Ev output tile in registers. The CTA walks the
// keys in blocks of BC: S = Q K^T with mma.sync m16n8k16 (K read from shared memory by ldmatrix),
// scale and log2(e) folded into one multiply so that p = exp2(x - m), masks applied per element only
// on blocks that need them (the causal mask skips the blocks above the diagonal), O rescaled by
// exp2(m_old - m_new), and O += P V where P goes from the S accumulators straight into A fragments
// (the C and A layouts of m16n8k16 match) -- the L x S matrix never leaves registers. cp.async
// brings V in while S is computed and the next K in while P V is computed. lse = (m + log2 l) ln 2
// is saved for the backward; a row that sees no key gets out = 0, lse = +inf.
//
// Cost: 2 B H L S (E + Ev) flops (about half with is_causal); memory O(B H (L + S) E), one read of
// Q, K and V per CTA row block. What limits it: shared-memory bandwidth for the B operands (one
// 16x16 ldmatrix per two mma.sync, since each warp owns only 16 rows) and exp2 throughput at
// E = 64; Hopper's wgmma / TMA (FlashAttention-3) are not used.
#include "attention_mma.cuh"

namespace pyfastdl::cuda::sdpa {
namespace {

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

// Tile shapes per head size: (head size, warps, keys per block).
template <int D>
using FwdTiles = std::conditional_t<D == 64, FwdConfig<64, 4, 128>, FwdConfig<128, 4, 64>>;

template <class T, int D>
void launch(const AttentionArgs& a, const Params& p, const T* q, const T* k, const T* v, T* out, float* lse,
            cudaStream_t stream) {
  using C = FwdTiles<D>;
  auto kernel = sdpa_forward_kernel<T, D, C::kThreads / 32, C::kBC>;
  allow_smem(kernel, C::kSmemBytes, "sdpa_forward_kernel");
  const unsigned grid = grid_1d(a.B * a.H, a.L, C::kBR);
  kernel<<<grid, C::kThreads, C::kSmemBytes, stream>>>(p, q, k, v, out, lse);
  check_launch("sdpa_forward_kernel");
}

}  // namespace

void forward_tensor_cores(const AttentionArgs& a, AttnDType dt, const Params& p, const void* q, const void* k,
                          const void* v, void* out, float* lse, cudaStream_t stream) {
  with_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    with_head_dim(a.E, [&](auto d) {
      launch<T, decltype(d)::value>(a, p, static_cast<const T*>(q), static_cast<const T*>(k),
                                    static_cast<const T*>(v), static_cast<T*>(out), lse, stream);
    });
  });
}

}  // namespace pyfastdl::cuda::sdpa
