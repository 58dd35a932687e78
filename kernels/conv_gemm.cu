// Convolution forward and input gradient on the GPU, the fast variant: one implicit-GEMM kernel,
// act_gemm, serves both, multiplying packed NHWC activations by packed weights (conv_plan.cu packs
// them; conv_gemm.cuh holds the tiles, the pipeline and the math).
//
//   forward          y[m, k]  = sum_(r,s,c) A[m, (r,s,c)] * B[k, (r,s,c)]     M = N*P*Q, N_gemm = Kg, K_gemm = R*S*Cg
//                    A = x at input pixel (p*stride - pad + r*dil, ...), B = w
//   input gradient   dx[m, c] = sum_(r,s,k) dy at output pixel ((h + pad - r*dil)/stride, ...) * w[k, c, r, s]
//                    M = N*H*W, N_gemm = Cg, K_gemm = R*S*Kg; a tap contributes only where the division
//                    is exact (the "gather" form of the transposed convolution; no flipped copy needed)
// The im2col matrix A is never built: each tile of it is gathered from the activations straight
// into shared memory, on the fly. The epilogue adds the bias, converts and writes NCHW directly
// (consecutive threads hold consecutive output pixels); with split-K (conv_plan.cu) it writes float32
// partial sums instead, and split_reduce adds them in split order.
//
// Cost: 2*N*K*P*Q*Cg*R*S flops each, compute-bound on every layer of a real network. What limits it
// beyond the engine's rate: the input gradient of a strided convolution gathers taps that are mostly
// absent: stride 2 wastes 3/4 of its MMAs on zero-filled tiles (the sub-pixel decomposition would
// avoid that). Channel counts far below a tile (the first layer, depthwise convolutions) waste most
// of a tile on padding.
#include "conv_gemm.cuh"

namespace pyfastdl::cuda::conv {
namespace {

// ---- forward and input gradient: activations x packed weights -> NCHW output ----------------------
// act: NHWC activations [N][Hi][Wi][G*Ci] (Ci = per-group channels padded to VEC).
// wgt: [G][Nn][R][S][Ci], so row n of B is contiguous along the reduction index (r, s, c).
// out: NCHW [N][G*Nn][Ho][Wo]. The tap (r, s) of output pixel (ho, wo) reads input pixel
//   forward:     hi = ho*stride - pad + r*dil
//   transposed:  hi = (ho + pad - r*dil) / stride, only where that division is exact (input gradient)

// Split-K: when the output tiles alone would leave SMs idle (deep layers: 14x14 and 7x7 maps), block
// z = split*G + g covers reduction steps [split*steps_per_split, +steps_per_split) and writes float32
// partial sums [split][G][Nn][M]; split_reduce adds them in split order, adds the bias and converts.
template <class T>
struct ActParams {
  const T* act;
  const T* wgt;
  const T* bias;  // [G*Nn] or null
  T* out;
  float* partial;  // null: no split, the epilogue writes `out`
  int G, Hi, Wi, Ci, act_pix;     // act_pix = G*Ci, elements per pixel
  int Ho, Wo, M, Nn, R, S, Kred;  // M = N*Ho*Wo, Kred = R*S*Ci
  int sh, sw, ph, pw, dh, dw;
  bool transposed;
  int steps_per_split;
  FastDiv div_howo, div_wo;
};

// Input coordinate of output coordinate `base` (forward: o*stride - pad; transposed: o + pad) through
// tap t; false where it falls outside the input or (transposed) between input pixels.
__device__ __forceinline__ bool tap(int base, int t, int dil, int stride, int size, bool transposed, int& in) {
  if (!transposed) {
    in = base + t * dil;
    return unsigned(in) < unsigned(size);
  }
  int num = base - t * dil;
  if (num < 0) return false;
  if (stride != 1) {
    if (num % stride) return false;
    num /= stride;
  }
  in = num;
  return num < size;
}

template <class T>
struct ActLoader {
  using C = Cfg<T>;
  static constexpr int LD = Smem<T, true>::LD, CP = C::COPIES, STRIDE = C::THREADS / 4;  // rows apart
  const ActParams<T>& p;
  const T* act;                   // this group's channels
  int row0, kc;                   // tile row of this thread's first copy; its 16-byte column in the step
  int pix[CP], hb[CP], wb[CP];    // per copy row: first pixel of its image, output coordinates as taps' base
  bool m_ok[CP];
  const T* b_src[CP];  // weight rows
  bool n_ok[CP];
  int kk, kend;     // this thread's reduction index, advanced by BK per load; end of the split
  int c, r, s;      // kk as (r, s, c)

