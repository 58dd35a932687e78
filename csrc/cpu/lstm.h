// CPU kernels of the LSTM family (csrc/cpu/lstm.cpp, compiled once per instruction set; the reference
// variant in csrc/cpu/lstm_reference.cpp). All arrays are C-contiguous, row-major, with the shapes
// LstmCellArgs / LstmLayerArgs give; biases may be null. T is float or double.
#pragma once
#include "common/lstm_args.h"
#include "cpu/isa.h"

// The kernels, as an X-macro of (T, name, (parameters), (arguments)) (see cpu/isa.h), V the variant's suffix:
// * lstm_cell_forward: one step: gates = x @ w_ih^T + h @ w_hh^T + b_ih + b_hh, then the fused
//   pointwise pass. Writes hy, cy (B, H) and the gate activations (B, 4H) that backward needs.
// * lstm_cell_backward: gradients of one step from grad_hy, grad_cy (B, H). grad_bias (4H) serves
//   both b_ih and b_hh.
// * lstm_layer_forward: one layer, one direction, the whole sequence x (T, B, I) -> output (T, B, H),
//   final hn, cn (B, H). Saves gates (T, B, 4H) and the c and h each step started from (T, B, H) for
//   backward; gates, c_prev and h_prev may all be null (inference: not saved).
// * lstm_layer_backward: backpropagation through time for lstm_layer_forward.
#define PYFASTDL_LSTM_VARIANT_KERNELS(X, T, V)                                                                       \
  X(T, lstm_cell_forward##V,                                                                                         \
    (const LstmCellArgs& a, const T* x, const T* hx, const T* cx, const T* w_ih, const T* w_hh, const T* b_ih,       \
     const T* b_hh, T* hy, T* cy, T* gates),                                                                         \
    (a, x, hx, cx, w_ih, w_hh, b_ih, b_hh, hy, cy, gates))                                                           \
  X(T, lstm_cell_backward##V,                                                                                        \
    (const LstmCellArgs& a, const T* grad_hy, const T* grad_cy, const T* gates, const T* x, const T* hx,             \
     const T* cx, const T* w_ih, const T* w_hh, T* grad_x, T* grad_hx, T* grad_cx, T* grad_w_ih, T* grad_w_hh,       \
     T* grad_bias),                                                                                                  \
    (a, grad_hy, grad_cy, gates, x, hx, cx, w_ih, w_hh, grad_x, grad_hx, grad_cx, grad_w_ih, grad_w_hh,              \
     grad_bias))                                                                                                     \
  X(T, lstm_layer_forward##V,                                                                                        \
    (const LstmLayerArgs& a, const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh, const T* b_ih,      \
     const T* b_hh, T* out, T* hn, T* cn, T* gates, T* c_prev, T* h_prev),                                           \
    (a, x, h0, c0, w_ih, w_hh, b_ih, b_hh, out, hn, cn, gates, c_prev, h_prev))                                      \
  X(T, lstm_layer_backward##V,                                                                                       \
    (const LstmLayerArgs& a, const T* grad_out, const T* grad_hn, const T* grad_cn, const T* x, const T* w_ih,       \
     const T* w_hh, const T* gates, const T* c_prev, const T* h_prev, T* grad_x, T* grad_h0, T* grad_c0,             \
     T* grad_w_ih, T* grad_w_hh, T* grad_bias),                                                                      \
    (a, grad_out, grad_hn, grad_cn, x, w_ih, w_hh, gates, c_prev, h_prev, grad_x, grad_h0, grad_c0, grad_w_ih,       \
     grad_w_hh, grad_bias))
// The fast variant (csrc/cpu/lstm.cpp) and the reference one (csrc/cpu/lstm_reference.cpp), whose
// kernels have the suffix _reference.
#define PYFASTDL_LSTM_KERNELS(X, T) PYFASTDL_LSTM_VARIANT_KERNELS(X, T, )
#define PYFASTDL_LSTM_REFERENCE_KERNELS(X, T) PYFASTDL_LSTM_VARIANT_KERNELS(X, T, _reference)
PYFASTDL_ISA_DECLARE(PYFASTDL_LSTM_KERNELS)
PYFASTDL_ISA_DECLARE(PYFASTDL_LSTM_REFERENCE_KERNELS)

