// LSTM on the CPU: a fused cell and a whole-sequence layer, forward and backward.
//
// Algorithm. An LSTM step is two matrix products and a pointwise pass:
//   Z = x @ W_ih^T + h @ W_hh^T + b_ih + b_hh   (B, 4H),   then (c, h) = cell(Z, c_prev)
// with the cell's equations in common/lstm_cell.h. The layer's forward makes each step one product,
// [x_t, h_t] @ [W_ih | W_hh]^T, with the weights packed once for all T steps; one pointwise pass
// per batch row then adds the biases, applies the four activations, updates c and h, and stores
// what backward needs (gate activations, and the c and h the step started from; nothing in
// inference), all in one sweep. Backward (BPTT) walks the steps in reverse: a pointwise pass gives
// the step's dZ, one product dZ @ W_hh carries dh to the step before; the input and weight
// gradients are then three GEMMs over all T*B rows at once, and the bias gradient a column sum.
//
// Variable lengths: row b is live for its first lengths[b] steps (forward direction: times
// 0..L-1; reverse: L-1 down to 0). A row that is not live at step s keeps its h and c and writes
// zeros for time s (exactly its padded times, over all steps), like PyTorch's packed sequences.
// As there, the padding costs no arithmetic: the sequence kernels rank the rows by decreasing
// length (LiveRows), so the rows live at step s are the first live[s] ranks, and each step's
// product and pointwise pass cover only those. The backward keeps dZ of the live rows only, packed
// step after step, and the products over all rows (weight gradients, dx) run on those rows with
// x and h_prev gathered into the same order. With a quarter of the positions padded (a translation
// batch), that is a quarter less work.
//
// Threads. Each call is one OpenMP region in which every thread owns a slice of the hidden units
// and does the recurrent work of their gate columns: its slice of each step's product (so its
// weights stay in its own core's cache) and the pointwise pass on its units; the big products of
// the backward are split among the threads by columns. Threads meet at one barrier per step. The
// BLAS calls run single-threaded inside the region: handing them to OpenBLAS's own thread pool
// instead makes two thread pools spin against each other, which on a small (or shared) machine
// costs more than the GEMM itself.
//
// The per-step products. A step's product has only B rows against the whole of the weights, and a
// BLAS call would repack the weights on every step, which for B = 16 costs about as much as the
// multiply. So they use cpu/batch_gemm.h, written for this shape: each thread packs its share of
// the weights once per sequence (its gate rows of [W_ih | W_hh] for the forward, its columns of W_hh
// for the backward), and every step multiplies them by the state, kept transposed (features,
// batch). Doing the input projection inside the steps, rather than as one big GEMM ahead, saves
// writing and re-reading a (T, B, 4H) array. The single-step cell's forward reads the weights where
// they lie. The big products of the backward (the weight gradients, dx) and the cell's backward,
// which reuses no weight, go to OpenBLAS.
//
// Cost per step: 8*B*H*(I + H) flops forward, twice that backward, against ~5 transcendental
// functions per hidden unit in the pointwise pass. This file is compiled once per instruction set
// (baseline, AVX2, AVX-512; cpu/isa.h), so the products and the pointwise pass use the widest
// vectors the CPU has. float32 uses an exp written so that the compiler vectorises it; float64
// uses the C library's (it serves gradient checks, not speed).
//
// The float exp below clamps its argument with comparisons; GCC if-converts (and so vectorises)
// them only when it may assume floating-point operations do not trap. Nothing here uses FP traps.
#pragma GCC optimize("no-trapping-math")

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <vector>

#include <omp.h>

#include "common/lstm_cell.h"
#include "cpu/batch_gemm.h"
#include "cpu/fast_math.h"
#include "cpu/gemm.h"
#include "cpu/parallel.h"
#include "cpu/lstm.h"

