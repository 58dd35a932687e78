// LSTM on the GPU (float32): the fused cell's pointwise passes, the per-step kernels of the layer
// recurrence, and a persistent recurrence that keeps W_hh on chip across all time steps.
//
// The matrix products are cuBLAS's (through cupy, in pyfastdl/kernels/lstm.py): the input
// projection of all T steps is one large GEMM; what is left per step is rec = h @ W_hh^T (B, 4H)
// and the pointwise work. Versions, each a variant a reader can run and time:
//   1. cell / step kernels: one thread per (batch row, hidden unit) does all of the unit's pointwise
//      work in one pass (4 gate activations, c, h, what backward needs). The layer loop is then one
//      cuBLAS call and one such kernel per step: 2 launches per step, and W_hh (16 H^2 bytes) read
//      from L2/HBM every step. For small batches the step is latency bound (a few microseconds of
//      launch and GEMM ramp-up each).
//   2. persistent kernel (variant "persistent"): one cooperative launch for all steps. Block p owns
//      a slice of J hidden units and keeps their 4J rows of W_hh in shared memory for the whole
//      sequence; per step it stages h (B, H) into shared memory, computes the 4 gate dot products
//      for its units (one warp per unit and 4 batch rows, lanes split the H axis), does the
//      pointwise pass, and meets the other blocks at a grid-wide barrier (cooperative groups). No
//      weight traffic after the first step and no launches; the cost is one grid.sync per step and
//      the shared-memory reads of the dot products. It fits while 4J*H + B*H floats fit in one
//      block's shared memory with one block per SM (e.g. H = 512, B = 64 on an H100).
//
// Backward always uses the per-step kernels (BPTT: pointwise backward, then cuBLAS dh = dz @ W_hh).
#include <cooperative_groups.h>

#include <algorithm>

#include "common/check.h"
#include "common/lstm_cell.h"
#include "lstm.h"
#include "runtime.h"

namespace cg = cooperative_groups;

namespace pyfastdl {
namespace {

struct CudaMath {
  static __device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + __expf(-x)); }
  static __device__ __forceinline__ float tanh(float x) { return tanhf(x); }
};

constexpr int kThreads = 256;

__device__ __forceinline__ float bias_at(const float* b_ih, const float* b_hh, int64_t k) {
  return (b_ih ? b_ih[k] : 0.0f) + (b_hh ? b_hh[k] : 0.0f);
}

__device__ __forceinline__ int64_t length_of(const int64_t* lengths, int64_t b, int64_t T) {
  return lengths ? lengths[b] : T;
}

// One (row, unit) forward: z = gates[g*H] + rec[g] + biases for g = i, f, g, o; activations back
// into gates; returns c, writes h.
__device__ __forceinline__ float unit_forward(float* gates, const float (&rec)[4], const float* b_ih,
                                              const float* b_hh, int64_t H, int64_t j, float c_prev, float& h) {
  float z[4];
#pragma unroll
  for (int g = 0; g < 4; ++g) z[g] = gates[g * H] + rec[g] + bias_at(b_ih, b_hh, g * H + j);
  const float c = lstm_unit_forward<float, CudaMath>(z[0], z[1], z[2], z[3], c_prev, h);
#pragma unroll
  for (int g = 0; g < 4; ++g) gates[g * H] = z[g];
  return c;
}

// One (row, unit) backward: gradients of the four pre-activations into dz[g*H]; returns dc_prev.
__device__ __forceinline__ float unit_backward(float dh, float dc, const float* gates, float c_prev, int64_t H,
                                               float* dz) {
  float d[4];
  const float dc_prev = lstm_unit_backward<float, CudaMath>(dh, dc, gates[0], gates[H], gates[2 * H], gates[3 * H],
                                                            c_prev, d[0], d[1], d[2], d[3]);
#pragma unroll
  for (int g = 0; g < 4; ++g) dz[g * H] = d[g];
  return dc_prev;
}

// ---- 1. cell ------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
    cell_forward_kernel(int64_t B, int64_t H, float* gates, const float* b_ih, const float* b_hh, const float* cx,
                        float* hy, float* cy) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * H) return;
  const int64_t b = idx / H, j = idx % H;
  const float rec[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // the cell's gates already hold both products
  float h;
  cy[idx] = unit_forward(gates + b * 4 * H + j, rec, b_ih, b_hh, H, j, cx[idx], h);
  hy[idx] = h;
}

