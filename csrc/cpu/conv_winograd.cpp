// Winograd convolution F(4x4, 3x3) on the CPU (Lavin & Gray 2016): 3x3 kernels, stride 1, dilation 1,
// groups 1; forward, input gradient and weight gradient (NCHW, float32/float64).
//
// Algorithm. Cut the output into 4x4 tiles; tile t reads a 6x6 patch d_t of the (zero-padded) input.
// With the constant matrices B^T (6x6), G (6x3) and A^T (4x6) below, for every output channel k
//     y_t[k] = A^T [ sum_c (G w[k,c] G^T) * (B^T d_t[c] B) ] A          (* elementwise, 6x6)
// so after transforming weights (U = G w G^T) and patches (V = B^T d B) the 36 positions xi of the
// 6x6 transform are 36 independent matrix products over channels,
//     M[xi][t][k] = sum_c V[xi][t][c] U[xi][c][k],
// and A^T M A turns each tile back into 16 outputs: 36 multiplies per tile and channel pair instead
// of 16*9 = 144, a quarter of a direct convolution's arithmetic.
// The other passes are the same algorithm's adjoints:
//   input gradient   a forward convolution of dy with the flipped, transposed weights
//                    (w'[c,k] = w[k,c] rotated 180 degrees) and padding 2 - pad;
//   weight gradient  dw[k,c] = G^T [ sum_t (A dy_t[k] A^T) * (B^T d_t[c] B) ] G: the same input
//                    transform, dy's 4x4 tiles transformed by A, 36 products reducing over tiles.
// Error. The transforms multiply by up to 8 (A) and 5 (B) and by 1/24 (G), so rounding grows about
// 10x over a direct convolution's: relative error (‖out - ref‖ / ‖ref‖, float32 against float64)
// measured 1e-6 to 4e-6 for the forward and the input gradient on the models' shapes (up to 512
// channels), and 1e-6 to 1e-5 for the weight gradient, whose sum over all tiles of the batch grows
// with their number (ResNet-20's first stage: 2048 tiles, 7e-6). The tests allow 1e-4 for float32
// and 1e-10 for float64 (measured 5e-15).
//
// Layout and blocking. Channels go in vector lanes: the input (and dy) is first copied to a zero-
// padded NHWC buffer whose channel count is a multiple of the vector width (the padding removes the
// bounds checks from the patch reads), so each transform is plain vector arithmetic on 36 vectors
// of channels. Tiles are taken in blocks of tb (in the flattened (image, tile row, tile column)
// order, so small maps still fill a block): a block's V and M (36 x tb x channels each) are sized to
// stay in the L2 cache, and each of a block's 36 products is a register-blocked micro-kernel (kMR
// tiles x kNV vectors of channels accumulated in registers, one operand broadcast per step; see
// cpu/conv_tiles.h). The 36 points' matrices are spaced one cache line more than their size apart, so that
// at power-of-two channel counts they do not all fall in the same cache set. The output transform
// writes the block's tiles straight into NCHW y.
// Cost: per tile 36*C*K multiply-adds, plus transforms of about 12 flops per input and per output
// element and channel, and the NHWC copies. At ResNet-20's shapes on one Zen 3 core (thread CPU
// time): 64 channels on 8x8 maps, forward 1.0 ms (products 0.58 ms at ~65 GFLOP/s, the copies and
// transforms the rest) against im2col's 3.1 ms; at 16 channels on 32x32 maps the transforms and
// copies cost as much as the products, and the gain over im2col is ~1.8x. Below 8 channels im2col
// wins (the "fast" variant's threshold).
// Threads: OpenMP over tile blocks, one parallel region per call; the forward's blocks are handed
// out dynamically (each output is written by one block), the weight gradient's statically, each
// thread summing its share into its own 36 x K x C partial sums, added in a fixed order at the end.
// This file is compiled once per instruction set (cpu/isa.h): the vector width and register count
// set the lanes and the micro-kernel's shape.
#include "cpu/conv.h"
#include "cpu/conv_tiles.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace pyfastdl::cpu::PYFASTDL_ISA {
namespace {

constexpr int kTile = 4;              // outputs per tile side
constexpr int kAlpha = kTile + 2;     // 6: input patch side
constexpr int kPoints = kAlpha * kAlpha;  // 36 independent products

// ---- 1-D transforms (V is a scalar or a vector of channels; the 2-D ones apply them to rows and columns)

// The six outputs of every 6-point transform below. Its rows evaluate at the points 0, +-1, +-2
// (+-1/2 for G) and infinity, so the middle four come in pairs p + q, p - q of a part even in the
// point and a part odd in it: the transforms differ only in how they form first, p1, q1, p2, q2, last.
template <class V>
void write_pairs(V first, V p1, V q1, V p2, V q2, V last, V* r, int rs) {
  r[0] = first;
  r[rs] = p1 + q1;
  r[2 * rs] = p1 - q1;
  r[3 * rs] = p2 + q2;
  r[4 * rs] = p2 - q2;
  r[5 * rs] = last;
}

// r = B^T d (6 -> 6), B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
template <class V>
void input_1d(const V* d, int ds, V* r, int rs) {
  const V d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds], d5 = d[5 * ds];
  write_pairs<V>(4 * d0 - 5 * d2 + d4, d4 - 4 * d2, d3 - 4 * d1, d4 - d2, 2 * (d3 - d1), 4 * d1 - 5 * d3 + d5, r, rs);
}

