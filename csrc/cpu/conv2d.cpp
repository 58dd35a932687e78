// 2-D convolution on the CPU: forward, input gradient, weight gradient (NCHW, float32/float64).
//
// Algorithm ("fast" variant): im2col + GEMM. For one group g and a chunk of nb images, im2col copies
// every input patch into a column of a matrix
//     cols[(c, r, s)][(j, p, q)] = x[n0+j, g*C/groups + c, p*stride - pad + r*dil, q*stride - pad + s*dil]
// (zero where the patch leaves the image), so the convolution becomes one matrix product
//     forward          Y_g [K/g, nb*P*Q]    = W_g [K/g, C/g*R*S] @ cols
//     input gradient   cols                 = W_g^T @ dY_g, then col2im adds each column back into
//                                             the pixels it was copied from (the adjoint of im2col)
//     weight gradient  dW_g [K/g, C/g*R*S] += dY_g @ cols^T, accumulated over the chunks
// Several images share one GEMM when P*Q is small (ResNet's 7x7 maps) so the product stays large;
// their outputs are then scattered back to NCHW. A 1x1 kernel with stride 1 and no padding needs no
// im2col at all: each image's x[n] (C, H*W) already is cols, and the convolution is a plain GEMM.
//
// Cost: 2*N*K*P*Q*C/g*R*S flops per pass, all in OpenBLAS (multi-threaded, near the machine's peak
// for large products). im2col/col2im move R*S times the input's size through memory; for 3x3
// kernels on large maps this extra traffic, not the arithmetic, is what separates im2col from a
// direct convolution (oneDNN's). They are parallelised with OpenMP over (row, image) and (channel,
// image); their inner loops are contiguous copies/adds for stride 1 (vectorised) and strided
// gathers otherwise. GEMM runs outside OpenMP regions and threads itself.
// Workspace: cols (C/g*R*S x nb*P*Q) + an NCHW<->GEMM staging buffer, kept per calling thread and
// reused across calls (a fresh allocation would page-fault on every call).
//
// "reference" variant: each output element is its own direct sum over the kernel window (forward),
// over all outputs that read an input pixel (input gradient), or over the batch and the output map
// (weight gradient). No workspace, no GEMM; O(same flops) but without register/cache blocking, so
// an order of magnitude slower. Kept for study and as a check of the fast variant.
#include "cpu/conv2d.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "cpu/gemm.h"