namespace pyfastdl::cpu::PYFASTDL_ISA {
namespace {

// float32 math on the vectorisable exp of fast_math.h.
struct FloatMath {
  static float exp(float x) { return exp_poly(x); }
  static float sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }
  static float tanh(float x) { return 1.0f - 2.0f / (exp(2.0f * x) + 1.0f); }
};

struct DoubleMath {
  static double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
  static double tanh(double x) { return std::tanh(x); }
};

template <class T> struct MathOf;
template <> struct MathOf<float> { using type = FloatMath; };
template <> struct MathOf<double> { using type = DoubleMath; };
template <class T> using Math = typename MathOf<T>::type;

template <class T> std::unique_ptr<T[]> buffer(int64_t n) { return std::unique_ptr<T[]>(new T[n]); }

// n values kept from call to call by the calling thread (grown to the largest n asked for, never
// shrunk). For the BPTT's dZ of a whole sequence, tens of MB: freshly allocated each call, its pages
// came back from the kernel one page fault (and zeroing) at a time, about 4% of a char-LM training
// step on a 2-core EPYC.
template <class T> T* kept_buffer(int64_t n) {
  thread_local std::vector<T> kept;
  if (int64_t(kept.size()) < n) std::vector<T>(n).swap(kept);
  return kept.data();
}

// b_ih + b_hh (either may be null), added once per step instead of twice.
template <class T> std::unique_ptr<T[]> combined_bias(int64_t G, const T* b_ih, const T* b_hh) {
  auto b = buffer<T>(G);
  for (int64_t k = 0; k < G; ++k) b[k] = (b_ih ? b_ih[k] : T(0)) + (b_hh ? b_hh[k] : T(0));
  return b;
}

// One batch row, n hidden units: z = rec (+ xw) + bias, four blocks i f g o (rs apart in rec, gs
// apart in xw and bias) in; the activations out to act (blocks as apart; act may be xw); c and h
// (n) written. c_prev must not alias c.
template <class T, bool AddX>
void row_forward(int64_t n, int64_t gs, int64_t rs, int64_t as, const T* xw, const T* rec, const T* bias,
                 const T* c_prev, T* c, T* h, T* act) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    T i = rec[j] + bias[j], f = rec[rs + j] + bias[gs + j];
    T g = rec[2 * rs + j] + bias[2 * gs + j], o = rec[3 * rs + j] + bias[3 * gs + j];
    if (AddX) {
      i += xw[j];
      f += xw[gs + j];
      g += xw[2 * gs + j];
      o += xw[3 * gs + j];
    }
    T hj;
    c[j] = lstm_unit_forward<T, Math<T>>(i, f, g, o, c_prev[j], hj);
    h[j] = hj;
    act[j] = i;
    act[as + j] = f;
    act[2 * as + j] = g;
    act[3 * as + j] = o;
  }
}

// One batch row, n hidden units, backward: from dh = dh_a + dh_b and dc (updated in place to
// dc_prev), the gradient of the pre-activations dz (blocks gs apart, like gates).
template <class T>
void row_backward(int64_t n, int64_t gs, const T* gates, const T* c_prev, const T* dh_a, const T* dh_b, T* dc,
                  T* dz) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    T di, df, dg, dout;
    dc[j] = lstm_unit_backward<T, Math<T>>(dh_a[j] + dh_b[j], dc[j], gates[j], gates[gs + j], gates[2 * gs + j],
                                           gates[3 * gs + j], c_prev[j], di, df, dg, dout);
    dz[j] = di;
    dz[gs + j] = df;
    dz[2 * gs + j] = dg;
    dz[3 * gs + j] = dout;
  }
}

// Copies the four gate blocks of n units (gs apart), or zeroes them when src is null.
template <class T> void copy_blocks(int64_t n, int64_t gs, const T* src, T* dst) {
  for (int g = 0; g < 4; ++g) {
    if (src)
      std::copy(src + g * gs, src + g * gs + n, dst + g * gs);
    else
      std::fill(dst + g * gs, dst + g * gs + n, T(0));
  }
}


// This thread's share [begin, begin + size) of n items.
struct Slice {
  int64_t begin, size;
};
Slice thread_slice(int64_t n) {
  const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads(), chunk = (n + nt - 1) / nt;
  const int64_t begin = std::min(n, t * chunk);
  return {begin, std::min(n, begin + chunk) - begin};
}

// Threads for a call: one per slice of hidden units, but a single thread when a step's recurrent
// product is too small (under ~64K multiply-adds) to pay for a barrier per step.
int lstm_threads(int64_t B, int64_t H) {
  if (B * 4 * H * H < (int64_t(1) << 16)) return 1;
  return int(std::min<int64_t>(omp_get_max_threads(), H));
}

// The weight gradients: products over all the rows of a sequence, split by contiguous gate rows
// (one BLAS call per thread, each packing its operands once).

