// The fast convolution's prologue: the workspace plan (packed operand sizes, the split-K factor,
// where each part of the workspace lies) and the repacking kernels that fill it.
//
// Repacking: the activations go NCHW -> NHWC and the weights to [G][O][R][S][I], so that the
// reduction index (r, s, c) of every GEMM runs over contiguous channels, each group's channels
// padded with zeros to a multiple of 16 bytes (workspace from the caller, i.e. cupy's pool). One
// extra pass over the activations (about one read and one write of them) buys 16-byte, aligned
// loads everywhere in the GEMMs.
// Split-K: where the output tiles alone leave the chip idle (deep layers, 14x14 and 7x7 maps; always
// for the weight gradient, whose output is small and whose reduction is N*P*Q long), the reduction
// is cut into splits, one block per (tile, split), the count chosen to minimise waves x steps. Each
// block writes float32 partial sums to the workspace and a small kernel adds them in split order:
// deterministic, no atomics, one extra pass over splits x output floats.
#include "conv_common.cuh"

namespace pyfastdl::cuda::conv {
namespace {

// ---- prologue: repacking ---------------------------------------------------------------------------
// Elements are moved as raw bits (E = float or uint16_t); zero bits are +0.0 in every format.

// dst[n][pix][g*Cp + c] = src[n][g*Cg + c][pix] for c < Cg, 0 for Cg <= c < Cp.
// 32x32 tiles through shared memory: reads coalesced along pixels, writes along channels.
template <class E>
__global__ void nchw_to_nhwc(const E* __restrict__ src, E* __restrict__ dst, int C, int HW, int G, int Cg,
                             int Cp) {
  __shared__ E tile[32][33];
  const int n = blockIdx.z, pix0 = blockIdx.x * 32, ch0 = blockIdx.y * 32, tx = threadIdx.x, ty = threadIdx.y;
  const int GCp = G * Cp;
  src += int64_t(n) * C * HW;
  dst += int64_t(n) * HW * GCp;
#pragma unroll
  for (int j = 0; j < 32; j += 8) {
    int ch = ch0 + ty + j, pix = pix0 + tx, g = ch / Cp, c = ch - g * Cp;
    bool ok = ch < GCp && pix < HW && c < Cg;
    tile[ty + j][tx] = ok ? src[int64_t(g * Cg + c) * HW + pix] : E(0);
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < 32; j += 8) {
    int pix = pix0 + ty + j, ch = ch0 + tx;
    if (pix < HW && ch < GCp) dst[int64_t(pix) * GCp + ch] = tile[tx][ty + j];
  }
}

// Weights (K, Cg, R, S) -> [G][O][R][S][Ip], zero for i >= I.
//   forward (!swap):       O = Kg, I = Cg: dst[g][k][r][s][c] = w[g*Kg + k][c][r][s]
//   input gradient (swap): O = Cg, I = Kg: dst[g][c][r][s][k] = w[g*Kg + k][c][r][s]
template <class E>
__global__ void pack_weight(const E* __restrict__ w, E* __restrict__ dst, int G, int O, int RS, int I, int Ip,
                            bool swap) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= int64_t(G) * O * RS * Ip) return;
  int ii = int(i % Ip), rs = int(i / Ip % RS);
  int64_t go = i / (int64_t(Ip) * RS);  // g*O + o
  int g = int(go / O), o = int(go % O);
  E v = E(0);
  if (ii < I) {
    int k = swap ? ii : o, c = swap ? o : ii, Cg = swap ? O : I, Kg = swap ? I : O;
    v = w[(int64_t(g * Kg + k) * Cg + c) * RS + rs];
  }
  dst[i] = v;
}

// ---- host side ----------------------------------------------------------------------------------

int round_up(int64_t v, int64_t m) { return int((v + m - 1) / m * m); }
std::size_t align256(std::size_t b) { return (b + 255) / 256 * 256; }

// Channels per group as packed (padded to whole 16-byte vectors).
int64_t padded(int64_t ch, std::size_t elem) { return round_up(ch, int64_t(16 / elem)); }

Packed packed_sizes(const Conv2dArgs& a, std::size_t elem) {
  Packed s;
  int64_t G = a.groups, RS = a.R * a.S;
  s.Cp = padded(a.C / G, elem), s.Kp = padded(a.K / G, elem);
  s.x = a.N * a.H * a.W * G * s.Cp;
  s.dy = a.N * a.P * a.Q * G * s.Kp;
  s.w_fwd = a.K * RS * s.Cp;
  s.w_bwd = a.C * RS * s.Kp;
  return s;
}

