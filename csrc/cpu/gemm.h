// Matrix products on the CPU go to OpenBLAS (scipy-openblas32 wheel): GEMM is not one of pyfastdl's
// kernel families, and a tuned BLAS runs near the machine's peak. Row-major, like the rest of pyfastdl.
//   C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
//
// One thread pool: OpenBLAS is kept at one thread, and pyfastdl's OpenMP team is the only pool that
// runs our products. A large product (nn.Linear through _C.cpu.matmul, a convolution that is one big
// GEMM) is cut into blocks of rows or columns of C that the team's threads take one at a time
// (gemm.cpp), each a single-threaded OpenBLAS call; kernels that run their own OpenMP tasks call
// gemm() inside them and make one call. Two pools -- OpenBLAS's threads spin for a while after each
// product, waiting for the next -- took the cores that the OpenMP team and the rest of the step
// needed, and a static split stalls on a core shared with another process.
#pragma once
#include <cstdint>

namespace pyfastdl::cpu {

// The product; parallel over the OpenMP team when called outside a parallel region and large enough.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

// `batch` products C_i = op(A_i) @ op(B_i), A_i = a + i * stride_a (likewise B_i, C_i): whole products
// shared among the team's threads when there are at least as many as threads, else one at a time,
// each split as gemm() splits it.
void batched_gemm(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                  int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float* c, int64_t ldc,
                  int64_t stride_c);
void batched_gemm(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda,
                  int64_t stride_a, const double* b, int64_t ldb, int64_t stride_b, double* c, int64_t ldc,
                  int64_t stride_c);

// Sets OpenBLAS to one thread if something (a threadpoolctl limit, OPENBLAS_NUM_THREADS) changed it.
// Call it outside parallel regions, before a region whose threads call gemm().
void pin_blas_to_one_thread();

}  // namespace pyfastdl::cpu