// This thread's gate rows g of dW_ih = dz^T @ x, dW_hh = dz^T @ h_prev and db = column sums of dz,
// for dz (rows, 4H), all of whose columns g must be complete.
template <class T>
void weight_grads(int64_t rows, int64_t I, int64_t H, const T* dz, const T* x, const T* h_prev, T* grad_w_ih,
                  T* grad_w_hh, T* grad_bias) {
  const int64_t G = 4 * H;
  const Slice g = thread_slice(G);
  if (g.size == 0) return;
  gemm(true, false, g.size, I, rows, T(1), dz + g.begin, G, x, I, T(0), grad_w_ih + g.begin * I, I);
  gemm(true, false, g.size, H, rows, T(1), dz + g.begin, G, h_prev, H, T(0), grad_w_hh + g.begin * H, H);
  T* db = grad_bias + g.begin;
  std::fill(db, db + g.size, T(0));
  for (int64_t r = 0; r < rows; ++r) {
    const T* src = dz + r * G + g.begin;
#pragma omp simd
    for (int64_t j = 0; j < g.size; ++j) db[j] += src[j];
  }
}

// The batch rows ranked by decreasing length (a stable order): the rows live at step s are the
// ranks p < live[s], row[p] is rank p's batch row, and the live rows of all the steps, packed step
// after step, are first[s] + p (first has T + 1 entries: first[T] is their number). Without lengths
// the rank is the row and every row is live at every step.
struct LiveRows {
  std::vector<int64_t> row, live, first;

  explicit LiveRows(const LstmLayerArgs& a) : row(a.batch), live(a.seq_len, 0), first(a.seq_len + 1, 0) {
    std::iota(row.begin(), row.end(), int64_t(0));
    std::stable_sort(row.begin(), row.end(), [&](int64_t x, int64_t y) { return a.length(x) > a.length(y); });
    for (int64_t b = 0; b < a.batch; ++b)
      for (int64_t s = 0; s < a.length(b); ++s) ++live[s];
    std::partial_sum(live.begin(), live.end(), first.begin() + 1);
  }
  int64_t count() const { return first.back(); }
};

}  // namespace

// Every kernel below is one OpenMP region in which thread t owns a slice of the hidden units
// [j0, j0 + J) and computes the gate columns of those units (their rows of W_ih and W_hh stay in
// its core's cache), runs the pointwise pass on them, and meets the others at a barrier only where
// it needs what they computed. States that feed a product are kept transposed, (features, Bp) with
// the batch padded to whole vectors (padded_columns), as the right operand of weights_times_state;
// in the sequence kernels their columns are the ranks of LiveRows.

template <class T>
void lstm_cell_forward(const LstmCellArgs& a, const T* x, const T* hx, const T* cx, const T* w_ih, const T* w_hh,
                       const T* b_ih, const T* b_hh, T* hy, T* cy, T* gates) {
  const int64_t B = a.batch, I = a.input_size, H = a.hidden_size, G = 4 * H, Bp = padded_columns<T>(B);
  auto bias = combined_bias(G, b_ih, b_hh);
  auto xt = buffer<T>(I * Bp), ht = buffer<T>(H * Bp);
  transpose_into(B, I, x, I, xt.get(), Bp);
  transpose_into(B, H, hx, H, ht.get(), Bp);
  FirstError error;  // a failed allocation of rec skips the thread's slice and is raised below
#pragma omp parallel num_threads(lstm_threads(B, H))
  error.run([&] {
    const Slice u = thread_slice(H);
    const int64_t j0 = u.begin, J = u.size;
    auto rec = buffer<T>(B * 4 * J);
    for (int g = 0; g < 4; ++g) {
      weights_times_state<T>(J, B, I, w_ih + (g * H + j0) * I, I, xt.get(), Bp, gates + g * H + j0, G);
      weights_times_state<T>(J, B, H, w_hh + (g * H + j0) * H, H, ht.get(), Bp, rec.get() + g * J, 4 * J);
    }
    for (int64_t b = 0; b < B; ++b)
      row_forward<T, true>(J, H, J, H, gates + b * G + j0, rec.get() + b * 4 * J, bias.get() + j0, cx + b * H + j0,
                           cy + b * H + j0, hy + b * H + j0, gates + b * G + j0);
  });
  error.rethrow();
}