  __device__ ActLoader(const ActParams<T>& p_, int g, int m0, int n0, int kbegin, int kend_, int tid)
      : p(p_), act(p_.act + g * p_.Ci), row0(tid / 4), kc(tid % 4 * C::VEC), kk(kbegin + kc), kend(kend_) {
#pragma unroll
    for (int i = 0; i < CP; ++i) {
      int m = m0 + row0 + STRIDE * i;
      m_ok[i] = m < p.M;
      int mm = m_ok[i] ? m : 0;
      int img = p.div_howo.div(mm), rest = mm - img * p.Ho * p.Wo;
      int ho = p.div_wo.div(rest), wo = rest - ho * p.Wo;
      pix[i] = img * p.Hi * p.Wi;
      hb[i] = p.transposed ? ho + p.ph : ho * p.sh - p.ph;
      wb[i] = p.transposed ? wo + p.pw : wo * p.sw - p.pw;
      int n = n0 + row0 + STRIDE * i;
      n_ok[i] = n < p.Nn;
      b_src[i] = p.wgt + (int64_t(g) * p.Nn + (n_ok[i] ? n : 0)) * p.Kred;
    }
    int rs = kk / p.Ci;
    c = kk - rs * p.Ci, r = rs / p.S, s = rs - r * p.S;
  }
  __device__ __forceinline__ void normalize() {  // carry c into s, s into r
    while (c >= p.Ci) {
      c -= p.Ci;
      if (++s == p.S) s = 0, ++r;
    }
  }
  __device__ __forceinline__ void load(T* As, T* Bs) {
    bool k_ok = kk < kend;
#pragma unroll
    for (int i = 0; i < CP; ++i) {
      int h = 0, w = 0;
      bool ok = m_ok[i] && k_ok && tap(hb[i], r, p.dh, p.sh, p.Hi, p.transposed, h) &&
                tap(wb[i], s, p.dw, p.sw, p.Wi, p.transposed, w);
      const T* src = ok ? act + (pix[i] + h * p.Wi + w) * p.act_pix + c : p.act;
      cp_async16(As + (row0 + STRIDE * i) * LD + kc, src, ok);
      bool b_ok = n_ok[i] && k_ok;
      cp_async16(Bs + (row0 + STRIDE * i) * LD + kc, b_ok ? b_src[i] + kk : p.wgt, b_ok);
    }
    kk += C::BK, c += C::BK;
    normalize();
  }
};

template <class T>
__global__ void __launch_bounds__(Cfg<T>::THREADS, Cfg<T>::MIN_BLOCKS)
    act_gemm(const __grid_constant__ ActParams<T> p) {
  Math<T, true> math(threadIdx.x);
  const auto [g, split, m0, n0] = gemm_block<T, true, ActLoader>(p, math);

  if (p.partial) {  // [split][g][n][m]: consecutive threads, consecutive m
    store_partial(math, p.partial + (int64_t(split) * p.G + g) * p.Nn * p.M, m0, n0, p.M, p.Nn, 1, p.M);
    return;
  }
  const int HoWo = p.Ho * p.Wo, channels = p.G * p.Nn;
#pragma unroll
  for (int i = 0; i < math.ROWS; ++i) {
    int m = m0 + math.row(i);
    if (m >= p.M) continue;
    int img = p.div_howo.div(m);
    T* o = p.out + (int64_t(img) * channels + g * p.Nn) * HoWo + (m - img * HoWo);
#pragma unroll
    for (int j = 0; j < math.COLS; ++j) {
      int n = n0 + math.col(j);
      if (n >= p.Nn) continue;
      float v = math.at(i, j) + (p.bias ? to_f32(p.bias[g * p.Nn + n]) : 0.f);
      o[int64_t(n) * HoWo] = from_f32<T>(v);
    }
  }
}

// out[img][g*Nn + n][pix] = bias + sum over splits of partial[split][g][n][img*HoWo + pix], in split order.
template <class T>
__global__ void split_reduce(const float* __restrict__ partial, const T* __restrict__ bias, T* __restrict__ out,
                             int splits, int G, int Nn, int M, int HoWo) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= int64_t(M) * G * Nn) return;
  int pix = int(i % HoWo), ch = int(i / HoWo % (G * Nn));
  int64_t img = i / (int64_t(HoWo) * G * Nn);
  const float* src = partial + int64_t(ch) * M + img * HoWo + pix;  // row g*Nn + n of [G][Nn][M]
  float sum = bias ? to_f32(bias[ch]) : 0.f;
  for (int sp = 0; sp < splits; ++sp) sum += src[int64_t(sp) * G * Nn * M];
  out[i] = from_f32<T>(sum);
}

