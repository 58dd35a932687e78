// Bindings of the convolution family: the Conv2dArgs class (top level of _C), the CPU kernels in
// _C.cpu and, in the PYFASTDL_WITH_CUDA block, the CUDA kernels in _C.cuda, with the same names and
// arguments plus the stream to launch on (backend.launch appends cupy's current stream):
//
//   a = _C.Conv2dArgs(x.shape, w.shape, stride, padding, dilation, groups)        # conv2d
//   a = _C.conv_transpose2d_args(x.shape, w.shape, stride, padding, output_padding, groups, dilation)
//   conv2d_forward(a, x, weight, bias_or_None, out)
//   conv2d_backward_input(a, grad_out, weight, grad_input)
//   conv2d_backward_weight(a, x, grad_out, grad_weight)
// plus the same three with the suffix _reference (the direct-loop variant; on the GPU one thread per output
// element), and on the CPU with _im2col, _winograd and _direct (the algorithms "fast" picks from). Outputs are
// preallocated by the caller with the shapes a.x_shape / a.w_shape / a.out_shape. Arrays: C-contiguous, one
// float dtype (float32 or float64 on the CPU; float32, float16 or bfloat16 on the GPU, with float32
// accumulation). The fast CUDA kernels' workspace comes from cupy's memory pool, allocated on the current
// stream and dropped on return: safe without synchronisation, since the pool hands those bytes only to
// later work on the same stream.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <sstream>
#include <string>

#include "bind/array.h"
#include "common/conv_args.h"
#include "cpu/conv.h"
#ifdef PYFASTDL_WITH_CUDA
#include "conv.h"  // kernels/conv.h
#endif

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

// ---- the arrays of each pass, checked the same way on both devices -----------------------------------

// One array argument: the object, its name and the shape it must have. A null `obj` handle is
// skipped (an absent bias).
struct Spec {
  py::handle obj;
  const char* name;
  Shape shape;
};

// The pass's three or four arrays, in the kernel's order: each a float dtype the device supports, all
// the first's, each of its shape; None (the bias) gives a null Array.
template <size_t N> std::array<Array, N> float_arrays(bool cuda, const char* op, const std::array<Spec, N>& specs) {
  std::array<Array, N> r;
  for (size_t i = 0; i < N; ++i) {
    const Spec& s = specs[i];
    if (s.obj.is_none()) continue;
    r[i] = cuda ? cuda_array(s.obj, op, s.name) : cpu_array(s.obj, op, s.name);
    if (cuda)
      expect_dtype(r[i], {DType::f32, DType::f16, DType::bf16}, op, s.name);
    else
      expect_dtype(r[i], {DType::f32, DType::f64}, op, s.name);
    if (i > 0) expect_same_dtype(r[0], r[i], op, specs[0].name, s.name);
    expect_shape(r[i], s.shape, op, s.name);
  }
  return r;
}

// The Args of a kernel call (a clear TypeError for None or anything else, not pybind11's overloads).
const Conv2dArgs& conv_args(py::handle args, const char* op) {
  return args_arg<Conv2dArgs>(args, op, "kernels.conv2d_args or kernels.conv_transpose2d_args");
}

std::array<Array, 4> forward_arrays(bool cuda, const char* op, const Conv2dArgs& a, py::handle x, py::handle weight,
                                    py::handle bias, py::handle out) {
  return float_arrays<4>(cuda, op, {{{x, "x", a.x_shape()}, {weight, "weight", a.w_shape()}, {bias, "bias", {a.K}},
                                     {out, "out", a.out_shape()}}});
}

// The two backward passes: conv2d_backward_input (grad_out, weight -> grad_input) and
// conv2d_backward_weight (x, grad_out -> grad_weight).
struct BackwardPass {
  const char* arg_names[3];
  Shape (Conv2dArgs::*shapes[3])() const;
  const char* doc;
};
const BackwardPass kBackwardInput = {
    {"grad_out", "weight", "grad_input"},
    {&Conv2dArgs::out_shape, &Conv2dArgs::w_shape, &Conv2dArgs::x_shape},
    "grad_input (N, C, H, W) of conv2d from grad_out (N, K, P, Q) and weight; also conv_transpose2d's forward"};