namespace pyfastdl::cpu {
namespace {

// Outputs o in [lo, hi) whose input index o*stride + offset lies inside [0, in).
struct Range {
  int64_t lo, hi;
};
Range valid_outputs(int64_t n_out, int64_t in, int64_t stride, int64_t offset) {
  int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  int64_t hi = offset > in - 1 ? 0 : (in - 1 - offset) / stride + 1;
  lo = std::min(lo, n_out);
  hi = std::min(hi, n_out);
  return {lo, std::max(lo, hi)};
}

// Per-thread scratch memory, grown on demand and reused by later calls from the same thread.
template <class T>
T* workspace(int64_t n) {
  thread_local std::unique_ptr<T[]> buf;
  thread_local int64_t size = 0;
  if (n > size) {
    buf.reset(new T[n]);
    size = n;
  }
  return buf.get();
}

// How many images share one GEMM: enough that the product has ~kMinColumns columns, no more than
// the cols buffer budget allows (at least one image), never more than N. A pointwise convolution
// reads its columns straight from x, one image at a time.
constexpr int64_t kMinColumns = 1024;
// Below this many elements a loop runs on the calling thread: waking the OpenMP team costs more
// than the copy, and idle team threads spinning would compete with OpenBLAS's threads.
constexpr int64_t kParallelMin = int64_t(1) << 15;
constexpr int64_t kColsBudget = int64_t(1) << 22;  // elements
int64_t images_per_chunk(const Conv2dArgs& a) {
  if (a.is_pointwise()) return 1;
  int64_t per_image = a.col_rows() * a.col_cols();
  int64_t nb = (kMinColumns + a.col_cols() - 1) / a.col_cols();
  nb = std::min(nb, std::max<int64_t>(1, kColsBudget / per_image));
  return std::min(nb, a.N);
}

// Copies nb x rows planes of `len` elements between two layouts, adding bias[row] if given:
// element (j, row, i) lives at src + j*src_image + row*src_row + i (likewise dst). Used to move an
// output block between NCHW (image stride K*P*Q, row stride P*Q) and the GEMM's [rows, nb*P*Q]
// layout (image stride P*Q, row stride nb*P*Q). src == dst adds the bias in place.
template <class T>
void copy_planes(const T* src, int64_t src_image, int64_t src_row, T* dst, int64_t dst_image, int64_t dst_row,
                 int64_t nb, int64_t rows, int64_t len, const T* bias) {
#pragma omp parallel for collapse(2) schedule(static) if (nb * rows * len >= kParallelMin)
  for (int64_t j = 0; j < nb; ++j)
    for (int64_t k = 0; k < rows; ++k) {
      const T* s = src + j * src_image + k * src_row;
      T* d = dst + j * dst_image + k * dst_row;
      const T b = bias ? bias[k] : T(0);
      for (int64_t i = 0; i < len; ++i) d[i] = s[i] + b;
    }
}

// cols[(c*R + r)*S + s][j*P*Q + p*Q + q] = x[n0+j, c0+c, p*sh - ph + r*dh, q*sw - pw + s*dw], 0 outside.
template <class T>
void im2col(const Conv2dArgs& a, const T* x, int64_t n0, int64_t nb, int64_t c0, T* cols) {
  const int64_t RS = a.R * a.S, PQ = a.P * a.Q, ld = nb * PQ, sw = a.stride_w;
#pragma omp parallel for collapse(2) schedule(static) if (a.col_rows() * ld >= kParallelMin)
  for (int64_t row = 0; row < a.C_per_group() * RS; ++row)
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t c = row / RS, r = row % RS / a.S, s = row % a.S;
      const T* plane = x + ((n0 + j) * a.C + c0 + c) * a.H * a.W;
      T* dst = cols + row * ld + j * PQ;
      const int64_t oh = r * a.dil_h - a.pad_h, ow = s * a.dil_w - a.pad_w;
      const Range ps = valid_outputs(a.P, a.H, a.stride_h, oh), qs = valid_outputs(a.Q, a.W, sw, ow);
      std::fill(dst, dst + ps.lo * a.Q, T(0));
      for (int64_t p = ps.lo; p < ps.hi; ++p) {
        const T* in = plane + (p * a.stride_h + oh) * a.W;
        T* out = dst + p * a.Q;
        std::fill(out, out + qs.lo, T(0));
        if (sw == 1) {
          for (int64_t q = qs.lo; q < qs.hi; ++q) out[q] = in[q + ow];
        } else {
          for (int64_t q = qs.lo; q < qs.hi; ++q) out[q] = in[q * sw + ow];
        }
        std::fill(out + qs.hi, out + a.Q, T(0));
      }
      std::fill(dst + ps.hi * a.Q, dst + PQ, T(0));
    }
}

// The adjoint of im2col: dx[n0+j, c0+c] = sum of the columns' entries copied from each pixel.
// One task per (channel, image) plane, so no two threads add into the same pixel.
template <class T>
void col2im(const Conv2dArgs& a, const T* cols, int64_t n0, int64_t nb, int64_t c0, T* dx) {
  const int64_t RS = a.R * a.S, PQ = a.P * a.Q, ld = nb * PQ, sw = a.stride_w;
#pragma omp parallel for collapse(2) schedule(static) if (a.col_rows() * ld >= kParallelMin)
  for (int64_t c = 0; c < a.C_per_group(); ++c)
    for (int64_t j = 0; j < nb; ++j) {
      T* plane = dx + ((n0 + j) * a.C + c0 + c) * a.H * a.W;
      std::fill(plane, plane + a.H * a.W, T(0));
      for (int64_t rs = 0; rs < RS; ++rs) {
        const int64_t r = rs / a.S, s = rs % a.S;
        const T* src = cols + (c * RS + rs) * ld + j * PQ;
        const int64_t oh = r * a.dil_h - a.pad_h, ow = s * a.dil_w - a.pad_w;
        const Range ps = valid_outputs(a.P, a.H, a.stride_h, oh), qs = valid_outputs(a.Q, a.W, sw, ow);
        for (int64_t p = ps.lo; p < ps.hi; ++p) {
          const T* in = src + p * a.Q;
          T* out = plane + (p * a.stride_h + oh) * a.W;
          if (sw == 1) {
            for (int64_t q = qs.lo; q < qs.hi; ++q) out[q + ow] += in[q];
          } else {
            for (int64_t q = qs.lo; q < qs.hi; ++q) out[q * sw + ow] += in[q];
          }
        }
      }
    }
}

// The pieces every fast pass needs for one (chunk, group): where the GEMM's [K/g, m*P*Q] operand
// lives (straight in NCHW when the chunk is one image, else in a staging buffer) and where the
// im2col matrix lives (straight in x for a pointwise convolution, else in the cols buffer).
template <class T>
struct Chunking {
  const Conv2dArgs& a;
  int64_t nb;
  T* cols;     // col_rows() x nb*P*Q, unused when pointwise
  T* staging;  // K/g x nb*P*Q, unused when nb == 1

