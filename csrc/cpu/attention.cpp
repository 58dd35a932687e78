// Scaled dot-product attention on the CPU: blocked online softmax (FlashAttention-2), forward and
// backward, plus the naive per-row reference it is checked against.
//
//   out_i = sum_j p_ij v_j,   p_ij = exp(s_ij - lse_i),   s_ij = scale * q_i . k_j (+ mask)
//
// Forward. The L x S score matrix is never formed. Each task owns a block of BQ queries of one
// (batch, head) and walks the keys in blocks of BK: S_blk = scale * Q_blk K_blk^T (a small GEMM),
// mask it, then the online softmax keeps per query row the running maximum m and the running sum
// l of exp(s - m); when a block raises m, the partial output and l are rescaled by exp(m_old - m)
// before the block's P_blk V_blk (another small GEMM) is added. At the end out /= l and
// lse = m + log l is saved for the backward.
// Backward. Each task owns a block of BK keys and walks the query blocks: it recomputes
// P = exp(S - lse) from q, k and lse, and with D_i = dO_i . O_i (= sum_j p_ij dp_ij) forms
//   dV_blk += P^T dO,   dP = dO V_blk^T,   dS = P * (dP - D),   dK_blk += scale dS^T Q,
//   dQ += scale dS K_blk.
// A task is a (batch, head) with a chunk of its key blocks (a head is split only when there are
// too few heads to keep every thread busy). dK and dV belong to the task; a split head's dQ is
// summed over its chunks in a fixed order, so the result never depends on how tasks met threads.
// Both parallelise with OpenMP over tasks taken dynamically, with a single barrier (the end of
// the parallel region) per call, and one more in a backward that split its heads.
//
// Cost: forward 4 B H L S E flops (2 GEMMs) and B H L S exponentials; backward 2.5x that (5 GEMMs,
// S is recomputed). Memory: the inputs and outputs, O(B H (L + S) (E + Ev)), plus per thread a few
// BQ x BK blocks and one head's K^T (forward) or D (backward), O(S E) or O(L), and a split head's
// dQ slots (fewer heads than 4 per thread only), O(threads L E) -- never L x S. The causal mask
// skips the key blocks above the diagonal (about half the work).
// What limits it: at E = 64 the GEMMs (OpenBLAS, one thread per task; about 3/4 of the forward's
// time) are small (64 x 128 x 64) and the exponentials are the rest: a polynomial for float32
// (exp_poly) run on whole vectors, in row loops of fixed length BK (a partial block: its length
// rounded up to 16). The file is compiled once per instruction set (AVX-512, AVX2, baseline;
// cpu/isa.h), the copy picked at run time; the block sizes are the same for every set.
// NaN and Inf propagate as in torch's math path (see finish_row); masked-out keys are skipped.
// Every operand but lse is addressed through its own (batch, head, row) strides (SdpaLayout), so the
// heads of a (B, L, H, E) projection -- q, k and v as views of one (B, L, 3, H, E) array -- are read
// and their gradients written in place: the GEMMs take a row stride anyway. No transpose copies.
//
// What each step bought (forward, float32, 8 heads x 1024 x 64, one thread, ratio = torch 2.13's
// CPU time / ours on a shared 2-core Sapphire Rapids VM, +-5% noise):
//   1. Q K^T as a transposed GEMM, softmax helpers called per row               0.74
//   2. K^T packed once per call so both GEMMs are row-major (OpenBLAS small-kernel path)  0.83
//   3. ... packed per key block (the per-head layout had 4 KiB row strides that alias)    0.87
//   4. the softmax steps as one call per block (fewer calls and horizontal reductions)    0.90
//   5. rows padded to BK with -inf: fixed-length loops, fully unrolled                    0.96
//   6. per-row maxima/rescaling factors computed as vectors across rows                   0.97
// The causal forward runs at 1.3-1.6x torch, the backward at 1.0-1.6x.
// On a 2-core AMD EPYC Zen 3 VM (AVX2+FMA, no AVX-512; the AVX2 copy; 16 x 512 x 64, one thread,
// alternated medians on a machine at load 17-25, +-15% noise), forward full / causal:
//   before: GCC had left exp_poly scalar, with branches, in the AVX2 copy       0.50 / 0.91
//   7. exp_poly on Vector<float> (explicit vectors; the same code for every set)  0.92-1.08 / 1.52
//   8. a partial key block's rows run to round_up(n), not BK (S = 40: 0.86 -> 0.96 at batch 32 x 4 heads)
#include "cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "cpu/fast_math.h"
#include "cpu/gemm.h"
#include "cpu/parallel.h"