// dz for each thread's units, then (after a barrier: the products need all of dz) the gradients
// as BLAS products: a single step reuses no weight, so packing them once buys nothing here.
template <class T>
void lstm_cell_backward(const LstmCellArgs& a, const T* grad_hy, const T* grad_cy, const T* gates, const T* x,
                        const T* hx, const T* cx, const T* w_ih, const T* w_hh, T* grad_x, T* grad_hx, T* grad_cx,
                        T* grad_w_ih, T* grad_w_hh, T* grad_bias) {
  const int64_t B = a.batch, I = a.input_size, H = a.hidden_size, G = 4 * H;
  auto dz = buffer<T>(B * G);
  auto zeros = std::make_unique<T[]>(H);  // value-initialised: no second dh term for a single step
  std::copy(grad_cy, grad_cy + B * H, grad_cx);
  pin_blas_to_one_thread();  // each OpenMP thread runs its own GEMMs
#pragma omp parallel num_threads(lstm_threads(B, H))
  {
    const Slice u = thread_slice(H);
    const int64_t j0 = u.begin, J = u.size;
    for (int64_t b = 0; b < B; ++b)
      row_backward(J, H, gates + b * G + j0, cx + b * H + j0, grad_hy + b * H + j0, zeros.get(),
                   grad_cx + b * H + j0, dz.get() + b * G + j0);
#pragma omp barrier
    weight_grads(B, I, H, dz.get(), x, hx, grad_w_ih, grad_w_hh, grad_bias);
    // dh of this thread's units and dx of its share of the inputs
    const Slice xs = thread_slice(I);
    if (J > 0) gemm(false, false, B, J, G, T(1), dz.get(), G, w_hh + j0, H, T(0), grad_hx + j0, H);
    if (xs.size > 0)
      gemm(false, false, B, xs.size, G, T(1), dz.get(), G, w_ih + xs.begin, I, T(0), grad_x + xs.begin, I);
  }
}

