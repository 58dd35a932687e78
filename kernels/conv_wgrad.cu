// Convolution weight gradient on the GPU, the fast variant: an implicit GEMM over NHWC copies of x
// and dy (conv_plan.cu packs them; conv_gemm.cuh holds the tiles, the pipeline and the math).
//
//   dw[k, (r,s,c)] = sum_(n,p,q) dy[n, k, p, q] * x at input pixel of (p, q, r, s)
//                    M = Kg, N_gemm = R*S*Cg, K_gemm = N*P*Q
// The output is small and the reduction N*P*Q long, so it is always split (split-K): each block
// writes float32 partial sums of one (tile, split) to the workspace, and wgrad_reduce adds them in
// split order into dw (dropping the padded channels): deterministic, no atomics, the same bits on
// every run.
//
// Cost: 2*N*K*P*Q*Cg*R*S flops, plus one pass over splits x K*R*S*Cp floats for the reduction.
// What limits it: the engine's rate (FFMA or mma.sync), the repacking of both x and dy, and channel
// counts far below a tile, which waste most of it on padding.
#include "conv_gemm.cuh"

namespace pyfastdl::cuda::conv {
namespace {

// ---- weight gradient: NHWC dy x NHWC x -> float32 partial sums per split --------------------------
// A[m = k][kk = (n,p,q)] = dy[n][p][q][g*Kp + k]  (stored [BK][BM], contiguous along k)
// B[kk][col = (r,s,c)]   = x[n][p*sh - ph + r*dh][q*sw - pw + s*dw][g*Cp + c]
// Block z = split * G + g covers reduction steps [split*steps_per_split, +steps_per_split).

struct WgradParams {
  const void* dy;  // [N*P*Q][G*Kp]
  const void* x;   // [N][H][W][G*Cp]
  float* partial;  // [splits][G][Kg][Ncol]
  int G, Kg, Kp, Cp, H, W, P, Q, S, Ncol, Kred;  // Ncol = R*S*Cp, Kred = N*P*Q
  int sh, sw, ph, pw, dh, dw;
  int steps_per_split;
  FastDiv div_pq, div_q;
};

template <class T>
struct WgradLoader {
  using C = Cfg<T>;
  static constexpr int CPR = C::BM / C::VEC;           // 16-byte copies per tile row
  static constexpr int ROWS = C::THREADS / CPR;        // tile rows covered by one pass of the block
  static constexpr int CP = C::COPIES;
  static constexpr int LD = Smem<T, false>::LD;
  const WgradParams& p;
  const T* dy;  // this thread's channel chunk of dy's group
  const T* x;   // this thread's channel chunk of x's group
  int row0, col;
  bool a_ok, b_ok;
  int roff, soff;  // r*dh - ph and s*dw - pw of this thread's column chunk
  int kk, kend;    // reduction index of this thread's first row in the next step; end of the split