namespace pyfastdl::cpu::PYFASTDL_ISA {
namespace {

constexpr int64_t BQ = 64;   // queries per block
constexpr int64_t BK = 128;  // keys per block (a multiple of W below)

template <class T>
constexpr T kInf = std::numeric_limits<T>::infinity();

// ---- row-wise building blocks (vectorised) -------------------------------------------------------

template <class T>
inline T exp_any(T x) {
  if constexpr (std::is_same_v<T, float>)
    return exp_poly(x);
  else
    return std::exp(x);
}

// Row helpers. They are plain inline functions: the block functions below, compiled in AVX-512,
// AVX2 and baseline versions, inline them and vectorise them for their instruction set. Horizontal
// reductions keep W independent lanes (the compiler does not reassociate a float max or sum by
// itself) and fold them pairwise at the end.
constexpr int64_t W = 16;

template <class T, class Op>
inline T fold_lanes(T* lanes, Op op) {
  static_assert(W == 16, "the fold below is written out for 16 lanes");
  for (int64_t c = 0; c < 8; ++c) lanes[c] = op(lanes[c], lanes[c + 8]);
  for (int64_t c = 0; c < 4; ++c) lanes[c] = op(lanes[c], lanes[c + 4]);
  for (int64_t c = 0; c < 2; ++c) lanes[c] = op(lanes[c], lanes[c + 2]);
  return op(lanes[0], lanes[1]);
}

template <class T>
inline T max2(T x, T y) {
  return std::max(x, y);
}

template <class T>
inline T add2(T x, T y) {
  return x + y;
}

// Rows of scores are padded with -inf to a multiple of W (the blocks to BK, the reference's row to
// round_up(S, W)): padding changes neither the maximum nor the sum of exponentials, and the loops
// below need no remainder.
inline int64_t round_up(int64_t n) { return (n + W - 1) / W * W; }

// The maximum of x[0, n), n a multiple of W.
template <class T>
inline T row_max(const T* x, int64_t n) {
  T lanes[W];
  for (int64_t c = 0; c < W; ++c) lanes[c] = -kInf<T>;
  for (int64_t j = 0; j < n; j += W) {
#pragma omp simd
    for (int64_t c = 0; c < W; ++c) lanes[c] = std::max(lanes[c], x[j + c]);
  }
  return fold_lanes(lanes, max2<T>);
}

// x[j] = exp(x[j] - shift) for j in [0, n), n a multiple of W; returns the sum. shift = +inf (a
// fully masked row) gives zeros; a NaN anywhere gives a NaN sum. float32 runs on whole vectors
// (exp_poly's vector form): GCC does not vectorise the scalar form in this loop for AVX2.
template <class T>
inline T exp_shift_sum(T* x, int64_t n, T shift) {
  if constexpr (std::is_same_v<T, float>) {
    using V = Vector<float>;
    constexpr int64_t L = kLanes<float>, NV = W / L;
    static_assert(W % L == 0, "a block of W values is whole vectors");
    V sums[NV] = {};
    for (int64_t j = 0; j < n; j += W) {
      for (int64_t c = 0; c < NV; ++c) {
        V e;
        std::memcpy(&e, x + j + c * L, sizeof e);
        e = exp_poly(e - shift);
        std::memcpy(x + j + c * L, &e, sizeof e);
        sums[c] += e;
      }
    }
    for (int64_t c = 1; c < NV; ++c) sums[0] += sums[c];
    float lanes[L];
    std::memcpy(lanes, &sums[0], sizeof lanes);
    float sum = 0;
    for (int64_t c = 0; c < L; ++c) sum += lanes[c];
    return sum;
  } else {
    T lanes[W] = {};
    for (int64_t j = 0; j < n; j += W) {
#pragma omp simd
      for (int64_t c = 0; c < W; ++c) {
        x[j + c] = std::exp(x[j + c] - shift);
        lanes[c] += x[j + c];
      }
    }
    return fold_lanes(lanes, add2<T>);
  }
}

template <class T>
inline T dot(const T* x, const T* y, int64_t n) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += x[j] * y[j];
  return sum;
}

template <class T>
inline void scale_row(T* x, int64_t n, T alpha) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) x[j] *= alpha;
}

