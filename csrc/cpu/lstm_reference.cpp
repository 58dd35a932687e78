// The LSTM family's reference variant on the CPU: the textbook recurrence, one batch row and one
// step at a time, in plain loops. It is what csrc/cpu/lstm.cpp computes, without the packed weights,
// the threads or the vector math, kept for study and as a check of the fast variant.
//
//   z = W_ih x_t + W_hh h + b_ih + b_hh  (4H),   (c, h) = cell(z, c)   (common/lstm_cell.h)
// Backward walks each row's live steps in reverse: the cell's backward gives dz and the dc of the
// step before, dh of the step before is W_hh^T dz, dx_t = W_ih^T dz, and the weight and bias
// gradients add dz x_t^T, dz h^T and dz. Cost: 8 B T H (I + H) flops forward, twice that backward,
// all in one thread with no blocking: an order of magnitude slower than the fast variant.
// A single step (the cell) is a layer of one step.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/lstm_cell.h"
#include "cpu/lstm.h"

namespace pyfastdl::cpu::PYFASTDL_ISA {
namespace {

struct ExactMath {
  template <class T> static T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }
  template <class T> static T tanh(T x) { return std::tanh(x); }
};

// y (M) = W (M, K) x (K) + y, or y (K) = W^T x (M) + y when Transposed.
template <bool Transposed, class T> void matvec_add(int64_t M, int64_t K, const T* W, const T* x, T* y) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      if (Transposed)
        y[k] += W[m * K + k] * x[m];
      else
        y[m] += W[m * K + k] * x[k];
    }
}

// G (M, K) += u (M) v (K)^T
template <class T> void outer_add(int64_t M, int64_t K, const T* u, const T* v, T* G) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) G[m * K + k] += u[m] * v[k];
}

LstmLayerArgs one_step(const LstmCellArgs& a) {
  LstmLayerArgs layer;
  layer.seq_len = 1;
  layer.batch = a.batch;
  layer.input_size = a.input_size;
  layer.hidden_size = a.hidden_size;
  return layer;
}

}  // namespace

template <class T>
void lstm_layer_forward_reference(const LstmLayerArgs& a, const T* x, const T* h0, const T* c0, const T* w_ih,
                                  const T* w_hh, const T* b_ih, const T* b_hh, T* out, T* hn, T* cn, T* gates,
                                  T* c_prev, T* h_prev) {
  const int64_t B = a.batch, I = a.input_size, H = a.hidden_size, G = 4 * H;
  std::fill(out, out + a.seq_len * B * H, T(0));  // padded times stay zero, saved values too
  if (gates) std::fill(gates, gates + a.seq_len * B * G, T(0));
  if (c_prev) std::fill(c_prev, c_prev + a.seq_len * B * H, T(0));
  if (h_prev) std::fill(h_prev, h_prev + a.seq_len * B * H, T(0));
  std::vector<T> z(G), h(H), c(H);
  for (int64_t b = 0; b < B; ++b) {
    std::copy(h0 + b * H, h0 + (b + 1) * H, h.begin());
    std::copy(c0 + b * H, c0 + (b + 1) * H, c.begin());
    for (int64_t s = 0; s < a.length(b); ++s) {
      const int64_t row = a.time_at(b, s) * B + b;
      if (c_prev) std::copy(c.begin(), c.end(), c_prev + row * H);
      if (h_prev) std::copy(h.begin(), h.end(), h_prev + row * H);
      for (int64_t g = 0; g < G; ++g) z[g] = (b_ih ? b_ih[g] : T(0)) + (b_hh ? b_hh[g] : T(0));
      matvec_add<false>(G, I, w_ih, x + row * I, z.data());
      matvec_add<false>(G, H, w_hh, h.data(), z.data());
      for (int64_t j = 0; j < H; ++j)
        c[j] = lstm_unit_forward<T, ExactMath>(z[j], z[H + j], z[2 * H + j], z[3 * H + j], c[j], h[j]);
      if (gates) std::copy(z.begin(), z.end(), gates + row * G);
      std::copy(h.begin(), h.end(), out + row * H);
    }
    std::copy(h.begin(), h.end(), hn + b * H);
    std::copy(c.begin(), c.end(), cn + b * H);
  }
}

