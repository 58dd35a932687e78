// Pooling on the GPU: max, average and adaptive average, forward and backward, float32.
//
// Algorithm. Pooling does almost no arithmetic (KH*KW compares or adds per output), so every
// kernel is a memory-streaming kernel and its ceiling is DRAM bandwidth: the forward reads x once
// and writes y (and, only when a backward will need them, the int64 argmax indices: 2x the bytes of
// y, so skipping them is the largest single saving at inference); the backward reads gy (and the
// indices) and writes gx once. Neighbouring threads handle neighbouring outputs (or inputs), so
// loads and stores coalesce; overlapping windows (3x3 stride 2) re-read inputs from L1/L2, not DRAM.
//
// Variants (selected by name from Python, so their timings can be compared):
//   reference  one thread per output on a grid-stride loop with 64-bit index arithmetic (torch's
//              design); the backwards zero-fill gx and scatter each output's gradient to its
//              window with atomicAdd (non-deterministic float sums when windows overlap).
//   fast       the same forward with 32-bit index arithmetic (a 64-bit integer division is a long
//              emulated sequence, and the index math is most of a pooling thread's instructions),
//              and for adaptive pooling with large windows (global average pooling) one warp per
//              output, so a window's loads coalesce and a shuffle tree sums them.
//              The backwards gather instead of scatter: one thread per input element walks the few
//              outputs whose windows can cover it (for max: those whose argmax is this element). No
//              atomics, no zero-fill pass, each gx element written once, deterministic. This suits
//              overlapping and non-overlapping windows alike, so it is used for both.
//   Inputs over 2^31 elements run the fast kernels with 64-bit index arithmetic.
//
// Semantics follow torch: padded cells never win a max, the first maximum wins ties, a NaN wins
// (the last NaN in row-major window order), an all -inf window reports its first in-bounds cell;
// a (dilated) window with no in-bounds cell gives -inf and index -1.
//
// Bad argmax indices. The max backward takes indices from the caller, and one outside [-1, H*W)
// would be skipped (gather) or written outside grad_input (scatter). Both backwards test every
// index they read -- the gather reads each output's index from every input its window spans, and
// every window spans at least one input (padding <= kernel/2, the last window starts inside the
// input), so no index goes unread -- and record the first bad output position in a device word; the
// launcher reads it back and raises the CPU path's ValueError. The cost: one integer compare per
// index read (next to the one the gather makes anyway), an 8-byte stream-ordered allocation, memset
// and copy, and one stream synchronisation per call: the host waits for the backward to finish
// (tens of microseconds of lost overlap per max pooling layer per step, nothing in bandwidth).
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "pool.h"
#include "runtime.h"