// y += alpha * x
template <class T>
inline void axpy(T* y, const T* x, int64_t n, T alpha) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] += alpha * x[j];
}

// Applies the mask to the scores s[0, n) of query i against keys [j0, j0 + n) of head (b, h):
// masked-out scores become -inf, additive mask values are added.
template <class T>
void mask_row(const AttentionArgs& a, const void* mask, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t n,
              T* s) {
  if (a.causal) {
    for (int64_t j = std::max<int64_t>(i + 1 - j0, 0); j < n; ++j) s[j] = -kInf<T>;
    return;
  }
  if (a.mask == MaskKind::none) return;
  const int64_t off = a.mask_offset(b, h, i);
  const bool per_key = a.mask_stride[3] != 0;  // else one value for the whole row
  if (a.mask == MaskKind::boolean) {
    const uint8_t* m = static_cast<const uint8_t*>(mask) + off;
    if (!per_key) {
      if (!m[0]) std::fill(s, s + n, -kInf<T>);
      return;
    }
    m += j0;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) s[j] = m[j] ? s[j] : -kInf<T>;
  } else {
    const T* m = static_cast<const T*>(mask) + off;
    const T add = m[0];
    if (!per_key) {
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) s[j] += add;
      return;
    }
    m += j0;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) s[j] += m[j];
  }
}

// ---- block steps (one call per BQ x BK block, AVX-512 / AVX2 / baseline clones) -------------------

// The length the row loops of a block of n keys run over: BK for a whole block (a constant: loops
// the compiler unrolls fully), else n rounded up to W (a short sequence, S = 40, must not pay for
// 128 exponentials a row).
inline int64_t padded(int64_t n) { return n == BK ? BK : round_up(n); }

// Forward: the online-softmax update of a block of scores s (mq rows of stride BK, n keys) for
// queries [i0, i0 + mq): masks it, raises the running maxima m, turns s into exp(s - m), adds the
// row sums to l and rescales the partial output rows (stride ldo) that were summed under the old m.
// The per-row scalars (new maximum, rescaling factor) are computed for all rows at once, as
// vectors, between the row passes.
template <class T>
void softmax_update_block(const AttentionArgs& a, const void* mask, bool masked, int64_t b,
                                               int64_t h, int64_t i0, int64_t mq, int64_t j0, int64_t n, T* s,
                                               T* m, T* l, T* out, int64_t ldo) {
  T shift[BQ], alpha[BQ];
  const int64_t nr = padded(n);
  for (int64_t r = 0; r < mq; ++r) {
    T* sr = s + r * BK;
    if (masked) mask_row(a, mask, b, h, i0 + r, j0, n, sr);
    std::fill(sr + n, sr + nr, -kInf<T>);
    shift[r] = row_max(sr, nr);
  }
#pragma omp simd
  for (int64_t r = 0; r < mq; ++r) {
    const T mnew = std::max(m[r], shift[r]);
    const bool none = mnew == -kInf<T>;       // nothing visible yet in this row: p = 0, l = 0
    alpha[r] = none ? T(1) : exp_any(m[r] - mnew);  // 0 on the row's first block with a visible key
    shift[r] = none ? kInf<T> : mnew;         // exp(-inf - inf) = 0
    m[r] = mnew;
  }
  for (int64_t r = 0; r < mq; ++r) {
    l[r] = l[r] * alpha[r] + exp_shift_sum(s + r * BK, nr, shift[r]);
    if (alpha[r] != T(1)) scale_row(out + r * ldo, a.Ev, alpha[r]);
  }
}

