// Shape arithmetic and validation of the LSTM family, shared by the CPU kernels, the CUDA launchers
// and the bindings. Plain C++ (nvcc includes it too).
//
// Layouts (PyTorch's): gates are stacked i, f, g, o along the 4H axis of every weight and of the
// gate buffers; a sequence is (T, B, feature) ("seq, batch, feature"); the recurrent state is (B, H).
//   LstmCellArgs   one step:  input (B, I), h and c (B, H), weight_ih (4H, I), weight_hh (4H, H)
//   LstmLayerArgs  one layer, one direction, a whole sequence: input (T, B, I), optional lengths (B,)
#pragma once
#include <cstdint>
#include <vector>

#include "common/check.h"

namespace pyfastdl {

// Hidden size from weight_hh (4H, H), and weight_ih (4H, I) checked against it and the input size.
inline int64_t lstm_hidden_size(const char* op, const Shape& w_ih, const Shape& w_hh, int64_t input_size) {
  check_rank(op, "weight_hh", w_hh, 2);
  check_rank(op, "weight_ih", w_ih, 2);
  const int64_t H = w_hh[1];
  check(H > 0, op, ": weight_hh must have shape (4*hidden_size, hidden_size) with hidden_size > 0, got ",
        shape_str(w_hh));
  const int64_t G = mul_or_fail(4, H, op, "4 * hidden_size (weight_hh's second dimension)");
  check(w_hh[0] == G, op, ": weight_hh must have shape (4*hidden_size, hidden_size), got ",
        shape_str(w_hh));
  check(w_ih[0] == G, op, ": weight_ih has shape ", shape_str(w_ih), " but weight_hh ", shape_str(w_hh),
        " says hidden_size = ", H, ", so weight_ih must have ", 4 * H, " rows");
  check(w_ih[1] == input_size, op, ": input has ", input_size, " features but weight_ih has shape ", shape_str(w_ih),
        " (expected (", 4 * H, ", ", input_size, "))");
  // Sizes of the weights (and below, of the gate buffers) must fit in 64 bits.
  mul_or_fail(G, input_size > H ? input_size : H, op, "the number of elements of a weight");
  return H;
}

struct LstmCellArgs {
  int64_t batch = 0, input_size = 0, hidden_size = 0;
  Shape state_shape() const { return {batch, hidden_size}; }
  Shape gates_shape() const { return {batch, 4 * hidden_size}; }
  Shape input_shape() const { return {batch, input_size}; }
};

inline LstmCellArgs make_lstm_cell_args(const Shape& input, const Shape& w_ih, const Shape& w_hh) {
  const char* op = "lstm_cell";
  check_rank(op, "input", input, 2);
  check_nonempty(op, "input", input);
  LstmCellArgs a;
  a.batch = input[0];
  a.input_size = input[1];
  a.hidden_size = lstm_hidden_size(op, w_ih, w_hh, a.input_size);
  mul_or_fail(a.batch, 4 * a.hidden_size, op, "the gates' size (batch * 4 * hidden_size)");
  return a;
}

struct LstmLayerArgs {
  int64_t seq_len = 0, batch = 0, input_size = 0, hidden_size = 0;
  bool reverse = false;          // run from each sequence's last valid step back to step 0
  std::vector<int64_t> lengths;  // per-sequence valid steps, in [1, seq_len]; empty = all seq_len

  bool has_lengths() const { return !lengths.empty(); }
  int64_t length(int64_t b) const { return lengths.empty() ? seq_len : lengths[b]; }
  // Time index that batch row b processes at step s (s < length(b)).
  int64_t time_at(int64_t b, int64_t s) const { return reverse ? length(b) - 1 - s : s; }

  Shape input_shape() const { return {seq_len, batch, input_size}; }
  Shape out_shape() const { return {seq_len, batch, hidden_size}; }
  Shape state_shape() const { return {batch, hidden_size}; }
  // Saved for backward: gate activations (T, B, 4H), and the c and h each step started from (T, B, H).
  Shape gates_shape() const { return {seq_len, batch, 4 * hidden_size}; }
  Shape saved_state_shape() const { return {seq_len, batch, hidden_size}; }
};

inline LstmLayerArgs make_lstm_layer_args(const Shape& input, const Shape& w_ih, const Shape& w_hh, bool reverse,
                                          const std::vector<int64_t>& lengths) {
  const char* op = "lstm";
  check(input.size() == 3, op, ": input must have 3 dimensions (seq_len, batch, input_size), got shape ",
        shape_str(input));
  check_nonempty(op, "input", input);
  LstmLayerArgs a;
  a.seq_len = input[0];
  a.batch = input[1];
  a.input_size = input[2];
  a.hidden_size = lstm_hidden_size(op, w_ih, w_hh, a.input_size);
  mul_or_fail(mul_or_fail(a.seq_len, a.batch, op, "seq_len * batch"), 4 * a.hidden_size, op,
              "the saved gates' size (seq_len * batch * 4 * hidden_size)");
  a.reverse = reverse;
  if (!lengths.empty()) {
    check(int64_t(lengths.size()) == a.batch, op, ": lengths has ", lengths.size(), " entries but the batch has ",
          a.batch, " sequences");
    for (size_t b = 0; b < lengths.size(); ++b)
      check(lengths[b] >= 1 && lengths[b] <= a.seq_len, op, ": lengths[", b, "] = ", lengths[b],
            " is out of range [1, ", a.seq_len, "] (seq_len of the input)");
    a.lengths = lengths;
  }
  return a;
}

}  // namespace pyfastdl