namespace pyfastdl {
namespace {

constexpr int kThreads = 256;
constexpr long long kMaxBlocks = 1 << 20;  // grid-stride loops cover the rest

// The plane geometry as 32-bit ints (planes are checked to hold < 2^31 elements).
struct Geo {
  int h, w, oh, ow;
  int kh, kw, sh, sw, ph, pw, dh, dw;
  int divisor_override;  // 0: none
  bool count_include_pad;
};

Geo make_geo(const char* op, const Pool2dArgs& a) {
  check_fits_int32(op, "input plane", Shape{a.h, a.w});
  check_fits_int32(op, "output plane", Shape{a.oh, a.ow});
  if (a.kind == PoolKind::adaptive_avg) {  // its window bounds are (o + 1) * in / out in 32 bits
    check_fits_int32(op, "(output rows + 1) x (input rows + 1)", Shape{a.oh + 1, a.h + 1});
    check_fits_int32(op, "(output columns + 1) x (input columns + 1)", Shape{a.ow + 1, a.w + 1});
  }
  auto i = [](int64_t v) { return static_cast<int>(v); };
  return Geo{i(a.h),  i(a.w),  i(a.oh), i(a.ow), i(a.kh), i(a.kw), i(a.sh),
             i(a.sw), i(a.ph), i(a.pw), i(a.dh), i(a.dw), i(a.divisor_override), a.count_include_pad};
}

// ---- one window (shared by every kernel) --------------------------------------------------------

// Taps [t0, t1) of a window starting at `start` (may be negative) with k taps spaced d apart that
// land inside [0, n).
__device__ __forceinline__ void tap_range(int start, int k, int d, int n, int& t0, int& t1) {
  t0 = start < 0 ? (-start + d - 1) / d : 0;
  t1 = min(k, (n - start + d - 1) / d);
}

// Max over the window of output (oh, ow); arg = the flat position of the maximum in the plane.
__device__ __forceinline__ float max_window(const Geo& g, const float* __restrict__ plane, int oh, int ow,
                                            int& arg) {
  const int hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
  int i0, i1, j0, j1;
  tap_range(hs, g.kh, g.dh, g.h, i0, i1);
  tap_range(ws, g.kw, g.dw, g.w, j0, j1);
  float m = -std::numeric_limits<float>::infinity();
  arg = -1;
  for (int i = i0; i < i1; ++i) {
    const int row = (hs + i * g.dh) * g.w + ws;
    for (int j = j0; j < j1; ++j) {
      const int pos = row + j * g.dw;
      const float v = __ldg(plane + pos);
      if (arg < 0 || v > m || isnan(v)) {
        m = v;
        arg = pos;
      }
    }
  }
  return m;
}

// The avg divisor of output (oh, ow): the window clipped to the padded input or to the input.
__device__ __forceinline__ int avg_divisor(const Geo& g, int oh, int ow) {
  if (g.divisor_override) return g.divisor_override;
  const int hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
  const int he = min(hs + g.kh, g.h + g.ph), we = min(ws + g.kw, g.w + g.pw);
  if (g.count_include_pad) return (he - hs) * (we - ws);
  return (min(he, g.h) - max(hs, 0)) * (min(we, g.w) - max(ws, 0));
}

__device__ __forceinline__ float avg_window(const Geo& g, const float* __restrict__ plane, int oh, int ow) {
  const int hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
  const int h0 = max(hs, 0), h1 = min(hs + g.kh, g.h), w0 = max(ws, 0), w1 = min(ws + g.kw, g.w);
  float s = 0.f;
  for (int ih = h0; ih < h1; ++ih)
    for (int iw = w0; iw < w1; ++iw) s += __ldg(plane + ih * g.w + iw);
  return s / static_cast<float>(avg_divisor(g, oh, ow));
}

// Adaptive windows: output o of `out` covers inputs [floor(o*in/out), ceil((o+1)*in/out)).
__device__ __forceinline__ int adaptive_begin(int o, int in, int out) { return (o * in) / out; }
__device__ __forceinline__ int adaptive_end(int o, int in, int out) { return ((o + 1) * in + out - 1) / out; }

__device__ __forceinline__ float adaptive_window(const Geo& g, const float* __restrict__ plane, int oh, int ow) {
  const int h0 = adaptive_begin(oh, g.h, g.oh), h1 = adaptive_end(oh, g.h, g.oh);
  const int w0 = adaptive_begin(ow, g.w, g.ow), w1 = adaptive_end(ow, g.w, g.ow);
  float s = 0.f;
  for (int ih = h0; ih < h1; ++ih)
    for (int iw = w0; iw < w1; ++iw) s += __ldg(plane + ih * g.w + iw);
  return s / static_cast<float>((h1 - h0) * (w1 - w0));
}

// (plane, row, column) of flat element i of planes of rows x cols.
template <class Index>
struct Pos {
  Index plane;
  int r, c;
  __device__ __forceinline__ Pos(Index i, int rows, int cols) {
    c = static_cast<int>(i % Index(cols));
    const Index t = i / Index(cols);
    r = static_cast<int>(t % Index(rows));
    plane = t / Index(rows);
  }
};

template <class Index>
__device__ __forceinline__ Index grid_start() {
  return Index(blockIdx.x) * Index(blockDim.x) + Index(threadIdx.x);
}
template <class Index>
__device__ __forceinline__ Index grid_step() {
  return Index(blockDim.x) * Index(gridDim.x);
}

// ---- forward: one thread per output -------------------------------------------------------------

template <PoolKind Kind, bool WithIndices, class Index>
__global__ void __launch_bounds__(kThreads)
    pool_forward(Geo g, Index total, const float* __restrict__ x, float* __restrict__ y,
                 int64_t* __restrict__ indices) {
  for (Index i = grid_start<Index>(); i < total; i += grid_step<Index>()) {
    const Pos<Index> o(i, g.oh, g.ow);
    const float* plane = x + o.plane * Index(g.h) * Index(g.w);
    if constexpr (Kind == PoolKind::max) {
      int arg;
      y[i] = max_window(g, plane, o.r, o.c, arg);
      if constexpr (WithIndices) indices[i] = arg;
    } else if constexpr (Kind == PoolKind::avg) {
      y[i] = avg_window(g, plane, o.r, o.c);
    } else {
      y[i] = adaptive_window(g, plane, o.r, o.c);
    }
  }
}

// Adaptive pooling with large windows: one warp per output; lanes stride the window's cells.
template <class Index>
__global__ void __launch_bounds__(kThreads)
    adaptive_forward_warp(Geo g, Index total, const float* __restrict__ x, float* __restrict__ y) {
  const int lane = threadIdx.x % 32;
  const Index warp = grid_start<Index>() / 32, warps = grid_step<Index>() / 32;
  for (Index i = warp; i < total; i += warps) {
    const Pos<Index> o(i, g.oh, g.ow);
    const float* plane = x + o.plane * Index(g.h) * Index(g.w);
    const int h0 = adaptive_begin(o.r, g.h, g.oh), h1 = adaptive_end(o.r, g.h, g.oh);
    const int w0 = adaptive_begin(o.c, g.w, g.ow), w1 = adaptive_end(o.c, g.w, g.ow);
    const int width = w1 - w0, cells = (h1 - h0) * width;
    float s = 0.f;
    for (int e = lane; e < cells; e += 32) {
      const int r = e / width;
      s += __ldg(plane + (h0 + r) * g.w + w0 + (e - r * width));
    }
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) y[i] = s / static_cast<float>(cells);
  }
}

// ---- backward, fast: one thread per input element gathers from the outputs covering it ---------

// Outputs [o0, o1) whose window span (k taps spaced d, stride s, padding p) covers input i.
__device__ __forceinline__ void covering(int i, int k, int s, int p, int d, int out, int& o0, int& o1) {
  const int span = (k - 1) * d + 1;
  o0 = i + p < span ? 0 : (i + p - span) / s + 1;
  o1 = min((i + p) / s + 1, out);
}

// For max, `bad` receives (atomicMin) the flat output position of any index outside [-1, H*W).
template <PoolKind Kind, class Index>
__global__ void __launch_bounds__(kThreads)
    pool_backward_gather(Geo g, Index total, const float* __restrict__ gy, const int64_t* __restrict__ indices,
                         float* __restrict__ gx, unsigned long long* __restrict__ bad) {
  for (Index i = grid_start<Index>(); i < total; i += grid_step<Index>()) {
    const Pos<Index> in(i, g.h, g.w);
    const Index out_base = in.plane * Index(g.oh) * Index(g.ow);
    const float* go = gy + out_base;
    float s = 0.f;
    if constexpr (Kind == PoolKind::adaptive_avg) {
      // Input row r is in output row o's window iff floor(r*OH/H) <= o < ceil((r+1)*OH/H).
      const int oh0 = adaptive_begin(in.r, g.oh, g.h), oh1 = adaptive_end(in.r, g.oh, g.h);
      const int ow0 = adaptive_begin(in.c, g.ow, g.w), ow1 = adaptive_end(in.c, g.ow, g.w);
      for (int oh = oh0; oh < oh1; ++oh) {
        const int rows = adaptive_end(oh, g.h, g.oh) - adaptive_begin(oh, g.h, g.oh);
        for (int ow = ow0; ow < ow1; ++ow) {
          const int cols = adaptive_end(ow, g.w, g.ow) - adaptive_begin(ow, g.w, g.ow);
          s += __ldg(go + oh * g.ow + ow) / static_cast<float>(rows * cols);
        }
      }
    } else {
      int oh0, oh1, ow0, ow1;
      covering(in.r, g.kh, g.sh, g.ph, g.dh, g.oh, oh0, oh1);
      covering(in.c, g.kw, g.sw, g.pw, g.dw, g.ow, ow0, ow1);
      const int64_t self = static_cast<int64_t>(in.r) * g.w + in.c, plane = static_cast<int64_t>(g.h) * g.w;
      for (int oh = oh0; oh < oh1; ++oh)
        for (int ow = ow0; ow < ow1; ++ow) {
          const int o = oh * g.ow + ow;
          if constexpr (Kind == PoolKind::max) {
            const int64_t at = __ldg(indices + out_base + o);
            if (at == self)
              s += __ldg(go + o);
            else if (at < -1 || at >= plane)
              atomicMin(bad, static_cast<unsigned long long>(out_base + o));
          } else {
            s += __ldg(go + o) / static_cast<float>(avg_divisor(g, oh, ow));
          }
        }
    }
    gx[i] = s;
  }
}

// ---- backward, reference: zero gx, then one thread per output scatters with atomicAdd ----------

template <PoolKind Kind>
__global__ void __launch_bounds__(kThreads)
    pool_backward_scatter(Geo g, int64_t total, const float* __restrict__ gy, const int64_t* __restrict__ indices,
                          float* __restrict__ gx, unsigned long long* __restrict__ bad) {
  const int64_t plane_size = static_cast<int64_t>(g.h) * g.w;
  for (int64_t i = grid_start<int64_t>(); i < total; i += grid_step<int64_t>()) {
    const Pos<int64_t> o(i, g.oh, g.ow);
    float* plane = gx + o.plane * plane_size;
    if constexpr (Kind == PoolKind::max) {
      const int64_t at = indices[i];
      if (at >= 0 && at < plane_size)
        atomicAdd(plane + at, gy[i]);
      else if (at != -1)
        atomicMin(bad, static_cast<unsigned long long>(i));
    } else {
      int h0, h1, w0, w1;
      float share;
      if constexpr (Kind == PoolKind::avg) {
        const int hs = o.r * g.sh - g.ph, ws = o.c * g.sw - g.pw;
        h0 = max(hs, 0), h1 = min(hs + g.kh, g.h), w0 = max(ws, 0), w1 = min(ws + g.kw, g.w);
        share = gy[i] / static_cast<float>(avg_divisor(g, o.r, o.c));
      } else {
        h0 = adaptive_begin(o.r, g.h, g.oh), h1 = adaptive_end(o.r, g.h, g.oh);
        w0 = adaptive_begin(o.c, g.w, g.ow), w1 = adaptive_end(o.c, g.w, g.ow);
        share = gy[i] / static_cast<float>((h1 - h0) * (w1 - w0));
      }
      for (int ih = h0; ih < h1; ++ih)
        for (int iw = w0; iw < w1; ++iw) atomicAdd(plane + ih * g.w + iw, share);
    }
  }
}

// ---- launchers ----------------------------------------------------------------------------------

void check_cuda(cudaError_t err, const char* op, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear it, so the next launch starts clean
  throw std::runtime_error(std::string(op) + ": " + what + " failed: " + cudaGetErrorString(err));
}

// The device word the max backward kernels report a bad index in: the lowest flat output position
// holding one, or all ones for none. Stream-ordered: allocated, cleared and freed on the caller's stream.
class BadIndexWord {
 public:
  BadIndexWord(const char* op, cudaStream_t stream) : op_(op), stream_(stream) {
    check_cuda(cudaMallocAsync(&word_, sizeof *word_, stream), op, "allocating the index-check word");
    check_cuda(cudaMemsetAsync(word_, 0xff, sizeof *word_, stream), op, "clearing the index-check word");
  }
  ~BadIndexWord() { cudaFreeAsync(word_, stream_); }
  BadIndexWord(const BadIndexWord&) = delete;
  BadIndexWord& operator=(const BadIndexWord&) = delete;
  unsigned long long* get() const { return word_; }