// Backward: the probabilities p = exp(s - lse) of a block of (masked) scores.
template <class T>
void probabilities_block(const AttentionArgs& a, const void* mask, bool masked, int64_t b,
                                              int64_t h, int64_t i0, int64_t mq, int64_t j0, int64_t n, T* s,
                                              const T* lse) {
  const int64_t nr = padded(n);
  for (int64_t r = 0; r < mq; ++r) {
    T* sr = s + r * BK;
    if (masked) mask_row(a, mask, b, h, i0 + r, j0, n, sr);
    std::fill(sr + n, sr + nr, -kInf<T>);
    exp_shift_sum(sr, nr, lse[r]);
  }
}

// Backward through the softmax, in place: dp = p * (dp - D) for a block (row r subtracts D[r]).
template <class T>
void softmax_grad_block(T* dp, const T* p, int64_t mq, int64_t n, const T* D) {
  for (int64_t r = 0; r < mq; ++r) {
    T* dr = dp + r * BK;
    const T* pr = p + r * BK;
    const T d = D[r];
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) dr[j] = pr[j] * (dr[j] - d);
  }
}

// Does the causal mask cut into the block of queries [i0, i0 + m) x keys [j0, j0 + n)?
inline bool needs_mask(const AttentionArgs& a, int64_t i0, int64_t j0, int64_t n) {
  return a.mask != MaskKind::none || (a.causal && j0 + n - 1 > i0);
}

// Finishes a row: out /= l, lse = m + log l; a row that saw no key (l = 0) gives out = 0, lse = +inf.
// NaN, like torch's math path: a NaN score (from a NaN in q, k or an additive mask) is dropped by
// the row maximum but not by the exponentials, so l is NaN, and so are out and lse; so is a row
// with a +inf score (exp(inf - inf)). Only l, once per row, is tested: the inner loops are unchanged.
template <class T>
void finish_row(T* out, int64_t Ev, T m, T l, T* lse) {
  if (l == 0) {
    std::fill(out, out + Ev, T(0));
    *lse = kInf<T>;
  } else {
    scale_row(out, Ev, T(1) / l);
    *lse = m + std::log(l);
  }
}

}  // namespace

// ---- blocked forward ------------------------------------------------------------------------------

// Parallel tasks are (batch*head, chunk of query blocks): a head is split only as far as needed to
// give every thread a few tasks, so the per-task set-up (packing K^T) is rarely repeated, and the
// only barrier is the end of the parallel region (on a busy machine each barrier costs a lot).
inline int64_t blocks_per_task(int64_t BH, int64_t nblocks) {
  const int64_t chunks = std::clamp<int64_t>((4 * omp_get_max_threads() + BH - 1) / BH, 1, nblocks);
  return (nblocks + chunks - 1) / chunks;
}

// K^T of keys [0, n) of one head (rows of stride ldk) in blocks of BK keys, (nkb, E, BK): Q K^T
// then multiplies row-major blocks ("NN"), which OpenBLAS's small-matrix kernels do faster than the
// transposed product (and a block's rows are contiguous: no 4 KiB strides that alias in the cache).
template <class T>
void pack_kt(const T* k, int64_t ldk, int64_t n, int64_t E, T* kt) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t e = 0; e < E; ++e) kt[(j / BK * E + e) * BK + j % BK] = k[j * ldk + e];
}

// Zeroes n rows of `cols` values, ld apart.
template <class T>
void zero_rows(T* x, int64_t n, int64_t cols, int64_t ld) {
  for (int64_t r = 0; r < n; ++r) std::fill(x + r * ld, x + r * ld + cols, T(0));
}

