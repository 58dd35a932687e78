// Matrix products on the CPU go to OpenBLAS (scipy-openblas32 wheel): GEMM is not one of pyfastdl's
// kernel families, and a tuned BLAS runs near the machine's peak. Row-major, like the rest of pyfastdl.
//   C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
#pragma once
#include <cstdint>
#include <mutex>

extern "C" {
int scipy_openblas_get_num_threads(void);
void scipy_openblas_set_num_threads(int);
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

// OpenBLAS (a pthreads build) runs one thread per call while an object of this type lives, so that
// OpenMP threads can each run their own GEMM without the two thread pools oversubscribing the cores.
// Nested or concurrent users (other kernels, other Python threads) share one saved setting.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (depth_++ == 0) {
      saved_ = scipy_openblas_get_num_threads();
      scipy_openblas_set_num_threads(1);
    }
  }
  ~SingleThreadedBlas() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--depth_ == 0) scipy_openblas_set_num_threads(saved_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  static inline std::mutex mutex_;
  static inline int depth_ = 0;  // live objects, across threads
  static inline int saved_ = 1;  // OpenBLAS's thread count before the first of them
};

}  // namespace pyfastdl::cpu
