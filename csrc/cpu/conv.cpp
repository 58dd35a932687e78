// 2-D convolution on the CPU: forward, input gradient, weight gradient (NCHW, float32/float64).
// Variants: "im2col" (below), "winograd" (conv_winograd.cpp: F(4x4, 3x3) for 3x3 stride-1 layers),
// "direct" (conv_direct.cpp: packed weights and register tiles, no im2col copy), "fast" = the one
// measured fastest per shape and pass (pick(), the end of this file), and "reference" (direct loops).
//
// What each step bought (float32, one thread, ratio = torch 2.13's time / ours, median over the
// convolution layers of LeNet-5, NIN, CIFAR ResNet-20, FCN-8s and YOLOv1 at their CPU recipes' sizes
// and batch sizes, forward / input gradient / weight gradient; 2-core AMD EPYC Zen 3 VM, AVX2, no
// AVX-512, thread CPU time of ours and torch's calls alternated, machine shared with a load of 6-20):
//                                                                  forward  input grad  weight grad  worst
//   1. im2col + GEMM (OpenBLAS)                      (25 layers)      0.77     0.77        0.87      0.52
//   2. + Winograd F(4x4, 3x3) on the 3x3 stride-1 layers (25)         1.18     1.30        1.07      0.52
//   2. the same, remeasured on 31 layers (every distinct one)         1.17     1.33        1.12      0.52
//   3. + direct on 5x5, strided and few-channel layers, and a kernel
//      covering the whole input as one GEMM (31 layers)               1.17     1.36        1.19      0.79
//   4. im2col (not Winograd nor direct) on wide layers, C*K > 128*128, and on strided layers with
//      C*K > 2048: ResNet-18 at 64x64, batch 32, the three passes of its 20 convolutions summed
//      (thread CPU time, load 7): 1,991 -> 752 ms, torch 1,311 ms; its 512-channel 2x2 layers went
//      from 0.16 / 0.33 / 0.49 to 1.46 / 2.07 / 6.9 (torch's weight gradient is slow there), the
//      256-channel 4x4 ones from 0.64 / 0.49 / 0.81 to 0.89 / 0.59 / 1.36, and ImageNet's 256-channel
//      14x14 layer (batch 8) from 0.32 / 0.31 / 0.58 to 1.03 / 0.90 / 1.28.
//   5. Winograd again on wide layers with maps of >= 4x4 (2x2 maps and weight gradients stay im2col),
//      its tile blocks grown where the transformed weights pass 4 MiB (conv_winograd.cpp): those blocks
//      had streamed 9.4 MB of weights from L3 every 6-14 tiles. On a 2-core AMD EPYC Zen 4 (AVX-512),
//      thread CPU time, load 4, forward / input grad against torch: ResNet-18's 256-channel 4x4 layer
//      0.53 / 0.56 -> 0.73-0.90 / 0.88-0.93, ImageNet's 256-channel 14x14 layer 0.77 / 0.75 ->
//      0.96-1.17 / 0.93-1.23 (the range: AVX2 and AVX-512 copies).
//   6. direct (not im2col) wherever its packed weights fit in 512 KiB and, with AVX-512's 14-row tiles,
//      on output rows down to 5; strided weight gradients direct too. Zen 4, thread CPU time, load 4:
//      ConvS2S's 1x3 convolutions (128 -> 256 channels, 12-14 steps) forward 0.90 -> 1.14, input
//      gradient 0.69-0.82 -> 0.99-1.09; ResNet-20's stride-2 layers (CIFAR 32x32 and the recipe's
//      20x20) forward 0.51-0.80 -> 0.78-1.20, weight gradient 0.48-0.74 -> 0.83-1.09.
//   7. im2col/col2im through a table of taps on output rows shorter than 16 (tap_table below): ResNet-18's
//      512-channel 2x2 layer 0.65 / 0.69 / 1.48 -> 0.92 / 0.81 / 1.59, its stride-2 layers to 4x4 and
//      2x2 forward 0.67-0.69 -> 0.79-0.91; the ResNet-18 step 1.00-1.07 -> 1.12x torch (one thread).
// Rung 3 lifted the worst layers: NIN's 5x5 on 24 channels 0.52-0.68 -> 0.84-0.89, YOLO's 5x5
// stride-2 stem 0.59-0.61 -> 0.80-0.98, LeNet's C3 0.68-0.77 -> 0.80-1.59 and C5 0.67-1.04 -> 2.2-3.4.
// Winograd's own rungs (conv_winograd.cpp): broadcasting the micro-kernel's operand with a vector
// constructor instead of `0 + x` (2.4x on its products), skewing the 36 points' strides off powers
// of two and vectorising the weight transform (4x on that transform at 64-128 channels).
// What is left under 1.0 (at this load, +-10% from run to run): ResNet-20's stride-2 layers
// (0.8-1.0), YOLO's 3x3 layers on 16-32 channels (input and weight gradients 0.85-0.93), LeNet's C3
// input gradient (0.8, im2col: 6 input channels), NIN's 5x5 on 24 channels (0.84-0.89).
//
// Algorithm ("im2col" variant): im2col + GEMM. For one group g and a chunk of nb images, im2col copies
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
// Nor does a kernel that covers the whole unpadded input (LeNet's C5: one output per image): that
// convolution is a fully connected layer, y (N, K) = x (N, C*R*S) @ W^T, one GEMM over the batch.
//
// Cost: 2*N*K*P*Q*C/g*R*S flops per pass, all in OpenBLAS. im2col/col2im move R*S times the
// input's size through memory; for 3x3 kernels on large maps this extra traffic, not the
// arithmetic, is what separates im2col from a direct convolution (oneDNN's). Their inner loops are
// contiguous copies/adds for stride 1 (vectorised) and strided gathers otherwise.
// Threads: the (chunk of images, group) tasks are independent, so when there are at least as many
// tasks as threads each OpenMP thread runs whole tasks, im2col and a single-threaded GEMM, with one
// barrier per pass (the weight gradient sums per-thread partial results at the end). Multi-
// threaded GEMMs synchronise many times per product and slow down badly when another process
// holds a core; this coarse split does not. With fewer tasks (one image, one group) the tasks run
// in turn, the OpenMP team splitting each GEMM (cpu/gemm.h) and each copy.
// Cache: a single image whose im2col matrix would pass 1 MiB (ResNet's 3x3 layers on 56x56 maps:
// 7 MiB) is taken in blocks of output rows, so each GEMM reads columns that im2col has just written
// to L2 instead of from memory (col2im likewise adds each block back while it is in cache).
// Workspace: cols (C/g*R*S x nb*P*Q, or one block of rows) + an NCHW<->GEMM staging buffer, kept
// per thread and reused across calls (a fresh allocation would page-fault on every call).
//
// "reference" variant: each output element is its own direct sum over the kernel window (forward),
// over all outputs that read an input pixel (input gradient), or over the batch and the output map
// (weight gradient). No workspace, no GEMM; O(same flops) but without register/cache blocking, so
// an order of magnitude slower. Kept for study and as a check of the other variants.
#include "cpu/conv.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <vector>