// o = A^T m (6 -> 4), A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
template <class V>
void output_1d(const V* m, int ms, V* o, int os) {
  const V p1 = m[ms] + m[2 * ms], n1 = m[ms] - m[2 * ms], p2 = m[3 * ms] + m[4 * ms], n2 = m[3 * ms] - m[4 * ms];
  o[0] = m[0] + p1 + p2;
  o[os] = n1 + 2 * n2;
  o[2 * os] = p1 + 4 * p2;
  o[3 * os] = n1 + 8 * n2 + m[5 * ms];
}

// u = G g (3 -> 6), G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
// (times the rounded fractions: divisions would cost more than the rest of the transform).
template <class T, class V>
void filter_1d(const V* g, int gs, V* u, int us) {
  constexpr T sixth = T(1) / 6, twelfth = T(1) / 12, tw4th = T(1) / 24;
  const V g0 = g[0], g1 = g[gs], g2 = g[2 * gs];
  write_pairs<V>(g0 * T(0.25), (g0 + g2) * -sixth, g1 * -sixth, g0 * tw4th + g2 * sixth, g1 * twelfth, g2, u, us);
}

// z = A e (4 -> 6): the weight gradient's transform of a dy tile (the transpose of output_1d).
template <class V>
void grad_1d(const V* e, int es, V* z, int zs) {
  const V e0 = e[0], e1 = e[es], e2 = e[2 * es], e3 = e[3 * es];
  write_pairs<V>(e0, e0 + e2, e1 + e3, e0 + 4 * e2, 2 * e1 + 8 * e3, e3, z, zs);
}

// w = G^T s (6 -> 3): the weight gradient's way back from the transform (the transpose of filter_1d).
template <class T>
void grad_filter_1d(const T* s, int ss, T* w, int ws) {
  constexpr T sixth = T(1) / 6, twelfth = T(1) / 12, tw4th = T(1) / 24;
  const T s1 = s[ss], s2 = s[2 * ss], s3 = s[3 * ss], s4 = s[4 * ss];
  w[0] = s[0] * T(0.25) - (s1 + s2) * sixth + (s3 + s4) * tw4th;
  w[ws] = (s2 - s1) * sixth + (s3 - s4) * twelfth;
  w[2 * ws] = (s3 + s4 - s1 - s2) * sixth + s[5 * ss];
}

