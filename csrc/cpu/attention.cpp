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
// dK and dV belong to the task; dQ is summed over key blocks in a per-thread buffer that is added
// to the output whenever the thread moves to another (batch, head).
// Both parallelise with OpenMP over tasks taken dynamically, with a single barrier (the end of
// the parallel region) per call.
//
// Cost: forward 4 B H L S E flops (2 GEMMs) and B H L S exponentials; backward 2.5x that (5 GEMMs,
// S is recomputed). Memory: the inputs and outputs, O(B H (L + S) (E + Ev)), plus per thread a few
// BQ x BK blocks and one head's K^T (forward) or dQ and D (backward), O(S E) or O(L E) -- never
// L x S. The causal mask skips the key blocks above the diagonal (about half the work).
// What limits it: at E = 64 the GEMMs (OpenBLAS, one thread per task; about 3/4 of the forward's
// time) are small (64 x 128 x 64) and the exponentials are the rest: a vectorised polynomial for
// float32 (exp_poly) in row loops of fixed length BK that the compiler vectorises. The file is
// compiled once per instruction set (AVX-512, AVX2, baseline; cpu/isa.h), the copy picked at run time.
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
#include "cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/fast_math.h"
#include "cpu/gemm.h"

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
// fully masked row) gives zeros.
template <class T>
inline T exp_shift_sum(T* x, int64_t n, T shift) {
  T lanes[W] = {};
  for (int64_t j = 0; j < n; j += W) {
#pragma omp simd
    for (int64_t c = 0; c < W; ++c) {
      x[j + c] = exp_any(x[j + c] - shift);
      lanes[c] += x[j + c];
    }
  }
  return fold_lanes(lanes, add2<T>);
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

// Forward: the online-softmax update of a block of scores s (mq rows of stride BK, n keys) for
// queries [i0, i0 + mq): masks it, raises the running maxima m, turns s into exp(s - m), adds the
// row sums to l and rescales the partial output rows (stride Ev) that were summed under the old m.
// The per-row scalars (new maximum, rescaling factor) are computed for all rows at once, as
// vectors, between the row passes.
template <class T>
void softmax_update_block(const AttentionArgs& a, const void* mask, bool masked, int64_t b,
                                               int64_t h, int64_t i0, int64_t mq, int64_t j0, int64_t n, T* s,
                                               T* m, T* l, T* out) {
  T shift[BQ], alpha[BQ];
  for (int64_t r = 0; r < mq; ++r) {
    T* sr = s + r * BK;
    if (masked) mask_row(a, mask, b, h, i0 + r, j0, n, sr);
    std::fill(sr + n, sr + BK, -kInf<T>);  // rows are always BK long: fixed-length loops below
    shift[r] = row_max(sr, BK);
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
    l[r] = l[r] * alpha[r] + exp_shift_sum(s + r * BK, BK, shift[r]);
    if (alpha[r] != T(1)) scale_row(out + r * a.Ev, a.Ev, alpha[r]);
  }
}

// Backward: the probabilities p = exp(s - lse) of a block of (masked) scores.
template <class T>
void probabilities_block(const AttentionArgs& a, const void* mask, bool masked, int64_t b,
                                              int64_t h, int64_t i0, int64_t mq, int64_t j0, int64_t n, T* s,
                                              const T* lse) {
  for (int64_t r = 0; r < mq; ++r) {
    T* sr = s + r * BK;
    if (masked) mask_row(a, mask, b, h, i0 + r, j0, n, sr);
    std::fill(sr + n, sr + BK, -kInf<T>);  // rows are always BK long: fixed-length loops
    exp_shift_sum(sr, BK, lse[r]);
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

// Finishes a row: out /= l, lse = m + log l; a row that saw no key gives out = 0, lse = +inf.
template <class T>
void finish_row(T* out, int64_t Ev, T m, T l, T* lse) {
  if (l > 0) {
    scale_row(out, Ev, T(1) / l);
    *lse = m + std::log(l);
  } else {
    std::fill(out, out + Ev, T(0));
    *lse = kInf<T>;
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

// K^T of keys [0, n) of one head in blocks of BK keys, (nkb, E, BK): Q K^T then multiplies
// row-major blocks ("NN"), which OpenBLAS's small-matrix kernels do faster than the transposed
// product (and a block's rows are contiguous: no 4 KiB strides that alias in the cache).
template <class T>
void pack_kt(const T* k, int64_t n, int64_t E, T* kt) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t e = 0; e < E; ++e) kt[(j / BK * E + e) * BK + j % BK] = k[j * E + e];
}

template <class T>
void sdpa_forward_cpu(const AttentionArgs& a, const T* q, const T* k, const T* v, const void* mask, T* out, T* lse) {
  const int64_t L = a.L, S = a.S, E = a.E, Ev = a.Ev, BH = a.B * a.H;
  const int64_t nqb = (L + BQ - 1) / BQ, nkb = (S + BK - 1) / BK;
  const int64_t per_task = blocks_per_task(BH, nqb), chunks = (nqb + per_task - 1) / per_task;
  const T scale = static_cast<T>(a.scale);
  SingleThreadedBlas serial;  // each OpenMP thread runs its own small GEMMs
#pragma omp parallel
  {
    std::vector<T> kt(nkb * E * BK), s(BQ * BK), m(BQ), l(BQ);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < BH * chunks; ++t) {
      const int64_t bh = t / chunks, b = bh / a.H, h = bh % a.H;
      const int64_t qb0 = t % chunks * per_task, qb1 = std::min(nqb, qb0 + per_task);
      pack_kt(k + bh * S * E, a.causal ? std::min(S, qb1 * BQ) : S, E, kt.data());
      const T* vh = v + bh * S * Ev;
      for (int64_t i0 = qb0 * BQ; i0 < std::min(L, qb1 * BQ); i0 += BQ) {
        const int64_t mq = std::min(BQ, L - i0);
        const T* qb = q + (bh * L + i0) * E;
        T* ob = out + (bh * L + i0) * Ev;
        std::fill(ob, ob + mq * Ev, T(0));
        std::fill(m.begin(), m.end(), -kInf<T>);
        std::fill(l.begin(), l.end(), T(0));
        const int64_t kend = a.causal ? std::min(S, i0 + mq) : S;  // keys beyond are all masked
        for (int64_t j0 = 0; j0 < kend; j0 += BK) {
          const int64_t n = std::min(BK, kend - j0);
          gemm(false, false, mq, n, E, scale, qb, E, kt.data() + j0 * E, BK, T(0), s.data(), BK);
          softmax_update_block(a, mask, needs_mask(a, i0, j0, n), b, h, i0, mq, j0, n, s.data(), m.data(),
                               l.data(), ob);
          gemm(false, false, mq, Ev, n, T(1), s.data(), BK, vh + j0 * Ev, Ev, T(1), ob, Ev);
        }
        for (int64_t r = 0; r < mq; ++r) finish_row(ob + r * Ev, Ev, m[r], l[r], lse + bh * L + i0 + r);
      }
    }
  }
}

// ---- blocked backward -----------------------------------------------------------------------------

template <class T>
void sdpa_backward_cpu(const AttentionArgs& a, const T* q, const T* k, const T* v, const void* mask, const T* out,
                       const T* lse, const T* grad_out, T* grad_q, T* grad_k, T* grad_v) {
  const int64_t L = a.L, S = a.S, E = a.E, Ev = a.Ev, BH = a.B * a.H;
  const int64_t nkb = (S + BK - 1) / BK;
  const T scale = static_cast<T>(a.scale);
  std::fill(grad_q, grad_q + BH * L * E, T(0));
  SingleThreadedBlas serial;  // each OpenMP thread runs its own small GEMMs
#pragma omp parallel
  {
    // Per thread, for the head `cur` it works on: D_i = dO_i . O_i (the row sums of P * dP that
    // the softmax backward subtracts) and the partial dQ, added to grad_q when the head changes.
    std::vector<T> p(BQ * BK), dp(BQ * BK), D(L), dq(L * E, T(0));
    int64_t cur = -1;
    auto flush_dq = [&] {
      if (cur < 0) return;
#pragma omp critical(pyfastdl_sdpa_dq)
      axpy(grad_q + cur * L * E, dq.data(), L * E, T(1));
      std::fill(dq.begin(), dq.end(), T(0));
    };
#pragma omp for schedule(dynamic) nowait
    for (int64_t t = 0; t < BH * nkb; ++t) {
      const int64_t bh = t / nkb, j0 = (t % nkb) * BK, b = bh / a.H, h = bh % a.H;
      const int64_t n = std::min(BK, S - j0);
      if (bh != cur) {
        flush_dq();
        cur = bh;
        for (int64_t i = 0; i < L; ++i) D[i] = dot(grad_out + (bh * L + i) * Ev, out + (bh * L + i) * Ev, Ev);
      }
      const T* kb = k + (bh * S + j0) * E;
      const T* vb = v + (bh * S + j0) * Ev;
      T* dkb = grad_k + (bh * S + j0) * E;
      T* dvb = grad_v + (bh * S + j0) * Ev;
      std::fill(dkb, dkb + n * E, T(0));
      std::fill(dvb, dvb + n * Ev, T(0));
      const int64_t istart = a.causal ? j0 / BQ * BQ : 0;  // earlier queries see none of these keys
      for (int64_t i0 = istart; i0 < L; i0 += BQ) {
        const int64_t mq = std::min(BQ, L - i0);
        const T* qb = q + (bh * L + i0) * E;
        const T* dob = grad_out + (bh * L + i0) * Ev;
        gemm(false, true, mq, n, E, scale, qb, E, kb, E, T(0), p.data(), BK);
        probabilities_block(a, mask, needs_mask(a, i0, j0, n), b, h, i0, mq, j0, n, p.data(), lse + bh * L + i0);
        gemm(true, false, n, Ev, mq, T(1), p.data(), BK, dob, Ev, T(1), dvb, Ev);
        gemm(false, true, mq, n, Ev, T(1), dob, Ev, vb, Ev, T(0), dp.data(), BK);
        softmax_grad_block(dp.data(), p.data(), mq, n, D.data() + i0);
        gemm(true, false, n, E, mq, scale, dp.data(), BK, qb, E, T(1), dkb, E);
        gemm(false, false, mq, E, n, scale, dp.data(), BK, kb, E, T(1), dq.data() + i0 * E, E);
      }
    }
    flush_dq();
  }
}

// ---- reference: one query row at a time -----------------------------------------------------------

// The scores of query row i against all keys it can see, masked and padded with -inf to a multiple
// of W (s holds round_up(S) values); returns how many keys that is.
template <class T>
int64_t reference_scores(const AttentionArgs& a, const T* q, const T* k, const void* mask, int64_t bh, int64_t i,
                         T* s) {
  const int64_t n = a.visible_keys(i);
  const T* qi = q + (bh * a.L + i) * a.E;
  for (int64_t j = 0; j < n; ++j) s[j] = static_cast<T>(a.scale) * dot(qi, k + (bh * a.S + j) * a.E, a.E);
  mask_row(a, mask, bh / a.H, bh % a.H, i, 0, n, s);
  std::fill(s + n, s + round_up(n), -kInf<T>);
  return n;
}

template <class T>
void sdpa_forward_reference_cpu(const AttentionArgs& a, const T* q, const T* k, const T* v, const void* mask, T* out,
                                T* lse) {
#pragma omp parallel
  {
    std::vector<T> s(round_up(a.S));
#pragma omp for
    for (int64_t row = 0; row < a.B * a.H * a.L; ++row) {
      const int64_t bh = row / a.L, i = row % a.L;
      const int64_t n = reference_scores(a, q, k, mask, bh, i, s.data());
      const T m = row_max(s.data(), round_up(n));  // pass 1: the maximum
      T* o = out + row * a.Ev;
      std::fill(o, o + a.Ev, T(0));
      if (m == -kInf<T>) {
        finish_row(o, a.Ev, m, T(0), lse + row);
        continue;
      }
      const T l = exp_shift_sum(s.data(), round_up(n), m);  // pass 2: exponentials and their sum
      for (int64_t j = 0; j < n; ++j) axpy(o, v + (bh * a.S + j) * a.Ev, a.Ev, s[j]);
      finish_row(o, a.Ev, m, l, lse + row);
    }
  }
}

template <class T>
void sdpa_backward_reference_cpu(const AttentionArgs& a, const T* q, const T* k, const T* v, const void* mask,
                                 const T* out, const T* lse, const T* grad_out, T* grad_q, T* grad_k, T* grad_v) {
  const int64_t L = a.L, S = a.S, E = a.E, Ev = a.Ev;
  const T scale = static_cast<T>(a.scale);
  std::fill(grad_k, grad_k + a.B * a.H * S * E, T(0));
  std::fill(grad_v, grad_v + a.B * a.H * S * Ev, T(0));
  // Rows of one head all add into that head's dK and dV: parallel over heads only.
#pragma omp parallel
  {
    std::vector<T> p(round_up(S));
#pragma omp for
    for (int64_t bh = 0; bh < a.B * a.H; ++bh) {
      for (int64_t i = 0; i < L; ++i) {
        const int64_t row = bh * L + i;
        const int64_t n = reference_scores(a, q, k, mask, bh, i, p.data());
        exp_shift_sum(p.data(), round_up(n), lse[row]);
        const T* doi = grad_out + row * Ev;
        const T d = dot(doi, out + row * Ev, Ev);
        T* dqi = grad_q + row * E;
        std::fill(dqi, dqi + E, T(0));
        for (int64_t j = 0; j < n; ++j) {
          const T ds = p[j] * (dot(doi, v + (bh * S + j) * Ev, Ev) - d);
          axpy(dqi, k + (bh * S + j) * E, E, scale * ds);
          axpy(grad_k + (bh * S + j) * E, q + row * E, E, scale * ds);
          axpy(grad_v + (bh * S + j) * Ev, doi, Ev, p[j]);
        }
      }
    }
  }
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_ATTENTION_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