// Forward (transposed = false) or input gradient (true) through act_gemm.
template <class T>
void act_gemm_launch(const char* op, const Conv2dArgs& a, bool transposed, const void* act_nchw, const void* w,
                     const void* bias, void* out, void* workspace, cudaStream_t st) {
  using E = typename Bits<T>::type;
  const Plan pl = make_plan(a, transposed ? ConvOp::backward_input : ConvOp::forward, sizeof(T));
  const Packed& s = pl.s;
  auto* ws = static_cast<unsigned char*>(workspace);
  const int64_t G = a.groups, Cg = a.C / G, Kg = a.K / G, RS = a.R * a.S;
  // Activations in (x for forward, dy for the input gradient) and their geometry.
  const int64_t Ci = transposed ? s.Kp : s.Cp, Hi = transposed ? a.P : a.H, Wi = transposed ? a.Q : a.W;
  const int64_t Ho = transposed ? a.H : a.P, Wo = transposed ? a.W : a.Q;
  E* act = reinterpret_cast<E*>(ws + (transposed ? pl.dy : pl.x));
  E* wgt = reinterpret_cast<E*>(ws + pl.w);
  check_int32(op, "the packed input", transposed ? s.dy : s.x);
  check_int32(op, "the packed weight", transposed ? s.w_bwd : s.w_fwd);
  check_int32(op, "the partial sums", pl.splits * G * pl.Nn * pl.M);
  repack_activations(op, static_cast<const E*>(act_nchw), act, a.N, transposed ? a.K : a.C, Hi * Wi, G, Ci, st);
  repack_weight(static_cast<const E*>(w), wgt, G, pl.Nn, RS, transposed ? Kg : Cg, Ci, transposed, st);

  ActParams<T> p{};
  p.act = reinterpret_cast<const T*>(act);
  p.wgt = reinterpret_cast<const T*>(wgt);
  p.bias = static_cast<const T*>(bias);
  p.out = static_cast<T*>(out);
  p.partial = pl.splits > 1 ? reinterpret_cast<float*>(ws + pl.partial) : nullptr;
  p.G = int(G), p.Hi = int(Hi), p.Wi = int(Wi), p.Ci = int(Ci), p.act_pix = int(G * Ci);
  p.Ho = int(Ho), p.Wo = int(Wo), p.M = int(pl.M), p.Nn = int(pl.Nn);
  p.R = int(a.R), p.S = int(a.S), p.Kred = int(pl.Kred);
  p.sh = int(a.stride_h), p.sw = int(a.stride_w), p.ph = int(a.pad_h), p.pw = int(a.pad_w);
  p.dh = int(a.dil_h), p.dw = int(a.dil_w);
  p.transposed = transposed;
  p.steps_per_split = pl.steps_per_split;
  p.div_howo = FastDiv(p.Ho * p.Wo), p.div_wo = FastDiv(p.Wo);
  launch_gemm(act_gemm<T>, Cfg<T>::THREADS, Smem<T, true>::BYTES, gemm_grid(op, pl.M, pl.Nn, G * pl.splits), p, st,
              transposed ? "conv2d_backward_input act_gemm" : "conv2d_forward act_gemm");
  if (pl.splits > 1) {
    split_reduce<T><<<ceil_div(pl.M * G * pl.Nn, 256), 256, 0, st>>>(p.partial, p.bias, p.out, pl.splits, p.G,
                                                                       p.Nn, p.M, p.Ho * p.Wo);
    check_launch(transposed ? "conv2d_backward_input split_reduce" : "conv2d_forward split_reduce");
  }
}

}  // namespace

void act_gemm_fast(const char* op, const Conv2dArgs& a, ConvDType dt, bool transposed, const void* act_nchw,
                   const void* w, const void* bias, void* out, void* workspace, cudaStream_t st) {
  by_dtype(dt, [&](auto t) { act_gemm_launch<decltype(t)>(op, a, transposed, act_nchw, w, bias, out, workspace, st); });
}

}  // namespace pyfastdl::cuda::conv
