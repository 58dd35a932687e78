// Bindings of the activation family: `_C.ActivationArgs` and the CPU kernels on `_C.cpu`. The GPU
// path of these ops is array code in pyfastdl.ops / nn.functional (cupy).
//
//   a = _C.ActivationArgs(x.shape, negative_slope)            # 0: ReLU
//   _C.cpu.leaky_relu_forward(a, x, y); _C.cpu.leaky_relu_backward(a, ref, grad_y, grad_x)
//   g = _C.GluArgs(x.shape, dim)                              # g.output_shape: dim halved
//   _C.cpu.glu_forward(g, x, y); _C.cpu.glu_backward(g, x, grad_y, grad_x)
//   d = _C.DropoutArgs(x.shape, threshold, scale)            # kept where the draw >= threshold
//   _C.cpu.dropout_forward(d, x, seed, y, keep); _C.cpu.dropout_backward(d, grad_y, keep, grad_x)
//   _C.cpu.random_bits(seed, bits)                            # the draws alone (uint16, any shape)
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bind/array.h"
#include "common/activation_args.h"
#include "cpu/activation.h"
#include "cpu/random.h"

namespace pyfastdl {
namespace {

const char* op_name(const ActivationArgs& a, bool backward) {
  if (a.negative_slope == 0) return backward ? "relu_backward" : "relu_forward";
  return backward ? "leaky_relu_backward" : "leaky_relu_forward";
}

void bind_cpu(py::module_& cpu) {
  cpu.def(
      "leaky_relu_forward",
      [](const ActivationArgs& a, py::handle x, py::handle y) {
        const char* op = op_name(a, false);
        const Array X = cpu_float_operand(x, op, "input", a.shape);
        const Array Y = cpu_operand(y, op, "output", a.shape, X.dtype);
        py::gil_scoped_release nogil;
        with_float_type(X.dtype, [&](auto z) {
          using T = decltype(z);
          cpu::leaky_relu_forward_cpu<T>(a, X.ptr<T>(), Y.ptr<T>());
        });
      },
      py::arg("args"), py::arg("input"), py::arg("output"), "y = x > 0 ? x : negative_slope * x (0: ReLU)");
  cpu.def(
      "leaky_relu_backward",
      [](const ActivationArgs& a, py::handle ref, py::handle grad_y, py::handle grad_x) {
        const char* op = op_name(a, true);
        const Array R = cpu_float_operand(ref, op, "ref", a.shape);
        const Array G = cpu_operand(grad_y, op, "grad_output", a.shape, R.dtype);
        const Array GX = cpu_operand(grad_x, op, "grad_input", a.shape, R.dtype);
        py::gil_scoped_release nogil;
        with_float_type(R.dtype, [&](auto z) {
          using T = decltype(z);
          cpu::leaky_relu_backward_cpu<T>(a, R.ptr<T>(), G.ptr<T>(), GX.ptr<T>());
        });
      },
      py::arg("args"), py::arg("ref"), py::arg("grad_output"), py::arg("grad_input"),
      "grad_input = ref > 0 ? grad_output : negative_slope * grad_output (ReLU: 0 where ref <= 0)");
  cpu.def(
      "glu_forward",
      [](const GluArgs& a, py::handle x, py::handle y) {
        const Array X = cpu_float_operand(x, "glu_forward", "input", a.shape);
        const Array Y = cpu_operand(y, "glu_forward", "output", a.output_shape(), X.dtype);
        py::gil_scoped_release nogil;
        with_float_type(X.dtype, [&](auto z) {
          using T = decltype(z);
          cpu::glu_forward_cpu<T>(a, X.ptr<T>(), Y.ptr<T>());
        });
      },
      py::arg("args"), py::arg("input"), py::arg("output"), "y = a * sigmoid(b), a and b the halves of dim");
  cpu.def(
      "glu_backward",
      [](const GluArgs& a, py::handle x, py::handle grad_y, py::handle grad_x) {
        const Array X = cpu_float_operand(x, "glu_backward", "input", a.shape);
        const Array G = cpu_operand(grad_y, "glu_backward", "grad_output", a.output_shape(), X.dtype);
        const Array GX = cpu_operand(grad_x, "glu_backward", "grad_input", a.shape, X.dtype);
        py::gil_scoped_release nogil;
        with_float_type(X.dtype, [&](auto z) {
          using T = decltype(z);
          cpu::glu_backward_cpu<T>(a, X.ptr<T>(), G.ptr<T>(), GX.ptr<T>());
        });
      },
      py::arg("args"), py::arg("input"), py::arg("grad_output"), py::arg("grad_input"),
      "grad_input: g * sigmoid(b) for a's half, g * a * sigmoid(b) * (1 - sigmoid(b)) for b's");
  cpu.def(
      "dropout_forward",
      [](const DropoutArgs& a, py::handle x, uint64_t seed, py::handle y, py::handle keep) {
        const Array X = cpu_float_operand(x, "dropout_forward", "input", a.shape);
        const Array Y = cpu_operand(y, "dropout_forward", "output", a.shape, X.dtype);
        const Array M = cpu_operand(keep, "dropout_forward", "keep", a.shape, DType::u8);
        py::gil_scoped_release nogil;
        with_float_type(X.dtype, [&](auto z) {
          using T = decltype(z);
          cpu::dropout_forward_cpu<T>(a, X.ptr<T>(), seed, Y.ptr<T>(), M.ptr<uint8_t>());
        });
      },
      py::arg("args"), py::arg("input"), py::arg("seed"), py::arg("output"), py::arg("keep"),
      "keep = draw >= threshold (the draws of seed's SplitMix64 stream, as random_bits); "
      "output = input * (keep ? scale : 0)");
  cpu.def(
      "random_bits",
      [](uint64_t seed, py::handle bits) {
        const Array B = cpu_array(bits, "random_bits", "out");
        expect_dtype(B, {DType::u16}, "random_bits", "out");
        py::gil_scoped_release nogil;
        cpu::random_bits_cpu(seed, numel(B.shape), B.ptr<uint16_t>());
      },
      py::arg("seed"), py::arg("out"), "out[i] = 16-bit draw i of seed's SplitMix64 stream (any shape, C order)");
  cpu.def(
      "dropout_backward",
      [](const DropoutArgs& a, py::handle grad_y, py::handle keep, py::handle grad_x) {
        const Array G = cpu_float_operand(grad_y, "dropout_backward", "grad_output", a.shape);
        const Array M = cpu_operand(keep, "dropout_backward", "keep", a.shape, DType::u8);
        const Array GX = cpu_operand(grad_x, "dropout_backward", "grad_input", a.shape, G.dtype);
        py::gil_scoped_release nogil;
        with_float_type(G.dtype, [&](auto z) {
          using T = decltype(z);
          cpu::dropout_backward_cpu<T>(a, G.ptr<T>(), M.ptr<uint8_t>(), GX.ptr<T>());
        });
      },
      py::arg("args"), py::arg("grad_output"), py::arg("keep"), py::arg("grad_input"),
      "grad_input = grad_output * (keep ? scale : 0)");
  add_family(cpu, "activation");
}

}  // namespace

void bind_activation(py::module_& m) {
  py::class_<ActivationArgs>(m, "ActivationArgs",
                             "Validated arguments of one ReLU / leaky ReLU call: the shape and negative_slope")
      .def(py::init(&make_activation_args), py::arg("shape"), py::arg("negative_slope"))
      .def_property_readonly("shape", [](const ActivationArgs& a) { return as_tuple(a.shape); })
      .def_readonly("numel", &ActivationArgs::numel)
      .def_readonly("negative_slope", &ActivationArgs::negative_slope)
      .def("__repr__", [](const ActivationArgs& a) {
        return "ActivationArgs(" + shape_str(a.shape) + ", negative_slope=" + std::to_string(a.negative_slope) + ")";
      });
  py::class_<GluArgs>(m, "GluArgs", "Validated arguments of one GLU call: the input's shape and the halved dim")
      .def(py::init(&make_glu_args), py::arg("shape"), py::arg("dim"))
      .def_property_readonly("shape", [](const GluArgs& a) { return as_tuple(a.shape); })
      .def_property_readonly("output_shape", [](const GluArgs& a) { return as_tuple(a.output_shape()); })
      .def_readonly("dim", &GluArgs::dim)
      .def("__repr__", [](const GluArgs& a) {
        return "GluArgs(" + shape_str(a.shape) + ", dim=" + std::to_string(a.dim) + ")";
      });
  py::class_<DropoutArgs>(m, "DropoutArgs",
                          "Validated arguments of one dropout call: the shape, the 16-bit threshold and the scale")
      .def(py::init(&make_dropout_args), py::arg("shape"), py::arg("threshold"), py::arg("scale"))
      .def_property_readonly("shape", [](const DropoutArgs& a) { return as_tuple(a.shape); })
      .def_readonly("threshold", &DropoutArgs::threshold)
      .def_readonly("scale", &DropoutArgs::scale)
      .def("__repr__", [](const DropoutArgs& a) {
        return "DropoutArgs(" + shape_str(a.shape) + ", threshold=" + std::to_string(a.threshold) +
               ", scale=" + std::to_string(a.scale) + ")";
      });
  auto cpu = m.attr("cpu").cast<py::module_>();
  bind_cpu(cpu);
}

}  // namespace pyfastdl
