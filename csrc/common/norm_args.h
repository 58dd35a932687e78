// Shape arithmetic of the normalisation family (batch norm, layer norm), in one place for the CPU
// kernels and the bindings. Plain C++.
//
// Both normalise groups of values by the group's mean and inverse standard deviation, then apply a
// per-feature affine map. What differs is which values form a group:
//
//   batch norm  input (N, C, *): one group per channel c, holding the N * inner values x[n, c, :]
//               (inner = product of the spatial sizes, 1 for (N, C) input); weight, bias are (C,)
//   layer norm  input (*, *normalized_shape): one group per row of the trailing d = prod(normalized_shape)
//               values; weight, bias are normalized_shape (d values)
//
// NormArgs describes both as `outer` blocks of `groups` x `inner` contiguous values:
//   batch norm: outer = N, groups = C, inner = prod(spatial)   (group c: the N runs x[n, c, 0:inner])
//   layer norm: outer = 1, groups = rows, inner = d            (group r: the one run x[r, 0:d])
// so a group's values are `outer` runs of `inner` contiguous values, `groups * inner` apart.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/check.h"

namespace pyfastdl {

enum class NormKind { batch, layer };

inline const char* norm_kind_name(NormKind k) { return k == NormKind::batch ? "batch_norm" : "layer_norm"; }

struct NormArgs {
  NormKind kind = NormKind::batch;
  Shape shape;            // the input's shape
  int64_t outer = 0, groups = 0, inner = 0;
  int64_t count = 0;      // values per group: outer * inner
  int64_t features = 0;   // length of weight and bias: C (batch) or d (layer)
  double eps = 1e-5;

  int64_t numel() const { return outer * groups * inner; }
};

namespace detail {
inline void check_eps(const char* op, double eps) {
  check(std::isfinite(eps) && eps >= 0, op, ": eps must be a finite number >= 0, got ", eps);
}
}  // namespace detail

// Batch norm over (N, C, *): statistics per channel. `training` asks for more than one value per
// channel (a variance from one value is meaningless), as torch does.
inline NormArgs make_batch_norm_args(const Shape& in, double eps, bool training) {
  const char* op = "batch_norm";
  check(in.size() >= 2, op, ": input must be (N, C, *), got shape ", shape_str(in));
  detail::check_eps(op, eps);
  NormArgs a;
  a.kind = NormKind::batch;
  a.shape = in;
  a.eps = eps;
  a.outer = in[0];
  a.groups = in[1];
  check(a.groups > 0, op, ": input has no channels, shape ", shape_str(in));
  a.inner = numel(Shape(in.begin() + 2, in.end()));  // throws on 64-bit overflow
  numel(in);
  a.count = a.outer * a.inner;
  a.features = a.groups;
  check(!training || a.count > 1, op, ": expected more than 1 value per channel when training, got input size ",
        shape_str(in));
  return a;
}

// Layer norm over the last `normalized_ndim` dimensions of the input: statistics per row.
inline NormArgs make_layer_norm_args(const Shape& in, int64_t normalized_ndim, double eps) {
  const char* op = "layer_norm";
  check(normalized_ndim >= 1 && normalized_ndim <= int64_t(in.size()), op, ": normalized_ndim must be in [1, ",
        in.size(), "] for input of shape ", shape_str(in), ", got ", normalized_ndim);
  detail::check_eps(op, eps);
  NormArgs a;
  a.kind = NormKind::layer;
  a.shape = in;
  a.eps = eps;
  const auto split = in.end() - normalized_ndim;
  a.inner = numel(Shape(split, in.end()));
  check(a.inner > 0, op, ": normalized_shape has a zero size, input shape ", shape_str(in));
  a.groups = numel(Shape(in.begin(), split));
  numel(in);
  a.outer = 1;
  a.count = a.inner;
  a.features = a.inner;
  return a;
}

}  // namespace pyfastdl