  __device__ WgradLoader(const WgradParams& p_, int g, int m0, int n0, int kbegin, int kend_, int tid)
      : p(p_), row0(tid / CPR), col(tid % CPR * C::VEC), kk(kbegin + tid / CPR), kend(kend_) {
    int m = m0 + col, n = n0 + col;
    a_ok = m < p.Kp;
    b_ok = n < p.Ncol;
    n = b_ok ? n : 0;
    int rs = n / p.Cp, c = n - rs * p.Cp, r = rs / p.S, s = rs - r * p.S;
    roff = r * p.dh - p.ph;
    soff = s * p.dw - p.pw;
    dy = static_cast<const T*>(p.dy) + g * p.Kp + (a_ok ? m : 0);
    x = static_cast<const T*>(p.x) + g * p.Cp + c;
  }
  __device__ __forceinline__ void load(T* As, T* Bs) {
#pragma unroll
    for (int i = 0; i < CP; ++i) {
      int k = kk + ROWS * i;
      bool k_ok = k < kend;
      int kq = k_ok ? k : 0;
      int img = p.div_pq.div(kq), pq = kq - img * p.P * p.Q;
      int pp = p.div_q.div(pq), q = pq - pp * p.Q;
      int h = pp * p.sh + roff, w = q * p.sw + soff;
      bool ok = b_ok && k_ok && unsigned(h) < unsigned(p.H) && unsigned(w) < unsigned(p.W);
      int xoff = ((img * p.H + h) * p.W + w) * (p.G * p.Cp);
      cp_async16(Bs + (row0 + ROWS * i) * LD + col, ok ? x + xoff : x, ok);
      bool aok = a_ok && k_ok;
      cp_async16(As + (row0 + ROWS * i) * LD + col, aok ? dy + int64_t(kq) * (p.G * p.Kp) : dy, aok);
    }
    kk += C::BK;
  }
};

template <class T>
__global__ void __launch_bounds__(Cfg<T>::THREADS, Cfg<T>::MIN_BLOCKS)
    wgrad_gemm(const __grid_constant__ WgradParams p) {
  Math<T, false> math(threadIdx.x);
  const auto [g, split, m0, n0] = gemm_block<T, false, WgradLoader>(p, math);

  store_partial(math, p.partial + (int64_t(split) * p.G + g) * p.Kg * p.Ncol, m0, n0, p.Kg, p.Ncol, p.Ncol, 1);
}

// dw[k][c][r][s] = sum over splits of partial[split][g][k % Kg][(r*S + s)*Cp + c], in split order.
template <class T>
__global__ void wgrad_reduce(const float* __restrict__ partial, T* __restrict__ dw, int splits, int G, int Kg,
                             int Cg, int Cp, int RS) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t total = int64_t(G) * Kg * Cg * RS;
  if (i >= total) return;
  int rs = int(i % RS), c = int(i / RS % Cg);
  int64_t k = i / (int64_t(RS) * Cg);  // over all groups: (g, k % Kg) is row k of [G][Kg]
  int64_t ncol = int64_t(RS) * Cp;
  const float* src = partial + k * ncol + int64_t(rs) * Cp + c;
  float sum = 0.f;
  for (int sp = 0; sp < splits; ++sp) sum += src[int64_t(sp) * G * Kg * ncol];
  dw[i] = from_f32<T>(sum);
}

template <class T>
void wgrad_launch(const Conv2dArgs& a, const void* x, const void* dy, void* dw, void* workspace, cudaStream_t st) {
  using E = typename Bits<T>::type;
  const char* op = "conv2d_backward_weight";
  const Plan pl = make_plan(a, ConvOp::backward_weight, sizeof(T));
  const Packed& s = pl.s;
  auto* ws = static_cast<unsigned char*>(workspace);
  const int64_t G = a.groups, Kg = a.K / G, RS = a.R * a.S;
  check_int32(op, "the packed input", s.x);
  check_int32(op, "the packed output gradient", s.dy);
  check_int32(op, "the partial sums", pl.splits * G * pl.Nn * pl.M);
  E* xp = reinterpret_cast<E*>(ws + pl.x);
  E* dyp = reinterpret_cast<E*>(ws + pl.dy);
  repack_activations(op, static_cast<const E*>(x), xp, a.N, a.C, a.H * a.W, G, s.Cp, st);
  repack_activations(op, static_cast<const E*>(dy), dyp, a.N, a.K, a.P * a.Q, G, s.Kp, st);

  WgradParams p{};
  p.dy = dyp, p.x = xp, p.partial = reinterpret_cast<float*>(ws + pl.partial);
  p.G = int(G), p.Kg = int(Kg), p.Kp = int(s.Kp), p.Cp = int(s.Cp);
  p.H = int(a.H), p.W = int(a.W), p.P = int(a.P), p.Q = int(a.Q), p.S = int(a.S);
  p.Ncol = int(pl.Nn), p.Kred = int(pl.Kred);
  p.sh = int(a.stride_h), p.sw = int(a.stride_w), p.ph = int(a.pad_h), p.pw = int(a.pad_w);
  p.dh = int(a.dil_h), p.dw = int(a.dil_w);
  p.steps_per_split = pl.steps_per_split;
  p.div_pq = FastDiv(p.P * p.Q), p.div_q = FastDiv(p.Q);
  launch_gemm(wgrad_gemm<T>, Cfg<T>::THREADS, Smem<T, false>::BYTES, gemm_grid(op, Kg, p.Ncol, G * pl.splits), p, st,
              "conv2d_backward_weight wgrad_gemm");

  int64_t total = a.K * (a.C / G) * RS;
  wgrad_reduce<T><<<ceil_div(total, 256), 256, 0, st>>>(p.partial, static_cast<T*>(dw), pl.splits, int(G),
                                                        int(Kg), int(a.C / G), int(s.Cp), int(RS));
  check_launch("conv2d_backward_weight wgrad_reduce");
}

}  // namespace

void wgrad_fast(const Conv2dArgs& a, ConvDType dt, const void* x, const void* dy, void* dw, void* workspace,
                cudaStream_t st) {
  by_dtype(dt, [&](auto t) { wgrad_launch<decltype(t)>(a, x, dy, dw, workspace, st); });
}

}  // namespace pyfastdl::cuda::conv