// 2-D transform of an n x n array (row stride n) to m x m with a 1-D transform f (n -> m):
// columns first into tmp (m x n), then rows.
template <int n, int m, class V, class F>
void transform_2d(const V* in, V* out, F f) {
  V tmp[m * n];
  for (int j = 0; j < n; ++j) f(in + j, n, tmp + j, n);
  for (int i = 0; i < m; ++i) f(tmp + i * n, 1, out + i * m, 1);
}

// ---- vectors and buffers (cpu/conv_tiles.h) -----------------------------------------------------------

using tiles::kMR;
using tiles::load;
using tiles::product;
using tiles::round_up;
using tiles::scratch;
using tiles::stage;
using tiles::store;
template <class T> using Vec = tiles::Vec<T>;
template <class T> int64_t skewed(int64_t n) { return n + 64 / int64_t(sizeof(T)); }

// ---- the tiling of one convolution ---------------------------------------------------------------------

// A forward-shaped problem: out (N, K, P, Q) = conv3x3(in (N, C, H, W), padding pad) with tiles of
// 4x4 outputs. Channels are padded to Cp, Kp (multiples of the vector width) in the buffers.
struct Tiling {
  int64_t N, C, H, W, K, P, Q, pad;
  int64_t th, tw, tiles;  // tile rows and columns per image, tiles in all
  int64_t Hs, Ws;         // the staged input's padded size: 4*th + 2, 4*tw + 2
  int64_t Cp, Kp, tb;     // padded channel counts; tiles per block
  // Per-point strides of a block's V (tb x Cp) and M (tb x Kp) and of U (Cp x Kp), one cache line
  // longer than the matrices: at power-of-two sizes the 36 points would share a cache set.
  int64_t v_stride, m_stride, u_stride;

  template <class T>
  static Tiling make(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t pad) {
    Tiling t{};
    t.N = N, t.C = C, t.H = H, t.W = W, t.K = K, t.pad = pad;
    t.P = H + 2 * pad - 2, t.Q = W + 2 * pad - 2;
    t.th = (t.P + kTile - 1) / kTile, t.tw = (t.Q + kTile - 1) / kTile;
    t.tiles = N * t.th * t.tw;
    t.Hs = kTile * t.th + 2, t.Ws = kTile * t.tw + 2;
    t.Cp = round_up(C, kLanes<T>), t.Kp = round_up(K, kLanes<T>);
    // Tiles per block. A block's two 36 x tb x channels buffers take about 192 KiB of L2 (512 KiB-2
    // MiB per core), while the transformed weights U (36 x Cp x Kp) come from L3 once per block. At
    // 256 channels U is 9.4 MB (and the weight gradient's 36 x K x Cp sums as much), and blocks of
    // 6-14 tiles spent more time streaming it than in the products (0.5x torch at 256 channels on
    // 4x4 and 14x14 maps, AVX2). Where U passes 4 MiB a block grows until each point's slices V[xi]
    // and M[xi], which one product reads, fill 128 KiB (64 tiles at 256 channels): 1.0-1.1x. (At 128
    // channels, U 2.4 MB, such blocks were slower: their buffers spill out of L2 for little gain.)
    // Blocks stay at least as many as the threads, and even.
    const int64_t slice = (t.Cp + t.Kp) * int64_t(sizeof(T));  // one tile's row of V[xi] and M[xi]
    const bool u_fits = kPoints * t.Cp * t.Kp * int64_t(sizeof(T)) <= (int64_t(4) << 20);
    t.tb = u_fits ? (int64_t(192) << 10) / (kPoints * slice) : (int64_t(128) << 10) / slice;
    t.tb = std::max<int64_t>(kMR, t.tb / kMR * kMR);
    const int64_t threads = omp_get_max_threads();
    t.tb = std::min(t.tb, (t.tiles + threads - 1) / threads);  // (rounded up to kMR, 32 tiles: 28 + 4)
    t.v_stride = skewed<T>(t.tb * t.Cp), t.m_stride = skewed<T>(t.tb * t.Kp), t.u_stride = skewed<T>(t.Cp * t.Kp);
    return t;
  }
  int64_t blocks() const { return (tiles + tb - 1) / tb; }
  // Where tile t's patch starts in a staged NHWC buffer with `ch` channels.
  int64_t patch(int64_t t, int64_t ch) const {
    const int64_t n = t / (th * tw), i = t / tw % th, j = t % tw;
    return ((n * Hs + kTile * i) * Ws + kTile * j) * ch;
  }
};

