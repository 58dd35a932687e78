// Direct convolution on the CPU with packed weights and register tiles: any kernel size, stride and
// padding, dilation 1, groups 1; forward, input gradient (stride 1) and weight gradient (NCHW,
// float32/float64).
//
// Algorithm. The input is first copied into a zero-padded NHWC buffer xs (so every window is in
// bounds, and the C channels of a pixel are contiguous), the weights into Wp[r][s][c][k] with K padded
// to whole vectors. For one output row (image n, row p) and kernel row r, the window of output q
// reads xs[n, p*sh + r, q*sw + s, c] for s < S, c < C: S*C values contiguous in xs, starting at q*sw*C.
// So the output row, as a Q x K matrix, is
//     Y[q][k] = sum_r sum_(s,c) A(q, r, (s,c)) Wp[r][(s,c)][k],   A(q, r, l) = xs[row p*sh + r][q*sw*C + l]
// a product whose left operand is read in place, with strides (sw*C per output, Ws*C per kernel
// row): cpu/conv_tiles.h's micro-kernel keeps a block of 6 outputs x 16 channels (AVX2) in registers
// for the whole R*S*C sum and broadcasts the input values. No im2col matrix is written (im2col
// copies R*S times the input, and its GEMM then packs that copy again), which is what makes small
// layers -- few channels, 5x5 kernels, strides -- cheaper this way than through a BLAS.
//   input gradient  (stride 1) the forward of dy with the weights flipped and transposed,
//                   w'[c][k][r][s] = w[k][c][R-1-r][S-1-s], and padding R-1-pad (needs pad < R);
//   weight gradient dw[k][c][r][s] = sum_n,p,q dy[n,k,p,q] xs[n, p*sh + r, q*sw + s, c]: for each
//                   image and kernel row r, (S*C) x K (+)= A @ dY, A((s,c), p, q) read from xs in
//                   place and dY, the image's dy staged NHWC, as B; the sum runs over P x Q.
// Cost: the convolution's 2*N*K*P*Q*C*R*S flops in the micro-kernel (about 2/3 of the FMA peak when
// the tiles are full) plus one NHWC copy of the input (and of dy for the weight gradient). What
// limits it: an output row shorter than the tile (Q < 6) or K far from a multiple of 16 leaves
// accumulators idle, and a stride-2 window reads its input at a stride (more cache lines per flop).
// Threads: the forward's output rows (n, p) are shared out dynamically (each writes its own outputs);
// the weight gradient's images statically, each thread summing into its own copy of dw, the copies
// added in thread order (the same bits on every call with the same thread count).
// This file is compiled once per instruction set (cpu/isa.h).
#include "cpu/conv.h"
#include "cpu/conv_tiles.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace pyfastdl::cpu::PYFASTDL_ISA {
namespace {

using tiles::Operands;
using tiles::product;
using tiles::round_up;
using tiles::scratch;
using tiles::stage;

// A forward-shaped problem: out (N, K, P, Q) = conv(in (N, C, H, W), R x S kernel, stride (sh, sw),
// padding (ph, pw)), dilation 1, one group.
struct Direct {
  int64_t N, C, H, W, K, R, S, sh, sw, ph, pw, P, Q;
  int64_t Hs, Ws, Kp;  // the staged input's rows and columns (what the windows read); K in whole vectors

  template <class T>
  static Direct make(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t S, int64_t sh,
                     int64_t sw, int64_t ph, int64_t pw) {
    Direct d{N, C, H, W, K, R, S, sh, sw, ph, pw, 0, 0, 0, 0, 0};
    d.P = (H + 2 * ph - R) / sh + 1, d.Q = (W + 2 * pw - S) / sw + 1;
    d.Hs = (d.P - 1) * sh + R, d.Ws = (d.Q - 1) * sw + S;
    d.Kp = round_up(K, kLanes<T>);
    return d;
  }
  int64_t taps() const { return R * S * C; }  // rows of the packed weights
  // The product of output row (n, p): A from the staged input, B the packed weights.
  template <class T>
  Operands<T> row(const T* xs, const T* wp, int64_t n, int64_t p) const {
    return {xs + (n * Hs + p * sh) * Ws * C, sw * C, 1, Ws * C, wp, Kp, S * C * Kp, S * C, R};
  }
};

// Whether a call is worth a team of threads (under ~1M multiply-adds it is not).
bool parallel(const Direct& d) {
  return omp_get_max_threads() > 1 && d.N * d.P * d.Q * d.K * d.taps() >= (int64_t(1) << 20);
}

// Wp[((r*S + s)*C + c)*Kp + k] = tap(k, c, r, s), zero for the padding channels k >= K.
template <class T, class Tap>
T* pack_weights(const Direct& d, Tap tap) {
  T* wp = scratch<T, 2>(d.taps() * d.Kp);
  for (int64_t r = 0; r < d.R; ++r)
    for (int64_t s = 0; s < d.S; ++s)
      for (int64_t c = 0; c < d.C; ++c) {
        T* row = wp + ((r * d.S + s) * d.C + c) * d.Kp;
        for (int64_t k = 0; k < d.Kp; ++k) row[k] = k < d.K ? tap(k, c, r, s) : T(0);
      }
  return wp;
}

// out = conv(in, packed weights) + bias.
template <class T>
void forward_direct(const Direct& d, const T* in, const T* wp, const T* bias, T* out) {
  T* xs = scratch<T, 0>(d.N * d.Hs * d.Ws * d.C);
  const int64_t PQ = d.P * d.Q;
#pragma omp parallel if (parallel(d))
  {
    stage(in, d.N, d.C, d.H, d.W, d.ph, d.pw, d.Hs, d.Ws, d.C, xs);  // ends in a barrier
    T* tile = scratch<T, 1>(d.Q * d.Kp);
#pragma omp for schedule(dynamic, 1)
    for (int64_t np = 0; np < d.N * d.P; ++np) {
      const int64_t n = np / d.P, p = np % d.P;
      product<T, false>(d.Q, d.Kp, d.row(xs, wp, n, p), tile, d.Kp);
      for (int64_t k = 0; k < d.K; ++k) {  // the Q x K tile into NCHW, plus the bias
        T* o = out + (n * d.K + k) * PQ + p * d.Q;
        const T b = bias ? bias[k] : T(0);
        for (int64_t q = 0; q < d.Q; ++q) o[q] = tile[q * d.Kp + k] + b;
      }
    }
  }
}

// A ValueError (through pybind11) naming the kernel when the direct variant does not apply.
void check_applies(const Conv2dArgs& a, const char* op, bool input_gradient) {
  check(direct_applies(a, input_gradient), op, ": the direct variant needs dilation 1 and groups 1",
        input_gradient ? ", and for the input gradient stride 1 and padding smaller than the kernel" : "",
        "; got kernel (", a.R, ", ", a.S, "), stride (", a.stride_h, ", ", a.stride_w, "), padding (", a.pad_h,
        ", ", a.pad_w, "), dilation (", a.dil_h, ", ", a.dil_w, "), groups ", a.groups);
}

}  // namespace

