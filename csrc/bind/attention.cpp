// Bindings of scaled dot-product attention: the AttentionArgs class (top level of _C), the CPU
// kernels in _C.cpu and, in the PYFASTDL_WITH_CUDA block, the CUDA kernels in _C.cuda, with the same
// names and arguments plus the stream to launch on (backend.launch appends cupy's current stream):
//
//   a = _C.AttentionArgs(q.shape, k.shape, v.shape, mask.shape or None, "none" | "bool" | "additive",
//                        is_causal, scale or None)
//   sdpa_forward(a, q, k, v, mask_or_None, out, lse)
//   sdpa_backward(a, q, k, v, mask_or_None, out, lse, grad_out, grad_q, grad_k, grad_v)
// plus the same two with the suffix _reference (one query row at a time, two-pass softmax). The fast
// variant is flash-attention style (FlashAttention-2: blocked online softmax, O(seq * dim) memory).
// Outputs are preallocated by the caller: out a.out_shape, lse a.lse_shape, grads like q, k, v.
// On the CPU, q, k, v, out and the gradients may be strided views whose rows (last dimension) are
// contiguous: the kernels read and write them in place (the heads of a (B, L, H, E) array, viewed as
// (B, H, L, E), need no copy); the mask and lse are C-contiguous, as is everything on the GPU.
// Every array is checked against the AttentionArgs, the same way on both devices: q, k, v, out and
// the grads all one float dtype (float32 or float64 on the CPU; float32, float16 or bfloat16 on the
// GPU, with float32 accumulation); a bool mask or an additive one of q's dtype; lse of q's dtype on
// the CPU, float32 on the GPU for every dtype (a 16-bit log-sum-exp would cost the backward its
// accuracy). The CUDA backward's workspace comes from cupy's memory pool, allocated on the current
// stream and dropped on return: safe without synchronisation, since the pool hands those bytes only
// to later work on the same stream.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>

#include "bind/array.h"
#include "common/attention_args.h"
#include "cpu/attention.h"
#ifdef PYFASTDL_WITH_CUDA
#include "attention.h"  // kernels/attention.h
#endif