// V[xi][i][c] = (B^T d B)[xi] for the block's tiles t0 + i (zero rows past the last tile).
template <class T>
void input_transform(const Tiling& tl, const T* staged, int64_t t0, T* V) {
  constexpr int L = kLanes<T>;
  const int64_t Cp = tl.Cp, stride = tl.v_stride;
  for (int64_t i = 0; i < tl.tb; ++i) {
    if (t0 + i >= tl.tiles) {
      for (int xi = 0; xi < kPoints; ++xi) std::fill_n(V + xi * stride + i * Cp, Cp, T(0));
      continue;
    }
    const T* d0 = staged + tl.patch(t0 + i, Cp);
    for (int64_t c = 0; c < Cp; c += L) {
      Vec<T> d[kPoints], v[kPoints];
      for (int r = 0; r < kAlpha; ++r)
        for (int s = 0; s < kAlpha; ++s) d[r * kAlpha + s] = load(d0 + (r * tl.Ws + s) * Cp + c);
      transform_2d<kAlpha, kAlpha>(d, v, [](auto... a) { input_1d(a...); });
      for (int xi = 0; xi < kPoints; ++xi) store(V + xi * stride + i * Cp + c, v[xi]);
    }
  }
}

// y[n, k, 4i + r, 4j + s] = (A^T M A)[r][s] (+ bias[k]) for the block's tiles, inside P x Q.
template <class T>
void output_transform(const Tiling& tl, const T* M, int64_t t0, const T* bias, T* y) {
  constexpr int L = kLanes<T>;
  const int64_t Kp = tl.Kp, stride = tl.m_stride, PQ = tl.P * tl.Q;
  for (int64_t i = 0; i < tl.tb && t0 + i < tl.tiles; ++i) {
    const int64_t t = t0 + i, n = t / (tl.th * tl.tw), p0 = t / tl.tw % tl.th * kTile, q0 = t % tl.tw * kTile;
    const int64_t rows = std::min<int64_t>(kTile, tl.P - p0), cols = std::min<int64_t>(kTile, tl.Q - q0);
    for (int64_t k = 0; k < tl.K; k += L) {
      Vec<T> m[kPoints], o[kTile * kTile];
      for (int xi = 0; xi < kPoints; ++xi) m[xi] = load(M + xi * stride + i * Kp + k);
      transform_2d<kAlpha, kTile>(m, o, [](auto... a) { output_1d(a...); });
      for (int64_t l = 0; l < std::min<int64_t>(L, tl.K - k); ++l) {
        T* out = y + (n * tl.K + k + l) * PQ + p0 * tl.Q + q0;
        const T b = bias ? bias[k + l] : T(0);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t s = 0; s < cols; ++s) out[r * tl.Q + s] = o[r * kTile + s][l] + b;
      }
    }
  }
}

// U[xi][c][k] = (G g G^T)[xi] with g[j] = tap(k, c, j), j = 3r + s the 3x3 kernel's taps, zero for
// padded channels. The taps are first gathered as (c, j, k) so the transform runs on vectors of k.
template <class T, class Tap>
void filter_transform(const Tiling& tl, Tap tap, T* U) {
  constexpr int L = kLanes<T>;
  T* taps = scratch<T, 6>(tl.C * 9 * tl.Kp);
  for (int64_t k0 = 0; k0 < tl.Kp; k0 += L)  // L rows of w at a time: L sequential read streams
    for (int64_t c = 0; c < tl.C; ++c)
      for (int j = 0; j < 9; ++j)
        for (int64_t k = k0; k < k0 + L; ++k) taps[(c * 9 + j) * tl.Kp + k] = k < tl.K ? tap(k, c, j) : T(0);
  for (int64_t c = 0; c < tl.Cp; ++c)
    for (int64_t k = 0; k < tl.Kp; k += L) {
      Vec<T> g[9], u[kPoints];
      for (int j = 0; j < 9; ++j) g[j] = c < tl.C ? load(taps + (c * 9 + j) * tl.Kp + k) : Vec<T>{};
      transform_2d<3, kAlpha>(g, u, [](auto... a) { filter_1d<T>(a...); });
      for (int xi = 0; xi < kPoints; ++xi) store(U + xi * tl.u_stride + c * tl.Kp + k, u[xi]);
    }
}

