// CUDA bindings of the convolution family, in _C.cuda, with the names and arguments of the CPU
// bindings (csrc/bind/conv.cpp) plus the stream to launch on (backend.launch appends cupy's current
// stream):
//   _C.cuda.conv2d_forward(a, x, weight, bias_or_None, out, stream)
//   _C.cuda.conv2d_backward_input(a, grad_out, weight, grad_input, stream)
//   _C.cuda.conv2d_backward_weight(a, x, grad_out, grad_weight, stream)
// plus the same three with the suffix _reference (one thread per output element, for study).
// Arrays: C-contiguous cupy arrays, all float32, all float16 or all bfloat16 (float32 accumulation).
// The fast kernels' workspace comes from cupy's memory pool: the binding allocates it on the current
// stream and drops it on return. That is safe without any synchronisation because the pool hands
// those bytes only to later work on the same stream, which runs after these kernels.
#ifdef PYFASTDL_WITH_CUDA
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bind/array.h"
#include "common/conv_args.h"
#include "conv2d.h"

namespace pyfastdl {
namespace {

using cuda::ConvDType;
using cuda::ConvOp;
using cuda::ConvVariant;

ConvDType conv_dtype(DType d) {
  return d == DType::f32 ? ConvDType::f32 : d == DType::f16 ? ConvDType::f16 : ConvDType::bf16;
}

// A device array of the expected shape and a float dtype, the same as `like`'s when given.
Array float_array(py::handle obj, const Shape& shape, const Array* like, const char* op, const char* name,
                  const char* like_name) {
  Array a = cuda_array(obj, op, name);
  expect_dtype(a, {DType::f32, DType::f16, DType::bf16}, op, name);
  if (like) expect_same_dtype(*like, a, op, like_name, name);
  expect_shape(a, shape, op, name);
  return a;
}

ConvOp op_named(const std::string& op) {
  if (op == "forward") return ConvOp::forward;
  if (op == "backward_input") return ConvOp::backward_input;
  if (op == "backward_weight") return ConvOp::backward_weight;
  fail("conv2d_workspace_bytes: op must be 'forward', 'backward_input' or 'backward_weight', got '", op, "'");
}

ConvDType dtype_named(const std::string& dtype) {
  if (dtype == "float32") return ConvDType::f32;
  if (dtype == "float16") return ConvDType::f16;
  if (dtype == "bfloat16") return ConvDType::bf16;
  fail("conv2d_workspace_bytes: dtype must be 'float32', 'float16' or 'bfloat16', got '", dtype, "'");
}

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

void def_forward(py::module_& m, const char* name, ConvVariant v) {
  m.def(
      name,
      [name, v](const Conv2dArgs& a, py::handle x, py::handle weight, py::handle bias, py::handle out,
                std::uintptr_t stream) {
        Array X = float_array(x, a.x_shape(), nullptr, name, "x", nullptr);
        Array Wt = float_array(weight, a.w_shape(), &X, name, "weight", "x");
        Array B = bias.is_none() ? Array{} : float_array(bias, {a.K}, &X, name, "bias", "x");
        Array Y = float_array(out, a.out_shape(), &X, name, "out", "x");
        ConvDType dt = conv_dtype(X.dtype);
        CudaWorkspace ws = cuda_workspace(cuda::conv2d_workspace_bytes(a, ConvOp::forward, dt, v));
        cuda::conv2d_forward_cuda(a, dt, v, X.data, Wt.data, B.data, Y.data, ws.ptr, as_stream(stream));
      },
      py::arg("args"), py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("stream"),
      "out (N, K, P, Q) = conv2d(x (N, C, H, W), weight (K, C/groups, R, S)) + bias (K or None), on `stream`");
}

void def_backward_input(py::module_& m, const char* name, ConvVariant v) {
  m.def(
      name,
      [name, v](const Conv2dArgs& a, py::handle grad_out, py::handle weight, py::handle grad_input,
                std::uintptr_t stream) {
        Array DY = float_array(grad_out, a.out_shape(), nullptr, name, "grad_out", nullptr);
        Array Wt = float_array(weight, a.w_shape(), &DY, name, "weight", "grad_out");
        Array DX = float_array(grad_input, a.x_shape(), &DY, name, "grad_input", "grad_out");
        ConvDType dt = conv_dtype(DY.dtype);
        CudaWorkspace ws = cuda_workspace(cuda::conv2d_workspace_bytes(a, ConvOp::backward_input, dt, v));
        cuda::conv2d_backward_input_cuda(a, dt, v, DY.data, Wt.data, DX.data, ws.ptr, as_stream(stream));
      },
      py::arg("args"), py::arg("grad_out"), py::arg("weight"), py::arg("grad_input"), py::arg("stream"),
      "grad_input (N, C, H, W) of conv2d from grad_out (N, K, P, Q) and weight, on `stream`; also "
      "conv_transpose2d's forward");
}

void def_backward_weight(py::module_& m, const char* name, ConvVariant v) {
  m.def(
      name,
      [name, v](const Conv2dArgs& a, py::handle x, py::handle grad_out, py::handle grad_weight,
                std::uintptr_t stream) {
        Array X = float_array(x, a.x_shape(), nullptr, name, "x", nullptr);
        Array DY = float_array(grad_out, a.out_shape(), &X, name, "grad_out", "x");
        Array DW = float_array(grad_weight, a.w_shape(), &X, name, "grad_weight", "x");
        ConvDType dt = conv_dtype(X.dtype);
        CudaWorkspace ws = cuda_workspace(cuda::conv2d_workspace_bytes(a, ConvOp::backward_weight, dt, v));
        cuda::conv2d_backward_weight_cuda(a, dt, v, X.data, DY.data, DW.data, ws.ptr, as_stream(stream));
      },
      py::arg("args"), py::arg("x"), py::arg("grad_out"), py::arg("grad_weight"), py::arg("stream"),
      "grad_weight (K, C/groups, R, S) of conv2d from x (N, C, H, W) and grad_out (N, K, P, Q), on `stream`");
}

}  // namespace

void bind_conv_cuda(py::module_& m) {
  py::module_ cuda = m.attr("cuda");
  def_forward(cuda, "conv2d_forward", ConvVariant::fast);
  def_backward_input(cuda, "conv2d_backward_input", ConvVariant::fast);
  def_backward_weight(cuda, "conv2d_backward_weight", ConvVariant::fast);
  def_forward(cuda, "conv2d_forward_reference", ConvVariant::reference);
  def_backward_input(cuda, "conv2d_backward_input_reference", ConvVariant::reference);
  def_backward_weight(cuda, "conv2d_backward_weight_reference", ConvVariant::reference);
  cuda.def(
      "conv2d_workspace_bytes",
      [](const Conv2dArgs& a, const std::string& op, const std::string& dtype) {
        return cuda::conv2d_workspace_bytes(a, op_named(op), dtype_named(dtype), ConvVariant::fast);
      },
      py::arg("args"), py::arg("op"), py::arg("dtype"),
      "Bytes of cupy-pool scratch the fast kernel of op ('forward', 'backward_input' or "
      "'backward_weight') takes for dtype ('float32', 'float16' or 'bfloat16'); each call allocates "
      "and releases it");
  add_family(cuda, "convolution");
}

}  // namespace pyfastdl
#endif