// Forward over the sequence. Each step is one product per thread, its gate rows of
// [W_ih | W_hh] (packed once) times the step's [x_t; h_t] of the live rows (kept transposed,
// (I + H, Bp), a column per rank), then the pointwise pass on its units: no input projection
// computed ahead and stored for all T steps (a (T, B, 4H) round trip through memory). The
// transposed state alternates between two buffers; during step s, the threads write step s + 1's:
// h for their units, x for their share of the inputs. hn and cn carry h and c from step to step.
template <class T>
void lstm_layer_forward(const LstmLayerArgs& a, const T* x, const T* h0, const T* c0, const T* w_ih,
                        const T* w_hh, const T* b_ih, const T* b_hh, T* out, T* hn, T* cn, T* gates, T* c_prev,
                        T* h_prev) {
  const int64_t T_ = a.seq_len, B = a.batch, I = a.input_size, H = a.hidden_size, G = 4 * H, K = I + H;
  const int64_t Bp = padded_columns<T>(B);
  const bool save = gates != nullptr;
  const LiveRows rank(a);
  auto bias = combined_bias(G, b_ih, b_hh);
  auto st = std::make_unique<T[]>(2 * K * Bp);  // value-initialised: zero padding columns
  // x at step s of the live rows, transposed into rows [k0, k0 + n) of a state buffer.
  auto put_x = [&](int64_t s, int64_t k0, int64_t n, T* state) {
    auto x_row = [&](int64_t p) { return x + (a.time_at(rank.row[p], s) * B + rank.row[p]) * I + k0; };
    transpose_rows(rank.live[s], n, x_row, state + k0 * Bp, Bp);
  };
  put_x(0, 0, I, st.get());
  transpose_rows(B, H, [&](int64_t p) { return h0 + rank.row[p] * H; }, st.get() + I * Bp, Bp);
  std::copy(h0, h0 + B * H, hn);
  std::copy(c0, c0 + B * H, cn);
  TeamAllocation team;
#pragma omp parallel num_threads(lstm_threads(B, H))
  {
    const Slice u = thread_slice(H), xs = thread_slice(I);
    const int64_t j0 = u.begin, J = u.size;
    std::unique_ptr<Panels<T>> w;  // this thread's gate rows (four blocks of J) of [W_ih | W_hh]
    std::unique_ptr<T[]> rec, act, c_step, h_rank;
    if (team.allocate([&] {
          w = std::make_unique<Panels<T>>(4 * J, K, B);
          rec = buffer<T>(B * 4 * J);  // this thread's four gate blocks of the product, J columns each
          h_rank = buffer<T>(B * J);   // this thread's units of the new h, by rank
          act = buffer<T>(4 * J);      // the activations of one row when they are not saved
          c_step = buffer<T>(J);       // c_prev of one row when it is not saved
        })) {
      // The weights, packed once for all the steps.
      auto gate_row = [&](int64_t m) { return (m / J) * H + j0 + m % J; };
      w->fill_rows(0, I, [&](int64_t m) { return w_ih + gate_row(m) * I; });
      w->fill_rows(I, H, [&](int64_t m) { return w_hh + gate_row(m) * H; });
      for (int64_t s = 0; s < T_; ++s) {
        const int64_t live = rank.live[s];
        T* st_next = st.get() + ((s + 1) & 1) * K * Bp;
        panels_times_state(*w, live, st.get() + (s & 1) * K * Bp, Bp, rec.get(), 4 * J);
        if (s + 1 < T_) put_x(s + 1, xs.begin, xs.size, st_next);
        for (int64_t p = 0; p < live; ++p) {
          const int64_t b = rank.row[p], su = b * H + j0;  // the slice's first unit of row b in (B, H)
          const int64_t row = a.time_at(b, s) * B + b;
          T* cp = save ? c_prev + row * H + j0 : c_step.get();  // row_forward's c may not alias c_prev
          std::copy(cn + su, cn + su + J, cp);
          if (save) std::copy(hn + su, hn + su + J, h_prev + row * H + j0);
          row_forward<T, false>(J, H, J, save ? H : J, nullptr, rec.get() + p * 4 * J, bias.get() + j0, cp, cn + su,
                                hn + su, save ? gates + row * G + j0 : act.get());
          std::copy(hn + su, hn + su + J, out + row * H + j0);
          std::copy(hn + su, hn + su + J, h_rank.get() + p * J);
        }
        transpose_rows(live, J, [&](int64_t p) { return h_rank.get() + p * J; }, st_next + (I + j0) * Bp, Bp);
        for (int64_t p = live; p < B; ++p) {  // padded at s: state kept, zeros for time s everywhere
          const int64_t row = s * B + rank.row[p];
          std::fill(out + row * H + j0, out + row * H + j0 + J, T(0));
          if (save) {
            std::fill(c_prev + row * H + j0, c_prev + row * H + j0 + J, T(0));
            std::fill(h_prev + row * H + j0, h_prev + row * H + j0 + J, T(0));
            copy_blocks<T>(J, H, nullptr, gates + row * G + j0);
          }
        }
#pragma omp barrier
      }
    }
  }
  team.rethrow();
}

