// The LSTM kernels' entry points: each calls the copy of csrc/cpu/lstm.cpp compiled for the
// instruction set in use (cpu/isa.h).
#include "cpu/isa.h"
#include "cpu/lstm.h"

namespace pyfastdl::cpu {

#if defined(PYFASTDL_HAVE_X86_ISAS)
#define PYFASTDL_ISA_CALL(fn, ...)                          \
  switch (active_isa()) {                                   \
    case Isa::avx512: return avx512::fn<T>(__VA_ARGS__);    \
    case Isa::avx2: return avx2::fn<T>(__VA_ARGS__);        \
    default: return base::fn<T>(__VA_ARGS__);               \
  }
#else
#define PYFASTDL_ISA_CALL(fn, ...) return base::fn<T>(__VA_ARGS__);
#endif

template <class T>
void lstm_cell_forward(const LstmCellArgs& a, const T* x, const T* hx, const T* cx, const T* w_ih, const T* w_hh,
                       const T* b_ih, const T* b_hh, T* hy, T* cy, T* gates) {
  PYFASTDL_ISA_CALL(lstm_cell_forward, a, x, hx, cx, w_ih, w_hh, b_ih, b_hh, hy, cy, gates)
}

template <class T>
void lstm_cell_backward(const LstmCellArgs& a, const T* grad_hy, const T* grad_cy, const T* gates, const T* x,
                        const T* hx, const T* cx, const T* w_ih, const T* w_hh, T* grad_x, T* grad_hx, T* grad_cx,
                        T* grad_w_ih, T* grad_w_hh, T* grad_bias) {
  PYFASTDL_ISA_CALL(lstm_cell_backward, a, grad_hy, grad_cy, gates, x, hx, cx, w_ih, w_hh, grad_x, grad_hx,
                    grad_cx, grad_w_ih, grad_w_hh, grad_bias)
}

template <class T>
void lstm_layer_forward(const LstmLayerArgs& a, const T* x, const T* h0, const T* c0, const T* w_ih,
                        const T* w_hh, const T* b_ih, const T* b_hh, T* out, T* hn, T* cn, T* gates, T* c_prev,
                        T* h_prev) {
  PYFASTDL_ISA_CALL(lstm_layer_forward, a, x, h0, c0, w_ih, w_hh, b_ih, b_hh, out, hn, cn, gates, c_prev, h_prev)
}

template <class T>
void lstm_layer_backward(const LstmLayerArgs& a, const T* grad_out, const T* grad_hn, const T* grad_cn, const T* x,
                         const T* w_ih, const T* w_hh, const T* gates, const T* c_prev, const T* h_prev, T* grad_x,
                         T* grad_h0, T* grad_c0, T* grad_w_ih, T* grad_w_hh, T* grad_bias) {
  PYFASTDL_ISA_CALL(lstm_layer_backward, a, grad_out, grad_hn, grad_cn, x, w_ih, w_hh, gates, c_prev, h_prev,
                    grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias)
}

PYFASTDL_LSTM_INSTANTIATE(float)
PYFASTDL_LSTM_INSTANTIATE(double)

}  // namespace pyfastdl::cpu
