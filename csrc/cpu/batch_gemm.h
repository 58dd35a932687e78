// Small-batch matrix products for the LSTM, written for the shape of its recurrence.
//
//   C[n, m] = sum_k A(m, k) * X[k, n]      m < M (weight rows), n < N (batch), k < K
//
// Inside the recurrence every step multiplies the whole weight matrix (4H x H) by only B columns of
// state. A BLAS call packs (copies) its weight operand into its own layout on every call, which for
// B = 16 moves as many bytes as the multiply needs. Here the weights are read where they lie (or,
// for the sequence, packed once for all T steps), and the small operand X -- the state, transposed
// to (K, N) with N padded to whole vectors and zero-filled -- is what the vector loads read.
//
// Micro-kernel: a tile of MR weight rows x NV vectors of batch columns stays in MR*NV vector
// registers for the whole K loop. Each k loads NV vectors of X and, for each of the MR rows, one
// weight scalar broadcast from memory into an FMA (vfmadd231ps zmm, zmm, [mem]{1to16} on AVX-512):
// MR*NV FMAs for NV + MR loads. MR*NV is 24 accumulators where there are 32 vector registers (12
// where there are 16), with the tile shaped to the batch: 24 x 1, 12 x 2, 8 x 3 or 6 x 4 vectors.
// Cost: 2*M*N*K flops; A streams once per group of NV vectors of batch columns, X from L1/L2.
//
// The result is stored transposed, into C (N x M, row-major): the (batch, features) layout of the
// callers. A is row-major (Rows: a weight matrix read where it lies, for a single step) or packed
// once into k-major panels of MR rows (Panels: for all the steps of a sequence, or for W^T).
// Edge tiles (fewer than MR rows left) are copied into a zero-padded panel first.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/isa.h"

namespace pyfastdl::cpu::PYFASTDL_ISA {

enum class ALayout { Rows, Panels };

inline constexpr int kMaxVectors = 4;                         // batch columns per tile: up to 4 vectors
inline constexpr int kAccumulators = kVectorRegisters * 3 / 4;  // the rest hold X and the broadcasts

// Weight rows per tile for a product with n batch columns (of lanes L).
template <class T> constexpr int tile_rows(int64_t n) {
  const int64_t nv = std::min<int64_t>(kMaxVectors, (n + kLanes<T> - 1) / kLanes<T>);
  return kAccumulators / int(std::max<int64_t>(nv, 1));
}

// The micro-kernel. `a` is k-major (A(r, k) = a[k * lda + r]) when KMajor, else row-major; x, the
// state, has at least NV vectors readable in each of its K rows. Stores rows x cols of the tile,
// transposed.
template <class T, bool KMajor, int MR, int NV>
void tile(int64_t K, const T* a, int64_t lda, const T* x, int64_t ldx, T* c, int64_t ldc, int rows, int cols) {
  using V = Vector<T>;
  constexpr int L = kLanes<T>;
  V acc[MR][NV] = {};
  for (int64_t k = 0; k < K; ++k) {
    V xv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) std::memcpy(&xv[v], x + k * ldx + v * L, sizeof(V));
#pragma GCC unroll 24
    for (int r = 0; r < MR; ++r) {
      const T ar = KMajor ? a[k * lda + r] : a[r * lda + k];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] += ar * xv[v];
    }
  }
  T out[MR][NV * L];
  std::memcpy(out, acc, sizeof(out));
  for (int n = 0; n < cols; ++n)
    for (int r = 0; r < rows; ++r) c[n * ldc + r] = out[r][n];
}

// Row k of A^T (M values) into the panels: MR values to each (MR known to the compiler, so that the
// copies are inlined moves rather than a library call per MR values).
template <class T, int MR> void scatter_to_panels(int64_t M, int64_t K, const T* src, T* dst) {
  int64_t m0 = 0;
  for (; m0 + MR <= M; m0 += MR)
#pragma GCC unroll 24
    for (int r = 0; r < MR; ++r) dst[m0 * K + r] = src[m0 + r];
  for (int64_t r = 0; m0 + r < M; ++r) dst[m0 * K + r] = src[m0 + r];
}