__global__ void __launch_bounds__(kThreads)
    cell_backward_kernel(int64_t B, int64_t H, const float* grad_hy, const float* grad_cy, const float* gates,
                         const float* cx, float* grad_gates, float* grad_cx) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * H) return;
  const int64_t b = idx / H, j = idx % H;
  grad_cx[idx] = unit_backward(grad_hy[idx], grad_cy[idx], gates + b * 4 * H + j, cx[idx], H,
                               grad_gates + b * 4 * H + j);
}

// ---- 1. layer, one step at a time --------------------------------------------------------------

// Step s for (row b, unit j). A row whose sequence has ended (s >= length) keeps h and c and writes
// zeros for time s: over all steps that is exactly its padded times.
__global__ void __launch_bounds__(kThreads)
    step_forward_kernel(int64_t T, int64_t B, int64_t H, bool reverse, int64_t s, const float* rec,
                        const float* b_ih, const float* b_hh, const int64_t* lengths, float* gates, float* out,
                        float* hn, float* cn, float* c_prev, float* h_prev) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * H) return;
  const int64_t b = idx / H, j = idx % H;
  const int64_t L = length_of(lengths, b, T);
  if (s >= L) {
    const int64_t row = s * B + b;
    out[row * H + j] = 0.0f;
    c_prev[row * H + j] = 0.0f;
    h_prev[row * H + j] = 0.0f;
#pragma unroll
    for (int g = 0; g < 4; ++g) gates[row * 4 * H + g * H + j] = 0.0f;
    return;
  }
  const int64_t row = (reverse ? L - 1 - s : s) * B + b;
  const float c0 = cn[idx];
  c_prev[row * H + j] = c0;
  h_prev[row * H + j] = hn[idx];
  float r[4];
#pragma unroll
  for (int g = 0; g < 4; ++g) r[g] = rec[b * 4 * H + g * H + j];
  float h;
  cn[idx] = unit_forward(gates + row * 4 * H + j, r, b_ih, b_hh, H, j, c0, h);
  hn[idx] = h;
  out[row * H + j] = h;
}

__global__ void __launch_bounds__(kThreads)
    step_backward_kernel(int64_t T, int64_t B, int64_t H, bool reverse, int64_t s, const float* grad_out,
                         const float* grad_hn, const float* gates, const float* c_prev, const int64_t* lengths,
                         const float* grad_h, float* grad_c, float* grad_gates, float* grad_gates_step) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * H) return;
  const int64_t b = idx / H, j = idx % H;
  const int64_t L = length_of(lengths, b, T);
  float* dzs = grad_gates_step + b * 4 * H + j;
  if (s >= L) {  // padded: no gradient; dh and dc pass through unchanged
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      dzs[g * H] = 0.0f;
      grad_gates[(s * B + b) * 4 * H + g * H + j] = 0.0f;
    }
    return;
  }
  const int64_t row = (reverse ? L - 1 - s : s) * B + b;
  const float dh = (s + 1 < L ? grad_h[idx] : grad_hn[idx]) + grad_out[row * H + j];
  float* dz = grad_gates + row * 4 * H + j;
  grad_c[idx] = unit_backward(dh, grad_c[idx], gates + row * 4 * H + j, c_prev[row * H + j], H, dz);
#pragma unroll
  for (int g = 0; g < 4; ++g) dzs[g * H] = dz[g * H];
}

// ---- 2. persistent layer forward ----------------------------------------------------------------

constexpr int kRowsPerWarp = 4;  // batch rows per warp work item (register tile: 4 gates x 4 rows)

struct PersistentPlan {
  int blocks = 0;           // grid size: one block per SM at most
  int64_t units = 0;        // hidden units per block (J)
  size_t smem_bytes = 0;    // 4J*H floats of W_hh + B*H floats of h
  bool fits = false;
};