template <class T>
void sdpa_forward_cpu(const AttentionArgs& a, const SdpaLayout& lay, const T* q, const T* k, const T* v,
                      const void* mask, T* out, T* lse) {
  const int64_t L = a.L, S = a.S, E = a.E, Ev = a.Ev, BH = a.B * a.H;
  const int64_t nqb = (L + BQ - 1) / BQ, nkb = (S + BK - 1) / BK;
  const int64_t per_task = blocks_per_task(BH, nqb), chunks = (nqb + per_task - 1) / per_task;
  const T scale = static_cast<T>(a.scale);
  pin_blas_to_one_thread();  // each OpenMP thread runs its own GEMMs
  const ThreadScratch<T> kt_(nkb * E * BK, true), s_(BQ * BK, true), m_(BQ, true), l_(BQ, true);
#pragma omp parallel
  {
    T *const kt = kt_.get(), *const s = s_.get(), *const m = m_.get(), *const l = l_.get();
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < BH * chunks; ++t) {
      const int64_t bh = t / chunks, b = bh / a.H, h = bh % a.H;
      const int64_t qb0 = t % chunks * per_task, qb1 = std::min(nqb, qb0 + per_task);
      const int64_t ldq = lay.q.r, ldv = lay.v.r, ldo = lay.out.r;
      pack_kt(k + lay.k.head(b, h), lay.k.r, a.causal ? std::min(S, qb1 * BQ) : S, E, kt);
      const T* vh = v + lay.v.head(b, h);
      for (int64_t i0 = qb0 * BQ; i0 < std::min(L, qb1 * BQ); i0 += BQ) {
        const int64_t mq = std::min(BQ, L - i0);
        const T* qb = q + lay.q.head(b, h) + i0 * ldq;
        T* ob = out + lay.out.head(b, h) + i0 * ldo;
        zero_rows(ob, mq, Ev, ldo);
        std::fill(m, m + BQ, -kInf<T>);
        std::fill(l, l + BQ, T(0));
        const int64_t kend = a.causal ? std::min(S, i0 + mq) : S;  // keys beyond are all masked
        for (int64_t j0 = 0; j0 < kend; j0 += BK) {
          const int64_t n = std::min(BK, kend - j0);
          gemm(false, false, mq, n, E, scale, qb, ldq, kt + j0 * E, BK, T(0), s, BK);
          softmax_update_block(a, mask, needs_mask(a, i0, j0, n), b, h, i0, mq, j0, n, s, m, l, ob, ldo);
          gemm(false, false, mq, Ev, n, T(1), s, BK, vh + j0 * ldv, ldv, T(1), ob, ldo);
        }
        for (int64_t r = 0; r < mq; ++r) finish_row(ob + r * ldo, Ev, m[r], l[r], lse + bh * L + i0 + r);
      }
    }
  }
}

// ---- blocked backward -----------------------------------------------------------------------------