  explicit Chunking(const Conv2dArgs& args) : a(args), nb(images_per_chunk(args)) {
    const int64_t cols_size = a.is_pointwise() ? 0 : a.col_rows() * nb * a.col_cols();
    const int64_t staging_size = nb > 1 ? a.K_per_group() * nb * a.col_cols() : 0;
    cols = workspace<T>(cols_size + staging_size);
    staging = cols + cols_size;
  }

  // Offset of (image n, channel ch) in an NCHW array with `ch_total` channels of `plane` elements.
  static int64_t at(int64_t n, int64_t ch, int64_t ch_total, int64_t plane) { return (n * ch_total + ch) * plane; }

  // The im2col matrix of images [n0, n0+m), group g, and its leading dimension.
  std::pair<const T*, int64_t> columns(const T* x, int64_t n0, int64_t m, int64_t g) const {
    if (a.is_pointwise()) return {x + at(n0, g * a.C_per_group(), a.C, a.H * a.W), a.H * a.W};
    im2col(a, x, n0, m, g * a.C_per_group(), cols);
    return {cols, m * a.col_cols()};
  }

  // Output-side block of images [n0, n0+m), group g, as the GEMM's C: a pointer into y and its
  // leading dimension when m == 1, else the staging buffer (finish_out_block writes it back).
  std::pair<T*, int64_t> out_block(T* y, int64_t n0, int64_t m, int64_t g) const {
    const int64_t PQ = a.col_cols();
    if (m == 1) return {y + at(n0, g * a.K_per_group(), a.K, PQ), PQ};
    return {staging, m * PQ};
  }

  // The same block of an output gradient dy, as a GEMM operand (copied to the staging buffer if m > 1).
  std::pair<const T*, int64_t> grad_block(const T* dy, int64_t n0, int64_t m, int64_t g) const {
    const int64_t PQ = a.col_cols(), Kg = a.K_per_group();
    const T* src = dy + at(n0, g * Kg, a.K, PQ);
    if (m == 1) return {src, PQ};
    copy_planes<T>(src, a.K * PQ, PQ, staging, PQ, m * PQ, m, Kg, PQ, nullptr);
    return {staging, m * PQ};
  }

  // Writes a staged block back to y (adding bias), or adds bias in place when it was computed in y.
  void finish_out_block(T* y, int64_t n0, int64_t m, int64_t g, const T* bias) const {
    const int64_t PQ = a.col_cols(), Kg = a.K_per_group();
    T* dst = y + at(n0, g * Kg, a.K, PQ);
    const T* b = bias ? bias + g * Kg : nullptr;
    if (m > 1) copy_planes<T>(staging, PQ, m * PQ, dst, a.K * PQ, PQ, m, Kg, PQ, b);
    else if (b) copy_planes<T>(dst, a.K * PQ, PQ, dst, a.K * PQ, PQ, 1, Kg, PQ, b);
  }
};

}  // namespace

