// Matrix products on the CPU go to OpenBLAS (scipy-openblas32 wheel): GEMM is not one of pyfastdl's
// kernel families, and a tuned BLAS runs near the machine's peak. Row-major, like the rest of pyfastdl.
//   C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
#pragma once
#include <cstdint>

extern "C" {
void scipy_cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float* a,
                       int lda, const float* b, int ldb, float beta, float* c, int ldc);
void scipy_cblas_dgemm(int order, int transa, int transb, int m, int n, int k, double alpha, const double* a,
                       int lda, const double* b, int ldb, double beta, double* c, int ldc);
}

namespace pyfastdl::cpu {

enum : int { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };

inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  scipy_cblas_sgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, int(m), int(n), int(k), alpha, a,
                    int(lda), b, int(ldb), beta, c, int(ldc));
}

inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                 const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  scipy_cblas_dgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, int(m), int(n), int(k), alpha, a,
                    int(lda), b, int(ldb), beta, c, int(ldc));
}

}  // namespace pyfastdl::cpu