// A ValueError (through pybind11) naming the kernel when the winograd variant does not apply.
void check_applies(const Conv2dArgs& a, const char* op) {
  check(winograd_applies(a), op, ": the winograd variant needs a 3x3 kernel, stride 1, dilation 1, groups 1 and ",
        "equal padding <= 2; got kernel (", a.R, ", ", a.S, "), stride (", a.stride_h, ", ", a.stride_w,
        "), dilation (", a.dil_h, ", ", a.dil_w, "), groups ", a.groups, ", padding (", a.pad_h, ", ", a.pad_w, ")");
}

// Whether a call is worth a team of threads (under ~1M multiply-adds it is not).
bool parallel(const Tiling& tl) { return omp_get_max_threads() > 1 && tl.tiles * tl.C * tl.K >= (int64_t(1) << 16); }

// out = conv3x3(in, U) + bias, for a forward-shaped problem with weights already transformed.
template <class T>
void forward_tiled(const Tiling& tl, const T* in, const T* U, const T* bias, T* out) {
  T* staged = scratch<T, 0>(tl.N * tl.Hs * tl.Ws * tl.Cp);
#pragma omp parallel if (parallel(tl))
  {
    stage(in, tl.N, tl.C, tl.H, tl.W, tl.pad, tl.pad, tl.Hs, tl.Ws, tl.Cp, staged);  // ends in a barrier
    T* V = scratch<T, 1>(kPoints * tl.v_stride);
    T* M = scratch<T, 2>(kPoints * tl.m_stride);
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < tl.blocks(); ++blk) {
      const int64_t t0 = blk * tl.tb;
      input_transform(tl, staged, t0, V);
      for (int xi = 0; xi < kPoints; ++xi)
        product<T, false>(tl.tb, tl.Kp, tl.Cp, V + xi * tl.v_stride, tl.Cp, 1, U + xi * tl.u_stride, tl.Kp,
                          M + xi * tl.m_stride, tl.Kp);
      output_transform(tl, M, t0, bias, out);
    }
  }
}

}  // namespace

template <class T>
void conv2d_forward_winograd_cpu(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y) {
  check_applies(a, "conv2d_forward_winograd");
  const Tiling tl = Tiling::make<T>(a.N, a.C, a.H, a.W, a.K, a.pad_h);
  T* U = scratch<T, 3>(kPoints * tl.u_stride);
  filter_transform(tl, [&](int64_t k, int64_t c, int j) { return w[(k * a.C + c) * 9 + j]; }, U);
  forward_tiled(tl, x, U, bias, y);
}

// dx = conv3x3(dy, w') with w'[c, k] = w[k, c] rotated by 180 degrees, padding 2 - pad.
template <class T>
void conv2d_backward_input_winograd_cpu(const Conv2dArgs& a, const T* dy, const T* w, T* dx) {
  check_applies(a, "conv2d_backward_input_winograd");
  const Tiling tl = Tiling::make<T>(a.N, a.K, a.P, a.Q, a.C, 2 - a.pad_h);
  T* U = scratch<T, 3>(kPoints * tl.u_stride);
  filter_transform(tl, [&](int64_t c, int64_t k, int j) { return w[(k * a.C + c) * 9 + 8 - j]; }, U);
  forward_tiled(tl, dy, U, static_cast<const T*>(nullptr), dx);
}