namespace pyfastdl {
namespace {

MaskKind parse_mask_kind(const std::string& s) {
  if (s == "none") return MaskKind::none;
  if (s == "bool") return MaskKind::boolean;
  if (s == "additive") return MaskKind::additive;
  fail("scaled_dot_product_attention: mask_kind must be 'none', 'bool' or 'additive', got '", s, "'");
}

std::string repr(const AttentionArgs& a) {
  std::ostringstream os;
  os << "AttentionArgs(B=" << a.B << ", H=" << a.H << ", L=" << a.L << ", S=" << a.S << ", E=" << a.E
     << ", Ev=" << a.Ev << ", scale=" << a.scale << ", causal=" << (a.causal ? "True" : "False")
     << ", mask_kind='" << mask_kind_name(a.mask) << "'";
  if (a.mask != MaskKind::none) os << ", mask_shape=" << shape_str(a.mask_shape);
  os << ")";
  return os.str();
}

void bind_args(py::module_& m) {
  py::class_<AttentionArgs>(m, "AttentionArgs",
                            "Validated sizes of scaled dot-product attention: query (B, H, L, E), key (B, H, S, E), "
                            "value (B, H, S, Ev) -> out (B, H, L, Ev), lse (B, H, L); an optional bool or additive "
                            "mask broadcastable to (B, H, L, S), read through mask_stride.")
      .def(py::init([](const Shape& q, const Shape& k, const Shape& v, std::optional<Shape> mask_shape,
                       const std::string& mask_kind, bool is_causal, std::optional<double> scale) {
             MaskKind kind = parse_mask_kind(mask_kind);
             check(mask_shape.has_value() == (kind != MaskKind::none),
                   "scaled_dot_product_attention: attn_mask_shape must be given exactly when mask_kind is not "
                   "'none' (mask_kind='", mask_kind, "')");
             return make_attention_args(q, k, v, kind, mask_shape.value_or(Shape{}), is_causal, scale);
           }),
           py::arg("query_shape"), py::arg("key_shape"), py::arg("value_shape"), py::arg("attn_mask_shape") = py::none(),
           py::arg("mask_kind") = "none", py::arg("is_causal") = false, py::arg("scale") = py::none())
      .def_readonly("B", &AttentionArgs::B)
      .def_readonly("H", &AttentionArgs::H)
      .def_readonly("L", &AttentionArgs::L)
      .def_readonly("S", &AttentionArgs::S)
      .def_readonly("E", &AttentionArgs::E)
      .def_readonly("Ev", &AttentionArgs::Ev)
      .def_readonly("scale", &AttentionArgs::scale)
      .def_readonly("causal", &AttentionArgs::causal)
      .def_property_readonly("mask_kind", [](const AttentionArgs& a) { return mask_kind_name(a.mask); })
      .def_property_readonly("mask_shape", [](const AttentionArgs& a) { return as_tuple(a.mask_shape); })
      .def_property_readonly("mask_stride", [](const AttentionArgs& a) {
        return py::make_tuple(a.mask_stride[0], a.mask_stride[1], a.mask_stride[2], a.mask_stride[3]);
      })
      .def_property_readonly("query_shape", [](const AttentionArgs& a) { return as_tuple(a.q_shape()); })
      .def_property_readonly("key_shape", [](const AttentionArgs& a) { return as_tuple(a.k_shape()); })
      .def_property_readonly("value_shape", [](const AttentionArgs& a) { return as_tuple(a.v_shape()); })
      .def_property_readonly("out_shape", [](const AttentionArgs& a) { return as_tuple(a.out_shape()); })
      .def_property_readonly("lse_shape", [](const AttentionArgs& a) { return as_tuple(a.lse_shape()); })
      .def("__repr__", &repr);
}

// ---- the arrays of a call, checked the same way on both devices --------------------------------------

constexpr const char* kOp = "scaled_dot_product_attention";

struct SdpaArrays {
  Array q, k, v, mask, out, lse, grad_out, grad_q, grad_k, grad_v;
};

// The CPU kernels take views whose rows (last dimension) are contiguous, read and written in place
// (strides); the CUDA kernels C-contiguous arrays.
Array get_array(bool cuda, py::handle obj, const char* name, bool output = false) {
  return cuda ? cuda_array(obj, kOp, name) : cpu_rows_array(obj, kOp, name, output);
}

// An array of q's dtype (or of `dtype`, when given) with the given shape.
Array same_dtype_array(bool cuda, const Array& q, py::handle obj, const Shape& shape, const char* name,
                       std::optional<DType> dtype = std::nullopt, bool output = false) {
  Array x = get_array(cuda, obj, name, output);
  if (dtype)
    expect_dtype(x, {*dtype}, kOp, name);
  else
    expect_same_dtype(q, x, kOp, "query", name);
  expect_shape(x, shape, kOp, name);
  return x;
}

// q, k, v, the mask, out and lse of a forward or backward call; the gradients are the backward's.
SdpaArrays sdpa_arrays(bool cuda, const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                       py::handle out, py::handle lse) {
  SdpaArrays r;
  r.q = get_array(cuda, q, "query");
  if (cuda)
    expect_dtype(r.q, {DType::f32, DType::f16, DType::bf16}, kOp, "query");
  else
    expect_dtype(r.q, {DType::f32, DType::f64}, kOp, "query");
  expect_shape(r.q, a.q_shape(), kOp, "query");
  r.k = same_dtype_array(cuda, r.q, k, a.k_shape(), "key");
  r.v = same_dtype_array(cuda, r.q, v, a.v_shape(), "value");
  if (a.mask == MaskKind::none) {
    check(mask.is_none(), kOp, ": attn_mask was given but the AttentionArgs were built without a mask");
  } else {
    check(!mask.is_none(), kOp, ": the AttentionArgs expect a ", mask_kind_name(a.mask), " attn_mask, got None");
    // read through AttentionArgs::mask_stride: C-contiguous
    r.mask = cuda ? cuda_array(mask, kOp, "attn_mask") : cpu_array(mask, kOp, "attn_mask");
    if (a.mask == MaskKind::boolean)
      expect_dtype(r.mask, {DType::b8}, kOp, "attn_mask");
    else
      expect_same_dtype(r.q, r.mask, kOp, "query", "attn_mask");
    expect_shape(r.mask, a.mask_shape, kOp, "attn_mask");
  }
  r.out = same_dtype_array(cuda, r.q, out, a.out_shape(), "out", std::nullopt, true);
  r.lse = cuda ? cuda_array(lse, kOp, "lse") : cpu_array(lse, kOp, "lse");  // C-contiguous
  if (cuda)
    expect_dtype(r.lse, {DType::f32}, kOp, "lse");
  else
    expect_same_dtype(r.q, r.lse, kOp, "query", "lse");
  expect_shape(r.lse, a.lse_shape(), kOp, "lse");
  return r;
}

// The CPU kernels' strides of an operand: (batch, head, row) of its rank-4 view. Rows are the
// GEMMs' leading dimension, which must span a row: overlapping rows are refused, and a single row
// (whose stride numpy leaves arbitrary) gets its own width.
HeadStrides head_strides(const Array& x, const char* name) {
  const int64_t rows = x.shape[2], width = x.shape[3], r = x.strides[2];
  check(rows <= 1 || r >= width, kOp, ": ", name, "'s rows overlap (row stride ", r, " elements, rows of ", width,
        "); pass numpy.ascontiguousarray(", name, ")");
  return {x.strides[0], x.strides[1], rows <= 1 ? std::max<int64_t>(width, 1) : r};
}

SdpaLayout cpu_layout(const SdpaArrays& r, bool backward) {
  SdpaLayout s{head_strides(r.q, "query"), head_strides(r.k, "key"), head_strides(r.v, "value"),
               head_strides(r.out, "out"), {}, {}, {}, {}};
  if (backward) {
    s.grad_out = head_strides(r.grad_out, "grad_out");
    s.grad_q = head_strides(r.grad_q, "grad_query");
    s.grad_k = head_strides(r.grad_k, "grad_key");
    s.grad_v = head_strides(r.grad_v, "grad_value");
  }
  return s;
}

void add_grads(bool cuda, const AttentionArgs& a, SdpaArrays& r, py::handle grad_out, py::handle grad_q,
               py::handle grad_k, py::handle grad_v) {
  r.grad_out = same_dtype_array(cuda, r.q, grad_out, a.out_shape(), "grad_out");
  r.grad_q = same_dtype_array(cuda, r.q, grad_q, a.q_shape(), "grad_query", std::nullopt, true);
  r.grad_k = same_dtype_array(cuda, r.q, grad_k, a.k_shape(), "grad_key", std::nullopt, true);
  r.grad_v = same_dtype_array(cuda, r.q, grad_v, a.v_shape(), "grad_value", std::nullopt, true);
}

// ---- CPU ----------------------------------------------------------------------------------------------

// The forward and backward kernels of one variant (the fast kernels or the reference ones).
template <class T>
struct Kernels {
  decltype(&cpu::sdpa_forward_cpu<T>) forward;
  decltype(&cpu::sdpa_backward_cpu<T>) backward;
};

template <class T>
Kernels<T> kernels(bool reference) {
  if (reference) return {&cpu::sdpa_forward_reference_cpu<T>, &cpu::sdpa_backward_reference_cpu<T>};
  return {&cpu::sdpa_forward_cpu<T>, &cpu::sdpa_backward_cpu<T>};
}

// Calls run(float{}) or run(double{}) for q's dtype.
template <class Run> void for_dtype(const SdpaArrays& r, Run&& run) {
  if (r.q.dtype == DType::f32)
    run(0.0f);
  else
    run(0.0);
}

void forward_cpu(bool reference, const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                 py::handle out, py::handle lse) {
  const SdpaArrays r = sdpa_arrays(false, a, q, k, v, mask, out, lse);
  for_dtype(r, [&](auto zero) {
    using T = decltype(zero);
    kernels<T>(reference).forward(a, cpu_layout(r, false), r.q.ptr<T>(), r.k.ptr<T>(), r.v.ptr<T>(), r.mask.data,
                                  r.out.ptr<T>(), r.lse.ptr<T>());
  });
}

void backward_cpu(bool reference, const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                  py::handle out, py::handle lse, py::handle grad_out, py::handle grad_q, py::handle grad_k,
                  py::handle grad_v) {
  SdpaArrays r = sdpa_arrays(false, a, q, k, v, mask, out, lse);
  add_grads(false, a, r, grad_out, grad_q, grad_k, grad_v);
  for_dtype(r, [&](auto zero) {
    using T = decltype(zero);
    kernels<T>(reference).backward(a, cpu_layout(r, true), r.q.ptr<T>(), r.k.ptr<T>(), r.v.ptr<T>(), r.mask.data,
                                   r.out.ptr<T>(), r.lse.ptr<T>(), r.grad_out.ptr<T>(), r.grad_q.ptr<T>(),
                                   r.grad_k.ptr<T>(), r.grad_v.ptr<T>());
  });
}

#ifdef PYFASTDL_WITH_CUDA
// ---- CUDA ---------------------------------------------------------------------------------------------

using cuda::AttnDType;
using cuda::AttnVariant;

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

AttnVariant attn_variant(bool reference) { return reference ? AttnVariant::reference : AttnVariant::fast; }

void forward_cuda(bool reference, const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                  py::handle out, py::handle lse, std::uintptr_t stream) {
  const SdpaArrays r = sdpa_arrays(true, a, q, k, v, mask, out, lse);
  cuda::sdpa_forward_cuda(a, cuda_float_dtype<AttnDType>(r.q.dtype), attn_variant(reference), r.q.data, r.k.data,
                          r.v.data, r.mask.data, r.out.data, r.lse.ptr<float>(), as_stream(stream));
}

void backward_cuda(bool reference, const AttentionArgs& a, py::handle q, py::handle k, py::handle v,
                   py::handle mask, py::handle out, py::handle lse, py::handle grad_out, py::handle grad_q,
                   py::handle grad_k, py::handle grad_v, std::uintptr_t stream) {
  SdpaArrays r = sdpa_arrays(true, a, q, k, v, mask, out, lse);
  add_grads(true, a, r, grad_out, grad_q, grad_k, grad_v);
  const AttnDType dt = cuda_float_dtype<AttnDType>(r.q.dtype);
  const AttnVariant variant = attn_variant(reference);
  CudaWorkspace ws = cuda_workspace(cuda::sdpa_backward_workspace_bytes(a, dt, variant));
  cuda::sdpa_backward_cuda(a, dt, variant, r.q.data, r.k.data, r.v.data, r.mask.data, r.out.data,
                           r.lse.ptr<float>(), r.grad_out.data, r.grad_q.data, r.grad_k.data, r.grad_v.data, ws.ptr,
                           as_stream(stream));
}
#endif

}  // namespace

void bind_attention(py::module_& m) {
  bind_args(m);
  py::module_ cpu = m.attr("cpu");
#ifdef PYFASTDL_WITH_CUDA
  py::module_ cuda = m.attr("cuda");
#endif
  for (bool reference : {false, true}) {
    const std::string suffix = reference ? "_reference" : "";
    const std::string how = reference ? " (reference: one query row at a time, two-pass softmax)"
                                      : " (fast: flash-attention style, blocked online softmax, O(seq * dim) memory)";
    const std::string fdoc = "Scaled dot-product attention forward into out (B, H, L, Ev) and lse (B, H, L)" + how;
    const std::string bdoc = "Scaled dot-product attention backward into grad_query, grad_key, grad_value" + how;
    cpu.def(("sdpa_forward" + suffix).c_str(),
            [reference](const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                        py::handle out, py::handle lse) { forward_cpu(reference, a, q, k, v, mask, out, lse); },
            py::arg("args"), py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask"),
            py::arg("out"), py::arg("lse"), fdoc.c_str());
    cpu.def(("sdpa_backward" + suffix).c_str(),
            [reference](const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                        py::handle out, py::handle lse, py::handle grad_out, py::handle grad_q, py::handle grad_k,
                        py::handle grad_v) {
              backward_cpu(reference, a, q, k, v, mask, out, lse, grad_out, grad_q, grad_k, grad_v);
            },
            py::arg("args"), py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask"),
            py::arg("out"), py::arg("lse"), py::arg("grad_out"), py::arg("grad_query"), py::arg("grad_key"),
            py::arg("grad_value"), bdoc.c_str());
#ifdef PYFASTDL_WITH_CUDA
    cuda.def(("sdpa_forward" + suffix).c_str(),
             [reference](const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                         py::handle out, py::handle lse, std::uintptr_t stream) {
               forward_cuda(reference, a, q, k, v, mask, out, lse, stream);
             },
             py::arg("args"), py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask"),
             py::arg("out"), py::arg("lse"), py::arg("stream"), (fdoc + ", on `stream`").c_str());
    cuda.def(("sdpa_backward" + suffix).c_str(),
             [reference](const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                         py::handle out, py::handle lse, py::handle grad_out, py::handle grad_q, py::handle grad_k,
                         py::handle grad_v, std::uintptr_t stream) {
               backward_cuda(reference, a, q, k, v, mask, out, lse, grad_out, grad_q, grad_k, grad_v, stream);
             },
             py::arg("args"), py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask"),
             py::arg("out"), py::arg("lse"), py::arg("grad_out"), py::arg("grad_query"), py::arg("grad_key"),
             py::arg("grad_value"), py::arg("stream"), (bdoc + ", on `stream` (workspace from cupy's pool)").c_str());
#endif
  }
  add_family(cpu, "attention");
#ifdef PYFASTDL_WITH_CUDA
  cuda.def(
      "sdpa_uses_tensor_cores",
      [](const AttentionArgs& a, const std::string& dtype) {
        const AttnDType dt = cuda_float_dtype_named<AttnDType>(dtype, "sdpa_uses_tensor_cores");
        return cuda::sdpa_uses_tensor_cores(a, dt, AttnVariant::fast);
      },
      py::arg("args"), py::arg("dtype"),
      "Whether sdpa_forward/sdpa_backward run the tensor-core kernels for these shapes and dtype ('float32', "
      "'float16' or 'bfloat16'), rather than the reference kernels (16-byte aligned arrays assumed)");
  add_family(cuda, "attention");
#endif
}

}  // namespace pyfastdl
