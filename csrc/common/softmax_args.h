// Shape arithmetic of the softmax family (softmax, log-softmax, cross-entropy), in one place for
// the CPU kernels and the bindings. Plain C++.
//
// Every kernel works on rows: the input is viewed as (rows, cols) with the reduced dimension last
// and contiguous (softmax over dim -1; cross-entropy over the classes of (N, C) logits), except
// cross-entropy over (N, C, d1, ...) logits (segmentation maps), whose rows are the N * inner
// positions (inner = d1 * ...) and whose classes lie `inner` apart: element (row n*inner + i, class c)
// is x[(n*C + c)*inner + i] (inner = 1: plain rows).
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
  int64_t inner = 1;             // cross-entropy: the distance between a row's classes (d1 * ... * dk)
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

// cross_entropy of (N, classes, d1, ...) logits against rows = N * d1 * ... int64 targets.
inline SoftmaxArgs make_cross_entropy_args(const Shape& logits, int64_t ignore_index, double label_smoothing) {
  const char* op = "cross_entropy";
  check(logits.size() >= 2, op, ": input must have at least 2 dimensions (N, classes, ...), got shape ",
        shape_str(logits));
  check(logits[1] > 0, op, ": input has no classes, shape ", shape_str(logits));
  check(label_smoothing >= 0 && label_smoothing <= 1, op, ": label_smoothing must be in [0, 1], got ",
        label_smoothing);
  SoftmaxArgs a;
  a.shape = logits;
  a.cols = logits[1];
  a.rows = numel(logits) / a.cols;  // numel throws on 64-bit overflow
  a.inner = logits[0] > 0 ? a.rows / logits[0] : 1;
  a.ignore_index = ignore_index;
  a.label_smoothing = label_smoothing;
  return a;
}

}  // namespace pyfastdl