// Block p owns hidden units [p*J, min(H, (p+1)*J)). Shared memory: w_s (4J, H) its rows of W_hh,
// gate-major (row g*J + u is W_hh row g*H + j0 + u); h_s (B, H) the h of the current step.
__global__ void __launch_bounds__(kThreads)
    persistent_forward_kernel(int64_t T, int64_t B, int64_t H, bool reverse, int64_t J, const float* w_hh,
                              const float* b_ih, const float* b_hh, const int64_t* lengths, float* gates,
                              float* out, float* hn, float* cn, float* c_prev, float* h_prev, float* h_buf) {
  cg::grid_group grid = cg::this_grid();
  extern __shared__ float smem[];
  float* w_s = smem;
  float* h_s = smem + 4 * J * H;
  const int64_t j0 = int64_t(blockIdx.x) * J;
  const int64_t units = j0 < H ? (H - j0 < J ? H - j0 : J) : 0;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;

  for (int64_t e = threadIdx.x; e < 4 * units * H; e += blockDim.x) {
    const int64_t r = e / H, k = e % H, g = r / units, u = r % units;
    w_s[(g * J + u) * H + k] = w_hh[(g * H + j0 + u) * H + k];
  }

  const int64_t groups = (B + kRowsPerWarp - 1) / kRowsPerWarp;
  for (int64_t s = 0; s < T; ++s) {
    // h of this step: h0 (in hn) first, then the two halves of h_buf in turn. Read through L2
    // (__ldcg): other blocks wrote it, and this SM's L1 may hold an older copy.
    const float* h_cur = s == 0 ? hn : h_buf + (s & 1) * B * H;
    float* h_next = h_buf + ((s + 1) & 1) * B * H;
    for (int64_t e = threadIdx.x; e < B * H; e += blockDim.x) h_s[e] = __ldcg(h_cur + e);
    __syncthreads();

    for (int64_t item = warp; item < units * groups; item += warps) {
      const int64_t u = item / groups, b0 = (item % groups) * kRowsPerWarp;
      float acc[4][kRowsPerWarp];
#pragma unroll
      for (int g = 0; g < 4; ++g)
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) acc[g][r] = 0.0f;
      const float* w_u = w_s + u * H;  // shared-memory offsets fit in int
      const float* h_b = h_s + b0 * H;
      const int Hi = int(H), gate_stride = int(J * H);
      for (int k = lane; k < Hi; k += 32) {
        float hv[kRowsPerWarp];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) hv[r] = b0 + r < B ? h_b[r * Hi + k] : 0.0f;
#pragma unroll
        for (int g = 0; g < 4; ++g) {
          const float w = w_u[g * gate_stride + k];
#pragma unroll
          for (int r = 0; r < kRowsPerWarp; ++r) acc[g][r] = fmaf(w, hv[r], acc[g][r]);
        }
      }
#pragma unroll
      for (int g = 0; g < 4; ++g)
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
          for (int off = 16; off > 0; off /= 2) acc[g][r] += __shfl_xor_sync(0xffffffffu, acc[g][r], off);

      // Lane r finishes batch row b0 + r: every lane holds every sum after the butterfly.
      float rec[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
        if (lane == r)
#pragma unroll
          for (int g = 0; g < 4; ++g) rec[g] = acc[g][r];
      const int64_t b = b0 + lane, j = j0 + u;
      if (lane < kRowsPerWarp && b < B) {
        const int64_t L = length_of(lengths, b, T);
        if (s >= L) {
          const int64_t row = s * B + b;
          h_next[b * H + j] = h_s[b * H + j];
          out[row * H + j] = 0.0f;
          c_prev[row * H + j] = 0.0f;
          h_prev[row * H + j] = 0.0f;
#pragma unroll
          for (int g = 0; g < 4; ++g) gates[row * 4 * H + g * H + j] = 0.0f;
        } else {
          const int64_t row = (reverse ? L - 1 - s : s) * B + b;
          const float c0 = cn[b * H + j];
          c_prev[row * H + j] = c0;
          h_prev[row * H + j] = h_s[b * H + j];
          float h;
          cn[b * H + j] = unit_forward(gates + row * 4 * H + j, rec, b_ih, b_hh, H, j, c0, h);
          h_next[b * H + j] = h;
          out[row * H + j] = h;
        }
      }
    }
    __threadfence();
    grid.sync();  // every block's h_next is written, and every block has finished reading h_cur
  }
  const float* h_last = h_buf + (T & 1) * B * H;
  for (int64_t e = threadIdx.x; e < B * units; e += blockDim.x) {
    const int64_t b = e / units, j = j0 + e % units;
    hn[b * H + j] = __ldcg(h_last + b * H + j);
  }
}