#include "cpu/conv_tiles.h"
#include "cpu/gemm.h"
#include "cpu/parallel.h"

namespace pyfastdl::cpu::PYFASTDL_ISA {
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

// Below this many elements a copy loop runs on the calling thread: waking the OpenMP team costs
// more than the copy.
constexpr int64_t kParallelMin = int64_t(1) << 15;

// How the batch is cut into chunks of nb images that share one GEMM, and the tasks (chunk, group)
// that the passes loop over. nb gives the product about kMinColumns columns (a pointwise
// convolution reads its columns straight from x, one image at a time) within the cols budget;
// the number of chunks is then rounded up to a multiple of the thread count so tasks divide evenly.
// A single image whose im2col matrix outgrows kBlockBudget is cut into blocks of `rows` output rows,
// so the GEMM reads the columns im2col has just written from cache (L2) rather than from memory.
constexpr int64_t kMinColumns = 1024;
constexpr int64_t kColsBudget = int64_t(1) << 22;   // elements
constexpr int64_t kBlockBudget = int64_t(1) << 18;  // elements (1 MiB of float32)
constexpr int64_t kMinBlockColumns = 256;
struct Plan {
  int64_t nb, chunks, tasks, rows;
  Plan(const Conv2dArgs& a, int64_t threads) {
    int64_t per_chunk = 1;
    if (!a.is_pointwise()) {
      per_chunk = (kMinColumns + a.col_cols() - 1) / a.col_cols();
      per_chunk = std::min(per_chunk, std::max<int64_t>(1, kColsBudget / (a.col_rows() * a.col_cols())));
    }
    int64_t n_chunks = (a.N + per_chunk - 1) / per_chunk;
    n_chunks = std::min(a.N, (n_chunks + threads - 1) / threads * threads);
    nb = (a.N + n_chunks - 1) / n_chunks;
    chunks = (a.N + nb - 1) / nb;
    tasks = chunks * a.groups;
    rows = a.P;
    if (nb == 1 && !a.is_pointwise()) {
      rows = std::max(kBlockBudget / (a.col_rows() * a.Q), (kMinBlockColumns + a.Q - 1) / a.Q);
      rows = std::min(rows, a.P);
    }
  }
};

// Whether the (chunk, group) tasks run side by side, one per OpenMP thread with a single-threaded
// GEMM each (one barrier per pass: robust when the cores are shared), or one after another with
// the OpenMP team splitting each GEMM (cpu/gemm.h) and each copy (when there are fewer tasks than threads).
// Inside a task-parallel region the copy loops' own `omp parallel` pragmas run on one thread.
// Small convolutions (under kTaskParallelMin multiply-adds, tens of microseconds) stay on the
// calling thread: waking a team would cost more, and far more when the cores are busy elsewhere.
constexpr int64_t kTaskParallelMin = int64_t(1) << 20;
bool task_parallel(const Conv2dArgs& a, const Plan& plan) {
  const int64_t threads = omp_get_max_threads();
  return threads > 1 && plan.tasks >= threads && a.macs() >= kTaskParallelMin;
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

// Output rows shorter than this take im2col and col2im through a table of taps (below).
constexpr int64_t kShortRow = 16;

// For output rows [p0, p1) of short rows (Q < kShortRow: ResNet-18's 2x2-8x8 maps, CIFAR-sized stride-2
// layers): where each output reads through each tap, table[(r*S + s)*L + (p-p0)*Q + q] = the offset
// of input pixel (p*sh - ph + r*dh, q*sw - pw + s*dw) in its plane, or -1 in the padding. There the
// row-by-row copies below spent more on their bookkeeping (two divisions, three fills and a memcpy
// for 2-15 values) than on the values: im2col + GEMM of ResNet-18's 512-channel 2x2 layer took 9.7 ms,
// its GEMM alone 6.7. Through the table a row of cols is one gather loop (rows of 6-10, e.g. NIN's and
// FCN's 6x6 maps: the im2col passes 10-40% faster; from 12-14 on, as ConvS2S's, about even).
std::vector<int64_t> tap_table(const Conv2dArgs& a, int64_t p0, int64_t p1) {
  const int64_t L = (p1 - p0) * a.Q;
  std::vector<int64_t> table(a.R * a.S * L);
  for (int64_t r = 0; r < a.R; ++r)
    for (int64_t s = 0; s < a.S; ++s)
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t q = 0; q < a.Q; ++q) {
          const int64_t h = p * a.stride_h - a.pad_h + r * a.dil_h, v = q * a.stride_w - a.pad_w + s * a.dil_w;
          table[(r * a.S + s) * L + (p - p0) * a.Q + q] = h >= 0 && h < a.H && v >= 0 && v < a.W ? h * a.W + v : -1;
        }
  return table;
}

// Output rows [p0, p1) of images [n0, n0+nb), channels [c0, c0 + C/groups), with L = (p1-p0)*Q:
// cols[(c*R + r)*S + s][j*L + (p-p0)*Q + q] = x[n0+j, c0+c, p*sh - ph + r*dh, q*sw - pw + s*dw], 0 outside.
template <class T>
void im2col(const Conv2dArgs& a, const T* x, int64_t n0, int64_t nb, int64_t c0, int64_t p0, int64_t p1, T* cols) {
  const int64_t RS = a.R * a.S, L = (p1 - p0) * a.Q, ld = nb * L, sw = a.stride_w;
  if (a.Q < kShortRow) {
    const std::vector<int64_t> table = tap_table(a, p0, p1);
#pragma omp parallel for collapse(2) schedule(static) if (a.col_rows() * ld >= kParallelMin)
    for (int64_t row = 0; row < a.C_per_group() * RS; ++row)
      for (int64_t j = 0; j < nb; ++j) {
        const T* plane = x + ((n0 + j) * a.C + c0 + row / RS) * a.H * a.W;
        const int64_t* taps = table.data() + row % RS * L;
        T* dst = cols + row * ld + j * L;
        for (int64_t t = 0; t < L; ++t) dst[t] = taps[t] < 0 ? T(0) : plane[taps[t]];
      }
    return;
  }
#pragma omp parallel for collapse(2) schedule(static) if (a.col_rows() * ld >= kParallelMin)
  for (int64_t row = 0; row < a.C_per_group() * RS; ++row)
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t c = row / RS, r = row % RS / a.S, s = row % a.S;
      const T* plane = x + ((n0 + j) * a.C + c0 + c) * a.H * a.W;
      T* dst = cols + row * ld + j * L;
      const int64_t oh = r * a.dil_h - a.pad_h, ow = s * a.dil_w - a.pad_w;
      const Range ps = valid_outputs(a.P, a.H, a.stride_h, oh), qs = valid_outputs(a.Q, a.W, sw, ow);
      const int64_t lo = std::clamp(ps.lo, p0, p1), hi = std::clamp(ps.hi, lo, p1);
      std::fill(dst, dst + (lo - p0) * a.Q, T(0));
      for (int64_t p = lo; p < hi; ++p) {
        const T* in = plane + (p * a.stride_h + oh) * a.W;
        T* out = dst + (p - p0) * a.Q;
        std::fill(out, out + qs.lo, T(0));
        if (sw == 1) {
          std::memcpy(out + qs.lo, in + qs.lo + ow, (qs.hi - qs.lo) * sizeof(T));
        } else {
          for (int64_t q = qs.lo; q < qs.hi; ++q) out[q] = in[q * sw + ow];
        }
        std::fill(out + qs.hi, out + a.Q, T(0));
      }
      std::fill(dst + (hi - p0) * a.Q, dst + L, T(0));
    }
}