// dw[k, c] = G^T [sum over tiles of Z[k] * V[c]] G, Z = A dy_tile A^T, V = B^T x_patch B; each thread
// sums a fixed, contiguous share of the blocks (static schedule) into its own S[xi][k][c], and the
// threads' S are added in thread order: the same bits on every call with the same thread count
// (a resumed training run must retrace an uninterrupted one), at the price of no load balancing.
template <class T>
void conv2d_backward_weight_winograd_cpu(const Conv2dArgs& a, const T* x, const T* dy, T* dw) {
  check_applies(a, "conv2d_backward_weight_winograd");
  constexpr int L = kLanes<T>;
  const Tiling tl = Tiling::make<T>(a.N, a.C, a.H, a.W, a.K, a.pad_h);
  const int64_t Ps = kTile * tl.th, Qs = kTile * tl.tw;  // dy staged with the tiles' overhang
  const int64_t s_stride = skewed<T>(tl.K * tl.Cp), s_size = kPoints * s_stride;
  T* xs = scratch<T, 0>(tl.N * tl.Hs * tl.Ws * tl.Cp);
  T* dys = scratch<T, 4>(tl.N * Ps * Qs * tl.Kp);
  const int threads = parallel(tl) ? omp_get_max_threads() : 1;
  T* S = scratch<T, 5>(threads * s_size);
  int team = 1;
#pragma omp parallel num_threads(threads)
  {
    stage(x, tl.N, tl.C, tl.H, tl.W, tl.pad, tl.pad, tl.Hs, tl.Ws, tl.Cp, xs);
    stage(dy, tl.N, tl.K, tl.P, tl.Q, 0, 0, Ps, Qs, tl.Kp, dys);
#pragma omp single
    team = omp_get_num_threads();
    T* mine = S + omp_get_thread_num() * s_size;
    std::fill_n(mine, s_size, T(0));
    T* V = scratch<T, 1>(kPoints * tl.v_stride);
    T* Z = scratch<T, 2>(kPoints * tl.m_stride);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < tl.blocks(); ++blk) {
      const int64_t t0 = blk * tl.tb;
      input_transform(tl, xs, t0, V);
      for (int64_t i = 0; i < tl.tb; ++i) {  // Z[xi][i][k] = (A dy_tile A^T)[xi]
        const int64_t t = std::min(t0 + i, tl.tiles - 1);
        const T* e0 = dys + (t / (tl.th * tl.tw) * Ps * Qs + t / tl.tw % tl.th * kTile * Qs + t % tl.tw * kTile) * tl.Kp;
        for (int64_t k = 0; k < tl.Kp; k += L) {
          Vec<T> e[kTile * kTile], z[kPoints];
          for (int r = 0; r < kTile; ++r)
            for (int s = 0; s < kTile; ++s)
              e[r * kTile + s] = t0 + i < tl.tiles ? load(e0 + (r * Qs + s) * tl.Kp + k) : Vec<T>{};
          transform_2d<kTile, kAlpha>(e, z, [](auto... a) { grad_1d(a...); });
          for (int xi = 0; xi < kPoints; ++xi) store(Z + xi * tl.m_stride + i * tl.Kp + k, z[xi]);
        }
      }
      for (int xi = 0; xi < kPoints; ++xi)
        product<T, true>(tl.K, tl.Cp, tl.tb, Z + xi * tl.m_stride, 1, tl.Kp, V + xi * tl.v_stride, tl.Cp,
                         mine + xi * s_stride, tl.Cp);
    }
  }
  for (int64_t k = 0; k < tl.K; ++k)
    for (int64_t c = 0; c < tl.C; ++c) {
      T s[kPoints], g[9];
      for (int xi = 0; xi < kPoints; ++xi) {
        T sum = 0;
        for (int th = 0; th < team; ++th) sum += S[th * s_size + xi * s_stride + k * tl.Cp + c];
        s[xi] = sum;
      }
      transform_2d<kAlpha, 3>(s, g, [](auto... a) { grad_filter_1d(a...); });
      std::copy_n(g, 9, dw + (k * a.C + c) * 9);
    }
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_CONV_WINOGRAD_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