PersistentPlan persistent_plan(const LstmLayerArgs& a) {
  PersistentPlan p;
  int device = 0, sms = 0, coop = 0, smem_optin = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) {
    cudaGetLastError();
    return p;
  }
  if (!coop || sms <= 0) return p;
  const int64_t H = a.hidden_size;
  p.units = (H + sms - 1) / sms;
  p.blocks = int((H + p.units - 1) / p.units);
  p.smem_bytes = size_t(4 * p.units * H + a.batch * H) * sizeof(float);
  if (p.smem_bytes > size_t(smem_optin)) return p;
  if (cudaFuncSetAttribute(persistent_forward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(p.smem_bytes)) != cudaSuccess) {
    cudaGetLastError();
    return p;
  }
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persistent_forward_kernel, kThreads, p.smem_bytes) !=
      cudaSuccess) {
    cudaGetLastError();
    return p;
  }
  p.fits = per_sm >= 1 && p.blocks <= per_sm * sms;
  return p;
}

unsigned grid_for(const Shape& s) { return ceil_div(numel(s), kThreads); }

}  // namespace

void lstm_cell_pointwise_forward_cuda(const LstmCellArgs& a, float* gates, const float* b_ih, const float* b_hh,
                                      const float* cx, float* hy, float* cy, cudaStream_t stream) {
  cell_forward_kernel<<<grid_for(a.state_shape()), kThreads, 0, stream>>>(a.batch, a.hidden_size, gates, b_ih, b_hh,
                                                                          cx, hy, cy);
  check_launch("lstm_cell_pointwise_forward");
}

void lstm_cell_pointwise_backward_cuda(const LstmCellArgs& a, const float* grad_hy, const float* grad_cy,
                                       const float* gates, const float* cx, float* grad_gates, float* grad_cx,
                                       cudaStream_t stream) {
  cell_backward_kernel<<<grid_for(a.state_shape()), kThreads, 0, stream>>>(a.batch, a.hidden_size, grad_hy, grad_cy,
                                                                           gates, cx, grad_gates, grad_cx);
  check_launch("lstm_cell_pointwise_backward");
}

void lstm_layer_step_forward_cuda(const LstmLayerArgs& a, int64_t step, const float* rec, const float* b_ih,
                                  const float* b_hh, const int64_t* lengths, float* gates, float* out, float* hn,
                                  float* cn, float* c_prev, float* h_prev, cudaStream_t stream) {
  step_forward_kernel<<<grid_for(a.state_shape()), kThreads, 0, stream>>>(
      a.seq_len, a.batch, a.hidden_size, a.reverse, step, rec, b_ih, b_hh, lengths, gates, out, hn, cn, c_prev,
      h_prev);
  check_launch("lstm_layer_step_forward");
}

void lstm_layer_step_backward_cuda(const LstmLayerArgs& a, int64_t step, const float* grad_out,
                                   const float* grad_hn, const float* gates, const float* c_prev,
                                   const int64_t* lengths, const float* grad_h, float* grad_c, float* grad_gates,
                                   float* grad_gates_step, cudaStream_t stream) {
  step_backward_kernel<<<grid_for(a.state_shape()), kThreads, 0, stream>>>(
      a.seq_len, a.batch, a.hidden_size, a.reverse, step, grad_out, grad_hn, gates, c_prev, lengths, grad_h, grad_c,
      grad_gates, grad_gates_step);
  check_launch("lstm_layer_step_backward");
}

bool lstm_layer_persistent_fits_cuda(const LstmLayerArgs& a) { return persistent_plan(a).fits; }

void lstm_layer_persistent_forward_cuda(const LstmLayerArgs& a, const float* w_hh, const float* b_ih,
                                        const float* b_hh, const int64_t* lengths, float* gates, float* out,
                                        float* hn, float* cn, float* c_prev, float* h_prev, float* h_buf,
                                        cudaStream_t stream) {
  const PersistentPlan p = persistent_plan(a);
  check(p.fits, "lstm_layer_persistent_forward: batch ", a.batch, ", hidden_size ", a.hidden_size,
        " does not fit the persistent kernel on this device");
  int64_t T = a.seq_len, B = a.batch, H = a.hidden_size, J = p.units;
  bool reverse = a.reverse;
  void* args[] = {&T, &B, &H, &reverse, &J, &w_hh, &b_ih, &b_hh, &lengths, &gates, &out, &hn, &cn, &c_prev,
                  &h_prev, &h_buf};
  const cudaError_t err = cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(persistent_forward_kernel),
                                                      dim3(p.blocks), dim3(kThreads), args, p.smem_bytes, stream);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("lstm_layer_persistent_forward: cooperative launch failed: ") +
                             cudaGetErrorString(err));
  }
  check_launch("lstm_layer_persistent_forward");
}

}  // namespace pyfastdl
