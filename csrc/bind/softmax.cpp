// Bindings of the softmax family: `_C.SoftmaxArgs` (shape arithmetic) and the CPU kernels on
// `_C.cpu`. The GPU path of these ops is array code in nn.functional (cupy).
//
//   a = _C.SoftmaxArgs.softmax(x.shape)                        # over the last dimension
//   _C.cpu.softmax_forward(a, x, y, False); _C.cpu.softmax_backward(a, y, gy, gx, False)   # True: log
//   a = _C.SoftmaxArgs.cross_entropy((N, classes, d1, ...), ignore_index, label_smoothing)  # rows = N*d1*...
//   _C.cpu.cross_entropy_forward(a, x, target, weight, loss, lse)         # per-row loss, lse (rows,)
//   _C.cpu.cross_entropy_backward(a, x, target, weight, lse, grad_rows, scale, gx)
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "bind/array.h"
#include "common/softmax_args.h"
#include "cpu/softmax.h"

namespace pyfastdl {
namespace {

// The float input of a call: float32 or float64, of the args' shape.
Array float_input(py::handle obj, const char* op, const SoftmaxArgs& a) {
  Array x = cpu_array(obj, op, "input");
  expect_dtype(x, {DType::f32, DType::f64}, op, "input");
  expect_shape(x, a.shape, op, "input");
  return x;
}

void bind_args(py::module_& m) {
  py::class_<SoftmaxArgs>(m, "SoftmaxArgs",
                          "Validated shape arithmetic of one softmax or cross-entropy call (build with softmax or "
                          "cross_entropy): `rows` rows of `cols` values, reduced along each row")
      .def_static("softmax", &make_softmax_args, py::arg("input_shape"))
      .def_static("cross_entropy", &make_cross_entropy_args, py::arg("input_shape"), py::arg("ignore_index"),
                  py::arg("label_smoothing"))
      .def_property_readonly("shape", [](const SoftmaxArgs& a) { return py::tuple(py::cast(a.shape)); })
      .def_readonly("rows", &SoftmaxArgs::rows)
      .def_readonly("cols", &SoftmaxArgs::cols)
      .def_readonly("inner", &SoftmaxArgs::inner)
      .def_readonly("ignore_index", &SoftmaxArgs::ignore_index)
      .def_readonly("label_smoothing", &SoftmaxArgs::label_smoothing)
      .def("__repr__", [](const SoftmaxArgs& a) { return "SoftmaxArgs(" + shape_str(a.shape) + ")"; });
}

void bind_cpu(py::module_& cpu) {
  cpu.def(
      "softmax_forward",
      [](const SoftmaxArgs& a, py::handle x, py::handle y, bool log) {
        const char* op = log ? "log_softmax_forward" : "softmax_forward";
        const Array X = float_input(x, op, a);
        const Array Y = cpu_operand(y, op, "output", a.shape, X.dtype);
        py::gil_scoped_release nogil;
        with_float_type(X.dtype, [&](auto z) {
          using T = decltype(z);
          cpu::softmax_forward_cpu<T>(a, X.ptr<T>(), Y.ptr<T>(), log);
        });
      },
      py::arg("args"), py::arg("input"), py::arg("output"), py::arg("log"),
      "softmax (log=False) or log_softmax (log=True) along the last dimension");
  cpu.def(
      "softmax_backward",
      [](const SoftmaxArgs& a, py::handle y, py::handle grad_y, py::handle grad_x, bool log) {
        const char* op = log ? "log_softmax_backward" : "softmax_backward";
        const Array Y = cpu_array(y, op, "output");
        expect_dtype(Y, {DType::f32, DType::f64}, op, "output");
        expect_shape(Y, a.shape, op, "output");
        const Array G = cpu_operand(grad_y, op, "grad_output", a.shape, Y.dtype);
        const Array GX = cpu_operand(grad_x, op, "grad_input", a.shape, Y.dtype);
        py::gil_scoped_release nogil;
        with_float_type(Y.dtype, [&](auto z) {
          using T = decltype(z);
          cpu::softmax_backward_cpu<T>(a, Y.ptr<T>(), G.ptr<T>(), GX.ptr<T>(), log);
        });
      },
      py::arg("args"), py::arg("output"), py::arg("grad_output"), py::arg("grad_input"), py::arg("log"),
      "gradient from the forward's output");
  cpu.def(
      "cross_entropy_forward",
      [](const SoftmaxArgs& a, py::handle x, py::handle target, py::handle weight, py::handle loss, py::handle lse) {
        const char* op = "cross_entropy_forward";
        const Array X = float_input(x, op, a);
        const Array T_ = cpu_operand(target, op, "target", {a.rows}, DType::i64);
        const Array W = cpu_operand(weight, op, "weight", {a.cols}, X.dtype, true);
        const Array L = cpu_operand(loss, op, "loss", {a.rows}, X.dtype);
        const Array S = cpu_operand(lse, op, "lse", {a.rows}, X.dtype);
        int64_t bad = -1;
        {
          py::gil_scoped_release nogil;
          with_float_type(X.dtype, [&](auto z) {
            using T = decltype(z);
            cpu::cross_entropy_forward_cpu<T>(a, X.ptr<T>(), T_.ptr<int64_t>(), W.ptr<T>(), L.ptr<T>(), S.ptr<T>(),
                                              &bad);
          });
        }
        if (bad >= 0)
          throw py::index_error(std::string(op) + ": target " + std::to_string(T_.ptr<int64_t>()[bad]) + " of row " +
                                std::to_string(bad) + " is out of bounds for " + std::to_string(a.cols) + " classes");
      },
      py::arg("args"), py::arg("input"), py::arg("target"), py::arg("weight"), py::arg("loss"), py::arg("lse"),
      "per-row losses (0 where target == ignore_index) and log-sum-exp of each row; IndexError for a target "
      "outside [0, classes)");
  cpu.def(
      "cross_entropy_backward",
      [](const SoftmaxArgs& a, py::handle x, py::handle target, py::handle weight, py::handle lse,
         py::handle grad_rows, double scale, py::handle grad_x) {
        const char* op = "cross_entropy_backward";
        const Array X = float_input(x, op, a);
        const Array T_ = cpu_operand(target, op, "target", {a.rows}, DType::i64);
        const Array W = cpu_operand(weight, op, "weight", {a.cols}, X.dtype, true);
        const Array S = cpu_operand(lse, op, "lse", {a.rows}, X.dtype);
        const Array GR = cpu_operand(grad_rows, op, "grad_rows", {a.rows}, X.dtype, true);
        const Array GX = cpu_operand(grad_x, op, "grad_input", a.shape, X.dtype);
        py::gil_scoped_release nogil;
        with_float_type(X.dtype, [&](auto z) {
          using T = decltype(z);
          cpu::cross_entropy_backward_cpu<T>(a, X.ptr<T>(), T_.ptr<int64_t>(), W.ptr<T>(), S.ptr<T>(), GR.ptr<T>(),
                                             scale, GX.ptr<T>());
        });
      },
      py::arg("args"), py::arg("input"), py::arg("target"), py::arg("weight"), py::arg("lse"), py::arg("grad_rows"),
      py::arg("scale"), py::arg("grad_input"),
      "d loss_i / d input per row, times scale * grad_rows[i] (grad_rows None: 1); ignored rows get 0");
  add_family(cpu, "softmax");
}

}  // namespace

void bind_softmax(py::module_& m) {
  bind_args(m);
  auto cpu = m.attr("cpu").cast<py::module_>();
  bind_cpu(cpu);
}

}  // namespace pyfastdl
