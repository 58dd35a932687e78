// Convolution on the GPU, the reference kernels: one thread per output element, a direct loop over
// its sum in float32, for every dtype and every shape (groups, stride, padding, dilation). The three
// products (see conv.cu) each get one kernel:
//   forward          y[n, k, p, q]  = bias[k] + sum_(c,r,s) w[k, c, r, s] * x at input pixel
//                                     (p*stride - pad + r*dil, q*stride - pad + s*dil)
//   input gradient   dx[n, c, h, v] = sum_(k,r,s) w[k, c, r, s] * dy at output pixel
//                                     ((h + pad - r*dil)/stride, ...), where the division is exact
//   weight gradient  dw[k, c, r, s] = sum_(n,p,q) dy[n, k, p, q] * x at input pixel of (p, q, r, s)
//
// Cost: 2*N*K*P*Q*Cg*R*S flops each, like the fast variant, but every operand is re-read from
// L2/DRAM for every output it touches: memory-bound, ~1-3% of peak. Kept so a reader can see what
// the tiling of conv_gemm.cuh buys.
#include "conv_common.cuh"

namespace pyfastdl::cuda::conv {
namespace {

// Plain int64 index arithmetic, no shared memory; the shapes live in this int64 copy of the Args'
// fields (Conv2dArgs's member functions are host-only).
struct Dims {
  int64_t N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, Cg, Kg;
};

Dims dims_of(const Conv2dArgs& a) {
  return {a.N, a.C, a.H, a.W, a.K, a.R, a.S, a.P, a.Q, a.stride_h, a.stride_w,
          a.pad_h, a.pad_w, a.dil_h, a.dil_w, a.C / a.groups, a.K / a.groups};
}

template <class T>
__global__ void forward_reference(Dims d, const T* __restrict__ x, const T* __restrict__ w,
                                  const T* __restrict__ bias, T* __restrict__ y) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= d.N * d.K * d.P * d.Q) return;
  int64_t q = i % d.Q, p = i / d.Q % d.P, k = i / (d.Q * d.P) % d.K, n = i / (d.Q * d.P * d.K);
  int64_t c0 = k / d.Kg * d.Cg;  // first input channel of k's group
  float acc = bias ? to_f32(bias[k]) : 0.f;
  for (int64_t c = 0; c < d.Cg; ++c)
    for (int64_t r = 0; r < d.R; ++r) {
      int64_t h = p * d.sh - d.ph + r * d.dh;
      if (h < 0 || h >= d.H) continue;
      for (int64_t s = 0; s < d.S; ++s) {
        int64_t v = q * d.sw - d.pw + s * d.dw;
        if (v < 0 || v >= d.W) continue;
        acc += to_f32(x[((n * d.C + c0 + c) * d.H + h) * d.W + v]) * to_f32(w[((k * d.Cg + c) * d.R + r) * d.S + s]);
      }
    }
  y[i] = from_f32<T>(acc);
}

// Output pixel o of input pixel i through tap t along one dimension (i = o*stride - pad + t*dil),
// or -1 where no output pixel reaches i through that tap.
__device__ __forceinline__ int64_t output_of(int64_t i, int64_t t, int64_t stride, int64_t pad, int64_t dil,
                                             int64_t out_size) {
  int64_t num = i + pad - t * dil;
  if (num < 0 || num % stride) return -1;
  return num / stride < out_size ? num / stride : -1;
}

template <class T>
__global__ void backward_input_reference(Dims d, const T* __restrict__ dy, const T* __restrict__ w,
                                         T* __restrict__ dx) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= d.N * d.C * d.H * d.W) return;
  int64_t v = i % d.W, h = i / d.W % d.H, ch = i / (d.W * d.H) % d.C, n = i / (d.W * d.H * d.C);
  int64_t k0 = ch / d.Cg * d.Kg, c = ch % d.Cg;
  float acc = 0.f;
  for (int64_t k = k0; k < k0 + d.Kg; ++k)
    for (int64_t r = 0; r < d.R; ++r) {
      int64_t p = output_of(h, r, d.sh, d.ph, d.dh, d.P);
      if (p < 0) continue;
      for (int64_t s = 0; s < d.S; ++s) {
        int64_t q = output_of(v, s, d.sw, d.pw, d.dw, d.Q);
        if (q < 0) continue;
        acc += to_f32(dy[((n * d.K + k) * d.P + p) * d.Q + q]) * to_f32(w[((k * d.Cg + c) * d.R + r) * d.S + s]);
      }
    }
  dx[i] = from_f32<T>(acc);
}

template <class T>
__global__ void backward_weight_reference(Dims d, const T* __restrict__ x, const T* __restrict__ dy,
                                          T* __restrict__ dw) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= d.K * d.Cg * d.R * d.S) return;
  int64_t s = i % d.S, r = i / d.S % d.R, c = i / (d.S * d.R) % d.Cg, k = i / (d.S * d.R * d.Cg);
  int64_t ch = k / d.Kg * d.Cg + c;
  float acc = 0.f;
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t p = 0; p < d.P; ++p) {
      int64_t h = p * d.sh - d.ph + r * d.dh;
      if (h < 0 || h >= d.H) continue;
      for (int64_t q = 0; q < d.Q; ++q) {
        int64_t v = q * d.sw - d.pw + s * d.dw;
        if (v < 0 || v >= d.W) continue;
        acc += to_f32(dy[((n * d.K + k) * d.P + p) * d.Q + q]) * to_f32(x[((n * d.C + ch) * d.H + h) * d.W + v]);
      }
    }
  dw[i] = from_f32<T>(acc);
}

}  // namespace

void reference(ConvOp op, const Conv2dArgs& a, ConvDType dt, const void* in0, const void* in1, const void* bias,
               void* out, cudaStream_t st) {
  by_dtype(dt, [&](auto t) {
    using T = decltype(t);
    const auto A = static_cast<const T*>(in0);
    const auto B = static_cast<const T*>(in1);
    const auto Y = static_cast<T*>(out);
    if (op == ConvOp::forward) {
      int64_t total = a.N * a.K * a.P * a.Q;
      forward_reference<T><<<ceil_div(total, 256), 256, 0, st>>>(dims_of(a), A, B, static_cast<const T*>(bias), Y);
      check_launch("conv2d_forward_reference");
    } else if (op == ConvOp::backward_input) {
      int64_t total = a.N * a.C * a.H * a.W;
      backward_input_reference<T><<<ceil_div(total, 256), 256, 0, st>>>(dims_of(a), A, B, Y);
      check_launch("conv2d_backward_input_reference");
    } else {
      int64_t total = a.K * (a.C / a.groups) * a.R * a.S;
      backward_weight_reference<T><<<ceil_div(total, 256), 256, 0, st>>>(dims_of(a), A, B, Y);
      check_launch("conv2d_backward_weight_reference");
    }
  });
}

}  // namespace pyfastdl::cuda::conv
