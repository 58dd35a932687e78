// Scaled dot-product attention, the reference kernels: the simplest correct GPU code, for every
// dtype (float32 arithmetic), any head sizes E and Ev, every mask; the fast kernels fall back to
// them for the shapes they do not take.
//
//   forward   one thread block per query row i, two-pass softmax: pass 1 the row maximum m over
//             the visible keys, pass 2 p_ij = exp(s_ij - m), their sum l and the weighted sum of V,
//             keys taken in chunks of blockDim so that shared memory stays O(E + Ev).
//   backward  (after attention.cu's pass D_i = dO_i . O_i) one block per query row for
//             dQ_i = scale sum_j dS_ij k_j, and one block per key row for dK_j = scale sum_i dS_ij q_i
//             and dV_j = sum_i p_ij dO_i, where dS_ij = p_ij (dO_i . v_j - D_i); each recomputes p.
//
// Cost: forward 2 B H L S (E + Ev) flops (about half with is_causal); the backward computes S in
// both of its kernels, 2 B H L S (4 E + 3 Ev) flops. Memory O(B H (L + S) E) -- never L x S.
// What limits it: each block re-reads all of K and V (or Q and dO) from L2, with no reuse between
// the rows of a block: L2-bound, a few TFLOP/s at best. Read it beside attention_forward.cu to see
// what tiling, the online softmax and the tensor cores buy.
#include "attention_common.cuh"

namespace pyfastdl::cuda::sdpa {
namespace {

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

// ---- host side ----------------------------------------------------------------------------------

size_t reference_smem_bytes(const AttentionArgs& a, int floats_per_dim_pair, int chunks) {
  const size_t bytes = (static_cast<size_t>(floats_per_dim_pair) * (a.E + a.Ev) + chunks * kRefThreads) * 4;
  if (bytes > 48 * 1024)
    fail("scaled_dot_product_attention: the CUDA reference kernels keep rows of E + Ev floats in shared memory "
         "and would need ", bytes, " bytes per block (more than 48 KiB) for E = ", a.E, ", Ev = ", a.Ev);
  return bytes;
}

}  // namespace

void forward_reference(const AttentionArgs& a, AttnDType dt, const Params& p, const void* q, const void* k,
                       const void* v, void* out, float* lse, cudaStream_t stream) {
  const size_t smem = reference_smem_bytes(a, 1, 1);
  with_type(dt, [&](auto tag) {
    using T = decltype(tag);
    sdpa_forward_reference_kernel<T><<<grid_1d(a.B * a.H, a.L, 1), kRefThreads, smem, stream>>>(
        p, static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(out), lse);
    check_launch("sdpa_forward_reference_kernel");
  });
}

void backward_reference(const AttentionArgs& a, AttnDType dt, const Params& p, const void* q, const void* k,
                        const void* v, const float* lse, const void* grad_out, const float* d, void* grad_q,
                        void* grad_k, void* grad_v, cudaStream_t stream) {
  const size_t smem_q = reference_smem_bytes(a, 1, 1) + a.E * 4;
  const size_t smem_kv = reference_smem_bytes(a, 2, 2);
  with_type(dt, [&](auto tag) {
    using T = decltype(tag);
    auto Q = static_cast<const T*>(q);
    auto K = static_cast<const T*>(k);
    auto V = static_cast<const T*>(v);
    auto dO = static_cast<const T*>(grad_out);
    sdpa_backward_dq_reference_kernel<T><<<grid_1d(a.B * a.H, a.L, 1), kRefThreads, smem_q, stream>>>(
        p, Q, K, V, lse, dO, d, static_cast<T*>(grad_q));
    check_launch("sdpa_backward_dq_reference_kernel");
    sdpa_backward_dkv_reference_kernel<T><<<grid_1d(a.B * a.H, a.S, 1), kRefThreads, smem_kv, stream>>>(
        p, Q, K, V, lse, dO, d, static_cast<T*>(grad_k), static_cast<T*>(grad_v));
    check_launch("sdpa_backward_dkv_reference_kernel");
  });
}

}  // namespace pyfastdl::cuda::sdpa
