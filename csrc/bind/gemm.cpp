// `_C.cpu.matmul`: the matrix products of nn.Linear and matmul (2-D, or batches of them) on
// pyfastdl's one thread pool (cpu/gemm.h), instead of numpy's BLAS and its own threads. Not a kernel
// family: OpenBLAS computes.
//
//   _C.cpu.matmul(a, b, out, transpose_a, transpose_b)   out (M, N) = op(a) @ op(b)
//   the same with a (B, ., .), b (B, ., .), out (B, M, N): B products, one per batch item
// a, b and out are C-contiguous float32/float64 numpy arrays of one dtype; op(x) is x or x with its
// last two dimensions swapped, so a transposed view is passed as its C-contiguous transpose with
// the flag set.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <climits>

#include "bind/array.h"
#include "cpu/gemm.h"

namespace pyfastdl {

void bind_gemm(py::module_& m) {
  auto cpu = m.attr("cpu").cast<py::module_>();
  cpu.def(
      "matmul",
      [](py::handle a_obj, py::handle b_obj, py::handle out_obj, bool ta, bool tb) {
        const char* op = "matmul";
        const Array a = cpu_array(a_obj, op, "a"), b = cpu_array(b_obj, op, "b");
        expect_dtype(a, {DType::f32, DType::f64}, op, "a");
        expect_same_dtype(a, b, op, "a", "b");
        const size_t rank = a.shape.size();
        check((rank == 2 || rank == 3) && b.shape.size() == rank, op,
              ": a and b must both be 2-D, or both 3-D (a batch), got ", shape_str(a.shape), " and ",
              shape_str(b.shape));
        const int64_t batch = rank == 3 ? a.shape[0] : 1;
        check(rank == 2 || b.shape[0] == batch, op, ": batches differ, ", shape_str(a.shape), " and ",
              shape_str(b.shape));
        const int64_t ar = a.shape[rank - 2], ac = a.shape[rank - 1], br = b.shape[rank - 2], bc = b.shape[rank - 1];
        const int64_t M = ta ? ac : ar, K = ta ? ar : ac, Kb = tb ? bc : br, N = tb ? br : bc;
        check(K == Kb, op, ": op(a) is (", M, ", ", K, ") and op(b) is (", Kb, ", ", N, "): inner sizes differ");
        for (int64_t d : {M, N, K})  // OpenBLAS (scipy-openblas32) takes 32-bit sizes
          check(d < INT_MAX, op, ": sizes (", M, ", ", K, ") @ (", K, ", ", N, ") exceed 32-bit BLAS sizes");
        const Shape out_shape = rank == 3 ? Shape{batch, M, N} : Shape{M, N};
        const Array out = cpu_operand(out_obj, op, "out", out_shape, a.dtype);
        with_float_type(a.dtype, [&](auto t) {
          using T = decltype(t);
          if (batch == 0 || M == 0 || N == 0) return;
          if (K == 0) {
            std::fill(out.ptr<T>(), out.ptr<T>() + batch * M * N, T(0));
            return;
          }
          py::gil_scoped_release release;
          cpu::batched_gemm(batch, ta, tb, M, N, K, a.ptr<T>(), ac, ar * ac, b.ptr<T>(), bc, br * bc, out.ptr<T>(), N,
                            M * N);
        });
        return out_obj;
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      "out = op(a) @ op(b), op(x) = x (or its last two dimensions swapped where transpose_x), for 2-D operands "
      "or two 3-D batches of equal size, on the CPU kernels' thread pool");
}

}  // namespace pyfastdl
