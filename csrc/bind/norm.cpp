// Bindings of the normalisation family: `_C.NormArgs` (shape arithmetic) and the CPU kernels on
// `_C.cpu`. The GPU path of batch norm and layer norm is array code in nn.functional (cupy).
//
//   a = _C.NormArgs.batch_norm(x.shape, eps, training)       # or .layer_norm(x.shape, k, eps)
//   mean, invstd = np.empty(a.groups, x.dtype), np.empty(a.groups, x.dtype); y = np.empty_like(x)
//   _C.cpu.batch_norm_forward(a, x, weight, bias, running_mean, running_var, True, 0.1, mean, invstd, y)
//   _C.cpu.batch_norm_backward(a, gy, x, weight, mean, invstd, True, gx, gweight, gbias)  # None skips one
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "bind/array.h"
#include "common/norm_args.h"
#include "cpu/norm.h"

namespace pyfastdl {
namespace {

void expect_kind(const char* op, const NormArgs& a, NormKind kind) {
  check(a.kind == kind, op, ": args were made by NormArgs.", norm_kind_name(a.kind), ", expected NormArgs.",
        norm_kind_name(kind));
}

// The input x, checked against the args: float32 or float64, of the args' shape.
Array float_input(py::handle obj, const char* op, const char* name, const NormArgs& a) {
  Array x = cpu_array(obj, op, name);
  expect_dtype(x, {DType::f32, DType::f64}, op, name);
  expect_shape(x, a.shape, op, name);
  return x;
}

// The operands every kernel shares: per-feature (weight), per-group (statistics), full-size (x, g).
struct Operands {
  const NormArgs& a;
  const char* op;
  DType dt;
  Array full(py::handle h, const char* name, bool optional = false) const {
    return cpu_operand(h, op, name, a.shape, dt, optional);
  }
  Array feature(py::handle h, const char* name) const { return cpu_operand(h, op, name, {a.features}, dt, true); }
  Array group(py::handle h, const char* name, bool optional = false) const {
    return cpu_operand(h, op, name, {a.groups}, dt, optional);
  }
};

// The backward of either kind: grad_output, the input, weight and the forward's statistics checked
// against the args, then kernel(grad_y, x, weight, mean, invstd, grad_x, grad_weight, grad_bias) with
// typed pointers (null for a None weight or gradient) and the GIL released.
template <class Kernel>
void norm_backward(const char* op, NormKind kind, const NormArgs& a, py::handle grad_y, py::handle x,
                   py::handle weight, py::handle mean, py::handle invstd, py::handle grad_x, py::handle grad_weight,
                   py::handle grad_bias, Kernel&& kernel) {
  expect_kind(op, a, kind);
  const Array X = float_input(x, op, "input", a);
  const Operands o{a, op, X.dtype};
  const Array G = o.full(grad_y, "grad_output"), W = o.feature(weight, "weight");
  const Array M = o.group(mean, "mean"), S = o.group(invstd, "invstd");
  const Array GX = o.full(grad_x, "grad_input", true), GW = o.feature(grad_weight, "grad_weight"),
              GB = o.feature(grad_bias, "grad_bias");
  py::gil_scoped_release nogil;
  with_float_type(X.dtype, [&](auto z) {
    using T = decltype(z);
    kernel(G.ptr<T>(), X.ptr<T>(), W.ptr<T>(), M.ptr<T>(), S.ptr<T>(), GX.ptr<T>(), GW.ptr<T>(), GB.ptr<T>());
  });
}

void bind_args(py::module_& m) {
  py::class_<NormArgs>(m, "NormArgs",
                       "Validated shape arithmetic of one batch norm or layer norm call (build with batch_norm or "
                       "layer_norm); statistics have `groups` values, weight and bias `features`")
      .def_static("batch_norm", &make_batch_norm_args, py::arg("input_shape"), py::arg("eps"), py::arg("training"))
      .def_static("layer_norm", &make_layer_norm_args, py::arg("input_shape"), py::arg("normalized_ndim"),
                  py::arg("eps"))
      .def_property_readonly("kind", [](const NormArgs& a) { return norm_kind_name(a.kind); })
      .def_property_readonly("shape", [](const NormArgs& a) { return py::tuple(py::cast(a.shape)); })
      .def_readonly("groups", &NormArgs::groups)
      .def_readonly("features", &NormArgs::features)
      .def_readonly("count", &NormArgs::count)
      .def_readonly("eps", &NormArgs::eps)
      .def("__repr__", [](const NormArgs& a) {
        return std::string("NormArgs(") + norm_kind_name(a.kind) + ", " + shape_str(a.shape) + ", eps " +
               std::to_string(a.eps) + ")";
      });
}

void bind_cpu(py::module_& cpu) {
  cpu.def(
      "batch_norm_forward",
      [](const NormArgs& a, py::handle x, py::handle weight, py::handle bias, py::handle running_mean,
         py::handle running_var, bool training, double momentum, py::handle mean, py::handle invstd, py::handle y) {
        const char* op = "batch_norm_forward";
        expect_kind(op, a, NormKind::batch);
        const Array X = float_input(x, op, "input", a);
        check(training || (!running_mean.is_none() && !running_var.is_none()), op,
              ": running_mean and running_var are required when training=False");
        const Operands o{a, op, X.dtype};
        const Array W = o.feature(weight, "weight"), B = o.feature(bias, "bias");
        const Array RM = o.group(running_mean, "running_mean", training), RV = o.group(running_var, "running_var",
                                                                                        training);
        const Array M = o.group(mean, "mean"), S = o.group(invstd, "invstd"), Y = o.full(y, "output");
        py::gil_scoped_release nogil;
        with_float_type(X.dtype, [&](auto z) {
          using T = decltype(z);
          cpu::batch_norm_forward_cpu<T>(a, X.ptr<T>(), W.ptr<T>(), B.ptr<T>(), RM.ptr<T>(), RV.ptr<T>(), training,
                                         momentum, M.ptr<T>(), S.ptr<T>(), Y.ptr<T>());
        });
      },
      py::arg("args"), py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"),
      py::arg("running_var"), py::arg("training"), py::arg("momentum"), py::arg("mean"), py::arg("invstd"),
      py::arg("output"),
      "training: batch statistics into mean/invstd, running statistics (or None) updated; otherwise the "
      "running statistics are used (and written to mean/invstd)");
  cpu.def(
      "batch_norm_backward",
      [](const NormArgs& a, py::handle grad_y, py::handle x, py::handle weight, py::handle mean, py::handle invstd,
         bool batch_stats, py::handle grad_x, py::handle grad_weight, py::handle grad_bias) {
        norm_backward("batch_norm_backward", NormKind::batch, a, grad_y, x, weight, mean, invstd, grad_x, grad_weight,
                      grad_bias, [&](auto gy, auto in, auto w, auto m, auto s, auto gx, auto gw, auto gb) {
                        cpu::batch_norm_backward_cpu(a, gy, in, w, m, s, batch_stats, gx, gw, gb);
                      });
      },
      py::arg("args"), py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("mean"),
      py::arg("invstd"), py::arg("batch_stats"), py::arg("grad_input"), py::arg("grad_weight"), py::arg("grad_bias"),
      "gradients from the input and the forward's statistics; a None output is not computed");
  cpu.def(
      "layer_norm_forward",
      [](const NormArgs& a, py::handle x, py::handle weight, py::handle bias, py::handle mean, py::handle invstd,
         py::handle y) {
        const char* op = "layer_norm_forward";
        expect_kind(op, a, NormKind::layer);
        const Array X = float_input(x, op, "input", a);
        const Operands o{a, op, X.dtype};
        const Array W = o.feature(weight, "weight"), B = o.feature(bias, "bias");
        const Array M = o.group(mean, "mean"), S = o.group(invstd, "invstd"), Y = o.full(y, "output");
        py::gil_scoped_release nogil;
        with_float_type(X.dtype, [&](auto z) {
          using T = decltype(z);
          cpu::layer_norm_forward_cpu<T>(a, X.ptr<T>(), W.ptr<T>(), B.ptr<T>(), M.ptr<T>(), S.ptr<T>(), Y.ptr<T>());
        });
      },
      py::arg("args"), py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("mean"), py::arg("invstd"),
      py::arg("output"), "weight and bias flattened to (features,) or None; mean and invstd: one per row");
  cpu.def(
      "layer_norm_backward",
      [](const NormArgs& a, py::handle grad_y, py::handle x, py::handle weight, py::handle mean, py::handle invstd,
         py::handle grad_x, py::handle grad_weight, py::handle grad_bias) {
        norm_backward("layer_norm_backward", NormKind::layer, a, grad_y, x, weight, mean, invstd, grad_x, grad_weight,
                      grad_bias, [&](auto gy, auto in, auto w, auto m, auto s, auto gx, auto gw, auto gb) {
                        cpu::layer_norm_backward_cpu(a, gy, in, w, m, s, gx, gw, gb);
                      });
      },
      py::arg("args"), py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("mean"),
      py::arg("invstd"), py::arg("grad_input"), py::arg("grad_weight"), py::arg("grad_bias"),
      "gradients from the input and the forward's statistics; a None output is not computed");
  add_family(cpu, "norm");
}

}  // namespace

void bind_norm(py::module_& m) {
  bind_args(m);
  auto cpu = m.attr("cpu").cast<py::module_>();
  bind_cpu(cpu);
}

}  // namespace pyfastdl
