// LSTM on the CPU: a fused cell and a whole-sequence layer, forward and backward.
//
// Algorithm. An LSTM step is two matrix products and a pointwise pass:
//   Z = x @ W_ih^T + h @ W_hh^T + b_ih + b_hh   (B, 4H),   then (c, h) = cell(Z, c_prev)
// with the cell's equations in common/lstm_cell.h. The layer hoists the input projection of all T
// steps into one GEMM, (T*B, I) x (I, 4H), which runs near the BLAS peak, and leaves only the
// recurrent GEMM (B, H) x (H, 4H) inside the loop over time. After it, one pointwise pass per batch
// row adds that product and the biases, applies the four activations, updates c and h, and stores
// what backward needs (gate activations, and the c and h the step started from), all in one sweep.
// Backward (BPTT) walks the steps in reverse: a pointwise pass gives the step's dZ, one GEMM
// dZ @ W_hh carries dh to the step before; the input and weight gradients are then three GEMMs
// over all T*B rows at once, and the bias gradient a column sum.
//
// Variable lengths: row b is live for its first lengths[b] steps (forward direction: times
// 0..L-1; reverse: L-1 down to 0). A row that is not live at step s keeps its h and c and writes
// zeros for time s (exactly its padded times, over all steps), like PyTorch's packed sequences.
//
// Cost per step: 8*B*H*(I + H) flops forward, twice that backward, against ~5 transcendental
// functions per hidden unit in the pointwise pass. The recurrent GEMM has only B rows, so its speed
// limits the layer; W_hh (16*H^2 bytes in float32, 4 MiB at H = 512) is re-read from cache every
// step. float32 uses an exp written so that the compiler vectorises it (SSE2 in a portable build);
// float64 uses the C library's (it serves gradient checks, not speed).
// The float exp below clamps its argument with comparisons; GCC if-converts (and so vectorises)
// them only when it may assume floating-point operations do not trap. Nothing here uses FP traps.
#pragma GCC optimize("no-trapping-math")

#include "cpu/lstm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>

#include "common/lstm_cell.h"
#include "cpu/gemm.h"

namespace pyfastdl::cpu {
namespace {

// float exp: round x / ln2 to n, a Cephes polynomial on the remainder, times 2^n built from bits.
// Branch-free, so loops over it vectorise; within 2 ulp of expf over the clamped range [-87, 88].
struct FloatMath {
  static float exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;              // x - n ln2, two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
  }
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

// b_ih + b_hh (either may be null), added once per step instead of twice.
template <class T> std::unique_ptr<T[]> combined_bias(int64_t G, const T* b_ih, const T* b_hh) {
  auto b = buffer<T>(G);
  for (int64_t k = 0; k < G; ++k) b[k] = (b_ih ? b_ih[k] : T(0)) + (b_hh ? b_hh[k] : T(0));
  return b;
}

// One batch row forward: z = gates + rec + bias (each 4H, blocks i f g o) in; activations out in
// gates; c and h (H) written. c_prev must not alias c.
template <class T>
void row_forward(int64_t H, T* gates, const T* rec, const T* bias, const T* c_prev, T* c, T* h) {
  T* zi = gates;
  T* zf = gates + H;
  T* zg = gates + 2 * H;
  T* zo = gates + 3 * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    T i = zi[j] + rec[j] + bias[j];
    T f = zf[j] + rec[H + j] + bias[H + j];
    T g = zg[j] + rec[2 * H + j] + bias[2 * H + j];
    T o = zo[j] + rec[3 * H + j] + bias[3 * H + j];
    T hj;
    c[j] = lstm_unit_forward<T, Math<T>>(i, f, g, o, c_prev[j], hj);
    h[j] = hj;
    zi[j] = i;
    zf[j] = f;
    zg[j] = g;
    zo[j] = o;
  }
}

// One batch row backward: from dh = dh_a + dh_b and dc (updated in place to dc_prev), the gradient
// of the pre-activations dz (4H).
template <class T>
void row_backward(int64_t H, const T* gates, const T* c_prev, const T* dh_a, const T* dh_b, T* dc, T* dz) {
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    T di, df, dg, dout;
    dc[j] = lstm_unit_backward<T, Math<T>>(dh_a[j] + dh_b[j], dc[j], gates[j], gates[H + j], gates[2 * H + j],
                                           gates[3 * H + j], c_prev[j], di, df, dg, dout);
    dz[j] = di;
    dz[H + j] = df;
    dz[2 * H + j] = dg;
    dz[3 * H + j] = dout;
  }
}