// BPTT: per step, thread t computes dz for its units of the live rows; after the step's barrier,
// the columns [j0, j0 + J) of dh = dz_step @ W_hh, which are exactly the dh its units need at the
// step before (by rank, in dh). dz_step (kept transposed, a column per rank, as the right operand
// of panels_times_state) alternates between two buffers, as the state does in the forward. Then the
// weight gradients and dx, as products over all the live rows. Where some positions are padded,
// dz holds the live rows packed (LiveRows::first) and x, h_prev and dx go through copies in that
// order; otherwise dz has the (T, B, 4H) layout of the gates and the products read x and h_prev
// where they lie.
template <class T>
void lstm_layer_backward(const LstmLayerArgs& a, const T* grad_out, const T* grad_hn, const T* grad_cn, const T* x,
                         const T* w_ih, const T* w_hh, const T* gates, const T* c_prev, const T* h_prev, T* grad_x,
                         T* grad_h0, T* grad_c0, T* grad_w_ih, T* grad_w_hh, T* grad_bias) {
  const int64_t T_ = a.seq_len, B = a.batch, I = a.input_size, H = a.hidden_size, G = 4 * H;
  const int64_t Bp = padded_columns<T>(B);
  const LiveRows rank(a);
  const int64_t rows = rank.count();
  const bool packed = rows < T_ * B;
  // dz's row for rank p at step s
  auto dz_row = [&](int64_t s, int64_t p) {
    const int64_t b = rank.row[p];
    return packed ? rank.first[s] + p : a.time_at(b, s) * B + b;
  };
  // dZ of every live row, then x, h_prev and dx of the live rows packed as dz (only when packed)
  T* const dz = kept_buffer<T>(rows * (G + (packed ? 2 * I + H : 0)));
  T* const x_live = dz + rows * G;
  T* const h_live = x_live + rows * I;
  T* const dx_live = h_live + rows * H;
  auto dzt = std::make_unique<T[]>(2 * G * Bp);  // one step's dZ, transposed; zero padding columns
  auto dh = buffer<T>(B * H);                    // dz_step @ W_hh by rank: the dh of the step before
  // grad_c0 carries dc from step to step.
  std::copy(grad_cn, grad_cn + B * H, grad_c0);
  pin_blas_to_one_thread();  // each OpenMP thread runs its own GEMMs
  TeamAllocation team;
#pragma omp parallel num_threads(lstm_threads(B, H))
  {
    const Slice u = thread_slice(H), ranks = thread_slice(B);
    const int64_t j0 = u.begin, J = u.size;
    std::unique_ptr<Panels<T>> w;  // this thread's columns of W_hh, as rows of W_hh^T
    if (team.allocate([&] { w = std::make_unique<Panels<T>>(J, G, B); })) {
      w->fill_columns(w_hh + j0, H);  // packed once for all the steps
      if (packed)  // this thread's ranks of x and h_prev, in dz's order (read after the steps' barriers)
        for (int64_t p = ranks.begin; p < ranks.begin + ranks.size; ++p)
          for (int64_t s = 0, b = rank.row[p]; s < a.length(b); ++s) {
            const int64_t row = a.time_at(b, s) * B + b, r = rank.first[s] + p;
            std::copy(x + row * I, x + row * I + I, x_live + r * I);
            std::copy(h_prev + row * H, h_prev + row * H + H, h_live + r * H);
          }
      for (int64_t s = T_ - 1; s >= 0; --s) {
        T* dzs = dzt.get() + (s & 1) * G * Bp;
        for (int64_t p = 0; p < rank.live[s]; ++p) {
          const int64_t b = rank.row[p], row = a.time_at(b, s) * B + b;
          const T* dh_p = (s + 1 < a.length(b) ? dh.get() + p * H : grad_hn + b * H) + j0;
          T* dz_p = dz + dz_row(s, p) * G + j0;
          row_backward(J, H, gates + row * G + j0, c_prev + row * H + j0, dh_p, grad_out + row * H + j0,
                       grad_c0 + b * H + j0, dz_p);
        }
        for (int g = 0; g < 4; ++g) {  // this thread's dz columns of the step, transposed
          auto dz_gate = [&](int64_t p) { return dz + dz_row(s, p) * G + g * H + j0; };
          transpose_rows(rank.live[s], J, dz_gate, dzs + (g * H + j0) * Bp, Bp);
        }
#pragma omp barrier
        panels_times_state(*w, rank.live[s], dzs, Bp, dh.get() + j0, H);
      }
      for (int64_t p = 0; p < B; ++p)  // every row is live at step 0: dh is now the gradient of h0
        std::copy(dh.get() + p * H + j0, dh.get() + p * H + j0 + J, grad_h0 + rank.row[p] * H + j0);
      weight_grads(rows, I, H, dz, packed ? x_live : x, packed ? h_live : h_prev, grad_w_ih,
                   grad_w_hh, grad_bias);
      const Slice rs = thread_slice(rows);
      T* dx = packed ? dx_live : grad_x;
      if (rs.size > 0)
        gemm(false, false, rs.size, I, G, T(1), dz + rs.begin * G, G, w_ih, I, T(0), dx + rs.begin * I, I);
      if (packed) {  // dx back to its (T, B, I) places, zeros at the padded ones
#pragma omp barrier
        for (int64_t p = ranks.begin; p < ranks.begin + ranks.size; ++p) {
          const int64_t b = rank.row[p], L = a.length(b);
          for (int64_t s = 0; s < L; ++s) {
            const T* src = dx + (rank.first[s] + p) * I;
            std::copy(src, src + I, grad_x + (a.time_at(b, s) * B + b) * I);
          }
          for (int64_t t = L; t < T_; ++t) std::fill(grad_x + (t * B + b) * I, grad_x + (t * B + b) * I + I, T(0));
        }
      }
    }
  }
  team.rethrow();
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_LSTM_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