const BackwardPass kBackwardWeight = {
    {"x", "grad_out", "grad_weight"},
    {&Conv2dArgs::x_shape, &Conv2dArgs::out_shape, &Conv2dArgs::w_shape},
    "grad_weight (K, C/groups, R, S) of conv2d from x (N, C, H, W) and grad_out (N, K, P, Q)"};

std::array<Array, 3> backward_arrays(bool cuda, const char* op, const BackwardPass& p, const Conv2dArgs& a,
                                     py::handle in0, py::handle in1, py::handle out) {
  return float_arrays<3>(cuda, op, {{{in0, p.arg_names[0], (a.*p.shapes[0])()},
                                     {in1, p.arg_names[1], (a.*p.shapes[1])()},
                                     {out, p.arg_names[2], (a.*p.shapes[2])()}}});
}

const char* const kForwardDoc =
    "out (N, K, P, Q) = conv2d(x (N, C, H, W), weight (K, C/groups, R, S)) + bias (K or None)";

// ---- CPU ----------------------------------------------------------------------------------------------

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

void def_forward(py::module_& cpu, const char* name, Kernel<ForwardFn> k) {
  cpu.def(
      name,
      [name, k](py::handle args, py::handle x, py::handle weight, py::handle bias, py::handle out) {
        const Conv2dArgs& a = conv_args(args, name);
        const auto A = forward_arrays(false, name, a, x, weight, bias, out);
        py::gil_scoped_release nogil;
        if (A[0].dtype == DType::f32)
          k.f32(a, A[0].ptr<float>(), A[1].ptr<float>(), A[2].ptr<float>(), A[3].ptr<float>());
        else
          k.f64(a, A[0].ptr<double>(), A[1].ptr<double>(), A[2].ptr<double>(), A[3].ptr<double>());
      },
      py::arg("args"), py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"), kForwardDoc);
}

void def_backward(py::module_& cpu, const char* name, const BackwardPass& p, Kernel<BackwardFn> k) {
  cpu.def(
      name,
      [name, &p, k](py::handle args, py::handle in0, py::handle in1, py::handle out) {
        const Conv2dArgs& a = conv_args(args, name);
        const auto A = backward_arrays(false, name, p, a, in0, in1, out);
        py::gil_scoped_release nogil;
        if (A[0].dtype == DType::f32)
          k.f32(a, A[0].ptr<float>(), A[1].ptr<float>(), A[2].ptr<float>());
        else
          k.f64(a, A[0].ptr<double>(), A[1].ptr<double>(), A[2].ptr<double>());
      },
      py::arg("args"), py::arg(p.arg_names[0]), py::arg(p.arg_names[1]), py::arg(p.arg_names[2]), p.doc);
}

// One variant's three kernels, bound as conv2d_forward<suffix>, conv2d_backward_input<suffix> and
// conv2d_backward_weight<suffix> (V: the C++ names' infix).
#define PYFASTDL_BIND_CONV_VARIANT(V, suffix)                                                                  \
  def_forward(cpu, "conv2d_forward" suffix, {conv2d_forward##V##_cpu<float>, conv2d_forward##V##_cpu<double>}); \
  def_backward(cpu, "conv2d_backward_input" suffix, kBackwardInput,                                            \
               {conv2d_backward_input##V##_cpu<float>, conv2d_backward_input##V##_cpu<double>});               \
  def_backward(cpu, "conv2d_backward_weight" suffix, kBackwardWeight,                                          \
               {conv2d_backward_weight##V##_cpu<float>, conv2d_backward_weight##V##_cpu<double>});

void bind_cpu(py::module_& cpu) {
  using namespace pyfastdl::cpu;
  PYFASTDL_BIND_CONV_VARIANT(, "")  // "fast": im2col, winograd or direct, per shape
  PYFASTDL_BIND_CONV_VARIANT(_im2col, "_im2col")
  PYFASTDL_BIND_CONV_VARIANT(_winograd, "_winograd")
  PYFASTDL_BIND_CONV_VARIANT(_direct, "_direct")
  PYFASTDL_BIND_CONV_VARIANT(_reference, "_reference")
  add_family(cpu, "conv");
}

#ifdef PYFASTDL_WITH_CUDA
// ---- CUDA ---------------------------------------------------------------------------------------------

using cuda::ConvDType;
using cuda::ConvOp;
using cuda::ConvVariant;

ConvOp op_named(const std::string& op) {
  if (op == "forward") return ConvOp::forward;
  if (op == "backward_input") return ConvOp::backward_input;
  if (op == "backward_weight") return ConvOp::backward_weight;
  fail("conv2d_workspace_bytes: op must be 'forward', 'backward_input' or 'backward_weight', got '", op, "'");
}

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

using CudaBackwardFn = void (*)(const Conv2dArgs&, ConvDType, ConvVariant, const void*, const void*, void*, void*,
                                cudaStream_t);

void def_forward_cuda(py::module_& m, const char* name, ConvVariant v) {
  m.def(
      name,
      [name, v](py::handle args, py::handle x, py::handle weight, py::handle bias, py::handle out,
                std::uintptr_t stream) {
        const Conv2dArgs& a = conv_args(args, name);
        const auto A = forward_arrays(true, name, a, x, weight, bias, out);
        const ConvDType dt = cuda_float_dtype<ConvDType>(A[0].dtype);
        CudaWorkspace ws = cuda_workspace(cuda::conv2d_workspace_bytes(a, ConvOp::forward, dt, v));
        cuda::conv2d_forward_cuda(a, dt, v, A[0].data, A[1].data, A[2].data, A[3].data, ws.ptr, as_stream(stream));
      },
      py::arg("args"), py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("stream"),
      (std::string(kForwardDoc) + ", on `stream`").c_str());
}

void def_backward_cuda(py::module_& m, const char* name, const BackwardPass& p, ConvOp op, CudaBackwardFn f,
                       ConvVariant v) {
  m.def(
      name,
      [name, &p, op, f, v](py::handle args, py::handle in0, py::handle in1, py::handle out,
                           std::uintptr_t stream) {
        const Conv2dArgs& a = conv_args(args, name);
        const auto A = backward_arrays(true, name, p, a, in0, in1, out);
        const ConvDType dt = cuda_float_dtype<ConvDType>(A[0].dtype);
        CudaWorkspace ws = cuda_workspace(cuda::conv2d_workspace_bytes(a, op, dt, v));
        f(a, dt, v, A[0].data, A[1].data, A[2].data, ws.ptr, as_stream(stream));
      },
      py::arg("args"), py::arg(p.arg_names[0]), py::arg(p.arg_names[1]), py::arg(p.arg_names[2]), py::arg("stream"),
      (std::string(p.doc) + ", on `stream`").c_str());
}

void bind_cuda(py::module_& cuda) {
  for (ConvVariant v : {ConvVariant::fast, ConvVariant::reference}) {
    const std::string suffix = v == ConvVariant::reference ? "_reference" : "";
    def_forward_cuda(cuda, ("conv2d_forward" + suffix).c_str(), v);
    def_backward_cuda(cuda, ("conv2d_backward_input" + suffix).c_str(), kBackwardInput, ConvOp::backward_input,
                      cuda::conv2d_backward_input_cuda, v);
    def_backward_cuda(cuda, ("conv2d_backward_weight" + suffix).c_str(), kBackwardWeight, ConvOp::backward_weight,
                      cuda::conv2d_backward_weight_cuda, v);
  }
  cuda.def(
      "conv2d_workspace_bytes",
      [](const Conv2dArgs& a, const std::string& op, const std::string& dtype) {
        const ConvDType dt = cuda_float_dtype_named<ConvDType>(dtype, "conv2d_workspace_bytes");
        return cuda::conv2d_workspace_bytes(a, op_named(op), dt, ConvVariant::fast);
      },
      py::arg("args"), py::arg("op"), py::arg("dtype"),
      "Bytes of cupy-pool scratch the fast kernel of op ('forward', 'backward_input' or "
      "'backward_weight') takes for dtype ('float32', 'float16' or 'bfloat16'); each call allocates "
      "and releases it");
  add_family(cuda, "conv");
}
#endif

}  // namespace

void bind_conv(py::module_& m) {
  bind_args(m);
  py::module_ cpu = m.attr("cpu");
  bind_cpu(cpu);
#ifdef PYFASTDL_WITH_CUDA
  py::module_ cuda = m.attr("cuda");
  bind_cuda(cuda);
#endif
}

}  // namespace pyfastdl