template <class T>
void lstm_layer_backward_reference(const LstmLayerArgs& a, const T* grad_out, const T* grad_hn, const T* grad_cn,
                                   const T* x, const T* w_ih, const T* w_hh, const T* gates, const T* c_prev,
                                   const T* h_prev, T* grad_x, T* grad_h0, T* grad_c0, T* grad_w_ih, T* grad_w_hh,
                                   T* grad_bias) {
  const int64_t B = a.batch, I = a.input_size, H = a.hidden_size, G = 4 * H;
  std::fill(grad_x, grad_x + a.seq_len * B * I, T(0));
  std::fill(grad_w_ih, grad_w_ih + G * I, T(0));
  std::fill(grad_w_hh, grad_w_hh + G * H, T(0));
  std::fill(grad_bias, grad_bias + G, T(0));
  std::vector<T> dz(G), dh(H), dc(H);
  for (int64_t b = 0; b < B; ++b) {
    std::copy(grad_hn + b * H, grad_hn + (b + 1) * H, dh.begin());
    std::copy(grad_cn + b * H, grad_cn + (b + 1) * H, dc.begin());
    for (int64_t s = a.length(b) - 1; s >= 0; --s) {
      const int64_t row = a.time_at(b, s) * B + b;
      const T* act = gates + row * G;
      for (int64_t j = 0; j < H; ++j)
        dc[j] = lstm_unit_backward<T, ExactMath>(dh[j] + grad_out[row * H + j], dc[j], act[j], act[H + j],
                                                 act[2 * H + j], act[3 * H + j], c_prev[row * H + j], dz[j],
                                                 dz[H + j], dz[2 * H + j], dz[3 * H + j]);
      std::fill(dh.begin(), dh.end(), T(0));
      matvec_add<true>(G, H, w_hh, dz.data(), dh.data());
      matvec_add<true>(G, I, w_ih, dz.data(), grad_x + row * I);
      outer_add(G, I, dz.data(), x + row * I, grad_w_ih);
      outer_add(G, H, dz.data(), h_prev + row * H, grad_w_hh);
      for (int64_t g = 0; g < G; ++g) grad_bias[g] += dz[g];
    }
    std::copy(dh.begin(), dh.end(), grad_h0 + b * H);
    std::copy(dc.begin(), dc.end(), grad_c0 + b * H);
  }
}

// The cell: a layer of one step, whose saved c and h are the inputs cx and hx themselves.
template <class T>
void lstm_cell_forward_reference(const LstmCellArgs& a, const T* x, const T* hx, const T* cx, const T* w_ih,
                                 const T* w_hh, const T* b_ih, const T* b_hh, T* hy, T* cy, T* gates) {
  const LstmLayerArgs layer = one_step(a);
  std::vector<T> out(a.batch * a.hidden_size);
  lstm_layer_forward_reference<T>(layer, x, hx, cx, w_ih, w_hh, b_ih, b_hh, out.data(), hy, cy, gates, nullptr,
                                  nullptr);
}

template <class T>
void lstm_cell_backward_reference(const LstmCellArgs& a, const T* grad_hy, const T* grad_cy, const T* gates,
                                  const T* x, const T* hx, const T* cx, const T* w_ih, const T* w_hh, T* grad_x,
                                  T* grad_hx, T* grad_cx, T* grad_w_ih, T* grad_w_hh, T* grad_bias) {
  const LstmLayerArgs layer = one_step(a);
  const std::vector<T> zeros(a.batch * a.hidden_size);
  lstm_layer_backward_reference<T>(layer, grad_hy, zeros.data(), grad_cy, x, w_ih, w_hh, gates, cx, hx, grad_x,
                                   grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_bias);
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_LSTM_REFERENCE_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