// A (M x K) packed into k-major panels of tile_rows<T>(n) rows (n: the most batch columns it will
// be used with), the last panel zero-padded: panel p holds rows p*MR .. p*MR + MR - 1 as p[k*MR + r].
template <class T> struct Panels {
  int64_t M, K, mr;
  std::unique_ptr<T[]> data;

  Panels(int64_t M_, int64_t K_, int64_t n) : M(M_), K(K_), mr(tile_rows<T>(n)) {
    const int64_t rows = (M + mr - 1) / mr * mr;
    data.reset(new T[rows * K]);
    for (int64_t m = M; m < rows; ++m)  // the padding rows of the last panel
      for (int64_t k = 0; k < K; ++k) data[(m / mr) * mr * K + k * mr + m % mr] = T(0);
  }

  // Columns [k0, k0 + width) from the rows of weight matrices: A(m, k0 + k) = row(m)[k], each row
  // read along.
  template <class Row> void fill_rows(int64_t k0, int64_t width, Row row) {
    for (int64_t m0 = 0; m0 < M; m0 += mr) {
      T* dst = data.get() + m0 * K + k0 * mr;
      for (int64_t r = 0; r < std::min(mr, M - m0); ++r) {
        const T* src = row(m0 + r);
        for (int64_t k = 0; k < width; ++k) dst[k * mr + r] = src[k];
      }
    }
  }

  // All of A from a weight matrix w used transposed: A(m, k) = w[k * ldw + m]. Each row of w is
  // read once, along, and scattered MR values to a panel.
  void fill_columns(const T* w, int64_t ldw) {
    for (int64_t k = 0; k < K; ++k) {
      const T* src = w + k * ldw;
      T* dst = data.get() + k * mr;
      switch (mr) {
        case kAccumulators: scatter_to_panels<T, kAccumulators>(M, K, src, dst); break;
        case kAccumulators / 2: scatter_to_panels<T, kAccumulators / 2>(M, K, src, dst); break;
        case kAccumulators / 3: scatter_to_panels<T, kAccumulators / 3>(M, K, src, dst); break;
        default: scatter_to_panels<T, kAccumulators / 4>(M, K, src, dst); break;
      }
    }
  }
};

// All the tiles (MR rows of A at a time) of one group of NV vectors of batch columns.
template <class T, ALayout Layout, int MR, int NV>
void tile_rows_of(int64_t M, int64_t K, const T* a, int64_t lda, const T* s, int64_t lds, T* c, int64_t ldc,
                  int cols, std::vector<T>& edge) {
  for (int64_t m0 = 0; m0 < M; m0 += MR) {
    const int rows = int(std::min<int64_t>(MR, M - m0));
    if (Layout == ALayout::Panels) {
      tile<T, true, MR, NV>(K, a + (m0 / MR) * MR * K, MR, s, lds, c + m0, ldc, rows, cols);
    } else if (rows == MR) {
      tile<T, false, MR, NV>(K, a + m0 * lda, lda, s, lds, c + m0, ldc, rows, cols);
    } else {  // the last rows: through a zero-padded panel, so the tile reads nothing past A
      edge.assign(MR * K, T(0));
      for (int64_t k = 0; k < K; ++k)
        for (int r = 0; r < rows; ++r) edge[k * MR + r] = a[(m0 + r) * lda + k];
      tile<T, true, MR, NV>(K, edge.data(), MR, s, lds, c + m0, ldc, rows, cols);
    }
  }
}

// Every group of NV vectors of batch columns (the last may have fewer), with MR rows per tile.
template <class T, ALayout Layout, int MR>
void column_groups(int64_t M, int64_t N, int64_t K, const T* a, int64_t lda, const T* s, int64_t lds, T* c,
                   int64_t ldc) {
  constexpr int L = kLanes<T>, NVmax = std::min(kMaxVectors, kAccumulators / MR);
  std::vector<T> edge;
  for (int64_t n0 = 0; n0 < N; n0 += NVmax * L) {
    const int cols = int(std::min<int64_t>(NVmax * L, N - n0)), nv = (cols + L - 1) / L;
    switch (nv) {
#define PYFASTDL_GROUP(NV) tile_rows_of<T, Layout, MR, NV>(M, K, a, lda, s + n0, lds, c + n0 * ldc, ldc, cols, edge)
      case 1: PYFASTDL_GROUP(1); break;
      case 2: if constexpr (NVmax >= 2) PYFASTDL_GROUP(2); break;
      case 3: if constexpr (NVmax >= 3) PYFASTDL_GROUP(3); break;
      default: if constexpr (NVmax >= 4) PYFASTDL_GROUP(4); break;
#undef PYFASTDL_GROUP
    }
  }
}

