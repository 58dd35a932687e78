// Bindings of the lstm family: LstmCellArgs and LstmLayerArgs at the top level of _C, the C++
// kernels in _C.cpu (float32, float64) and, in the PYFASTDL_WITH_CUDA block, the CUDA calls in
// _C.cuda (float32), each as lstm_{cell,layer}_{forward,backward} and the same with the suffix
// _reference. Every array is checked, the same way on both devices, for device, dtype, contiguity
// and the exact shape the Args give, naming the argument.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bind/array.h"
#include "common/lstm_args.h"
#include "cpu/lstm.h"
#ifdef PYFASTDL_WITH_CUDA
#include "lstm.h"
#endif

namespace pyfastdl {
namespace {

// Fetches the arrays of one call: the first fixes the dtype, the rest must match it and their shapes.
struct Arrays {
  const char* op;
  bool cuda;
  DType dtype = DType::f32;

  Array get(py::handle h, const char* name, const Shape& shape) const {
    Array a = cuda ? cuda_array(h, op, name) : cpu_array(h, op, name);
    expect_dtype(a, {dtype}, op, name);
    expect_shape(a, shape, op, name);
    return a;
  }
  Array first(py::handle h, const char* name, const Shape& shape) {
    Array a = cuda ? cuda_array(h, op, name) : cpu_array(h, op, name);
    if (cuda)
      expect_dtype(a, {DType::f32}, op, name);
    else
      expect_dtype(a, {DType::f32, DType::f64}, op, name);
    dtype = a.dtype;
    expect_shape(a, shape, op, name);
    return a;
  }
  Array optional(py::handle h, const char* name, const Shape& shape) const {
    return h.is_none() ? Array{} : get(h, name, shape);
  }
};

// Calls fn(float{}) or fn(double{}) for the dtype.
template <class Fn> void dispatch(DType d, Fn&& fn) {
  if (d == DType::f64)
    fn(double{});
  else
    fn(float{});
}

template <class T> const T* cptr(const Array& a) { return static_cast<const T*>(a.data); }
template <class T> T* mptr(const Array& a) { return static_cast<T*>(a.data); }

std::vector<int64_t> lengths_from(py::handle lengths) {
  if (lengths.is_none()) return {};
  return py::cast<std::vector<int64_t>>(lengths);
}

void bind_args(py::module_& m) {
  py::class_<LstmCellArgs>(m, "LstmCellArgs", "Sizes of one LSTM step, validated (see common/lstm_args.h)")
      .def(py::init([](const Shape& input, const Shape& w_ih, const Shape& w_hh) {
             return make_lstm_cell_args(input, w_ih, w_hh);
           }),
           py::arg("input_shape"), py::arg("weight_ih_shape"), py::arg("weight_hh_shape"))
      .def_readonly("batch", &LstmCellArgs::batch)
      .def_readonly("input_size", &LstmCellArgs::input_size)
      .def_readonly("hidden_size", &LstmCellArgs::hidden_size)
      .def_property_readonly("state_shape", [](const LstmCellArgs& a) { return as_tuple(a.state_shape()); })
      .def_property_readonly("gates_shape", [](const LstmCellArgs& a) { return as_tuple(a.gates_shape()); });

  py::class_<LstmLayerArgs>(m, "LstmLayerArgs",
                            "Sizes of one LSTM layer and direction over a sequence, validated "
                            "(see common/lstm_args.h)")
      .def(py::init([](const Shape& input, const Shape& w_ih, const Shape& w_hh, bool reverse, py::object lengths) {
             return make_lstm_layer_args(input, w_ih, w_hh, reverse, lengths_from(lengths));
           }),
           py::arg("input_shape"), py::arg("weight_ih_shape"), py::arg("weight_hh_shape"), py::arg("reverse") = false,
           py::arg("lengths") = py::none())
      .def_readonly("seq_len", &LstmLayerArgs::seq_len)
      .def_readonly("batch", &LstmLayerArgs::batch)
      .def_readonly("input_size", &LstmLayerArgs::input_size)
      .def_readonly("hidden_size", &LstmLayerArgs::hidden_size)
      .def_readonly("reverse", &LstmLayerArgs::reverse)
      .def_property_readonly("lengths",
                             [](const LstmLayerArgs& a) -> py::object {
                               if (!a.has_lengths()) return py::none();
                               return py::cast(a.lengths);
                             })
      .def_property_readonly("out_shape", [](const LstmLayerArgs& a) { return as_tuple(a.out_shape()); })
      .def_property_readonly("state_shape", [](const LstmLayerArgs& a) { return as_tuple(a.state_shape()); })
      .def_property_readonly("gates_shape", [](const LstmLayerArgs& a) { return as_tuple(a.gates_shape()); })
      .def_property_readonly("saved_state_shape",
                             [](const LstmLayerArgs& a) { return as_tuple(a.saved_state_shape()); });
}

// ---- the arrays of each kernel, checked the same way on both devices --------------------------------
// Each takes the kernel's array arguments (numpy on the CPU, cupy on the GPU) in the order of its
// parameters and returns them checked (dtype: c.dtype), in the same order.

using Handles = std::initializer_list<py::handle>;
using Checked = std::vector<Array>;

Checked cell_forward_arrays(Arrays& c, const LstmCellArgs& a, Handles hs) {
  const py::handle* h = hs.begin();
  const Shape S = a.state_shape(), G = {4 * a.hidden_size};
  return {c.first(h[0], "input", a.input_shape()), c.get(h[1], "hx", S), c.get(h[2], "cx", S),
          c.get(h[3], "weight_ih", {4 * a.hidden_size, a.input_size}),
          c.get(h[4], "weight_hh", {4 * a.hidden_size, a.hidden_size}), c.optional(h[5], "bias_ih", G),
          c.optional(h[6], "bias_hh", G), c.get(h[7], "hy", S), c.get(h[8], "cy", S),
          c.get(h[9], "gates", a.gates_shape())};
}

Checked cell_backward_arrays(Arrays& c, const LstmCellArgs& a, Handles hs) {
  const py::handle* h = hs.begin();
  const Shape S = a.state_shape(), WIs = {4 * a.hidden_size, a.input_size}, WHs = {4 * a.hidden_size, a.hidden_size};
  return {c.first(h[0], "grad_hy", S), c.get(h[1], "grad_cy", S), c.get(h[2], "gates", a.gates_shape()),
          c.get(h[3], "input", a.input_shape()), c.get(h[4], "hx", S), c.get(h[5], "cx", S),
          c.get(h[6], "weight_ih", WIs), c.get(h[7], "weight_hh", WHs), c.get(h[8], "grad_input", a.input_shape()),
          c.get(h[9], "grad_hx", S), c.get(h[10], "grad_cx", S), c.get(h[11], "grad_weight_ih", WIs),
          c.get(h[12], "grad_weight_hh", WHs), c.get(h[13], "grad_bias", {4 * a.hidden_size})};
}

Checked layer_forward_arrays(Arrays& c, const LstmLayerArgs& a, Handles hs) {
  const py::handle* h = hs.begin();
  const Shape S = a.state_shape(), SS = a.saved_state_shape(), G = {4 * a.hidden_size};
  if (h[10].is_none() != h[11].is_none() || h[11].is_none() != h[12].is_none())
    throw py::value_error("lstm_layer_forward: gates, c_prev and h_prev must all be arrays (training) or all None "
                          "(inference)");
  return {c.first(h[0], "input", a.input_shape()), c.get(h[1], "h0", S), c.get(h[2], "c0", S),
          c.get(h[3], "weight_ih", {4 * a.hidden_size, a.input_size}),
          c.get(h[4], "weight_hh", {4 * a.hidden_size, a.hidden_size}), c.optional(h[5], "bias_ih", G),
          c.optional(h[6], "bias_hh", G), c.get(h[7], "output", a.out_shape()), c.get(h[8], "hn", S),
          c.get(h[9], "cn", S), c.optional(h[10], "gates", a.gates_shape()), c.optional(h[11], "c_prev", SS),
          c.optional(h[12], "h_prev", SS)};
}

Checked layer_backward_arrays(Arrays& c, const LstmLayerArgs& a, Handles hs) {
  const py::handle* h = hs.begin();
  const Shape S = a.state_shape(), SS = a.saved_state_shape(), WIs = {4 * a.hidden_size, a.input_size},
              WHs = {4 * a.hidden_size, a.hidden_size};
  return {c.first(h[0], "grad_output", a.out_shape()), c.get(h[1], "grad_hn", S), c.get(h[2], "grad_cn", S),
          c.get(h[3], "input", a.input_shape()), c.get(h[4], "weight_ih", WIs), c.get(h[5], "weight_hh", WHs),
          c.get(h[6], "gates", a.gates_shape()), c.get(h[7], "c_prev", SS), c.get(h[8], "h_prev", SS),
          c.get(h[9], "grad_input", a.input_shape()), c.get(h[10], "grad_h0", S), c.get(h[11], "grad_c0", S),
          c.get(h[12], "grad_weight_ih", WIs), c.get(h[13], "grad_weight_hh", WHs),
          c.get(h[14], "grad_bias", {4 * a.hidden_size})};
}

const char* const kCellForwardDoc =
    "Fused LSTM cell: (args, input, hx, cx, weight_ih, weight_hh, bias_ih|None, bias_hh|None, hy, cy, gates)";
const char* const kCellBackwardDoc =
    "Backward of lstm_cell_forward: (args, grad_hy, grad_cy, gates, input, hx, cx, weight_ih, weight_hh, "
    "grad_input, grad_hx, grad_cx, grad_weight_ih, grad_weight_hh, grad_bias)";
const char* const kLayerForwardDoc =
    "One LSTM layer and direction over a sequence: (args, input, h0, c0, weight_ih, weight_hh, bias_ih|None, "
    "bias_hh|None, output, hn, cn, gates, c_prev, h_prev); the last three are saved for backward, or all None "
    "(inference)";
const char* const kLayerBackwardDoc =
    "Backward of lstm_layer_forward (BPTT): (args, grad_output, grad_hn, grad_cn, input, weight_ih, weight_hh, "
    "gates, c_prev, h_prev, grad_input, grad_h0, grad_c0, grad_weight_ih, grad_weight_hh, grad_bias)";

// ---- CPU: one C++ kernel per call ------------------------------------------------------------------

// The fast kernel, or the reference one (csrc/cpu/lstm_reference.cpp) when Reference.
template <bool Reference, class F> F* pick(F* fast, F* reference) { return Reference ? reference : fast; }

// The four CPU kernels of one variant, under their names plus `suffix` ("" or "_reference").
template <bool Reference> void bind_cpu(py::module_& cpu, const std::string& suffix) {
  cpu.def(
      ("lstm_cell_forward" + suffix).c_str(),
      [](const LstmCellArgs& a, py::handle x, py::handle hx, py::handle cx, py::handle w_ih, py::handle w_hh,
         py::handle b_ih, py::handle b_hh, py::handle hy, py::handle cy, py::handle gates) {
        Arrays c{"lstm_cell_forward", false};
        const Checked A = cell_forward_arrays(c, a, {x, hx, cx, w_ih, w_hh, b_ih, b_hh, hy, cy, gates});
        dispatch(c.dtype, [&](auto t) {
          using T = decltype(t);
          py::gil_scoped_release nogil;
          pick<Reference>(cpu::lstm_cell_forward<T>, cpu::lstm_cell_forward_reference<T>)(
              a, cptr<T>(A[0]), cptr<T>(A[1]), cptr<T>(A[2]), cptr<T>(A[3]), cptr<T>(A[4]), cptr<T>(A[5]),
              cptr<T>(A[6]), mptr<T>(A[7]), mptr<T>(A[8]), mptr<T>(A[9]));
        });
      },
      kCellForwardDoc);

  cpu.def(
      ("lstm_cell_backward" + suffix).c_str(),
      [](const LstmCellArgs& a, py::handle grad_hy, py::handle grad_cy, py::handle gates, py::handle x, py::handle hx,
         py::handle cx, py::handle w_ih, py::handle w_hh, py::handle grad_x, py::handle grad_hx, py::handle grad_cx,
         py::handle grad_w_ih, py::handle grad_w_hh, py::handle grad_bias) {
        Arrays c{"lstm_cell_backward", false};
        const Checked A = cell_backward_arrays(c, a, {grad_hy, grad_cy, gates, x, hx, cx, w_ih, w_hh, grad_x, grad_hx,
                                                      grad_cx, grad_w_ih, grad_w_hh, grad_bias});
        dispatch(c.dtype, [&](auto t) {
          using T = decltype(t);
          py::gil_scoped_release nogil;
          pick<Reference>(cpu::lstm_cell_backward<T>, cpu::lstm_cell_backward_reference<T>)(
              a, cptr<T>(A[0]), cptr<T>(A[1]), cptr<T>(A[2]), cptr<T>(A[3]), cptr<T>(A[4]), cptr<T>(A[5]),
              cptr<T>(A[6]), cptr<T>(A[7]), mptr<T>(A[8]), mptr<T>(A[9]), mptr<T>(A[10]), mptr<T>(A[11]),
              mptr<T>(A[12]), mptr<T>(A[13]));
        });
      },
      kCellBackwardDoc);

  cpu.def(
      ("lstm_layer_forward" + suffix).c_str(),
      [](const LstmLayerArgs& a, py::handle x, py::handle h0, py::handle c0, py::handle w_ih, py::handle w_hh,
         py::handle b_ih, py::handle b_hh, py::handle out, py::handle hn, py::handle cn, py::handle gates,
         py::handle c_prev, py::handle h_prev) {
        Arrays c{"lstm_layer_forward", false};
        const Checked A =
            layer_forward_arrays(c, a, {x, h0, c0, w_ih, w_hh, b_ih, b_hh, out, hn, cn, gates, c_prev, h_prev});
        dispatch(c.dtype, [&](auto t) {
          using T = decltype(t);
          py::gil_scoped_release nogil;
          pick<Reference>(cpu::lstm_layer_forward<T>, cpu::lstm_layer_forward_reference<T>)(
              a, cptr<T>(A[0]), cptr<T>(A[1]), cptr<T>(A[2]), cptr<T>(A[3]), cptr<T>(A[4]), cptr<T>(A[5]),
              cptr<T>(A[6]), mptr<T>(A[7]), mptr<T>(A[8]), mptr<T>(A[9]), mptr<T>(A[10]), mptr<T>(A[11]),
              mptr<T>(A[12]));
        });
      },
      kLayerForwardDoc);

  cpu.def(
      ("lstm_layer_backward" + suffix).c_str(),
      [](const LstmLayerArgs& a, py::handle grad_out, py::handle grad_hn, py::handle grad_cn, py::handle x,
         py::handle w_ih, py::handle w_hh, py::handle gates, py::handle c_prev, py::handle h_prev,
         py::handle grad_x, py::handle grad_h0, py::handle grad_c0, py::handle grad_w_ih, py::handle grad_w_hh,
         py::handle grad_bias) {
        Arrays c{"lstm_layer_backward", false};
        const Checked A = layer_backward_arrays(c, a, {grad_out, grad_hn, grad_cn, x, w_ih, w_hh, gates, c_prev,
                                                       h_prev, grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh,
                                                       grad_bias});
        dispatch(c.dtype, [&](auto t) {
          using T = decltype(t);
          py::gil_scoped_release nogil;
          pick<Reference>(cpu::lstm_layer_backward<T>, cpu::lstm_layer_backward_reference<T>)(
              a, cptr<T>(A[0]), cptr<T>(A[1]), cptr<T>(A[2]), cptr<T>(A[3]), cptr<T>(A[4]), cptr<T>(A[5]),
              cptr<T>(A[6]), cptr<T>(A[7]), cptr<T>(A[8]), mptr<T>(A[9]), mptr<T>(A[10]), mptr<T>(A[11]),
              mptr<T>(A[12]), mptr<T>(A[13]), mptr<T>(A[14]));
        });
      },
      kLayerBackwardDoc);
}

#ifdef PYFASTDL_WITH_CUDA
// ---- CUDA: the same calls, the matrix products on cuBLAS through cupy (on cupy's current stream, which
// is the `stream` argument) and everything else in the kernels of kernels/lstm.cu --------------------

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

py::module_ cupy() { return py::module_::import("cupy"); }
// out = a @ b
void matmul(py::handle a, py::handle b, py::handle out) { cupy().attr("matmul")(a, b, py::arg("out") = out); }
py::object empty(const Shape& shape) { return cupy().attr("empty")(as_tuple(shape), "float32"); }
py::object rows(py::handle a, int64_t n, int64_t cols) { return a.attr("reshape")(n, cols); }

// The per-sequence lengths as a device int64 array (a null Array without lengths); `keep` owns it.
Array device_lengths(const LstmLayerArgs& a, const char* op, py::object& keep) {
  if (!a.has_lengths()) return Array{};
  keep = cupy().attr("asarray")(py::cast(a.lengths), "int64");
  return cuda_array(keep, op, "lengths");
}

// The four calls; the reference variant (`persistent` false) runs the layer forward as a step loop.
void bind_cuda_variant(py::module_& cuda, const std::string& suffix, bool persistent) {
  cuda.def(
      ("lstm_cell_forward" + suffix).c_str(),
      [](const LstmCellArgs& a, py::handle x, py::handle hx, py::handle cx, py::handle w_ih, py::handle w_hh,
         py::handle b_ih, py::handle b_hh, py::handle hy, py::handle cy, py::handle gates, std::uintptr_t stream) {
        Arrays c{"lstm_cell_forward", true};
        const Checked A = cell_forward_arrays(c, a, {x, hx, cx, w_ih, w_hh, b_ih, b_hh, hy, cy, gates});
        matmul(x, w_ih.attr("T"), gates);
        gates.attr("__iadd__")(cupy().attr("matmul")(hx, w_hh.attr("T")));
        lstm_cell_pointwise_forward_cuda(a, mptr<float>(A[9]), cptr<float>(A[5]), cptr<float>(A[6]),
                                         cptr<float>(A[2]), mptr<float>(A[7]), mptr<float>(A[8]), as_stream(stream));
      },
      kCellForwardDoc);

  cuda.def(
      ("lstm_cell_backward" + suffix).c_str(),
      [](const LstmCellArgs& a, py::handle grad_hy, py::handle grad_cy, py::handle gates, py::handle x, py::handle hx,
         py::handle cx, py::handle w_ih, py::handle w_hh, py::handle grad_x, py::handle grad_hx, py::handle grad_cx,
         py::handle grad_w_ih, py::handle grad_w_hh, py::handle grad_bias, std::uintptr_t stream) {
        Arrays c{"lstm_cell_backward", true};
        const Checked A = cell_backward_arrays(c, a, {grad_hy, grad_cy, gates, x, hx, cx, w_ih, w_hh, grad_x, grad_hx,
                                                      grad_cx, grad_w_ih, grad_w_hh, grad_bias});
        py::object dz = empty(a.gates_shape());
        lstm_cell_pointwise_backward_cuda(a, cptr<float>(A[0]), cptr<float>(A[1]), cptr<float>(A[2]),
                                          cptr<float>(A[5]), mptr<float>(cuda_array(dz, "lstm_cell_backward", "dz")),
                                          mptr<float>(A[10]), as_stream(stream));
        matmul(dz, w_ih, grad_x);
        matmul(dz, w_hh, grad_hx);
        matmul(dz.attr("T"), x, grad_w_ih);
        matmul(dz.attr("T"), hx, grad_w_hh);
        cupy().attr("sum")(dz, py::arg("axis") = 0, py::arg("out") = grad_bias);
      },
      kCellBackwardDoc);

  cuda.def(
      ("lstm_layer_forward" + suffix).c_str(),
      [persistent](const LstmLayerArgs& a, py::handle x, py::handle h0, py::handle c0, py::handle w_ih,
                   py::handle w_hh, py::handle b_ih, py::handle b_hh, py::handle out, py::handle hn, py::handle cn,
                   py::handle gates, py::handle c_prev, py::handle h_prev, std::uintptr_t stream) {
        const char* op = "lstm_layer_forward";
        Arrays c{op, true};
        Checked A =
            layer_forward_arrays(c, a, {x, h0, c0, w_ih, w_hh, b_ih, b_hh, out, hn, cn, gates, c_prev, h_prev});
        // The kernels always write what backward needs: inference gets scratch for it.
        py::object saved[3];
        const char* saved_names[3] = {"gates", "c_prev", "h_prev"};
        const py::handle given[3] = {gates, c_prev, h_prev};
        for (int i = 0; i < 3; ++i) {
          saved[i] = given[i].is_none() ? empty(i == 0 ? a.gates_shape() : a.saved_state_shape())
                                        : py::reinterpret_borrow<py::object>(given[i]);
          A[10 + i] = cuda_array(saved[i], op, saved_names[i]);
        }
        const int64_t T = a.seq_len, B = a.batch, H = a.hidden_size;
        matmul(rows(x, T * B, a.input_size), w_ih.attr("T"), rows(saved[0], T * B, 4 * H));
        cupy().attr("copyto")(hn, h0);
        cupy().attr("copyto")(cn, c0);
        py::object lengths_owner;
        const Array L = device_lengths(a, op, lengths_owner);
        if (persistent && lstm_layer_persistent_fits_cuda(a)) {
          py::object h_buf = empty({2, B, H});
          lstm_layer_persistent_forward_cuda(a, cptr<float>(A[4]), cptr<float>(A[5]), cptr<float>(A[6]),
                                             cptr<int64_t>(L), mptr<float>(A[10]), mptr<float>(A[7]),
                                             mptr<float>(A[8]), mptr<float>(A[9]), mptr<float>(A[11]),
                                             mptr<float>(A[12]), mptr<float>(cuda_array(h_buf, op, "h_buf")),
                                             as_stream(stream));
          return;
        }
        py::object rec = empty({B, 4 * H});
        const Array R = cuda_array(rec, op, "rec");
        py::object w_hh_t = w_hh.attr("T");
        for (int64_t s = 0; s < T; ++s) {
          matmul(hn, w_hh_t, rec);
          lstm_layer_step_forward_cuda(a, s, cptr<float>(R), cptr<float>(A[5]), cptr<float>(A[6]), cptr<int64_t>(L),
                                       mptr<float>(A[10]), mptr<float>(A[7]), mptr<float>(A[8]), mptr<float>(A[9]),
                                       mptr<float>(A[11]), mptr<float>(A[12]), as_stream(stream));
        }
      },
      kLayerForwardDoc);

  cuda.def(
      ("lstm_layer_backward" + suffix).c_str(),
      [](const LstmLayerArgs& a, py::handle grad_out, py::handle grad_hn, py::handle grad_cn, py::handle x,
         py::handle w_ih, py::handle w_hh, py::handle gates, py::handle c_prev, py::handle h_prev,
         py::handle grad_x, py::handle grad_h0, py::handle grad_c0, py::handle grad_w_ih, py::handle grad_w_hh,
         py::handle grad_bias, std::uintptr_t stream) {
        const char* op = "lstm_layer_backward";
        Arrays c{op, true};
        const Checked A = layer_backward_arrays(c, a, {grad_out, grad_hn, grad_cn, x, w_ih, w_hh, gates, c_prev,
                                                       h_prev, grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh,
                                                       grad_bias});
        const int64_t T = a.seq_len, B = a.batch, I = a.input_size, H = a.hidden_size;
        cupy().attr("copyto")(grad_c0, grad_cn);
        py::object lengths_owner;
        const Array L = device_lengths(a, op, lengths_owner);
        py::object dz = empty(a.gates_shape()), dz_step = empty({B, 4 * H});
        const Array DZ = cuda_array(dz, op, "dz"), DZS = cuda_array(dz_step, op, "dz_step");
        for (int64_t s = T - 1; s >= 0; --s) {
          // grad_h0 holds the previous iteration's product: the dh of step s for rows live at s + 1.
          lstm_layer_step_backward_cuda(a, s, cptr<float>(A[0]), cptr<float>(A[1]), cptr<float>(A[6]),
                                        cptr<float>(A[7]), cptr<int64_t>(L), cptr<float>(A[10]), mptr<float>(A[11]),
                                        mptr<float>(DZ), mptr<float>(DZS), as_stream(stream));
          matmul(dz_step, w_hh, grad_h0);
        }
        py::object dz_rows = rows(dz, T * B, 4 * H);
        matmul(dz_rows, w_ih, rows(grad_x, T * B, I));
        matmul(dz_rows.attr("T"), rows(x, T * B, I), grad_w_ih);
        matmul(dz_rows.attr("T"), rows(h_prev, T * B, H), grad_w_hh);
        cupy().attr("sum")(dz_rows, py::arg("axis") = 0, py::arg("out") = grad_bias);
      },
      kLayerBackwardDoc);
}

void bind_cuda(py::module_& cuda) {
  bind_cuda_variant(cuda, "", true);
  bind_cuda_variant(cuda, "_reference", false);
  cuda.def("lstm_layer_persistent_fits", &lstm_layer_persistent_fits_cuda, py::arg("args"),
           "Whether the fast layer forward can keep weight_hh in shared memory (one cooperative kernel for all "
           "steps) for these sizes on this device; otherwise it runs the step loop");
  add_family(cuda, "lstm");
}
#endif

}  // namespace

void bind_lstm(py::module_& m) {
  bind_args(m);
  py::module_ cpu = m.attr("cpu");
  bind_cpu<false>(cpu, "");
  bind_cpu<true>(cpu, "_reference");
  add_family(cpu, "lstm");
#ifdef PYFASTDL_WITH_CUDA
  py::module_ cuda = m.attr("cuda");
  bind_cuda(cuda);
#endif
}

}  // namespace pyfastdl
