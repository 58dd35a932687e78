// GEMM with pyfastdl's OpenMP team and single-threaded OpenBLAS calls (see gemm.h for why).
//
// Splitting: C is cut along its longer side, rows or columns, into blocks of 64 (more on sides over
// 4,096: at most 64 blocks); a batch of products gives batch x blocks units. The threads take units
// as they finish (schedule dynamic), so a thread on a core that another process shares takes fewer
// of them instead of holding the rest back. The units depend on the shapes alone, and each is one
// OpenBLAS call over the whole K, so the result is the same, bit for bit, with any number of threads
// -- one thread, or a kernel's own task calling gemm() inside its parallel region, runs the same
// units in turn. The cost of cutting: each block packs its own copy of the other operand's panel,
// about 1/128 of the block's arithmetic. Products under kParallelMin multiply-adds (tens of
// microseconds) are one call on the calling thread: waking the team would cost more than it saves.
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

// How one product is cut: `blocks` blocks of `step` rows (by_rows) or columns of C, or one block.
struct Split {
  bool by_rows;
  int64_t side, step, blocks;
  Split(int64_t m, int64_t n, int64_t k) : by_rows(m >= n), side(by_rows ? m : n), step(side), blocks(1) {
    if (side < 2 * kBlock || double(m) * double(n) * double(k) < double(kParallelMin)) return;
    step = std::max(kBlock, (side + kMaxBlocks - 1) / kMaxBlocks);
    blocks = (side + step - 1) / step;
  }
};

// `batch` products of one shape, C_i = alpha op(A_i) op(B_i) + beta C_i, as batch * blocks units of
// work that the team takes one at a time; inside a kernel's own parallel region (nested) the calling
// thread runs them in turn. Either way each unit is the same OpenBLAS call.
template <class T>
void team_gemm(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
               int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c, int64_t ldc,
               int64_t stride_c) {
  const bool nested = omp_in_parallel();
  if (!nested) pin_blas_to_one_thread();
  const Split sp(m, n, k);
  const int64_t units = batch * sp.blocks;
  const bool parallel = !nested && units > 1 && omp_get_max_threads() > 1 &&
                        double(batch) * double(m) * double(n) * double(k) >= double(kParallelMin);
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t i = u / sp.blocks, i0 = u % sp.blocks * sp.step, len = std::min(sp.step, sp.side - i0);
    const T *ai = a + i * stride_a, *bi = b + i * stride_b;
    T* ci = c + i * stride_c;
    if (sp.by_rows)  // rows i0.. of op(A) and of C
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