// The adjoint of im2col: adds to dx[n0+j, c0+c] the columns' entries copied from each pixel (for
// output rows [p0, p1); dx must be zeroed before the first block). One OpenMP task per (channel,
// image) plane, so no two threads add into the same pixel.
template <class T>
void col2im(const Conv2dArgs& a, const T* cols, int64_t n0, int64_t nb, int64_t c0, int64_t p0, int64_t p1, T* dx) {
  const int64_t RS = a.R * a.S, L = (p1 - p0) * a.Q, ld = nb * L, sw = a.stride_w;
  if (a.Q < kShortRow) {  // the same sums in the same order, through the tap table
    const std::vector<int64_t> table = tap_table(a, p0, p1);
#pragma omp parallel for collapse(2) schedule(static) if (a.col_rows() * ld >= kParallelMin)
    for (int64_t c = 0; c < a.C_per_group(); ++c)
      for (int64_t j = 0; j < nb; ++j) {
        T* plane = dx + ((n0 + j) * a.C + c0 + c) * a.H * a.W;
        for (int64_t rs = 0; rs < RS; ++rs) {
          const T* src = cols + (c * RS + rs) * ld + j * L;
          const int64_t* taps = table.data() + rs * L;
          for (int64_t t = 0; t < L; ++t)
            if (taps[t] >= 0) plane[taps[t]] += src[t];
        }
      }
    return;
  }
#pragma omp parallel for collapse(2) schedule(static) if (a.col_rows() * ld >= kParallelMin)
  for (int64_t c = 0; c < a.C_per_group(); ++c)
    for (int64_t j = 0; j < nb; ++j) {
      T* plane = dx + ((n0 + j) * a.C + c0 + c) * a.H * a.W;
      for (int64_t rs = 0; rs < RS; ++rs) {
        const int64_t r = rs / a.S, s = rs % a.S;
        const T* src = cols + (c * RS + rs) * ld + j * L;
        const int64_t oh = r * a.dil_h - a.pad_h, ow = s * a.dil_w - a.pad_w;
        const Range ps = valid_outputs(a.P, a.H, a.stride_h, oh), qs = valid_outputs(a.Q, a.W, sw, ow);
        for (int64_t p = std::max(ps.lo, p0); p < std::min(ps.hi, p1); ++p) {
          const T* in = src + (p - p0) * a.Q;
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

// Offset of (image n, channel ch) in an NCHW array with `channels` channels of `plane` elements.
int64_t at(int64_t n, int64_t ch, int64_t channels, int64_t plane) { return (n * channels + ch) * plane; }

// A kernel the size of the unpadded input, one group: a fully connected layer on x viewed as (N, C*R*S).
bool is_dense(const Conv2dArgs& a) {
  return a.groups == 1 && a.P == 1 && a.Q == 1 && a.pad_h == 0 && a.pad_w == 0 && a.dil_h == 1 && a.dil_w == 1 &&
         a.H == a.R && a.W == a.S;
}

// One task: images [n0, n0+m) of one group g, with the calling thread's scratch buffers, taken in
// blocks of output rows [p0, p1) (one block unless the plan cuts single images). It knows where the
// GEMM operands live: the im2col matrix straight in x for a pointwise convolution, else in `cols`;
// an output block straight in NCHW when m == 1, else in `staging` as [K/g, m*P*Q].
template <class T>
struct Task {
  const Conv2dArgs& a;
  int64_t n0, m, g;
  T* cols;     // col_rows() x nb*rows*Q, unused when pointwise
  T* staging;  // K/g x nb*P*Q, unused when nb == 1

  Task(const Conv2dArgs& args, const Plan& plan, int64_t t) : a(args) {
    const int64_t chunk = t / a.groups;
    g = t % a.groups;
    n0 = chunk * plan.nb;
    m = std::min(plan.nb, a.N - n0);
    const int64_t cols_size = a.is_pointwise() ? 0 : a.col_rows() * plan.nb * plan.rows * a.Q;
    const int64_t staging_size = plan.nb > 1 ? a.K_per_group() * plan.nb * a.col_cols() : 0;
    cols = workspace<T>(cols_size + staging_size);
    staging = cols + cols_size;
  }

  int64_t columns_n(int64_t p0, int64_t p1) const { return m * (p1 - p0) * a.Q; }  // GEMM columns of a block

  // The im2col matrix of this task's images and group for output rows [p0, p1), and its leading
  // dimension. (A pointwise convolution has P = H, Q = W: its block starts at row p0 of x.)
  std::pair<const T*, int64_t> columns(const T* x, int64_t p0, int64_t p1) const {
    if (a.is_pointwise()) return {x + at(n0, g * a.C_per_group(), a.C, a.H * a.W) + p0 * a.W, a.H * a.W};
    im2col(a, x, n0, m, g * a.C_per_group(), p0, p1, cols);
    return {cols, columns_n(p0, p1)};
  }

  // The task's block of an output y from row p0, as the GEMM's C (finish_out_block then writes the
  // staged case back; when m > 1 there is a single block, p0 = 0).
  std::pair<T*, int64_t> out_block(T* y, int64_t p0) const {
    if (m == 1) return {y + at(n0, g * a.K_per_group(), a.K, a.col_cols()) + p0 * a.Q, a.col_cols()};
    return {staging, columns_n(0, a.P)};
  }

  // Writes a staged block back to y adding bias, or adds bias in place when it was computed in y.
  void finish_out_block(T* y, const T* bias) const {
    const int64_t PQ = a.col_cols(), Kg = a.K_per_group();
    T* dst = y + at(n0, g * Kg, a.K, PQ);
    const T* b = bias ? bias + g * Kg : nullptr;
    if (m > 1) copy_planes<T>(staging, PQ, m * PQ, dst, a.K * PQ, PQ, m, Kg, PQ, b);
    else if (b) copy_planes<T>(dst, a.K * PQ, PQ, dst, a.K * PQ, PQ, 1, Kg, PQ, b);
  }

  // The task's block of an output gradient dy from row p0, as a GEMM operand (copied to staging
  // when m > 1).
  std::pair<const T*, int64_t> grad_block(const T* dy, int64_t p0) const {
    const int64_t PQ = a.col_cols(), Kg = a.K_per_group();
    const T* src = dy + at(n0, g * Kg, a.K, PQ);
    if (m == 1) return {src + p0 * a.Q, PQ};
    copy_planes<T>(src, a.K * PQ, PQ, staging, PQ, m * PQ, m, Kg, PQ, nullptr);
    return {staging, m * PQ};
  }

  // Zeroes the task's channels of dx, which col2im then accumulates into block by block.
  void zero_input_block(T* dx) const {
    const int64_t plane = a.C_per_group() * a.H * a.W;
    for (int64_t j = 0; j < m; ++j) std::fill_n(dx + at(n0 + j, g * a.C_per_group(), a.C, a.H * a.W), plane, T(0));
  }
};

// Calls fn(p0, p1) for each block of output rows.
template <class Fn>
void for_row_blocks(const Conv2dArgs& a, const Plan& plan, Fn&& fn) {
  for (int64_t p0 = 0; p0 < a.P; p0 += plan.rows) fn(p0, std::min(a.P, p0 + plan.rows));
}

// Runs fn(t) for every task t, side by side or one after another (see task_parallel).
template <class Fn>
void run_tasks(const Conv2dArgs& a, const Plan& plan, Fn&& fn) {
  if (!task_parallel(a, plan)) {
    for (int64_t t = 0; t < plan.tasks; ++t) fn(t);
    return;
  }
  pin_blas_to_one_thread();  // each OpenMP thread runs its own GEMMs
  FirstError error;  // a task's workspace allocation may throw; the exception must not leave the region
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t t = 0; t < plan.tasks; ++t) error.run([&] { fn(t); });
  error.rethrow();
}

}  // namespace

template <class T>
void conv2d_forward_im2col_cpu(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y) {
  if (is_dense(a)) {  // y (N, K) = x (N, CRS) @ W^T + bias: element (n, k) as plane n, row k of length 1
    gemm(false, true, a.N, a.K, a.col_rows(), T(1), x, a.col_rows(), w, a.col_rows(), T(0), y, a.K);
    if (bias) copy_planes<T>(y, a.K, 1, y, a.K, 1, a.N, a.K, 1, bias);
    return;
  }
  const Plan plan(a, omp_get_max_threads());
  const int64_t Kg = a.K_per_group(), CRS = a.col_rows();
  run_tasks(a, plan, [&](int64_t t) {
    const Task<T> task(a, plan, t);
    const T* wg = w + task.g * Kg * CRS;
    for_row_blocks(a, plan, [&](int64_t p0, int64_t p1) {
      auto [cols, ldcols] = task.columns(x, p0, p1);
      auto [out, ldout] = task.out_block(y, p0);
      gemm(false, false, Kg, task.columns_n(p0, p1), CRS, T(1), wg, CRS, cols, ldcols, T(0), out, ldout);
    });
    task.finish_out_block(y, bias);
  });
}

template <class T>
void conv2d_backward_input_im2col_cpu(const Conv2dArgs& a, const T* dy, const T* w, T* dx) {
  if (is_dense(a)) return gemm(false, false, a.N, a.col_rows(), a.K, T(1), dy, a.K, w, a.col_rows(), T(0), dx,
                               a.col_rows());  // dx (N, CRS) = dy (N, K) @ W
  const Plan plan(a, omp_get_max_threads());
  const int64_t Kg = a.K_per_group(), Cg = a.C_per_group(), CRS = a.col_rows(), HW = a.H * a.W;
  run_tasks(a, plan, [&](int64_t t) {
    const Task<T> task(a, plan, t);
    const T* wg = w + task.g * Kg * CRS;
    if (!a.is_pointwise()) task.zero_input_block(dx);
    for_row_blocks(a, plan, [&](int64_t p0, int64_t p1) {
      auto [dyg, lddy] = task.grad_block(dy, p0);
      const int64_t n = task.columns_n(p0, p1);
      if (a.is_pointwise()) {  // dx[n, group g] = W_g^T @ dY[n, group g], straight into dx (P = H, Q = W)
        gemm(true, false, Cg, n, Kg, T(1), wg, CRS, dyg, lddy, T(0), dx + at(task.n0, task.g * Cg, a.C, HW) + p0 * a.W,
             HW);
      } else {
        gemm(true, false, CRS, n, Kg, T(1), wg, CRS, dyg, lddy, T(0), task.cols, n);
        col2im(a, task.cols, task.n0, task.m, task.g * Cg, p0, p1, dx);
      }
    });
  });
}

// Tasks of different chunks add into the same weight gradient, so side-by-side tasks accumulate
// into copies of dw that are summed at the end, always in the same order: the result is the same
// bits on every run, however the threads happened to share the tasks out (a resumed training run
// must retrace the uninterrupted one). Each chunk gets its own copy while they fit in
// kPartialBudget, so the tasks can go to whichever thread is free (a slow or shared core does not
// hold the rest up); past that, each thread gets one copy and a fixed share of the tasks.
constexpr int64_t kPartialBudget = int64_t(64) << 20;  // bytes
template <class T>
void conv2d_backward_weight_im2col_cpu(const Conv2dArgs& a, const T* x, const T* dy, T* dw) {
  if (is_dense(a)) return gemm(true, false, a.K, a.col_rows(), a.N, T(1), dy, a.K, x, a.col_rows(), T(0), dw,
                               a.col_rows());  // dW (K, CRS) = dy^T @ x (N, CRS)
  const Plan plan(a, omp_get_max_threads());
  const int64_t Kg = a.K_per_group(), CRS = a.col_rows(), size = a.K * CRS;
  auto accumulate = [&](int64_t t, T* into, T first_beta) {
    const Task<T> task(a, plan, t);
    for_row_blocks(a, plan, [&](int64_t p0, int64_t p1) {
      auto [cols, ldcols] = task.columns(x, p0, p1);
      auto [dyg, lddy] = task.grad_block(dy, p0);
      gemm(false, true, Kg, CRS, task.columns_n(p0, p1), T(1), dyg, lddy, cols, ldcols, p0 == 0 ? first_beta : T(1),
           into + task.g * Kg * CRS, CRS);
    });
  };
  if (!task_parallel(a, plan)) {
    for (int64_t t = 0; t < plan.tasks; ++t) accumulate(t, dw, T(t < a.groups ? 0 : 1));  // chunk 0 overwrites
    return;
  }
  const int64_t threads = omp_get_max_threads();
  const bool per_chunk = plan.chunks * size * int64_t(sizeof(T)) <= kPartialBudget;
  const int64_t copies = per_chunk ? plan.chunks : threads;
  std::unique_ptr<T[]> partial(new T[copies * size]);
  {
    pin_blas_to_one_thread();  // each OpenMP thread runs its own GEMMs
    FirstError error;  // a task's workspace allocation may throw; the exception must not leave the region
    if (per_chunk) {  // task t = chunk * groups + g writes copy `chunk`, group g's rows
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
      for (int64_t t = 0; t < plan.tasks; ++t)
        error.run([&] { accumulate(t, partial.get() + (t / a.groups) * size, T(0)); });
    } else {  // thread th runs tasks th, th + threads, ... into copy th
#pragma omp parallel num_threads(threads)
      {
        const int64_t th = omp_get_thread_num(), team = omp_get_num_threads();
        T* mine = partial.get() + th * size;
        std::fill(mine, mine + size, T(0));
        for (int64_t t = th; t < plan.tasks; t += team) error.run([&] { accumulate(t, mine, T(1)); });
      }
    }
    error.rethrow();
  }
#pragma omp parallel for schedule(static) if (size * copies >= kParallelMin)
  for (int64_t i = 0; i < size; ++i) {
    T sum = 0;
    for (int64_t c = 0; c < copies; ++c) sum += partial[c * size + i];
    dw[i] = sum;
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

// ---- fast: the algorithm per shape and pass ----------------------------------------------------------

// Which variant computes a pass of this convolution: measured per layer and pass on the models'
// shapes (the table above; AVX2, one thread). In words:
//   * im2col for 1x1 kernels and kernels that cover the whole input (no copy: plain GEMMs);
//   * Winograd for 3x3 stride-1 layers with >= 8 channels in and out, except on maps under 7x7, where
//     many of a 4x4 tile's outputs fall outside the map: direct there for the weight gradient, and
//     for every pass with AVX-512's 14-row tiles where Winograd's tiles would be over half empty and
//     direct's rows fill a third of its tiles, packed weights within 512 KiB (ResNet-20's 64-channel
//     5x5 layer on a Sapphire Rapids-class Xeon, one thread, against torch: forward 0.78 -> 0.84,
//     input gradient 0.71 -> 0.80; on 6x6 and 3x3 maps Winograd stays ahead: 0.95-0.97 against
//     direct's 0.67-0.87; with AVX2's 6-row tiles Winograd everywhere); on
//     wide layers, C*K > 128*128 (ResNet-18's 256- and 512-channel stages), Winograd for the forward
//     and input gradient on maps of >= 4x4 and im2col on smaller ones (a 2x2 map fills a quarter of a
//     tile), and im2col for the weight gradient (even with one thread; with two, each thread's
//     9.4 MB of Winograd sums ran at 0.45-0.64x torch, im2col's GEMM >= 0.8x): the direct kernel's
//     register tiles fall to 0.2-0.6x torch there;
//   * direct for the rest whose packed weights (R*S*C*K values) stay within 512 KiB, so they are read
//     from L2 for every output row (ConvS2S's 1x3 convolutions on 128 -> 256 channels: 384 KiB), and
//     not strided with C*K > 2048 (from ResNet-18's 64->128 stride-2 layer up im2col is as fast or
//     faster), where its tiles fill: output rows that fill at least 3/4 of their tiles of kMR rows
//     (AVX2: 6), or 1/3 of AVX-512's tiles of 14 (on a Zen 4 even rows of 5 ran 1.4x faster direct than
//     through im2col); for the input gradient >= 16 input channels (the vectors of that pass) and rows
//     of >= 4; for the weight gradient maps of >= 16 outputs, and not few input channels with many
//     outputs (there im2col's GEMM wins);
//   * im2col elsewhere.
enum class Pass { forward, input, weight };
enum class Algo { im2col, winograd, direct };
template <class T>
Algo pick(const Conv2dArgs& a, Pass pass) {
  const int64_t channel_pairs = a.C_per_group() * a.K;
  const bool wide = channel_pairs > 128 * 128;
  const int64_t weight_bytes = channel_pairs * a.R * a.S * int64_t(sizeof(T));
  if (is_dense(a) || a.is_pointwise()) return Algo::im2col;
  if (winograd_applies(a) && a.C >= 8 && a.K >= 8) {
    if (wide) return a.P * a.Q >= 16 && pass != Pass::weight ? Algo::winograd : Algo::im2col;
    if (a.P * a.Q >= 49) return Algo::winograd;
    if (pass == Pass::weight) return Algo::direct;
    // Both waste part of their tiles here: direct takes the map when Winograd's 4x4 tiles would be
    // mostly outside it and direct's 14-row tiles are at least a third full (5x5: 39% and 36%).
    const int64_t tiled = (a.P + 3) / 4 * 4 * ((a.Q + 3) / 4 * 4);
    const bool direct_fills = tiles::kMR >= 12 && 3 * a.Q >= (a.Q + tiles::kMR - 1) / tiles::kMR * tiles::kMR;
    return direct_fills && 2 * a.P * a.Q < tiled && weight_bytes <= (int64_t(512) << 10) ? Algo::direct
                                                                                        : Algo::winograd;
  }
  const bool strided = a.stride_h > 1 || a.stride_w > 1;
  if (weight_bytes > (int64_t(512) << 10) || (strided && channel_pairs > 2048) ||
      !direct_applies(a, pass == Pass::input))
    return Algo::im2col;
  switch (pass) {
    case Pass::forward: {  // how much of its tiles' rows an output row fills
      const int64_t tile_rows = (a.Q + tiles::kMR - 1) / tiles::kMR * tiles::kMR;
      const bool fills = tiles::kMR >= 12 ? 3 * a.Q >= tile_rows : 4 * a.Q >= 3 * tile_rows;
      return fills ? Algo::direct : Algo::im2col;
    }
    case Pass::input: return a.C >= 16 && a.W >= 4 ? Algo::direct : Algo::im2col;
    default: return a.P * a.Q >= 16 && !(a.C < 8 && a.K > 32) ? Algo::direct : Algo::im2col;
  }
}

// Non-finite values. The definition multiplies only the image's own pixels: a tap that falls into
// the zero padding contributes nothing, so a NaN or Inf weight leaves finite the outputs that read it
// only through the padding (torch's float32 convolutions, oneDNN's, agree in all three passes; its
// float64 path does not). The fast variants multiply real zeros there -- im2col's columns and the
// direct variant's padded copy (0 * NaN = NaN) -- and Winograd's tile transforms mix all of a tile's
// values, so one NaN reaches every output of the tile. Exact whatever the values: the reference loops,
// im2col's input gradient (col2im drops the padded positions), and im2col's forward and weight
// gradient when the operand that meets the padding (the weight; dy) is finite or nothing is padded.
// So each pass knows which operands its picked variant would smear (the "suspects": the weight of a
// padded forward or a direct input gradient, dy of a padded weight gradient, both operands of
// Winograd) and makes sure none is non-finite, by one vectorised pass over whichever is smaller:
// the suspects before the call, or its result after it (a result that is all finite met no
// non-finite value through a zero or a tile, so it is the definition's). Where they are not, an exact
// variant computes the pass (again). The cost is one read of min(suspects, result) values: on
// ResNet-18's 512-channel 2x2 layer at batch 32, the 65k outputs instead of the 2.4M weights, beside
// the convolution's 302M multiply-adds (not timed: the check is never a pass over the largest array).

// Whether all n values are finite: 0 * v is 0 for a finite v and NaN for NaN or +-Inf, so the sum
// of these products is 0 exactly when every value is finite. Whole vectors in four accumulators
// (the scalar sum, a chain of dependent adds, took 1 ns a value: ResNet-20's Winograd forward and
// input gradient ran at 0.80x torch instead of 0.95-1.0).
template <class T>
bool all_finite(const T* p, int64_t n) {
  using V = Vector<T>;
  constexpr int64_t L = kLanes<T>;
  V acc[4] = {};
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L)
    for (int u = 0; u < 4; ++u) {
      V v;
      std::memcpy(&v, p + i + u * L, sizeof v);
      acc[u] += v * T(0);
    }
  T sum = 0;
  for (; i < n; ++i) sum += p[i] * T(0);
  const V total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (int64_t l = 0; l < L; ++l) sum += total[l];
  return sum == 0;
}

template <class T>
struct Operand {
  const T* p;
  int64_t n;
};

// fast(), unless one of the suspects (operands it would smear) holds a non-finite value: then
// exact(). Checked on the suspects before or on the result (of n values at out) after, whichever
// is smaller (see "Non-finite values").
template <class T, class Fast, class Exact>
void guarded(std::initializer_list<Operand<T>> suspects, const T* out, int64_t n, Fast fast, Exact exact) {
  int64_t size = 0;
  for (const Operand<T>& s : suspects) size += s.n;
  if (size == 0) return fast();
  if (size <= n) {
    for (const Operand<T>& s : suspects)
      if (!all_finite(s.p, s.n)) return exact();
    return fast();
  }
  fast();
  if (!all_finite(out, n)) exact();
}

bool padded(const Conv2dArgs& a) { return a.pad_h > 0 || a.pad_w > 0; }

template <class T>
void conv2d_forward_cpu(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y) {
  const Algo algo = pick<T>(a, Pass::forward);
  const Operand<T> xs{x, a.N * a.C * a.H * a.W}, ws{w, a.K * a.C_per_group() * a.R * a.S}, none{x, 0};
  guarded<T>(
      {algo == Algo::winograd ? xs : none, algo == Algo::winograd || padded(a) ? ws : none}, y, a.N * a.K * a.P * a.Q,
      [&] {
        switch (algo) {
          case Algo::winograd: return conv2d_forward_winograd_cpu(a, x, w, bias, y);
          case Algo::direct: return conv2d_forward_direct_cpu(a, x, w, bias, y);
          default: return conv2d_forward_im2col_cpu(a, x, w, bias, y);
        }
      },
      [&] {
        if (padded(a) && !all_finite(ws.p, ws.n)) return conv2d_forward_reference_cpu(a, x, w, bias, y);
        conv2d_forward_im2col_cpu(a, x, w, bias, y);
      });
}

template <class T>
void conv2d_backward_input_cpu(const Conv2dArgs& a, const T* dy, const T* w, T* dx) {
  const Algo algo = pick<T>(a, Pass::input);
  const Operand<T> dys{dy, a.N * a.K * a.P * a.Q}, ws{w, a.K * a.C_per_group() * a.R * a.S}, none{w, 0};
  guarded<T>(
      {algo == Algo::winograd ? dys : none, algo != Algo::im2col ? ws : none}, dx, a.N * a.C * a.H * a.W,
      [&] {
        switch (algo) {
          case Algo::winograd: return conv2d_backward_input_winograd_cpu(a, dy, w, dx);
          case Algo::direct: return conv2d_backward_input_direct_cpu(a, dy, w, dx);
          default: return conv2d_backward_input_im2col_cpu(a, dy, w, dx);
        }
      },
      [&] { conv2d_backward_input_im2col_cpu(a, dy, w, dx); });
}

template <class T>
void conv2d_backward_weight_cpu(const Conv2dArgs& a, const T* x, const T* dy, T* dw) {
  const Algo algo = pick<T>(a, Pass::weight);
  const Operand<T> xs{x, a.N * a.C * a.H * a.W}, dys{dy, a.N * a.K * a.P * a.Q}, none{x, 0};
  guarded<T>(
      {algo == Algo::winograd ? xs : none, algo == Algo::winograd || padded(a) ? dys : none}, dw,
      a.K * a.C_per_group() * a.R * a.S,
      [&] {
        switch (algo) {
          case Algo::winograd: return conv2d_backward_weight_winograd_cpu(a, x, dy, dw);
          case Algo::direct: return conv2d_backward_weight_direct_cpu(a, x, dy, dw);
          default: return conv2d_backward_weight_im2col_cpu(a, x, dy, dw);
        }
      },
      [&] {
        if (padded(a) && !all_finite(dys.p, dys.n)) return conv2d_backward_weight_reference_cpu(a, x, dy, dw);
        conv2d_backward_weight_im2col_cpu(a, x, dy, dw);
      });
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_CONV_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
