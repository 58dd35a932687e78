// Bindings of the convolution family: the Conv2dArgs class (top level of _C, shared with the CUDA
// bindings in conv_cuda.cpp) and the CPU kernels in _C.cpu.
//
//   a = _C.Conv2dArgs(x.shape, w.shape, stride, padding, dilation, groups)        # conv2d
//   a = _C.conv_transpose2d_args(x.shape, w.shape, stride, padding, output_padding, groups, dilation)
//   _C.cpu.conv2d_forward(a, x, weight, bias_or_None, out)
//   _C.cpu.conv2d_backward_input(a, grad_out, weight, grad_input)
//   _C.cpu.conv2d_backward_weight(a, x, grad_out, grad_weight)
// plus the same three with the suffix _reference (the direct-loop variant).
// Outputs are preallocated by the caller with the shapes a.x_shape / a.w_shape / a.out_shape.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <sstream>

#include "bind/array.h"
#include "common/conv_args.h"
#include "cpu/conv2d.h"

namespace pyfastdl {
namespace {

// stride/padding/dilation: an int (both dimensions) or a sequence of two ints.
Pair pair_arg(py::handle h, const char* op, const char* name) {
  if (py::hasattr(h, "__index__")) {
    int64_t v = int_arg(h, op, name);
    return {v, v};
  }
  if (py::isinstance<py::sequence>(h) && !py::isinstance<py::str>(h)) {
    auto seq = py::reinterpret_borrow<py::sequence>(h);
    check(seq.size() == 2, op, ": ", name, " must be an int or a pair of ints, got ", seq.size(), " values");
    Pair p{};
    for (size_t i = 0; i < 2; ++i) {
      if (!py::hasattr(seq[i], "__index__"))
        throw py::type_error(std::string(op) + ": " + name + " must contain ints");
      p[i] = int_arg(seq[i], op, name);
    }
    return p;
  }
  throw py::type_error(std::string(op) + ": " + name + " must be an int or a pair of ints, got " +
                       std::string(py::str(py::type::of(h).attr("__name__"))));
}

py::tuple as_tuple(const Shape& s) {
  py::tuple t(s.size());
  for (size_t i = 0; i < s.size(); ++i) t[i] = s[i];
  return t;
}

std::string repr(const Conv2dArgs& a) {
  std::ostringstream os;
  os << "Conv2dArgs(x=" << shape_str(a.x_shape()) << ", w=" << shape_str(a.w_shape()) << ", out="
     << shape_str(a.out_shape()) << ", stride=(" << a.stride_h << ", " << a.stride_w << "), padding=(" << a.pad_h
     << ", " << a.pad_w << "), dilation=(" << a.dil_h << ", " << a.dil_w << "), groups=" << a.groups << ")";
  return os.str();
}

void bind_args(py::module_& m) {
  py::class_<Conv2dArgs>(m, "Conv2dArgs",
                         "Validated sizes of a 2-D convolution: x (N, C, H, W), weight (K, C/groups, R, S), "
                         "out (N, K, P, Q). conv_transpose2d_args builds the Args of the conv2d whose input "
                         "gradient a transposed convolution is.")
      .def(py::init([](const Shape& x, const Shape& w, py::handle stride, py::handle padding, py::handle dilation,
                       py::handle groups) {
             const char* op = "conv2d";
             return make_conv2d_args(x, w, pair_arg(stride, op, "stride"), pair_arg(padding, op, "padding"),
                                     pair_arg(dilation, op, "dilation"), int_arg(groups, op, "groups"));
           }),
           py::arg("x_shape"), py::arg("w_shape"), py::arg("stride") = 1, py::arg("padding") = 0,
           py::arg("dilation") = 1, py::arg("groups") = 1)
      .def_readonly("N", &Conv2dArgs::N)
      .def_readonly("C", &Conv2dArgs::C)
      .def_readonly("H", &Conv2dArgs::H)
      .def_readonly("W", &Conv2dArgs::W)
      .def_readonly("K", &Conv2dArgs::K)
      .def_readonly("R", &Conv2dArgs::R)
      .def_readonly("S", &Conv2dArgs::S)
      .def_readonly("P", &Conv2dArgs::P)
      .def_readonly("Q", &Conv2dArgs::Q)
      .def_readonly("stride_h", &Conv2dArgs::stride_h)
      .def_readonly("stride_w", &Conv2dArgs::stride_w)
      .def_readonly("pad_h", &Conv2dArgs::pad_h)
      .def_readonly("pad_w", &Conv2dArgs::pad_w)
      .def_readonly("dil_h", &Conv2dArgs::dil_h)
      .def_readonly("dil_w", &Conv2dArgs::dil_w)
      .def_readonly("groups", &Conv2dArgs::groups)
      .def_property_readonly("x_shape", [](const Conv2dArgs& a) { return as_tuple(a.x_shape()); })
      .def_property_readonly("w_shape", [](const Conv2dArgs& a) { return as_tuple(a.w_shape()); })
      .def_property_readonly("out_shape", [](const Conv2dArgs& a) { return as_tuple(a.out_shape()); })
      .def_property_readonly("macs", &Conv2dArgs::macs, "multiply-adds of one pass")
      .def_property_readonly("is_pointwise", &Conv2dArgs::is_pointwise, "1x1 kernel, stride 1, no padding")
      .def("__repr__", &repr);

  m.def(
      "conv_transpose2d_args",
      [](const Shape& x, const Shape& w, py::handle stride, py::handle padding, py::handle output_padding,
         py::handle groups, py::handle dilation) {
        const char* op = "conv_transpose2d";
        return make_conv_transpose2d_args(x, w, pair_arg(stride, op, "stride"), pair_arg(padding, op, "padding"),
                                          pair_arg(output_padding, op, "output_padding"),
                                          int_arg(groups, op, "groups"),
                                          pair_arg(dilation, op, "dilation"));
      },
      py::arg("x_shape"), py::arg("w_shape"), py::arg("stride") = 1, py::arg("padding") = 0,
      py::arg("output_padding") = 0, py::arg("groups") = 1, py::arg("dilation") = 1,
      "Conv2dArgs of the conv2d whose input gradient conv_transpose2d(x, w) is: its out_shape is x's "
      "shape, its x_shape the transposed convolution's output shape");
}

// ---- CPU kernels ------------------------------------------------------------------------------------

template <class T>
using ForwardFn = void (*)(const Conv2dArgs&, const T*, const T*, const T*, T*);
template <class T>
using BackwardFn = void (*)(const Conv2dArgs&, const T*, const T*, T*);

// The float32 and float64 instantiations of one kernel.
template <template <class> class Fn>
struct Kernel {
  Fn<float> f32;
  Fn<double> f64;
};

// Checks a float array of the expected shape, with the same dtype as `like` (when given).
Array float_array(py::handle obj, const Shape& shape, const Array* like, const char* op, const char* name,
                  const char* like_name) {
  Array a = cpu_array(obj, op, name);
  expect_dtype(a, {DType::f32, DType::f64}, op, name);
  if (like) expect_same_dtype(*like, a, op, like_name, name);
  expect_shape(a, shape, op, name);
  return a;
}

void def_forward(py::module_& cpu, const char* name, Kernel<ForwardFn> k) {
  cpu.def(
      name,
      [name, k](py::handle args, py::handle x, py::handle weight, py::handle bias, py::handle out) {
        const Conv2dArgs& a = args_arg<Conv2dArgs>(args, name, "_C.Conv2dArgs or _C.conv_transpose2d_args");
        Array X = float_array(x, a.x_shape(), nullptr, name, "x", nullptr);
        Array Wt = float_array(weight, a.w_shape(), &X, name, "weight", "x");
        Array B = bias.is_none() ? Array{} : float_array(bias, {a.K}, &X, name, "bias", "x");
        Array Y = float_array(out, a.out_shape(), &X, name, "out", "x");
        py::gil_scoped_release nogil;
        if (X.dtype == DType::f32)
          k.f32(a, X.ptr<float>(), Wt.ptr<float>(), B.ptr<float>(), Y.ptr<float>());
        else
          k.f64(a, X.ptr<double>(), Wt.ptr<double>(), B.ptr<double>(), Y.ptr<double>());
      },
      py::arg("args"), py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"),
      "out (N, K, P, Q) = conv2d(x (N, C, H, W), weight (K, C/groups, R, S)) + bias (K or None)");
}

void def_backward_input(py::module_& cpu, const char* name, Kernel<BackwardFn> k) {
  cpu.def(
      name,
      [name, k](py::handle args, py::handle grad_out, py::handle weight, py::handle grad_input) {
        const Conv2dArgs& a = args_arg<Conv2dArgs>(args, name, "_C.Conv2dArgs or _C.conv_transpose2d_args");
        Array DY = float_array(grad_out, a.out_shape(), nullptr, name, "grad_out", nullptr);
        Array Wt = float_array(weight, a.w_shape(), &DY, name, "weight", "grad_out");
        Array DX = float_array(grad_input, a.x_shape(), &DY, name, "grad_input", "grad_out");
        py::gil_scoped_release nogil;
        if (DY.dtype == DType::f32)
          k.f32(a, DY.ptr<float>(), Wt.ptr<float>(), DX.ptr<float>());
        else
          k.f64(a, DY.ptr<double>(), Wt.ptr<double>(), DX.ptr<double>());
      },
      py::arg("args"), py::arg("grad_out"), py::arg("weight"), py::arg("grad_input"),
      "grad_input (N, C, H, W) of conv2d from grad_out (N, K, P, Q) and weight; also conv_transpose2d's "
      "forward");
}

void def_backward_weight(py::module_& cpu, const char* name, Kernel<BackwardFn> k) {
  cpu.def(
      name,
      [name, k](py::handle args, py::handle x, py::handle grad_out, py::handle grad_weight) {
        const Conv2dArgs& a = args_arg<Conv2dArgs>(args, name, "_C.Conv2dArgs or _C.conv_transpose2d_args");
        Array X = float_array(x, a.x_shape(), nullptr, name, "x", nullptr);
        Array DY = float_array(grad_out, a.out_shape(), &X, name, "grad_out", "x");
        Array DW = float_array(grad_weight, a.w_shape(), &X, name, "grad_weight", "x");
        py::gil_scoped_release nogil;
        if (X.dtype == DType::f32)
          k.f32(a, X.ptr<float>(), DY.ptr<float>(), DW.ptr<float>());
        else
          k.f64(a, X.ptr<double>(), DY.ptr<double>(), DW.ptr<double>());
      },
      py::arg("args"), py::arg("x"), py::arg("grad_out"), py::arg("grad_weight"),
      "grad_weight (K, C/groups, R, S) of conv2d from x (N, C, H, W) and grad_out (N, K, P, Q)");
}

}  // namespace

void bind_conv(py::module_& m) {
  bind_args(m);
  py::module_ cpu = m.attr("cpu");
  using namespace pyfastdl::cpu;
  def_forward(cpu, "conv2d_forward", {conv2d_forward_cpu<float>, conv2d_forward_cpu<double>});
  def_backward_input(cpu, "conv2d_backward_input", {conv2d_backward_input_cpu<float>, conv2d_backward_input_cpu<double>});
  def_backward_weight(cpu, "conv2d_backward_weight",
                      {conv2d_backward_weight_cpu<float>, conv2d_backward_weight_cpu<double>});
  def_forward(cpu, "conv2d_forward_reference",
              {conv2d_forward_reference_cpu<float>, conv2d_forward_reference_cpu<double>});
  def_backward_input(cpu, "conv2d_backward_input_reference",
                     {conv2d_backward_input_reference_cpu<float>, conv2d_backward_input_reference_cpu<double>});
  def_backward_weight(cpu, "conv2d_backward_weight_reference",
                      {conv2d_backward_weight_reference_cpu<float>, conv2d_backward_weight_reference_cpu<double>});
  add_family(cpu, "convolution");
}

}  // namespace pyfastdl