// out[k] = sum over rows r of m[r, k]; threads split the columns.
template <class T> void column_sums(int64_t rows, int64_t cols, const T* m, T* out) {
  constexpr int64_t kBlock = 256;
#pragma omp parallel for schedule(static)
  for (int64_t k0 = 0; k0 < cols; k0 += kBlock) {
    const int64_t k1 = std::min(cols, k0 + kBlock);
    for (int64_t k = k0; k < k1; ++k) out[k] = T(0);
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = m + r * cols;
#pragma omp simd
      for (int64_t k = k0; k < k1; ++k) out[k] += row[k];
    }
  }
}

// Gradients that follow from dz (rows x 4H) by matrix products: dx = dz @ W_ih, dW_ih = dz^T @ x,
// dW_hh = dz^T @ h_prev, db = column sums of dz.
template <class T>
void weight_grads(int64_t rows, int64_t I, int64_t H, const T* dz, const T* x, const T* h_prev, const T* w_ih,
                  T* grad_x, T* grad_w_ih, T* grad_w_hh, T* grad_bias) {
  const int64_t G = 4 * H;
  gemm(false, false, rows, I, G, T(1), dz, G, w_ih, I, T(0), grad_x, I);
  gemm(true, false, G, I, rows, T(1), dz, G, x, I, T(0), grad_w_ih, I);
  gemm(true, false, G, H, rows, T(1), dz, G, h_prev, H, T(0), grad_w_hh, H);
  column_sums(rows, G, dz, grad_bias);
}

}  // namespace

template <class T>
void lstm_cell_forward(const LstmCellArgs& a, const T* x, const T* hx, const T* cx, const T* w_ih, const T* w_hh,
                       const T* b_ih, const T* b_hh, T* hy, T* cy, T* gates) {
  const int64_t B = a.batch, I = a.input_size, H = a.hidden_size, G = 4 * H;
  auto rec = buffer<T>(B * G);
  auto bias = combined_bias(G, b_ih, b_hh);
  gemm(false, true, B, G, I, T(1), x, I, w_ih, I, T(0), gates, G);
  gemm(false, true, B, G, H, T(1), hx, H, w_hh, H, T(0), rec.get(), G);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; ++b)
    row_forward(H, gates + b * G, rec.get() + b * G, bias.get(), cx + b * H, cy + b * H, hy + b * H);
}

template <class T>
void lstm_cell_backward(const LstmCellArgs& a, const T* grad_hy, const T* grad_cy, const T* gates, const T* x,
                        const T* hx, const T* cx, const T* w_ih, const T* w_hh, T* grad_x, T* grad_hx, T* grad_cx,
                        T* grad_w_ih, T* grad_w_hh, T* grad_bias) {
  const int64_t B = a.batch, I = a.input_size, H = a.hidden_size, G = 4 * H;
  auto dz = buffer<T>(B * G);
  auto zeros = std::make_unique<T[]>(H);  // value-initialised: no second dh term for a single step
  std::copy(grad_cy, grad_cy + B * H, grad_cx);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; ++b)
    row_backward(H, gates + b * G, cx + b * H, grad_hy + b * H, zeros.get(), grad_cx + b * H, dz.get() + b * G);
  gemm(false, false, B, H, G, T(1), dz.get(), G, w_hh, H, T(0), grad_hx, H);
  weight_grads(B, I, H, dz.get(), x, hx, w_ih, grad_x, grad_w_ih, grad_w_hh, grad_bias);
}