  // Waits for the stream, then raises the CPU path's ValueError if a kernel found a bad index.
  void raise_if_bad(const Pool2dArgs& a, const int64_t* indices) const {
    unsigned long long at = 0;
    check_cuda(cudaMemcpyAsync(&at, word_, sizeof at, cudaMemcpyDeviceToHost, stream_), op_,
               "reading the index check back");
    check_cuda(cudaStreamSynchronize(stream_), op_, "the backward kernel");
    if (at == ~0ull) return;
    int64_t value = 0;
    check_cuda(cudaMemcpy(&value, indices + at, sizeof value, cudaMemcpyDeviceToHost), op_, "reading the bad index");
    fail_bad_argmax(a, static_cast<int64_t>(at), value);
  }

 private:
  const char* op_;
  cudaStream_t stream_;
  unsigned long long* word_ = nullptr;
};

unsigned blocks_for(int64_t threads) {
  return ceil_div(threads < kThreads * kMaxBlocks ? threads : kThreads * kMaxBlocks, kThreads);
}

// 32-bit index arithmetic when every flat index fits, else 64-bit.
bool fits32(const Pool2dArgs& a) {
  constexpr int64_t lim = std::numeric_limits<int32_t>::max();
  return numel(a.in_shape) <= lim && numel(a.out_shape) <= lim;
}

template <PoolKind Kind, bool WithIndices>
void launch_forward(const char* op, const Pool2dArgs& a, const float* x, float* y, int64_t* indices,
                    PoolVariant v, cudaStream_t stream) {
  const Geo g = make_geo(op, a);
  const int64_t total = numel(a.out_shape);
  if (total == 0) return;
  if (v == PoolVariant::fast && fits32(a))
    pool_forward<Kind, WithIndices, uint32_t>
        <<<blocks_for(total), kThreads, 0, stream>>>(g, static_cast<uint32_t>(total), x, y, indices);
  else
    pool_forward<Kind, WithIndices, int64_t><<<blocks_for(total), kThreads, 0, stream>>>(g, total, x, y, indices);
  check_launch(op);
}

// `indices` and `bad` for max only (null otherwise).
template <PoolKind Kind>
void launch_backward(const char* op, const Pool2dArgs& a, const float* gy, const int64_t* indices, float* gx,
                     PoolVariant v, cudaStream_t stream, unsigned long long* bad = nullptr) {
  const Geo g = make_geo(op, a);
  const int64_t n_in = numel(a.in_shape), n_out = numel(a.out_shape);
  if (n_in == 0) return;
  if (v == PoolVariant::reference) {
    check_cuda(cudaMemsetAsync(gx, 0, static_cast<size_t>(n_in) * sizeof(float), stream), op,
               "zero-filling grad_input");
    pool_backward_scatter<Kind><<<blocks_for(n_out), kThreads, 0, stream>>>(g, n_out, gy, indices, gx, bad);
  } else if (fits32(a)) {
    pool_backward_gather<Kind, uint32_t>
        <<<blocks_for(n_in), kThreads, 0, stream>>>(g, static_cast<uint32_t>(n_in), gy, indices, gx, bad);
  } else {
    pool_backward_gather<Kind, int64_t><<<blocks_for(n_in), kThreads, 0, stream>>>(g, n_in, gy, indices, gx, bad);
  }
  check_launch(op);
}

}  // namespace

