// CPU kernels of the LSTM family (csrc/cpu/lstm.cpp, compiled once per instruction set). All arrays
// are C-contiguous, row-major, with the shapes LstmCellArgs / LstmLayerArgs give; biases may be null.
// T is float or double.
#pragma once
#include "common/lstm_args.h"

// The kernels' signatures, declared once for the dispatching entry points (pyfastdl::cpu) and once per
// instruction-set copy of lstm.cpp (pyfastdl::cpu::base, ::avx2, ::avx512; see cpu/isa.h).
#define PYFASTDL_LSTM_KERNELS                                                                                     \
  /* One step: gates = x @ w_ih^T + h @ w_hh^T + b_ih + b_hh, then the fused pointwise pass.                 \
     Writes hy, cy (B, H) and the gate activations (B, 4H) that backward needs. */                          \
  template <class T>                                                                                          \
  void lstm_cell_forward(const LstmCellArgs& a, const T* x, const T* hx, const T* cx, const T* w_ih,          \
                         const T* w_hh, const T* b_ih, const T* b_hh, T* hy, T* cy, T* gates);                \
  /* Gradients of one step from grad_hy, grad_cy (B, H). grad_bias (4H) serves both b_ih and b_hh. */        \
  template <class T>                                                                                          \
  void lstm_cell_backward(const LstmCellArgs& a, const T* grad_hy, const T* grad_cy, const T* gates,          \
                          const T* x, const T* hx, const T* cx, const T* w_ih, const T* w_hh, T* grad_x,      \
                          T* grad_hx, T* grad_cx, T* grad_w_ih, T* grad_w_hh, T* grad_bias);                  \
  /* One layer, one direction, the whole sequence x (T, B, I) -> output (T, B, H), final hn, cn (B, H).      \
     Saves gates (T, B, 4H) and the c and h each step started from (T, B, H) for backward; gates, c_prev    \
     and h_prev may all be null (inference: not saved). */                                                   \
  template <class T>                                                                                          \
  void lstm_layer_forward(const LstmLayerArgs& a, const T* x, const T* h0, const T* c0, const T* w_ih,        \
                          const T* w_hh, const T* b_ih, const T* b_hh, T* out, T* hn, T* cn, T* gates,        \
                          T* c_prev, T* h_prev);                                                              \
  /* Backpropagation through time for lstm_layer_forward. */                                                 \
  template <class T>                                                                                          \
  void lstm_layer_backward(const LstmLayerArgs& a, const T* grad_out, const T* grad_hn, const T* grad_cn,     \
                           const T* x, const T* w_ih, const T* w_hh, const T* gates, const T* c_prev,         \
                           const T* h_prev, T* grad_x, T* grad_h0, T* grad_c0, T* grad_w_ih, T* grad_w_hh,    \
                           T* grad_bias);

// Instantiates them for T (float, double) in the enclosing namespace.
#define PYFASTDL_LSTM_INSTANTIATE(T)                                                                              \
  template void lstm_cell_forward<T>(const LstmCellArgs&, const T*, const T*, const T*, const T*, const T*,       \
                                     const T*, const T*, T*, T*, T*);                                             \
  template void lstm_cell_backward<T>(const LstmCellArgs&, const T*, const T*, const T*, const T*, const T*,      \
                                      const T*, const T*, const T*, T*, T*, T*, T*, T*, T*);                      \
  template void lstm_layer_forward<T>(const LstmLayerArgs&, const T*, const T*, const T*, const T*, const T*,     \
                                      const T*, const T*, T*, T*, T*, T*, T*, T*);                                \
  template void lstm_layer_backward<T>(const LstmLayerArgs&, const T*, const T*, const T*, const T*, const T*,    \
                                       const T*, const T*, const T*, const T*, T*, T*, T*, T*, T*, T*);

namespace pyfastdl::cpu {
PYFASTDL_LSTM_KERNELS
namespace base { PYFASTDL_LSTM_KERNELS }
namespace avx2 { PYFASTDL_LSTM_KERNELS }
namespace avx512 { PYFASTDL_LSTM_KERNELS }
}  // namespace pyfastdl::cpu