template <class T>
void conv2d_forward_cpu(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y) {
  const Chunking<T> ch(a);
  const int64_t Kg = a.K_per_group(), CRS = a.col_rows();
  for (int64_t n0 = 0; n0 < a.N; n0 += ch.nb) {
    const int64_t m = std::min(ch.nb, a.N - n0);
    for (int64_t g = 0; g < a.groups; ++g) {
      auto [cols, ldcols] = ch.columns(x, n0, m, g);
      auto [out, ldout] = ch.out_block(y, n0, m, g);
      gemm(false, false, Kg, m * a.col_cols(), CRS, T(1), w + g * Kg * CRS, CRS, cols, ldcols, T(0), out, ldout);
      ch.finish_out_block(y, n0, m, g, bias);
    }
  }
}

template <class T>
void conv2d_backward_input_cpu(const Conv2dArgs& a, const T* dy, const T* w, T* dx) {
  const Chunking<T> ch(a);
  const int64_t Kg = a.K_per_group(), Cg = a.C_per_group(), CRS = a.col_rows(), HW = a.H * a.W;
  for (int64_t n0 = 0; n0 < a.N; n0 += ch.nb) {
    const int64_t m = std::min(ch.nb, a.N - n0);
    for (int64_t g = 0; g < a.groups; ++g) {
      auto [dyg, lddy] = ch.grad_block(dy, n0, m, g);
      const T* wg = w + g * Kg * CRS;
      if (a.is_pointwise()) {  // dx[n, group g] = W_g^T @ dY[n, group g], straight into dx
        gemm(true, false, Cg, HW, Kg, T(1), wg, CRS, dyg, lddy, T(0), dx + Chunking<T>::at(n0, g * Cg, a.C, HW), HW);
      } else {
        gemm(true, false, CRS, m * a.col_cols(), Kg, T(1), wg, CRS, dyg, lddy, T(0), ch.cols, m * a.col_cols());
        col2im(a, ch.cols, n0, m, g * Cg, dx);
      }
    }
  }
}

template <class T>
void conv2d_backward_weight_cpu(const Conv2dArgs& a, const T* x, const T* dy, T* dw) {
  const Chunking<T> ch(a);
  const int64_t Kg = a.K_per_group(), CRS = a.col_rows();
  for (int64_t n0 = 0; n0 < a.N; n0 += ch.nb) {
    const int64_t m = std::min(ch.nb, a.N - n0);
    for (int64_t g = 0; g < a.groups; ++g) {
      auto [cols, ldcols] = ch.columns(x, n0, m, g);
      auto [dyg, lddy] = ch.grad_block(dy, n0, m, g);
      gemm(false, true, Kg, CRS, m * a.col_cols(), T(1), dyg, lddy, cols, ldcols, T(n0 == 0 ? 0 : 1),
           dw + g * Kg * CRS, CRS);
    }
  }
}

// ---- reference variant: direct loops -------------------------------------------------------------

template <class T>
void conv2d_forward_reference_cpu(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y) {
  const int64_t Cg = a.C_per_group(), Kg = a.K_per_group();
#pragma omp parallel for collapse(2) schedule(static) if (a.macs() >= kParallelMin)
  for (int64_t n = 0; n < a.N; ++n)
    for (int64_t k = 0; k < a.K; ++k) {
      const int64_t c0 = k / Kg * Cg;
      for (int64_t p = 0; p < a.P; ++p)
        for (int64_t q = 0; q < a.Q; ++q) {
          T acc = bias ? bias[k] : T(0);
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t r = 0; r < a.R; ++r)
              for (int64_t s = 0; s < a.S; ++s) {
                const int64_t h = p * a.stride_h - a.pad_h + r * a.dil_h;
                const int64_t v = q * a.stride_w - a.pad_w + s * a.dil_w;
                if (h < 0 || h >= a.H || v < 0 || v >= a.W) continue;
                acc += x[((n * a.C + c0 + c) * a.H + h) * a.W + v] * w[((k * Cg + c) * a.R + r) * a.S + s];
              }
          y[((n * a.K + k) * a.P + p) * a.Q + q] = acc;
        }
    }
}

