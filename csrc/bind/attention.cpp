// Bindings of scaled dot-product attention: the AttentionArgs class (top level of _C, shared with the
// CUDA bindings in attention_cuda.cpp) and the CPU kernels in _C.cpu.
//
//   a = _C.AttentionArgs(q.shape, k.shape, v.shape, mask.shape or None, "none" | "bool" | "additive",
//                        is_causal, scale or None)
//   _C.cpu.sdpa_forward(a, q, k, v, mask_or_None, out, lse)
//   _C.cpu.sdpa_backward(a, q, k, v, mask_or_None, out, lse, grad_out, grad_q, grad_k, grad_v)
// plus the same two with the suffix _reference (one query row at a time, two-pass softmax).
// Outputs are preallocated by the caller: out a.out_shape, lse a.lse_shape, grads like q, k, v.
#include "bind/attention.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <sstream>
#include <string>

#include "cpu/attention.h"

namespace pyfastdl {
namespace {

py::tuple as_tuple(const Shape& s) {
  py::tuple t(s.size());
  for (size_t i = 0; i < s.size(); ++i) t[i] = s[i];
  return t;
}

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

// The forward and backward bindings for one variant (the fast kernels or the reference ones).
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

void forward(bool reference, const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
             py::handle out, py::handle lse) {
  SdpaArrays r = sdpa_inputs(a, q, k, v, mask, {DType::f32, DType::f64}, cpu_array);
  r.out = sdpa_array(r, out, a.out_shape(), "out", cpu_array);
  r.lse = sdpa_array(r, lse, a.lse_shape(), "lse", cpu_array);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    kernels<T>(reference).forward(a, r.q.ptr<T>(), r.k.ptr<T>(), r.v.ptr<T>(), r.mask.data, r.out.ptr<T>(),
                                  r.lse.ptr<T>());
  };
  if (r.q.dtype == DType::f32) run(0.0f); else run(0.0);
}

void backward(bool reference, const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
              py::handle out, py::handle lse, py::handle grad_out, py::handle grad_q, py::handle grad_k,
              py::handle grad_v) {
  SdpaArrays r = sdpa_inputs(a, q, k, v, mask, {DType::f32, DType::f64}, cpu_array);
  r.out = sdpa_array(r, out, a.out_shape(), "out", cpu_array);
  r.lse = sdpa_array(r, lse, a.lse_shape(), "lse", cpu_array);
  r.grad_out = sdpa_array(r, grad_out, a.out_shape(), "grad_out", cpu_array);
  r.grad_q = sdpa_array(r, grad_q, a.q_shape(), "grad_query", cpu_array);
  r.grad_k = sdpa_array(r, grad_k, a.k_shape(), "grad_key", cpu_array);
  r.grad_v = sdpa_array(r, grad_v, a.v_shape(), "grad_value", cpu_array);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    kernels<T>(reference).backward(a, r.q.ptr<T>(), r.k.ptr<T>(), r.v.ptr<T>(), r.mask.data, r.out.ptr<T>(),
                                   r.lse.ptr<T>(), r.grad_out.ptr<T>(), r.grad_q.ptr<T>(), r.grad_k.ptr<T>(),
                                   r.grad_v.ptr<T>());
  };
  if (r.q.dtype == DType::f32) run(0.0f); else run(0.0);
}

}  // namespace

void bind_attention(py::module_& m) {
  bind_args(m);
  py::module_ cpu = m.attr("cpu");
  for (bool reference : {false, true}) {
    const std::string suffix = reference ? "_reference" : "";
    const char* how = reference ? " (reference: one query row at a time, two-pass softmax)"
                                : " (blocked online softmax, O(seq * dim) memory)";
    cpu.def(("sdpa_forward" + suffix).c_str(),
            [reference](const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                        py::handle out, py::handle lse) { forward(reference, a, q, k, v, mask, out, lse); },
            py::arg("args"), py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask"),
            py::arg("out"), py::arg("lse"),
            (std::string("Scaled dot-product attention forward into out (B, H, L, Ev) and lse (B, H, L)") + how)
                .c_str());
    cpu.def(("sdpa_backward" + suffix).c_str(),
            [reference](const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                        py::handle out, py::handle lse, py::handle grad_out, py::handle grad_q, py::handle grad_k,
                        py::handle grad_v) {
              backward(reference, a, q, k, v, mask, out, lse, grad_out, grad_q, grad_k, grad_v);
            },
            py::arg("args"), py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask"),
            py::arg("out"), py::arg("lse"), py::arg("grad_out"), py::arg("grad_query"), py::arg("grad_key"),
            py::arg("grad_value"),
            (std::string("Scaled dot-product attention backward into grad_query, grad_key, grad_value") + how)
                .c_str());
  }
  add_family(cpu, "attention");
}

}  // namespace pyfastdl