// C (N x M, ldc) = (A @ S)^T with MR weight rows per tile, for the transposed state S (K x N, lds >= N
// rounded up to whole vectors, the padding readable).
template <class T, ALayout Layout>
void product_in_tiles(int mr, int64_t M, int64_t N, int64_t K, const T* a, int64_t lda, const T* s, int64_t lds,
                      T* c, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  switch (mr) {
#define PYFASTDL_ROWS(MR) column_groups<T, Layout, MR>(M, N, K, a, lda, s, lds, c, ldc)
    case kAccumulators: PYFASTDL_ROWS(kAccumulators); break;
    case kAccumulators / 2: PYFASTDL_ROWS(kAccumulators / 2); break;
    case kAccumulators / 3: PYFASTDL_ROWS(kAccumulators / 3); break;
    default: PYFASTDL_ROWS(kAccumulators / 4); break;
#undef PYFASTDL_ROWS
  }
}

// C (N x M, ldc) = (A @ S)^T for the weights A (M x K, row-major, lda apart) read where they lie.
template <class T>
void weights_times_state(int64_t M, int64_t N, int64_t K, const T* a, int64_t lda, const T* s, int64_t lds, T* c,
                         int64_t ldc) {
  product_in_tiles<T, ALayout::Rows>(tile_rows<T>(N), M, N, K, a, lda, s, lds, c, ldc);
}

// C (N x w.M, ldc) = (A @ S)^T for the weights packed in w. N may be smaller than the batch they were
// packed for (a sequence's rows still live at a step): the tiles keep the packed height.
template <class T>
void panels_times_state(const Panels<T>& w, int64_t N, const T* s, int64_t lds, T* c, int64_t ldc) {
  product_in_tiles<T, ALayout::Panels>(int(w.mr), w.M, N, w.K, w.data.get(), 0, s, lds, c, ldc);
}

// The padded width of the transposed state: n rounded up to whole vectors.
template <class T> constexpr int64_t padded_columns(int64_t n) { return (n + kLanes<T> - 1) / kLanes<T> * kLanes<T>; }

// xt[k * ldx + n] = row(n)[k] for n < N, k < K: the transpose of N rows that may lie anywhere (row(n)
// points at row n's K values). In blocks of 16 x 16, so that both sides move a cache line at a time
// through L1: one column at a time would land each of a row's K values in a different line, and for
// a state of a few hundred features by a hundred columns those lines do not stay in L1.
template <class T, class Row> void transpose_rows(int64_t N, int64_t K, Row row, T* xt, int64_t ldx) {
  constexpr int64_t kBlock = 16;
  for (int64_t n0 = 0; n0 < N; n0 += kBlock)
    for (int64_t k0 = 0; k0 < K; k0 += kBlock) {
      const int64_t n1 = std::min(N, n0 + kBlock), k1 = std::min(K, k0 + kBlock);
      for (int64_t n = n0; n < n1; ++n) {
        const T* src = row(n);
        for (int64_t k = k0; k < k1; ++k) xt[k * ldx + n] = src[k];
      }
    }
}

// xt (K x ldx, zero-padded past N) = x^T for x (N x K, row-major, ld_in apart).
template <class T> void transpose_into(int64_t N, int64_t K, const T* x, int64_t ld_in, T* xt, int64_t ldx) {
  transpose_rows(N, K, [&](int64_t n) { return x + n * ld_in; }, xt, ldx);
  for (int64_t k = 0; k < K; ++k) std::fill(xt + k * ldx + N, xt + (k + 1) * ldx, T(0));
}

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
