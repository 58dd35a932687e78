// CUDA bindings of scaled dot-product attention, in _C.cuda, with the names and arguments of the CPU
// bindings (csrc/bind/attention.cpp) plus the stream to launch on (backend.launch appends cupy's
// current stream):
//   _C.cuda.sdpa_forward(a, q, k, v, mask_or_None, out, lse, stream)
//   _C.cuda.sdpa_backward(a, q, k, v, mask_or_None, out, lse, grad_out, grad_q, grad_k, grad_v, stream)
// plus the same two with the suffix _reference (one block per row, two-pass softmax, for study).
// q, k, v, out and the grads: C-contiguous cupy arrays, all float32, all float16 or all bfloat16
// (float32 accumulation); lse is float32 for every dtype (B, H, L) -- unlike the CPU, where it has
// q's dtype -- since a 16-bit log-sum-exp would cost the backward its accuracy.
// The backward's workspace comes from cupy's memory pool: the binding allocates it on the current
// stream and drops it on return. That is safe without any synchronisation because the pool hands
// those bytes only to later work on the same stream, which runs after these kernels.
#ifdef PYFASTDL_WITH_CUDA
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "../../kernels/attention.h"  // spelled out: "attention.h" here is csrc/bind/attention.h
#include "bind/attention.h"

namespace pyfastdl {
namespace {

using cuda::AttnDType;
using cuda::AttnVariant;

constexpr const char* kOp = "scaled_dot_product_attention";

AttnDType attn_dtype(DType d) {
  return d == DType::f32 ? AttnDType::f32 : d == DType::f16 ? AttnDType::f16 : AttnDType::bf16;
}

AttnDType dtype_named(const std::string& dtype) {
  if (dtype == "float32") return AttnDType::f32;
  if (dtype == "float16") return AttnDType::f16;
  if (dtype == "bfloat16") return AttnDType::bf16;
  fail("sdpa_uses_tensor_cores: dtype must be 'float32', 'float16' or 'bfloat16', got '", dtype, "'");
}

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// The float32 lse array (B, H, L).
Array lse_array(const AttentionArgs& a, py::handle lse) {
  Array x = cuda_array(lse, kOp, "lse");
  expect_dtype(x, {DType::f32}, kOp, "lse");
  expect_shape(x, a.lse_shape(), kOp, "lse");
  return x;
}

void forward(AttnVariant variant, const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
             py::handle out, py::handle lse, std::uintptr_t stream) {
  SdpaArrays r = sdpa_inputs(a, q, k, v, mask, {DType::f32, DType::f16, DType::bf16}, cuda_array);
  r.out = sdpa_array(r, out, a.out_shape(), "out", cuda_array);
  r.lse = lse_array(a, lse);
  cuda::sdpa_forward_cuda(a, attn_dtype(r.q.dtype), variant, r.q.data, r.k.data, r.v.data, r.mask.data, r.out.data,
                          r.lse.ptr<float>(), as_stream(stream));
}

void backward(AttnVariant variant, const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
              py::handle out, py::handle lse, py::handle grad_out, py::handle grad_q, py::handle grad_k,
              py::handle grad_v, std::uintptr_t stream) {
  SdpaArrays r = sdpa_inputs(a, q, k, v, mask, {DType::f32, DType::f16, DType::bf16}, cuda_array);
  r.out = sdpa_array(r, out, a.out_shape(), "out", cuda_array);
  r.lse = lse_array(a, lse);
  r.grad_out = sdpa_array(r, grad_out, a.out_shape(), "grad_out", cuda_array);
  r.grad_q = sdpa_array(r, grad_q, a.q_shape(), "grad_query", cuda_array);
  r.grad_k = sdpa_array(r, grad_k, a.k_shape(), "grad_key", cuda_array);
  r.grad_v = sdpa_array(r, grad_v, a.v_shape(), "grad_value", cuda_array);
  const AttnDType dt = attn_dtype(r.q.dtype);
  CudaWorkspace ws = cuda_workspace(cuda::sdpa_backward_workspace_bytes(a, dt, variant));
  cuda::sdpa_backward_cuda(a, dt, variant, r.q.data, r.k.data, r.v.data, r.mask.data, r.out.data,
                           r.lse.ptr<float>(), r.grad_out.data, r.grad_q.data, r.grad_k.data, r.grad_v.data, ws.ptr,
                           as_stream(stream));
}

}  // namespace

void bind_attention_cuda(py::module_& m) {
  py::module_ cuda = m.attr("cuda");
  for (AttnVariant variant : {AttnVariant::fast, AttnVariant::reference}) {
    const bool reference = variant == AttnVariant::reference;
    const std::string suffix = reference ? "_reference" : "";
    const char* how = reference ? " (reference: one block per row, two-pass softmax)"
                                : " (tiled online softmax for E == Ev in {64, 128}: tensor cores for "
                                  "float16/bfloat16, FFMA for float32; the reference kernels otherwise)";
    cuda.def(("sdpa_forward" + suffix).c_str(),
             [variant](const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                       py::handle out, py::handle lse, std::uintptr_t stream) {
               forward(variant, a, q, k, v, mask, out, lse, stream);
             },
             py::arg("args"), py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask"),
             py::arg("out"), py::arg("lse"), py::arg("stream"),
             (std::string("Scaled dot-product attention forward into out (B, H, L, Ev) and lse (B, H, L, float32) "
                          "on `stream`") + how).c_str());
    cuda.def(("sdpa_backward" + suffix).c_str(),
             [variant](const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                       py::handle out, py::handle lse, py::handle grad_out, py::handle grad_q, py::handle grad_k,
                       py::handle grad_v, std::uintptr_t stream) {
               backward(variant, a, q, k, v, mask, out, lse, grad_out, grad_q, grad_k, grad_v, stream);
             },
             py::arg("args"), py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask"),
             py::arg("out"), py::arg("lse"), py::arg("grad_out"), py::arg("grad_query"), py::arg("grad_key"),
             py::arg("grad_value"), py::arg("stream"),
             (std::string("Scaled dot-product attention backward into grad_query, grad_key, grad_value on `stream` "
                          "(workspace from cupy's pool)") + how).c_str());
  }
  cuda.def(
      "sdpa_uses_tensor_cores",
      [](const AttentionArgs& a, const std::string& dtype) {
        return cuda::sdpa_uses_tensor_cores(a, dtype_named(dtype), AttnVariant::fast);
      },
      py::arg("args"), py::arg("dtype"),
      "Whether sdpa_forward/sdpa_backward run the tensor-core kernels for these shapes and dtype ('float32', "
      "'float16' or 'bfloat16'), rather than the reference kernels (16-byte aligned arrays assumed)");
  add_family(cuda, "attention");
}

}  // namespace pyfastdl
#endif