void max_pool2d_forward_cuda(const Pool2dArgs& a, const float* x, float* y, int64_t* indices, PoolVariant v,
                             cudaStream_t stream) {
  if (indices)
    launch_forward<PoolKind::max, true>("max_pool2d_forward", a, x, y, indices, v, stream);
  else
    launch_forward<PoolKind::max, false>("max_pool2d_forward", a, x, y, nullptr, v, stream);
}

void max_pool2d_backward_cuda(const Pool2dArgs& a, const float* gy, const int64_t* indices, float* gx,
                              PoolVariant v, cudaStream_t stream) {
  const char* op = "max_pool2d_backward";
  if (numel(a.in_shape) == 0) return;
  const BadIndexWord bad(op, stream);
  launch_backward<PoolKind::max>(op, a, gy, indices, gx, v, stream, bad.get());
  bad.raise_if_bad(a, indices);
}

void avg_pool2d_forward_cuda(const Pool2dArgs& a, const float* x, float* y, PoolVariant v, cudaStream_t stream) {
  launch_forward<PoolKind::avg, false>("avg_pool2d_forward", a, x, y, nullptr, v, stream);
}

void avg_pool2d_backward_cuda(const Pool2dArgs& a, const float* gy, float* gx, PoolVariant v, cudaStream_t stream) {
  launch_backward<PoolKind::avg>("avg_pool2d_backward", a, gy, nullptr, gx, v, stream);
}

void adaptive_avg_pool2d_forward_cuda(const Pool2dArgs& a, const float* x, float* y, PoolVariant v,
                                      cudaStream_t stream) {
  const char* op = "adaptive_avg_pool2d_forward";
  // One warp per output pays off once the average window has a warp's worth of cells.
  const bool large_windows = (a.h / a.oh) * (a.w / a.ow) >= 32;
  if (v == PoolVariant::fast && large_windows && fits32(a)) {
    const Geo g = make_geo(op, a);
    const int64_t total = numel(a.out_shape);
    if (total == 0) return;
    adaptive_forward_warp<uint32_t>
        <<<blocks_for(total * 32), kThreads, 0, stream>>>(g, static_cast<uint32_t>(total), x, y);
    check_launch(op);
    return;
  }
  launch_forward<PoolKind::adaptive_avg, false>(op, a, x, y, nullptr, v, stream);
}

void adaptive_avg_pool2d_backward_cuda(const Pool2dArgs& a, const float* gy, float* gx, PoolVariant v,
                                       cudaStream_t stream) {
  launch_backward<PoolKind::adaptive_avg>("adaptive_avg_pool2d_backward", a, gy, nullptr, gx, v, stream);
}

}  // namespace pyfastdl