int multiprocessors() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();
    return 132;  // an H100's count: only the split factor (speed) depends on it, never the result
  }
  return sms;
}

// Splits of the reduction: the count that minimises (waves of blocks) x (steps per block), where a
// wave is one block per block slot of the chip; fewest splits on a tie, each split >= 4 steps long.
void choose_splits(Plan& pl, int64_t G, int64_t slots, int64_t max_splits, int64_t BK) {
  const int64_t tiles = (pl.M + 127) / 128 * ((pl.Nn + 127) / 128) * G, steps = (pl.Kred + BK - 1) / BK;
  auto cost = [&](int64_t s) { return (tiles * s + slots - 1) / slots * ((steps + s - 1) / s); };
  int64_t best = 1;
  for (int64_t s = 2; s <= max_splits && 4 * s <= steps && G * s <= 65535; ++s)
    if (cost(s) < cost(best)) best = s;
  int64_t per = (steps + best - 1) / best;
  pl.steps_per_split = int(per);
  pl.splits = int((steps + per - 1) / per);  // no empty split
}

}  // namespace

Plan make_plan(const Conv2dArgs& a, ConvOp op, std::size_t elem) {
  Plan pl;
  pl.s = packed_sizes(a, elem);
  const Packed& s = pl.s;
  const int64_t G = a.groups, RS = a.R * a.S, BK = 64 / int64_t(elem);
  // Blocks resident per SM: float32's act_gemm needs more than half the register file.
  const int64_t slots = multiprocessors() * (elem == 4 && op != ConvOp::backward_weight ? 1 : 2);
  if (op == ConvOp::forward)
    pl.M = a.N * a.P * a.Q, pl.Nn = a.K / G, pl.Kred = RS * s.Cp;
  else if (op == ConvOp::backward_input)
    pl.M = a.N * a.H * a.W, pl.Nn = a.C / G, pl.Kred = RS * s.Kp;
  else
    pl.M = a.K / G, pl.Nn = RS * s.Cp, pl.Kred = a.N * a.P * a.Q;
  choose_splits(pl, G, slots, op == ConvOp::backward_weight ? 64 : 16, BK);

  std::size_t at = 0;
  auto take = [&at](int64_t bytes) {
    std::size_t off = at;
    at += align256(std::size_t(bytes));
    return off;
  };
  if (op != ConvOp::backward_input) pl.x = take(s.x * int64_t(elem));
  if (op != ConvOp::forward) pl.dy = take(s.dy * int64_t(elem));
  if (op != ConvOp::backward_weight) pl.w = take((op == ConvOp::forward ? s.w_fwd : s.w_bwd) * int64_t(elem));
  // The weight gradient always goes through its partial sums (they hold the padded channels).
  if (pl.splits > 1 || op == ConvOp::backward_weight) pl.partial = take(pl.splits * G * pl.Nn * pl.M * 4);
  pl.bytes = at;
  return pl;
}

template <class E>
void repack_activations(const char* op, const E* src, E* dst, int64_t N, int64_t C, int64_t HW, int64_t G,
                        int64_t Cp, cudaStream_t st) {
  check(N <= 65535, op, ": batch ", N, " is larger than this kernel's limit of 65535");
  dim3 grid(ceil_div(HW, 32), ceil_div(G * Cp, 32), unsigned(N));
  nchw_to_nhwc<E><<<grid, dim3(32, 8), 0, st>>>(src, dst, int(C), int(HW), int(G), int(C / G), int(Cp));
  check_launch("conv2d nchw_to_nhwc");
}

template <class E>
void repack_weight(const E* w, E* dst, int64_t G, int64_t O, int64_t RS, int64_t I, int64_t Ip, bool swap,
                   cudaStream_t st) {
  int64_t total = G * O * RS * Ip;
  pack_weight<E><<<ceil_div(total, 256), 256, 0, st>>>(w, dst, int(G), int(O), int(RS), int(I), int(Ip), swap);
  check_launch("conv2d pack_weight");
}

// The two element widths the kernels move: float32, and float16 / bfloat16 as raw 16-bit words.
template void repack_activations<float>(const char*, const float*, float*, int64_t, int64_t, int64_t, int64_t,
                                        int64_t, cudaStream_t);
template void repack_activations<uint16_t>(const char*, const uint16_t*, uint16_t*, int64_t, int64_t, int64_t,
                                           int64_t, int64_t, cudaStream_t);
template void repack_weight<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t, bool,
                                   cudaStream_t);
template void repack_weight<uint16_t>(const uint16_t*, uint16_t*, int64_t, int64_t, int64_t, int64_t, int64_t, bool,
                                      cudaStream_t);

}  // namespace pyfastdl::cuda::conv
