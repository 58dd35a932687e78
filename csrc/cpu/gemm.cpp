// GEMM with pyfastdl's OpenMP team and single-threaded OpenBLAS calls (see gemm.h for why).
//
// Splitting: C is cut along its longer side, rows or columns, into blocks of 64 (more on sides over
// 4,096: at most 64 blocks), and the threads take blocks as they finish (schedule dynamic), so a
// thread on a core that another process shares takes fewer of them instead of holding the rest back.
// The blocks depend on the shape alone, and each is one OpenBLAS call over the whole K, so the result
// is the same, bit for bit, with any number of threads (one thread runs the same blocks in turn).
// The cost of cutting: each block packs its own copy of the other operand's panel, about 1/128 of
// the block's arithmetic. Products under kParallelMin multiply-adds (tens of microseconds) are one
// call on the calling thread: waking the team would cost more than it saves.
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
constexpr int64_t kBlock = 64;
constexpr int64_t kMaxBlocks = 64;

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

template <class T>
void team_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
               int64_t ldb, T beta, T* c, int64_t ldc) {
  const bool nested = omp_in_parallel();  // inside a kernel's own tasks: one call on this thread
  if (!nested) pin_blas_to_one_thread();
  const bool by_rows = m >= n;
  const int64_t side = by_rows ? m : n;
  if (nested || side < 2 * kBlock || double(m) * double(n) * double(k) < double(kParallelMin))
    return blas(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  const int64_t step = std::max(kBlock, (side + kMaxBlocks - 1) / kMaxBlocks);
#pragma omp parallel for schedule(dynamic, 1) if (omp_get_max_threads() > 1)
  for (int64_t i0 = 0; i0 < side; i0 += step) {
    const int64_t len = std::min(step, side - i0);
    if (by_rows)  // rows i0.. of op(A) and of C
      blas(ta, tb, len, n, k, alpha, a + (ta ? i0 : i0 * lda), lda, b, ldb, beta, c + i0 * ldc, ldc);
    else  // columns i0.. of op(B) and of C
      blas(ta, tb, m, len, k, alpha, a, lda, b + (tb ? i0 * ldb : i0), ldb, beta, c + i0, ldc);
  }
}

}  // namespace

void pin_blas_to_one_thread() {
  if (scipy_openblas_get_num_threads() != 1) scipy_openblas_set_num_threads(1);
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  team_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  team_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace pyfastdl::cpu