template <class T>
void lstm_layer_forward(const LstmLayerArgs& a, const T* x, const T* h0, const T* c0, const T* w_ih,
                        const T* w_hh, const T* b_ih, const T* b_hh, T* out, T* hn, T* cn, T* gates, T* c_prev,
                        T* h_prev) {
  const int64_t T_ = a.seq_len, B = a.batch, I = a.input_size, H = a.hidden_size, G = 4 * H;
  auto rec = buffer<T>(B * G);
  auto bias = combined_bias(G, b_ih, b_hh);
  // The input projection of every step in one GEMM; the gates buffer holds it until each step
  // replaces its rows with their activations. hn and cn carry the state from step to step.
  gemm(false, true, T_ * B, G, I, T(1), x, I, w_ih, I, T(0), gates, G);
  std::copy(h0, h0 + B * H, hn);
  std::copy(c0, c0 + B * H, cn);
  for (int64_t s = 0; s < T_; ++s) {
    gemm(false, true, B, G, H, T(1), hn, H, w_hh, H, T(0), rec.get(), G);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      if (s >= a.length(b)) {  // padded: state kept, zeros for time s everywhere
        const int64_t row = s * B + b;
        std::fill(out + row * H, out + (row + 1) * H, T(0));
        std::fill(c_prev + row * H, c_prev + (row + 1) * H, T(0));
        std::fill(h_prev + row * H, h_prev + (row + 1) * H, T(0));
        std::fill(gates + row * G, gates + (row + 1) * G, T(0));
        continue;
      }
      const int64_t row = a.time_at(b, s) * B + b;
      std::copy(cn + b * H, cn + (b + 1) * H, c_prev + row * H);
      std::copy(hn + b * H, hn + (b + 1) * H, h_prev + row * H);
      row_forward(H, gates + row * G, rec.get() + b * G, bias.get(), c_prev + row * H, cn + b * H, hn + b * H);
      std::copy(hn + b * H, hn + (b + 1) * H, out + row * H);
    }
  }
}

template <class T>
void lstm_layer_backward(const LstmLayerArgs& a, const T* grad_out, const T* grad_hn, const T* grad_cn, const T* x,
                         const T* w_ih, const T* w_hh, const T* gates, const T* c_prev, const T* h_prev, T* grad_x,
                         T* grad_h0, T* grad_c0, T* grad_w_ih, T* grad_w_hh, T* grad_bias) {
  const int64_t T_ = a.seq_len, B = a.batch, I = a.input_size, H = a.hidden_size, G = 4 * H;
  auto dz = buffer<T>(T_ * B * G);  // dZ of every step, in the (T, B, 4H) layout of the gates
  auto dz_step = buffer<T>(B * G);  // this step's rows, the left operand of the recurrent GEMM
  // grad_c0 carries dc from step to step; grad_h0 receives each step's dz_step @ W_hh, which is the
  // dh of the step before for every row that was live there.
  std::copy(grad_cn, grad_cn + B * H, grad_c0);
  for (int64_t s = T_ - 1; s >= 0; --s) {
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      T* dzs = dz_step.get() + b * G;
      const int64_t L = a.length(b);
      if (s >= L) {
        std::fill(dzs, dzs + G, T(0));
        std::fill(dz.get() + (s * B + b) * G, dz.get() + (s * B + b + 1) * G, T(0));
        continue;
      }
      const int64_t row = a.time_at(b, s) * B + b;
      const T* dh = s + 1 < L ? grad_h0 + b * H : grad_hn + b * H;
      row_backward(H, gates + row * G, c_prev + row * H, dh, grad_out + row * H, grad_c0 + b * H,
                   dz.get() + row * G);
      std::copy(dz.get() + row * G, dz.get() + (row + 1) * G, dzs);
    }
    gemm(false, false, B, H, G, T(1), dz_step.get(), G, w_hh, H, T(0), grad_h0, H);
  }
  weight_grads(T_ * B, I, H, dz.get(), x, h_prev, w_ih, grad_x, grad_w_ih, grad_w_hh, grad_bias);
}

#define PYFASTDL_INSTANTIATE(T)                                                                                   \
  template void lstm_cell_forward<T>(const LstmCellArgs&, const T*, const T*, const T*, const T*, const T*,       \
                                     const T*, const T*, T*, T*, T*);                                             \
  template void lstm_cell_backward<T>(const LstmCellArgs&, const T*, const T*, const T*, const T*, const T*,      \
                                      const T*, const T*, const T*, T*, T*, T*, T*, T*, T*);                      \
  template void lstm_layer_forward<T>(const LstmLayerArgs&, const T*, const T*, const T*, const T*, const T*,     \
                                      const T*, const T*, T*, T*, T*, T*, T*, T*);                                \
  template void lstm_layer_backward<T>(const LstmLayerArgs&, const T*, const T*, const T*, const T*, const T*,    \
                                       const T*, const T*, const T*, const T*, T*, T*, T*, T*, T*, T*);
PYFASTDL_INSTANTIATE(float)
PYFASTDL_INSTANTIATE(double)
#undef PYFASTDL_INSTANTIATE

}  // namespace pyfastdl::cpu
