// Arguments of the activation family (ReLU and leaky ReLU, forward and backward), in one place for
// the CPU kernels and the bindings. Plain C++.
//
//   forward   y = x              where x > 0
//             y = slope * x      elsewhere (ReLU: slope 0, and y = +0, never -0; NaN stays NaN)
//   backward  from `ref`, an array positive exactly where x is (x itself, or y when slope >= 0):
//             gx = g             where ref > 0
//             gx = slope * g     elsewhere; ReLU: 0 where ref <= 0 and g where ref is NaN (torch's
//                                threshold_backward), so an Inf or NaN gradient on a zeroed unit stays 0
#pragma once
#include <cmath>
#include <cstdint>

#include "common/check.h"

namespace pyfastdl {

struct ActivationArgs {
  Shape shape;          // the input's (and output's) shape
  int64_t numel = 0;
  double negative_slope = 0;  // 0: ReLU
};

inline ActivationArgs make_activation_args(const Shape& shape, double negative_slope) {
  const char* op = negative_slope == 0 ? "relu" : "leaky_relu";
  check(std::isfinite(negative_slope), op, ": negative_slope must be finite, got ", negative_slope);
  ActivationArgs a;
  a.shape = shape;
  a.numel = numel(shape);  // throws on 64-bit overflow
  a.negative_slope = negative_slope;
  return a;
}

}  // namespace pyfastdl
