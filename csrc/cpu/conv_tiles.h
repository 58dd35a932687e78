// The building blocks the convolution kernels written around their own register tiles share
// (conv_winograd.cpp, conv_direct.cpp): vectors of T, aligned per-thread scratch, the copy of an NCHW
// array into a zero-padded NHWC buffer, and a register-blocked micro-kernel for the products.
//
// The micro-kernel computes an MR x (NV vectors) block of C (+)= A @ B with the MR x NV accumulators
// in registers for the whole sum: each step loads NV vectors of a row of B and broadcasts MR scalars
// of A into MR * NV fused multiply-adds. A is read one scalar at a time with any strides (so it can
// be a window of an image in place: no im2col copy), B and C by rows of whole, aligned vectors. The
// sum may run over two indices, `outer` x `n` terms (a convolution's kernel rows, then its columns
// and channels), so the accumulators stay in registers across both.
// AVX2 (16 registers): 6 x 2 vectors = 12 accumulators, 2 B vectors and one broadcast; AVX-512: 14 x 2;
// a last block one vector wide: 12 (28) x 1.
//
// Compiled once per instruction set (cpu/isa.h): everything here lives in the set's namespace.
#pragma once
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>

#include "cpu/isa.h"

namespace pyfastdl::cpu::PYFASTDL_ISA::tiles {

// ---- vectors and buffers ------------------------------------------------------------------------------

template <class T> using Vec = Vector<T>;
template <class T> inline Vec<T> load(const T* p) { return *reinterpret_cast<const Vec<T>*>(p); }
template <class T> inline void store(T* p, Vec<T> v) { *reinterpret_cast<Vec<T>*>(p) = v; }
template <class T, size_t... I> inline Vec<T> splat(T s, std::index_sequence<I...>) { return Vec<T>{(void(I), s)...}; }
template <class T> inline Vec<T> broadcast(T s) { return splat(s, std::make_index_sequence<kLanes<T>>{}); }

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Per-thread scratch memory aligned for vector loads, grown on demand and reused across calls (one
// per role, so a call's buffers never alias).
template <class T, int Role>
T* scratch(int64_t n) {
  struct Free {
    void operator()(T* p) const { ::operator delete[](p, std::align_val_t(64)); }
  };
  thread_local std::unique_ptr<T[], Free> buf;
  thread_local int64_t size = 0;
  if (n > size) {
    buf.reset(static_cast<T*>(::operator new[](n * sizeof(T), std::align_val_t(64))));
    size = n;
  }
  return buf.get();
}

// Copies an NCHW array (n, ch, h, w) into NHWC dst (n, hs, ws, chp) at offset (off_h, off_w), zero
// elsewhere (the convolution's padding, the channels' padding up to chp, the tiles' overhang); input
// cells that fall outside hs x ws are not copied. A worksharing loop: call it inside a parallel region
// (it ends in a barrier).
template <class T>
void stage(const T* src, int64_t n, int64_t ch, int64_t h, int64_t w, int64_t off_h, int64_t off_w, int64_t hs,
           int64_t ws, int64_t chp, T* dst) {
  const int64_t q_end = std::min(w, ws - off_w);
#pragma omp for schedule(static) collapse(2)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t r = 0; r < hs; ++r) {
      T* row = dst + (b * hs + r) * ws * chp;
      std::fill(row, row + ws * chp, T(0));
      const int64_t sr = r - off_h;
      if (sr < 0 || sr >= h) continue;
      for (int64_t c = 0; c < ch; ++c) {
        const T* s = src + ((b * ch + c) * h + sr) * w;
        for (int64_t q = 0; q < q_end; ++q) row[(q + off_w) * chp + c] = s[q];
      }
    }
}

// ---- the products: register-blocked micro-kernel ---------------------------------------------------------

// The operands of C[i][j] (+)= sum over o < outer, l < n of A(i, o, l) * B(o, l)[j]:
// A(i, o, l) = a[i*a_row + o*a_outer + l*a_col], and row (o, l) of B starts at b + o*b_outer + l*ldb
// (whole vectors, aligned).
template <class T>
struct Operands {
  const T* a;
  int64_t a_row, a_col, a_outer;
  const T* b;
  int64_t ldb, b_outer;
  int64_t n, outer;
};

constexpr int kNV = 2;
constexpr int kMR = (kVectorRegisters - kNV - 1) / kNV;  // AVX2: 6, AVX-512: 14 rows
// A last column block of one vector takes twice the rows: the same registers, and enough independent
// accumulators to hide the latency of the multiply-adds.
constexpr int kMRNarrow = 2 * kMR;

// One MR x NV-vector block of C, at rows i0 and column j0 of the product. Outer: the sum runs over
// op.outer x op.n terms; else over op.n, the outer loop compiled away (the accumulators must stay in
// registers from the first term to the store: a helper taking them by reference made GCC keep them
// on the stack around the loop, 15-20% of Winograd's time at 16-64 channels).
template <class T, bool Accumulate, bool Outer, int MR, int NV>
void micro(const Operands<T>& op, int64_t i0, int64_t j0, T* c, int64_t ldc) {
  constexpr int L = kLanes<T>;
  Vec<T> acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = Accumulate ? load(c + i * ldc + j * L) : Vec<T>{};
  const int64_t a_row = op.a_row, a_col = op.a_col, ldb = op.ldb, n = op.n, outer = Outer ? op.outer : 1;
  for (int64_t o = 0; o < outer; ++o) {
    const T* a = op.a + i0 * a_row + (Outer ? o * op.a_outer : 0);
    const T* b = op.b + j0 + (Outer ? o * op.b_outer : 0);
    for (int64_t l = 0; l < n; ++l) {
      Vec<T> bv[NV];
      for (int j = 0; j < NV; ++j) bv[j] = load(b + l * ldb + j * L);
      for (int i = 0; i < MR; ++i) {
        const Vec<T> ai = broadcast(a[i * a_row + l * a_col]);
        for (int j = 0; j < NV; ++j) acc[i][j] += ai * bv[j];
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) store(c + i * ldc + j * L, acc[i][j]);
}

template <class T>
using MicroFn = void (*)(const Operands<T>&, int64_t, int64_t, T*, int64_t);

// micro<..., MR = 1..sizeof(I), NV> by MR, for the last rows of a product.
template <class T, bool Accumulate, bool Outer, int NV, int... I>
constexpr std::array<MicroFn<T>, sizeof...(I)> by_rows(std::integer_sequence<int, I...>) {
  return {&micro<T, Accumulate, Outer, I + 1, NV>...};
}

// C (rows x cols, cols a multiple of the vector width, ldc apart) (+)= the product of `op`.
template <class T, bool Accumulate, bool Outer = true>
void product(int64_t rows, int64_t cols, const Operands<T>& op, T* c, int64_t ldc) {
  constexpr int L = kLanes<T>;
  static constexpr auto wide = by_rows<T, Accumulate, Outer, kNV>(std::make_integer_sequence<int, kMR>{});
  static constexpr auto narrow = by_rows<T, Accumulate, Outer, 1>(std::make_integer_sequence<int, kMRNarrow>{});
  for (int64_t j = 0; j < cols; j += kNV * L) {
    const bool whole = cols - j >= kNV * L;
    const auto* fns = whole ? wide.data() : narrow.data();
    const int64_t mr = whole ? kMR : kMRNarrow;
    for (int64_t i = 0; i < rows; i += mr) fns[std::min(mr, rows - i) - 1](op, i, j, c + i * ldc + j, ldc);
  }
}

// A plain product: C (rows x cols) (+)= A (rows x n, strides a_row, a_col) @ B (n x cols, ldb).
template <class T, bool Accumulate>
void product(int64_t rows, int64_t cols, int64_t n, const T* a, int64_t a_row, int64_t a_col, const T* b, int64_t ldb,
             T* c, int64_t ldc) {
  product<T, Accumulate, false>(rows, cols, Operands<T>{a, a_row, a_col, 0, b, ldb, 0, n, 1}, c, ldc);
}

}  // namespace pyfastdl::cpu::PYFASTDL_ISA::tiles
