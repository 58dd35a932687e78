// `_C.cpu.matmul`: the matrix products of nn.Linear and 2-D matmul on pyfastdl's one thread pool
// (cpu/gemm.h), instead of numpy's BLAS and its own threads. Not a kernel family: OpenBLAS computes.
//
//   _C.cpu.matmul(a, b, out, transpose_a, transpose_b)   out (M, N) = op(a) @ op(b)
// a, b and out are C-contiguous float32/float64 numpy arrays of one dtype; op(x) is x or x.T, so a
// transposed view (an F-contiguous array) is passed as its C-contiguous transpose with the flag set.
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
        check(a.shape.size() == 2 && b.shape.size() == 2, op, ": a and b must be 2-D, got ", shape_str(a.shape),
              " and ", shape_str(b.shape));
        const int64_t M = a.shape[ta ? 1 : 0], K = a.shape[ta ? 0 : 1];
        const int64_t Kb = b.shape[tb ? 1 : 0], N = b.shape[tb ? 0 : 1];
        check(K == Kb, op, ": op(a) is (", M, ", ", K, ") and op(b) is (", Kb, ", ", N, "): inner sizes differ");
        for (int64_t d : {M, N, K})  // OpenBLAS (scipy-openblas32) takes 32-bit sizes
          check(d < INT_MAX, op, ": sizes (", M, ", ", K, ") @ (", K, ", ", N, ") exceed 32-bit BLAS sizes");
        const Array out = cpu_operand(out_obj, op, "out", {M, N}, a.dtype);
        with_float_type(a.dtype, [&](auto t) {
          using T = decltype(t);
          if (M == 0 || N == 0) return;
          if (K == 0) {
            std::fill(out.ptr<T>(), out.ptr<T>() + M * N, T(0));
            return;
          }
          py::gil_scoped_release release;
          cpu::gemm(ta, tb, M, N, K, T(1), a.ptr<T>(), a.shape[1], b.ptr<T>(), b.shape[1], T(0), out.ptr<T>(), N);
        });
        return out_obj;
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      "out (M, N) = op(a) @ op(b) with op(x) = x.T where transpose_x, on the CPU kernels' thread pool");
}

}  // namespace pyfastdl