template <class T>
void conv2d_forward_direct_cpu(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y) {
  check_applies(a, "conv2d_forward_direct", false);
  const Direct d = Direct::make<T>(a.N, a.C, a.H, a.W, a.K, a.R, a.S, a.stride_h, a.stride_w, a.pad_h, a.pad_w);
  const T* wp = pack_weights<T>(d, [&](int64_t k, int64_t c, int64_t r, int64_t s) {
    return w[((k * a.C + c) * a.R + r) * a.S + s];
  });
  forward_direct(d, x, wp, bias, y);
}

// dx = conv(dy, w') with w'[c][k] = w[k][c] rotated by 180 degrees, padding (R-1-ph, S-1-pw), stride 1.
template <class T>
void conv2d_backward_input_direct_cpu(const Conv2dArgs& a, const T* dy, const T* w, T* dx) {
  check_applies(a, "conv2d_backward_input_direct", true);
  const Direct d = Direct::make<T>(a.N, a.K, a.P, a.Q, a.C, a.R, a.S, 1, 1, a.R - 1 - a.pad_h, a.S - 1 - a.pad_w);
  const T* wp = pack_weights<T>(d, [&](int64_t c, int64_t k, int64_t r, int64_t s) {
    return w[((k * a.C + c) * a.R + a.R - 1 - r) * a.S + a.S - 1 - s];
  });
  forward_direct(d, dy, wp, static_cast<const T*>(nullptr), dx);
}

template <class T>
void conv2d_backward_weight_direct_cpu(const Conv2dArgs& a, const T* x, const T* dy, T* dw) {
  check_applies(a, "conv2d_backward_weight_direct", false);
  const Direct d = Direct::make<T>(a.N, a.C, a.H, a.W, a.K, a.R, a.S, a.stride_h, a.stride_w, a.pad_h, a.pad_w);
  const int64_t SC = d.S * d.C, size = d.taps() * d.Kp, PQK = d.P * d.Q * d.Kp;
  T* xs = scratch<T, 0>(d.N * d.Hs * d.Ws * d.C);
  T* dys = scratch<T, 3>(d.N * PQK);
  const int threads = parallel(d) ? omp_get_max_threads() : 1;
  T* partial = scratch<T, 4>(threads * size);
  int team = 1;
#pragma omp parallel num_threads(threads)
  {
    stage(x, d.N, d.C, d.H, d.W, d.ph, d.pw, d.Hs, d.Ws, d.C, xs);
    stage(dy, d.N, d.K, d.P, d.Q, 0, 0, d.P, d.Q, d.Kp, dys);
#pragma omp single
    team = omp_get_num_threads();
    T* mine = partial + omp_get_thread_num() * size;
    std::fill_n(mine, size, T(0));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < d.N; ++n)
      for (int64_t r = 0; r < d.R; ++r) {  // dW^T[r] ((s,c) x K) += A @ dY over the image's P x Q outputs
        const Operands<T> op{xs + (n * d.Hs + r) * d.Ws * d.C, 1, d.sw * d.C, d.sh * d.Ws * d.C, dys + n * PQK,
                             d.Kp, d.Q * d.Kp, d.Q, d.P};
        product<T, true>(SC, d.Kp, op, mine + r * SC * d.Kp, d.Kp);
      }
  }
  for (int64_t k = 0; k < d.K; ++k)
    for (int64_t c = 0; c < d.C; ++c)
      for (int64_t r = 0; r < d.R; ++r)
        for (int64_t s = 0; s < d.S; ++s) {
          const int64_t at = ((r * d.S + s) * d.C + c) * d.Kp + k;
          T sum = 0;
          for (int th = 0; th < team; ++th) sum += partial[th * size + at];
          dw[((k * d.C + c) * d.R + r) * d.S + s] = sum;
        }
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_CONV_DIRECT_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