template <class T>
void sdpa_backward_cpu(const AttentionArgs& a, const SdpaLayout& lay, const T* q, const T* k, const T* v,
                       const void* mask, const T* out, const T* lse, const T* grad_out, T* grad_q, T* grad_k,
                       T* grad_v) {
  const int64_t L = a.L, S = a.S, E = a.E, Ev = a.Ev, BH = a.B * a.H;
  const int64_t nkb = (S + BK - 1) / BK;
  const int64_t per_task = blocks_per_task(BH, nkb), chunks = (nkb + per_task - 1) / per_task;
  const T scale = static_cast<T>(a.scale);
  // A task's dQ: its head's rows of grad_q when the head is one task, else its own slot, and the
  // slots are summed in chunk order below -- the same sums whichever thread ran which task.
  std::unique_ptr<T[]> slots(chunks > 1 ? new T[BH * chunks * L * E] : nullptr);
  const ThreadScratch<T> p_(BQ * BK, true), dp_(BQ * BK, true), D_(L, true);
  pin_blas_to_one_thread();  // each OpenMP thread runs its own GEMMs
#pragma omp parallel
  {
    T *const p = p_.get(), *const dp = dp_.get(), *const D = D_.get();
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < BH * chunks; ++t) {
      const int64_t bh = t / chunks, b = bh / a.H, h = bh % a.H;
      const int64_t kb0 = t % chunks * per_task, kb1 = std::min(nkb, kb0 + per_task);
      const int64_t ldq = lay.q.r, ldk = lay.k.r, ldv = lay.v.r, lddo = lay.grad_out.r;
      const int64_t lddk = lay.grad_k.r, lddv = lay.grad_v.r;
      // A split head's chunk sums into its own slot (rows of E), else straight into grad_q's rows.
      T* dq = chunks > 1 ? slots.get() + t * L * E : grad_q + lay.grad_q.head(b, h);
      const int64_t lddq = chunks > 1 ? E : lay.grad_q.r;
      zero_rows(dq, L, E, lddq);
      // D_i = dO_i . O_i, the row sums of P * dP that the softmax backward subtracts.
      const T* doh = grad_out + lay.grad_out.head(b, h);
      const T* oh = out + lay.out.head(b, h);
      for (int64_t i = 0; i < L; ++i) D[i] = dot(doh + i * lddo, oh + i * lay.out.r, Ev);
      for (int64_t j0 = kb0 * BK; j0 < std::min(S, kb1 * BK); j0 += BK) {
        const int64_t n = std::min(BK, S - j0);
        const T* kb = k + lay.k.head(b, h) + j0 * ldk;
        const T* vb = v + lay.v.head(b, h) + j0 * ldv;
        T* dkb = grad_k + lay.grad_k.head(b, h) + j0 * lddk;
        T* dvb = grad_v + lay.grad_v.head(b, h) + j0 * lddv;
        zero_rows(dkb, n, E, lddk);
        zero_rows(dvb, n, Ev, lddv);
        const int64_t istart = a.causal ? j0 / BQ * BQ : 0;  // earlier queries see none of these keys
        for (int64_t i0 = istart; i0 < L; i0 += BQ) {
          const int64_t mq = std::min(BQ, L - i0);
          const T* qb = q + lay.q.head(b, h) + i0 * ldq;
          const T* dob = doh + i0 * lddo;
          gemm(false, true, mq, n, E, scale, qb, ldq, kb, ldk, T(0), p, BK);
          probabilities_block(a, mask, needs_mask(a, i0, j0, n), b, h, i0, mq, j0, n, p, lse + bh * L + i0);
          gemm(true, false, n, Ev, mq, T(1), p, BK, dob, lddo, T(1), dvb, lddv);
          gemm(false, true, mq, n, Ev, T(1), dob, lddo, vb, ldv, T(0), dp, BK);
          softmax_grad_block(dp, p, mq, n, D + i0);
          gemm(true, false, n, E, mq, scale, dp, BK, qb, ldq, T(1), dkb, lddk);
          gemm(false, false, mq, E, n, scale, dp, BK, kb, ldk, T(1), dq + i0 * lddq, lddq);
        }
      }
    }
    if (chunks > 1) {
#pragma omp for
      for (int64_t bh = 0; bh < BH; ++bh) {
        T* gq = grad_q + lay.grad_q.head(bh / a.H, bh % a.H);
        for (int64_t i = 0; i < L; ++i) {
          T* row = gq + i * lay.grad_q.r;
          std::copy(slots.get() + (bh * chunks * L + i) * E, slots.get() + (bh * chunks * L + i + 1) * E, row);
          for (int64_t c = 1; c < chunks; ++c) axpy(row, slots.get() + ((bh * chunks + c) * L + i) * E, E, T(1));
        }
      }
    }
  }
}

// ---- reference: one query row at a time -----------------------------------------------------------

