// Shape arithmetic of the softmax family (softmax, log-softmax, cross-entropy), in one place for
// the CPU kernels and the bindings. Plain C++.
//
// Every kernel works on rows: the input is viewed as (rows, cols) with the reduced dimension last
// and contiguous (softmax over dim -1; cross-entropy over the classes of (N, C) logits -- the Python
// layer moves a class dimension 1 of (N, C, d1, ...) last first).
//
//   cross-entropy of row i, target t, classes C, weights w (1 without), smoothing eps:
//     loss_i = (1 - eps) w_t (lse_i - x_it) + eps / C * sum_c w_c (lse_i - x_ic)     (0 if t is ignored)
//   with lse_i = log sum_c exp(x_ic), the only per-row value the backward needs besides x.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/check.h"

namespace pyfastdl {

struct SoftmaxArgs {
  Shape shape;                   // the input's shape
  int64_t rows = 0, cols = 0;    // cols: the last dimension (the classes of cross-entropy)
  // cross-entropy only
  int64_t ignore_index = -100;
  double label_smoothing = 0;
};

// softmax / log_softmax over the last dimension of an input of any rank >= 1.
inline SoftmaxArgs make_softmax_args(const Shape& in) {
  const char* op = "softmax";
  check(!in.empty(), op, ": input must have at least one dimension, got a 0-d array");
  check(in.back() > 0, op, ": the softmax dimension has size 0, shape ", shape_str(in));
  SoftmaxArgs a;
  a.shape = in;
  a.cols = in.back();
  a.rows = numel(in) / a.cols;  // numel throws on 64-bit overflow
  return a;
}

// cross_entropy of (rows, classes) logits against rows int64 targets.
inline SoftmaxArgs make_cross_entropy_args(const Shape& logits, int64_t ignore_index, double label_smoothing) {
  const char* op = "cross_entropy";
  check_rank(op, "input", logits, 2);
  check(logits[1] > 0, op, ": input has no classes, shape ", shape_str(logits));
  check(label_smoothing >= 0 && label_smoothing <= 1, op, ": label_smoothing must be in [0, 1], got ",
        label_smoothing);
  SoftmaxArgs a;
  a.shape = logits;
  a.rows = logits[0];
  a.cols = logits[1];
  numel(logits);
  a.ignore_index = ignore_index;
  a.label_smoothing = label_smoothing;
  return a;
}

}  // namespace pyfastdl
