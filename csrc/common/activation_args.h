// Arguments of the activation family (ReLU, leaky ReLU, GLU and dropout's mask, forward and
// backward), in one place for the CPU kernels and the bindings. Plain C++.
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

// GLU (Dauphin et al. 2017) over dimension `dim` of `shape`, whose size 2h splits into halves a, b:
//   forward   y = a * sigmoid(b)                                 (y: `shape` with h at dim)
//   backward  from x and g:  ga = g * sigmoid(b),  gb = g * a * sigmoid(b) * (1 - sigmoid(b))
// Contiguous x is (outer, 2, half * inner): each of the `outer` rows holds a's values, then b's.
struct GluArgs {
  Shape shape;  // the input's
  int64_t dim = 0, outer = 1, half = 0, inner = 1;
  int64_t numel() const { return outer * 2 * half * inner; }
  Shape output_shape() const {
    Shape out = shape;
    out[dim] = half;
    return out;
  }
};

inline GluArgs make_glu_args(const Shape& shape, int64_t dim) {
  const int64_t rank = int64_t(shape.size());
  check(rank >= 1, "glu: the input needs at least one dimension, got a scalar");
  check(dim >= -rank && dim < rank, "glu: dim ", dim, " is out of range for an input of ", rank, " dimensions ",
        shape_str(shape));
  GluArgs a;
  a.shape = shape;
  a.dim = dim < 0 ? dim + rank : dim;
  numel(shape);  // throws on 64-bit overflow
  check(shape[a.dim] % 2 == 0, "glu: halving only works on an even-sized dimension; dim ", dim, " has size ",
        shape[a.dim], " in ", shape_str(shape));
  a.half = shape[a.dim] / 2;
  for (int64_t d = 0; d < a.dim; ++d) a.outer *= shape[d];
  for (int64_t d = a.dim + 1; d < rank; ++d) a.inner *= shape[d];
  return a;
}

// Inverted dropout from 16-bit random draws (the kernel draws them: cpu/splitmix.h): value i is kept
// where draw[i] >= threshold (so dropped with probability threshold / 65536), and kept values are scaled:
//   forward   y = x * (kept ? scale : 0), keep[i] = kept (1 or 0; NaN and Inf stay non-finite)
//   backward  gx = g * (keep ? scale : 0)
struct DropoutArgs {
  Shape shape;
  int64_t numel = 0;
  int64_t threshold = 0;  // in [0, 65535]: p = 1 (threshold 65536) is left to the caller (all zeros)
  double scale = 1;
};

inline DropoutArgs make_dropout_args(const Shape& shape, int64_t threshold, double scale) {
  check(threshold >= 0 && threshold < 65536, "dropout: threshold must be in [0, 65535] (p < 1), got ", threshold);
  check(std::isfinite(scale), "dropout: scale must be finite, got ", scale);
  DropoutArgs a;
  a.shape = shape;
  a.numel = numel(shape);
  a.threshold = threshold;
  a.scale = scale;
  return a;
}

}  // namespace pyfastdl