// The scores of query row i against all keys it can see, masked and padded with -inf to a multiple
// of W (s holds round_up(S) values); returns how many keys that is.
template <class T>
int64_t reference_scores(const AttentionArgs& a, const SdpaLayout& lay, const T* q, const T* k, const void* mask,
                         int64_t b, int64_t h, int64_t i, T* s) {
  const int64_t n = a.visible_keys(i);
  const T* qi = q + lay.q.head(b, h) + i * lay.q.r;
  const T* kh = k + lay.k.head(b, h);
  for (int64_t j = 0; j < n; ++j) s[j] = static_cast<T>(a.scale) * dot(qi, kh + j * lay.k.r, a.E);
  mask_row(a, mask, b, h, i, 0, n, s);
  std::fill(s + n, s + round_up(n), -kInf<T>);
  return n;
}

template <class T>
void sdpa_forward_reference_cpu(const AttentionArgs& a, const SdpaLayout& lay, const T* q, const T* k, const T* v,
                                const void* mask, T* out, T* lse) {
#pragma omp parallel
  {
    std::vector<T> s(round_up(a.S));
#pragma omp for
    for (int64_t row = 0; row < a.B * a.H * a.L; ++row) {
      const int64_t bh = row / a.L, b = bh / a.H, h = bh % a.H, i = row % a.L;
      const int64_t n = reference_scores(a, lay, q, k, mask, b, h, i, s.data());
      const T m = row_max(s.data(), round_up(n));  // pass 1: the maximum
      T* o = out + lay.out.head(b, h) + i * lay.out.r;
      std::fill(o, o + a.Ev, T(0));
      // pass 2: exponentials and their sum (no key visible: exp(-inf - inf) = 0, but NaN stays NaN)
      const T l = exp_shift_sum(s.data(), round_up(n), m == -kInf<T> ? kInf<T> : m);
      const T* vh = v + lay.v.head(b, h);
      for (int64_t j = 0; j < n; ++j) axpy(o, vh + j * lay.v.r, a.Ev, s[j]);
      finish_row(o, a.Ev, m, l, lse + row);
    }
  }
}

template <class T>
void sdpa_backward_reference_cpu(const AttentionArgs& a, const SdpaLayout& lay, const T* q, const T* k, const T* v,
                                 const void* mask, const T* out, const T* lse, const T* grad_out, T* grad_q,
                                 T* grad_k, T* grad_v) {
  const int64_t L = a.L, S = a.S, E = a.E, Ev = a.Ev;
  const T scale = static_cast<T>(a.scale);
  // Rows of one head all add into that head's dK and dV: parallel over heads only.
#pragma omp parallel
  {
    std::vector<T> p(round_up(S));
#pragma omp for
    for (int64_t bh = 0; bh < a.B * a.H; ++bh) {
      const int64_t b = bh / a.H, h = bh % a.H;
      const T *kh = k + lay.k.head(b, h), *vh = v + lay.v.head(b, h);
      T *dkh = grad_k + lay.grad_k.head(b, h), *dvh = grad_v + lay.grad_v.head(b, h);
      zero_rows(dkh, S, E, lay.grad_k.r);
      zero_rows(dvh, S, Ev, lay.grad_v.r);
      for (int64_t i = 0; i < L; ++i) {
        const int64_t row = bh * L + i;
        const int64_t n = reference_scores(a, lay, q, k, mask, b, h, i, p.data());
        exp_shift_sum(p.data(), round_up(n), lse[row]);
        const T* doi = grad_out + lay.grad_out.head(b, h) + i * lay.grad_out.r;
        const T d = dot(doi, out + lay.out.head(b, h) + i * lay.out.r, Ev);
        const T* qi = q + lay.q.head(b, h) + i * lay.q.r;
        T* dqi = grad_q + lay.grad_q.head(b, h) + i * lay.grad_q.r;
        std::fill(dqi, dqi + E, T(0));
        for (int64_t j = 0; j < n; ++j) {
          const T ds = p[j] * (dot(doi, vh + j * lay.v.r, Ev) - d);
          axpy(dqi, kh + j * lay.k.r, E, scale * ds);
          axpy(dkh + j * lay.grad_k.r, qi, E, scale * ds);
          axpy(dvh + j * lay.grad_v.r, doi, Ev, p[j]);
        }
      }
    }
  }
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_ATTENTION_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
