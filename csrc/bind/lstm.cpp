// Bindings of the lstm family: LstmCellArgs and LstmLayerArgs at the top level of _C, the C++
// kernels in _C.cpu (float32, float64) and the CUDA kernels in _C.cuda (float32). Every array is
// checked for device, dtype, contiguity and the exact shape the Args give, naming the argument.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <vector>

#include "bind/array.h"
#include "common/lstm_args.h"
#include "cpu/lstm.h"
#ifdef PYFASTDL_WITH_CUDA
#include "lstm.h"
#endif

namespace pyfastdl {
namespace {

py::tuple to_tuple(const Shape& s) {
  py::tuple t(s.size());
  for (size_t i = 0; i < s.size(); ++i) t[i] = s[i];
  return t;
}

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
      .def_property_readonly("state_shape", [](const LstmCellArgs& a) { return to_tuple(a.state_shape()); })
      .def_property_readonly("gates_shape", [](const LstmCellArgs& a) { return to_tuple(a.gates_shape()); });

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
      .def_property_readonly("out_shape", [](const LstmLayerArgs& a) { return to_tuple(a.out_shape()); })
      .def_property_readonly("state_shape", [](const LstmLayerArgs& a) { return to_tuple(a.state_shape()); })
      .def_property_readonly("gates_shape", [](const LstmLayerArgs& a) { return to_tuple(a.gates_shape()); })
      .def_property_readonly("saved_state_shape",
                             [](const LstmLayerArgs& a) { return to_tuple(a.saved_state_shape()); });
}

void bind_cpu(py::module_& cpu) {
  cpu.def(
      "lstm_cell_forward",
      [](const LstmCellArgs& a, py::handle x, py::handle hx, py::handle cx, py::handle w_ih, py::handle w_hh,
         py::handle b_ih, py::handle b_hh, py::handle hy, py::handle cy, py::handle gates) {
        Arrays c{"lstm_cell_forward", false};
        const Shape S = a.state_shape(), Gs = a.gates_shape(), G = {4 * a.hidden_size};
        Array X = c.first(x, "input", a.input_shape());
        Array HX = c.get(hx, "hx", S), CX = c.get(cx, "cx", S);
        Array WI = c.get(w_ih, "weight_ih", {4 * a.hidden_size, a.input_size});
        Array WH = c.get(w_hh, "weight_hh", {4 * a.hidden_size, a.hidden_size});
        Array BI = c.optional(b_ih, "bias_ih", G), BH = c.optional(b_hh, "bias_hh", G);
        Array HY = c.get(hy, "hy", S), CY = c.get(cy, "cy", S), GT = c.get(gates, "gates", Gs);
        dispatch(c.dtype, [&](auto t) {
          using T = decltype(t);
          py::gil_scoped_release nogil;
          cpu::lstm_cell_forward<T>(a, cptr<T>(X), cptr<T>(HX), cptr<T>(CX), cptr<T>(WI), cptr<T>(WH), cptr<T>(BI),
                                    cptr<T>(BH), mptr<T>(HY), mptr<T>(CY), mptr<T>(GT));
        });
      },
      "Fused LSTM cell: (args, input, hx, cx, weight_ih, weight_hh, bias_ih|None, bias_hh|None, hy, cy, gates)");

  cpu.def(
      "lstm_cell_backward",
      [](const LstmCellArgs& a, py::handle grad_hy, py::handle grad_cy, py::handle gates, py::handle x, py::handle hx,
         py::handle cx, py::handle w_ih, py::handle w_hh, py::handle grad_x, py::handle grad_hx, py::handle grad_cx,
         py::handle grad_w_ih, py::handle grad_w_hh, py::handle grad_bias) {
        Arrays c{"lstm_cell_backward", false};
        const Shape S = a.state_shape(), Gs = a.gates_shape(), WIs = {4 * a.hidden_size, a.input_size},
                    WHs = {4 * a.hidden_size, a.hidden_size};
        Array GHY = c.first(grad_hy, "grad_hy", S), GCY = c.get(grad_cy, "grad_cy", S);
        Array GT = c.get(gates, "gates", Gs), X = c.get(x, "input", a.input_shape());
        Array HX = c.get(hx, "hx", S), CX = c.get(cx, "cx", S);
        Array WI = c.get(w_ih, "weight_ih", WIs), WH = c.get(w_hh, "weight_hh", WHs);
        Array GX = c.get(grad_x, "grad_input", a.input_shape()), GHX = c.get(grad_hx, "grad_hx", S);
        Array GCX = c.get(grad_cx, "grad_cx", S), GWI = c.get(grad_w_ih, "grad_weight_ih", WIs);
        Array GWH = c.get(grad_w_hh, "grad_weight_hh", WHs), GB = c.get(grad_bias, "grad_bias", {4 * a.hidden_size});
        dispatch(c.dtype, [&](auto t) {
          using T = decltype(t);
          py::gil_scoped_release nogil;
          cpu::lstm_cell_backward<T>(a, cptr<T>(GHY), cptr<T>(GCY), cptr<T>(GT), cptr<T>(X), cptr<T>(HX), cptr<T>(CX),
                                     cptr<T>(WI), cptr<T>(WH), mptr<T>(GX), mptr<T>(GHX), mptr<T>(GCX), mptr<T>(GWI),
                                     mptr<T>(GWH), mptr<T>(GB));
        });
      },
      "Backward of lstm_cell_forward: (args, grad_hy, grad_cy, gates, input, hx, cx, weight_ih, weight_hh, "
      "grad_input, grad_hx, grad_cx, grad_weight_ih, grad_weight_hh, grad_bias)");

  cpu.def(
      "lstm_layer_forward",
      [](const LstmLayerArgs& a, py::handle x, py::handle h0, py::handle c0, py::handle w_ih, py::handle w_hh,
         py::handle b_ih, py::handle b_hh, py::handle out, py::handle hn, py::handle cn, py::handle gates,
         py::handle c_prev, py::handle h_prev) {
        Arrays c{"lstm_layer_forward", false};
        const Shape S = a.state_shape(), SS = a.saved_state_shape(), G = {4 * a.hidden_size};
        Array X = c.first(x, "input", a.input_shape());
        Array H0 = c.get(h0, "h0", S), C0 = c.get(c0, "c0", S);
        Array WI = c.get(w_ih, "weight_ih", {4 * a.hidden_size, a.input_size});
        Array WH = c.get(w_hh, "weight_hh", {4 * a.hidden_size, a.hidden_size});
        Array BI = c.optional(b_ih, "bias_ih", G), BH = c.optional(b_hh, "bias_hh", G);
        Array O = c.get(out, "output", a.out_shape()), HN = c.get(hn, "hn", S), CN = c.get(cn, "cn", S);
        Array GT = c.optional(gates, "gates", a.gates_shape());
        Array CP = c.optional(c_prev, "c_prev", SS), HP = c.optional(h_prev, "h_prev", SS);
        if (gates.is_none() != c_prev.is_none() || c_prev.is_none() != h_prev.is_none())
          throw py::value_error("lstm_layer_forward: gates, c_prev and h_prev must all be arrays (training) or "
                                "all None (inference)");
        dispatch(c.dtype, [&](auto t) {
          using T = decltype(t);
          py::gil_scoped_release nogil;
          cpu::lstm_layer_forward<T>(a, cptr<T>(X), cptr<T>(H0), cptr<T>(C0), cptr<T>(WI), cptr<T>(WH), cptr<T>(BI),
                                     cptr<T>(BH), mptr<T>(O), mptr<T>(HN), mptr<T>(CN), mptr<T>(GT), mptr<T>(CP),
                                     mptr<T>(HP));
        });
      },
      "One LSTM layer and direction over a sequence: (args, input, h0, c0, weight_ih, weight_hh, bias_ih|None, "
      "bias_hh|None, output, hn, cn, gates, c_prev, h_prev); the last three are saved for backward, or all None "
      "(inference)");

  cpu.def(
      "lstm_layer_backward",
      [](const LstmLayerArgs& a, py::handle grad_out, py::handle grad_hn, py::handle grad_cn, py::handle x,
         py::handle w_ih, py::handle w_hh, py::handle gates, py::handle c_prev, py::handle h_prev,
         py::handle grad_x, py::handle grad_h0, py::handle grad_c0, py::handle grad_w_ih, py::handle grad_w_hh,
         py::handle grad_bias) {
        Arrays c{"lstm_layer_backward", false};
        const Shape S = a.state_shape(), SS = a.saved_state_shape(), WIs = {4 * a.hidden_size, a.input_size},
                    WHs = {4 * a.hidden_size, a.hidden_size};
        Array GO = c.first(grad_out, "grad_output", a.out_shape());
        Array GHN = c.get(grad_hn, "grad_hn", S), GCN = c.get(grad_cn, "grad_cn", S);
        Array X = c.get(x, "input", a.input_shape());
        Array WI = c.get(w_ih, "weight_ih", WIs), WH = c.get(w_hh, "weight_hh", WHs);
        Array GT = c.get(gates, "gates", a.gates_shape());
        Array CP = c.get(c_prev, "c_prev", SS), HP = c.get(h_prev, "h_prev", SS);
        Array GX = c.get(grad_x, "grad_input", a.input_shape());
        Array GH0 = c.get(grad_h0, "grad_h0", S), GC0 = c.get(grad_c0, "grad_c0", S);
        Array GWI = c.get(grad_w_ih, "grad_weight_ih", WIs), GWH = c.get(grad_w_hh, "grad_weight_hh", WHs);
        Array GB = c.get(grad_bias, "grad_bias", {4 * a.hidden_size});
        dispatch(c.dtype, [&](auto t) {
          using T = decltype(t);
          py::gil_scoped_release nogil;
          cpu::lstm_layer_backward<T>(a, cptr<T>(GO), cptr<T>(GHN), cptr<T>(GCN), cptr<T>(X), cptr<T>(WI),
                                      cptr<T>(WH), cptr<T>(GT), cptr<T>(CP), cptr<T>(HP), mptr<T>(GX), mptr<T>(GH0),
                                      mptr<T>(GC0), mptr<T>(GWI), mptr<T>(GWH), mptr<T>(GB));
        });
      },
      "Backward of lstm_layer_forward (BPTT): (args, grad_output, grad_hn, grad_cn, input, weight_ih, weight_hh, "
      "gates, c_prev, h_prev, grad_input, grad_h0, grad_c0, grad_weight_ih, grad_weight_hh, grad_bias)");

  add_family(cpu, "lstm");
}

#ifdef PYFASTDL_WITH_CUDA
cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

Array cuda_lengths(const LstmLayerArgs& a, py::handle lengths, const char* op) {
  if (lengths.is_none()) {
    check(!a.has_lengths(), op, ": args has lengths but the lengths array is None");
    return Array{};
  }
  check(a.has_lengths(), op, ": a lengths array was given but args has no lengths");
  Array L = cuda_array(lengths, op, "lengths");
  expect_dtype(L, {DType::i64}, op, "lengths");
  expect_shape(L, {a.batch}, op, "lengths");
  return L;
}

void bind_cuda(py::module_& cuda) {
  cuda.def(
      "lstm_cell_pointwise_forward",
      [](const LstmCellArgs& a, py::handle gates, py::handle b_ih, py::handle b_hh, py::handle cx, py::handle hy,
         py::handle cy, std::uintptr_t stream) {
        Arrays c{"lstm_cell_pointwise_forward", true};
        const Shape S = a.state_shape(), G = {4 * a.hidden_size};
        Array GT = c.first(gates, "gates", a.gates_shape());
        Array BI = c.optional(b_ih, "bias_ih", G), BH = c.optional(b_hh, "bias_hh", G);
        Array CX = c.get(cx, "cx", S), HY = c.get(hy, "hy", S), CY = c.get(cy, "cy", S);
        lstm_cell_pointwise_forward_cuda(a, mptr<float>(GT), cptr<float>(BI), cptr<float>(BH), cptr<float>(CX),
                                         mptr<float>(HY), mptr<float>(CY), as_stream(stream));
      },
      "Fused cell pointwise pass: (args, gates [pre-activations in, activations out], bias_ih|None, bias_hh|None, "
      "cx, hy, cy, stream)");

  cuda.def(
      "lstm_cell_pointwise_backward",
      [](const LstmCellArgs& a, py::handle grad_hy, py::handle grad_cy, py::handle gates, py::handle cx,
         py::handle grad_gates, py::handle grad_cx, std::uintptr_t stream) {
        Arrays c{"lstm_cell_pointwise_backward", true};
        const Shape S = a.state_shape();
        Array GHY = c.first(grad_hy, "grad_hy", S), GCY = c.get(grad_cy, "grad_cy", S);
        Array GT = c.get(gates, "gates", a.gates_shape()), CX = c.get(cx, "cx", S);
        Array GG = c.get(grad_gates, "grad_gates", a.gates_shape()), GCX = c.get(grad_cx, "grad_cx", S);
        lstm_cell_pointwise_backward_cuda(a, cptr<float>(GHY), cptr<float>(GCY), cptr<float>(GT), cptr<float>(CX),
                                          mptr<float>(GG), mptr<float>(GCX), as_stream(stream));
      },
      "Backward of the cell pointwise pass: (args, grad_hy, grad_cy, gates, cx, grad_gates, grad_cx, stream)");

  cuda.def(
      "lstm_layer_step_forward",
      [](const LstmLayerArgs& a, int64_t step, py::handle rec, py::handle b_ih, py::handle b_hh, py::handle lengths,
         py::handle gates, py::handle out, py::handle hn, py::handle cn, py::handle c_prev, py::handle h_prev,
         std::uintptr_t stream) {
        const char* op = "lstm_layer_step_forward";
        check(step >= 0 && step < a.seq_len, op, ": step ", step, " is out of range [0, ", a.seq_len, ")");
        Arrays c{op, true};
        const Shape S = a.state_shape(), SS = a.saved_state_shape(), G = {4 * a.hidden_size};
        Array R = c.first(rec, "rec", {a.batch, 4 * a.hidden_size});
        Array BI = c.optional(b_ih, "bias_ih", G), BH = c.optional(b_hh, "bias_hh", G);
        Array L = cuda_lengths(a, lengths, op);
        Array GT = c.get(gates, "gates", a.gates_shape()), O = c.get(out, "output", a.out_shape());
        Array HN = c.get(hn, "hn", S), CN = c.get(cn, "cn", S);
        Array CP = c.get(c_prev, "c_prev", SS), HP = c.get(h_prev, "h_prev", SS);
        lstm_layer_step_forward_cuda(a, step, cptr<float>(R), cptr<float>(BI), cptr<float>(BH), cptr<int64_t>(L),
                                     mptr<float>(GT), mptr<float>(O), mptr<float>(HN), mptr<float>(CN),
                                     mptr<float>(CP), mptr<float>(HP), as_stream(stream));
      },
      "One step of the layer recurrence after rec = hn @ weight_hh^T: (args, step, rec, bias_ih|None, "
      "bias_hh|None, lengths|None, gates, output, hn, cn, c_prev, h_prev, stream)");

  cuda.def(
      "lstm_layer_step_backward",
      [](const LstmLayerArgs& a, int64_t step, py::handle grad_out, py::handle grad_hn, py::handle gates,
         py::handle c_prev, py::handle lengths, py::handle grad_h, py::handle grad_c, py::handle grad_gates,
         py::handle grad_gates_step, std::uintptr_t stream) {
        const char* op = "lstm_layer_step_backward";
        check(step >= 0 && step < a.seq_len, op, ": step ", step, " is out of range [0, ", a.seq_len, ")");
        Arrays c{op, true};
        const Shape S = a.state_shape();
        Array GO = c.first(grad_out, "grad_output", a.out_shape()), GHN = c.get(grad_hn, "grad_hn", S);
        Array GT = c.get(gates, "gates", a.gates_shape());
        Array CP = c.get(c_prev, "c_prev", a.saved_state_shape());
        Array L = cuda_lengths(a, lengths, op);
        Array GH = c.get(grad_h, "grad_h", S), GC = c.get(grad_c, "grad_c", S);
        Array GG = c.get(grad_gates, "grad_gates", a.gates_shape());
        Array GGS = c.get(grad_gates_step, "grad_gates_step", {a.batch, 4 * a.hidden_size});
        lstm_layer_step_backward_cuda(a, step, cptr<float>(GO), cptr<float>(GHN), cptr<float>(GT), cptr<float>(CP),
                                      cptr<int64_t>(L), cptr<float>(GH), mptr<float>(GC), mptr<float>(GG),
                                      mptr<float>(GGS), as_stream(stream));
      },
      "One step of BPTT: (args, step, grad_output, grad_hn, gates, c_prev, lengths|None, grad_h, grad_c, "
      "grad_gates, grad_gates_step, stream)");

  cuda.def("lstm_layer_persistent_fits", &lstm_layer_persistent_fits_cuda, py::arg("args"),
           "Whether the persistent (W_hh in shared memory) recurrence can run these sizes on this device");

  cuda.def(
      "lstm_layer_persistent_forward",
      [](const LstmLayerArgs& a, py::handle w_hh, py::handle b_ih, py::handle b_hh, py::handle lengths,
         py::handle gates, py::handle out, py::handle hn, py::handle cn, py::handle c_prev, py::handle h_prev,
         py::handle h_buf, std::uintptr_t stream) {
        const char* op = "lstm_layer_persistent_forward";
        Arrays c{op, true};
        const Shape S = a.state_shape(), SS = a.saved_state_shape(), G = {4 * a.hidden_size};
        Array WH = c.first(w_hh, "weight_hh", {4 * a.hidden_size, a.hidden_size});
        Array BI = c.optional(b_ih, "bias_ih", G), BH = c.optional(b_hh, "bias_hh", G);
        Array L = cuda_lengths(a, lengths, op);
        Array GT = c.get(gates, "gates", a.gates_shape()), O = c.get(out, "output", a.out_shape());
        Array HN = c.get(hn, "hn", S), CN = c.get(cn, "cn", S);
        Array CP = c.get(c_prev, "c_prev", SS), HP = c.get(h_prev, "h_prev", SS);
        Array HB = c.get(h_buf, "h_buf", {2, a.batch, a.hidden_size});
        check(lstm_layer_persistent_fits_cuda(a), op, ": batch ", a.batch, " hidden_size ", a.hidden_size,
              " does not fit the persistent kernel on this device (check lstm_layer_persistent_fits first)");
        lstm_layer_persistent_forward_cuda(a, cptr<float>(WH), cptr<float>(BI), cptr<float>(BH), cptr<int64_t>(L),
                                           mptr<float>(GT), mptr<float>(O), mptr<float>(HN), mptr<float>(CN),
                                           mptr<float>(CP), mptr<float>(HP), mptr<float>(HB), as_stream(stream));
      },
      "The whole layer recurrence in one cooperative launch, weight_hh resident in shared memory: (args, "
      "weight_hh, bias_ih|None, bias_hh|None, lengths|None, gates, output, hn, cn, c_prev, h_prev, h_buf, stream)");

  add_family(cuda, "lstm");
}
#endif

}  // namespace

void bind_lstm(py::module_& m) {
  bind_args(m);
  py::module_ cpu = m.attr("cpu");
  bind_cpu(cpu);
#ifdef PYFASTDL_WITH_CUDA
  py::module_ cuda = m.attr("cuda");
  bind_cuda(cuda);
#endif
}

}  // namespace pyfastdl
