// Array checks shared by the CPU bindings (attention.cpp) and the CUDA bindings (attention_cuda.cpp)
// of scaled dot-product attention: each kernel argument checked against the AttentionArgs it was
// built for, with the dtype rules (q, k, v, out, lse, grads all the same float dtype; a bool mask,
// or an additive mask of q's dtype).
#pragma once
#include <initializer_list>

#include "bind/array.h"
#include "common/attention_args.h"

namespace pyfastdl {

// Arrays of one forward or backward call, already checked. `GetArray` is cpu_array or cuda_array.
struct SdpaArrays {
  Array q, k, v, mask, out, lse, grad_out, grad_q, grad_k, grad_v;
};

// Checks q, k, v and the mask; `dtypes` are the float dtypes the device supports.
template <class GetArray>
SdpaArrays sdpa_inputs(const AttentionArgs& a, py::handle q, py::handle k, py::handle v, py::handle mask,
                       std::initializer_list<DType> dtypes, GetArray get) {
  const char* op = "scaled_dot_product_attention";
  SdpaArrays r;
  r.q = get(q, op, "query");
  r.k = get(k, op, "key");
  r.v = get(v, op, "value");
  expect_dtype(r.q, dtypes, op, "query");
  expect_same_dtype(r.q, r.k, op, "query", "key");
  expect_same_dtype(r.q, r.v, op, "query", "value");
  expect_shape(r.q, a.q_shape(), op, "query");
  expect_shape(r.k, a.k_shape(), op, "key");
  expect_shape(r.v, a.v_shape(), op, "value");
  if (a.mask == MaskKind::none) {
    check(mask.is_none(), op, ": attn_mask was given but the AttentionArgs were built without a mask");
    return r;
  }
  check(!mask.is_none(), op, ": the AttentionArgs expect a ", mask_kind_name(a.mask), " attn_mask, got None");
  r.mask = get(mask, op, "attn_mask");
  if (a.mask == MaskKind::boolean)
    expect_dtype(r.mask, {DType::b8}, op, "attn_mask");
  else
    expect_same_dtype(r.q, r.mask, op, "query", "attn_mask");
  expect_shape(r.mask, a.mask_shape, op, "attn_mask");
  return r;
}

// An output (or extra input) of q's dtype with the given shape.
template <class GetArray>
Array sdpa_array(const SdpaArrays& r, py::handle obj, const Shape& shape, const char* name, GetArray get) {
  const char* op = "scaled_dot_product_attention";
  Array x = get(obj, op, name);
  expect_same_dtype(r.q, x, op, "query", name);
  expect_shape(x, shape, op, name);
  return x;
}

}  // namespace pyfastdl