template <class T>
void conv2d_backward_input_reference_cpu(const Conv2dArgs& a, const T* dy, const T* w, T* dx) {
  const int64_t Cg = a.C_per_group(), Kg = a.K_per_group();
#pragma omp parallel for collapse(2) schedule(static) if (a.macs() >= kParallelMin)
  for (int64_t n = 0; n < a.N; ++n)
    for (int64_t c = 0; c < a.C; ++c) {
      const int64_t k0 = c / Cg * Kg, cg = c % Cg;
      for (int64_t h = 0; h < a.H; ++h)
        for (int64_t v = 0; v < a.W; ++v) {
          // Output (p, q) read pixel (h, v) through tap (r, s) iff p*stride = h + pad - r*dil.
          T acc = 0;
          for (int64_t k = k0; k < k0 + Kg; ++k)
            for (int64_t r = 0; r < a.R; ++r)
              for (int64_t s = 0; s < a.S; ++s) {
                const int64_t ph = h + a.pad_h - r * a.dil_h, qv = v + a.pad_w - s * a.dil_w;
                if (ph < 0 || qv < 0 || ph % a.stride_h || qv % a.stride_w) continue;
                const int64_t p = ph / a.stride_h, q = qv / a.stride_w;
                if (p >= a.P || q >= a.Q) continue;
                acc += dy[((n * a.K + k) * a.P + p) * a.Q + q] * w[((k * Cg + cg) * a.R + r) * a.S + s];
              }
          dx[((n * a.C + c) * a.H + h) * a.W + v] = acc;
        }
    }
}

template <class T>
void conv2d_backward_weight_reference_cpu(const Conv2dArgs& a, const T* x, const T* dy, T* dw) {
  const int64_t Cg = a.C_per_group(), Kg = a.K_per_group();
#pragma omp parallel for collapse(2) schedule(static) if (a.macs() >= kParallelMin)
  for (int64_t k = 0; k < a.K; ++k)
    for (int64_t c = 0; c < Cg; ++c) {
      const int64_t cx = k / Kg * Cg + c;  // the input channel this weight reads
      for (int64_t r = 0; r < a.R; ++r)
        for (int64_t s = 0; s < a.S; ++s) {
          T acc = 0;
          for (int64_t n = 0; n < a.N; ++n)
            for (int64_t p = 0; p < a.P; ++p)
              for (int64_t q = 0; q < a.Q; ++q) {
                const int64_t h = p * a.stride_h - a.pad_h + r * a.dil_h;
                const int64_t v = q * a.stride_w - a.pad_w + s * a.dil_w;
                if (h < 0 || h >= a.H || v < 0 || v >= a.W) continue;
                acc += dy[((n * a.K + k) * a.P + p) * a.Q + q] * x[((n * a.C + cx) * a.H + h) * a.W + v];
              }
          dw[((k * Cg + c) * a.R + r) * a.S + s] = acc;
        }
    }
}

#define PYFASTDL_INSTANTIATE(T)                                                                          \
  template void conv2d_forward_cpu<T>(const Conv2dArgs&, const T*, const T*, const T*, T*);              \
  template void conv2d_backward_input_cpu<T>(const Conv2dArgs&, const T*, const T*, T*);                 \
  template void conv2d_backward_weight_cpu<T>(const Conv2dArgs&, const T*, const T*, T*);                \
  template void conv2d_forward_reference_cpu<T>(const Conv2dArgs&, const T*, const T*, const T*, T*);    \
  template void conv2d_backward_input_reference_cpu<T>(const Conv2dArgs&, const T*, const T*, T*);       \
  template void conv2d_backward_weight_reference_cpu<T>(const Conv2dArgs&, const T*, const T*, T*);
PYFASTDL_INSTANTIATE(float)
PYFASTDL_INSTANTIATE(double)
#undef PYFASTDL_INSTANTIATE

}  // namespace pyfastdl::cpu
