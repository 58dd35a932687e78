// GEMM with pyfastdl's OpenMP team and single-threaded OpenBLAS calls (see gemm.h for why).
//
// Splitting: a batch of products is shared out whole when it has at least two per thread; otherwise
// each product's C is cut along its longer side, rows or columns, into blocks of at least 128, about
// two units of work per thread in all. The threads take units as they finish (schedule dynamic), so
// a thread on a core that another process shares takes fewer of them instead of holding the rest
// back. Blocks are no smaller than they need be because each OpenBLAS call packs its own copy of the
// other operand's panel: with blocks of 64 rows that copying cost 30-50% more time than one call
// (Zen 3, a Transformer's 2048 x 256 x 1024 product), with 512 about 5%. One thread, a kernel's own
// task calling gemm() inside its parallel region, and any product under kParallelMin multiply-adds
// (tens of microseconds: waking the team would cost more) make one call per product. So, as with a
// threaded BLAS, the rounding depends on the thread count (the same count gives the same bits).
#include "cpu/gemm.h"

#include <omp.h>

#include <algorithm>

extern "C" {
int scipy_openblas_get_num_threads(void);
void scipy_openblas_set_num_threads(int);
void scipy_cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float* a,
                       int lda, const float* b, int ldb, float beta, float* c, int ldc);
void scipy_cblas_dgemm(int order, int transa, int transb, int m, int n, int k, double alpha, const double* a,
                       int lda, const double* b, int ldb, double beta, double* c, int ldc);
}

namespace pyfastdl::cpu {
namespace {

enum : int { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };
constexpr int64_t kParallelMin = int64_t{1} << 21;
constexpr int64_t kMinBlock = 128;

void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  scipy_cblas_sgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, int(m), int(n), int(k), alpha, a,
                    int(lda), b, int(ldb), beta, c, int(ldc));
}

void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  scipy_cblas_dgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, int(m), int(n), int(k), alpha, a,
                    int(lda), b, int(ldb), beta, c, int(ldc));
}

// `batch` products of one shape, C_i = alpha op(A_i) op(B_i) + beta C_i: units of work (whole
// products, or blocks of `step` rows (by_rows) or columns of one) that the team takes one at a time.
template <class T>
void team_gemm(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
               int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c, int64_t ldc,
               int64_t stride_c) {
  const bool nested = omp_in_parallel();
  if (!nested) pin_blas_to_one_thread();
  const int64_t threads = nested ? 1 : omp_get_max_threads();
  const bool by_rows = m >= n;
  const int64_t side = by_rows ? m : n;
  int64_t blocks = 1;
  if (threads > 1 && double(batch) * double(m) * double(n) * double(k) >= double(kParallelMin) &&
      batch < 2 * threads)
    blocks = std::max<int64_t>(1, std::min((2 * threads + batch - 1) / batch, side / kMinBlock));
  const int64_t step = (side + blocks - 1) / blocks, units = batch * blocks;
#pragma omp parallel for schedule(dynamic, 1) if (threads > 1 && units > 1)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t i = u / blocks, i0 = u % blocks * step, len = std::min(step, side - i0);
    const T *ai = a + i * stride_a, *bi = b + i * stride_b;
    T* ci = c + i * stride_c;
    if (by_rows)  // rows i0.. of op(A) and of C
      blas(ta, tb, len, n, k, alpha, ai + (ta ? i0 : i0 * lda), lda, bi, ldb, beta, ci + i0 * ldc, ldc);
    else  // columns i0.. of op(B) and of C
      blas(ta, tb, m, len, k, alpha, ai, lda, bi + (tb ? i0 * ldb : i0), ldb, beta, ci + i0, ldc);
  }
}

}  // namespace

void batched_gemm(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                  int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float* c, int64_t ldc,
                  int64_t stride_c) {
  team_gemm(batch, ta, tb, m, n, k, 1.0f, a, lda, stride_a, b, ldb, stride_b, 0.0f, c, ldc, stride_c);
}

void batched_gemm(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda,
                  int64_t stride_a, const double* b, int64_t ldb, int64_t stride_b, double* c, int64_t ldc,
                  int64_t stride_c) {
  team_gemm(batch, ta, tb, m, n, k, 1.0, a, lda, stride_a, b, ldb, stride_b, 0.0, c, ldc, stride_c);
}

void pin_blas_to_one_thread() {
  if (scipy_openblas_get_num_threads() != 1) scipy_openblas_set_num_threads(1);
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  team_gemm(1, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0);
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  team_gemm(1, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0);
}

}  // namespace pyfastdl::cpu
