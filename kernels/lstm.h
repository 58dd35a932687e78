// CUDA kernels of the LSTM family (kernels/lstm.cu), float32, launched on the caller's stream.
// Matrix products are the caller's (cuBLAS through cupy); these kernels do everything else.
// Shapes as in common/lstm_args.h; biases may be null; `lengths` (int64, B) may be null.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/lstm_args.h"

namespace pyfastdl {

// Cell, pointwise: gates (B, 4H) holds x @ W_ih^T + h @ W_hh^T on entry and the activations on exit.
void lstm_cell_pointwise_forward_cuda(const LstmCellArgs& a, float* gates, const float* b_ih, const float* b_hh,
                                      const float* cx, float* hy, float* cy, cudaStream_t stream);
// Cell, pointwise backward: grad_gates (B, 4H) = d loss / d pre-activations; grad_cx (B, H).
void lstm_cell_pointwise_backward_cuda(const LstmCellArgs& a, const float* grad_hy, const float* grad_cy,
                                       const float* gates, const float* cx, float* grad_gates, float* grad_cx,
                                       cudaStream_t stream);

// Layer, one step s of the recurrence after the caller's rec = hn @ W_hh^T (B, 4H). gates (T, B, 4H)
// holds the input projection on entry; the step turns its rows into activations, updates hn, cn,
// writes out and the saved c_prev, h_prev (T, B, H), and zeros for rows whose sequence has ended.
void lstm_layer_step_forward_cuda(const LstmLayerArgs& a, int64_t step, const float* rec, const float* b_ih,
                                  const float* b_hh, const int64_t* lengths, float* gates, float* out, float* hn,
                                  float* cn, float* c_prev, float* h_prev, cudaStream_t stream);
// Layer, one step s of BPTT (s from T-1 down to 0). grad_h (B, H) holds the previous call's
// grad_gates_step @ W_hh; grad_c (B, H) carries dc (start it as grad_cn). Writes the step's rows of
// grad_gates (T, B, 4H) and grad_gates_step (B, 4H), the left operand of the caller's next GEMM.
void lstm_layer_step_backward_cuda(const LstmLayerArgs& a, int64_t step, const float* grad_out,
                                   const float* grad_hn, const float* gates, const float* c_prev,
                                   const int64_t* lengths, const float* grad_h, float* grad_c, float* grad_gates,
                                   float* grad_gates_step, cudaStream_t stream);

// Layer, the whole recurrence in one cooperative launch that keeps W_hh in shared memory across
// steps (each block owns a slice of hidden units). Same contract as the step loop above; h_buf is
// a (2, B, H) workspace. persistent_fits says whether this device can run it for these sizes.
bool lstm_layer_persistent_fits_cuda(const LstmLayerArgs& a);
void lstm_layer_persistent_forward_cuda(const LstmLayerArgs& a, const float* w_hh, const float* b_ih,
                                        const float* b_hh, const int64_t* lengths, float* gates, float* out,
                                        float* hn, float* cn, float* c_prev, float* h_prev, float* h_buf,
                                        cudaStream_t stream);

}  // namespace pyfastdl
