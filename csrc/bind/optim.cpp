// Bindings of the optimizer family: `_C.SgdArgs` / `_C.AdamArgs` (validated hyper-parameters) and
// the fused CPU updates on `_C.cpu`, each over a list of parameters of one dtype, in place.
// The GPU path of the optimizers is array code in pyfastdl.optim (cupy).
//
//   a = _C.AdamArgs(lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad)
//   _C.cpu.adam_step(a, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs_or_None, steps)
//   a = _C.SgdArgs(lr, momentum, dampening, weight_decay, nesterov)
//   _C.cpu.sgd_step(a, params, grads, momentum_buffers_or_None, new_buffer_flags)
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bind/array.h"
#include "common/optim_args.h"
#include "cpu/optim.h"

namespace pyfastdl {
namespace {

// The float dtype of a parameter list (that of its first parameter; float32 or float64).
DType list_dtype(const char* op, const py::list& params) {
  check(params.size() > 0, op, ": params is empty");
  Array p = cpu_array(params[0], op, "params[0]");
  expect_dtype(p, {DType::f32, DType::f64}, op, "params[0]");
  return p.dtype;
}

// Builds the kernel's parameter list from Python lists of arrays (state lists may be None), checking
// that every array is a contiguous numpy array of the parameter's shape and of the list's dtype.
template <class T>
std::vector<OptimTensor<T>> gather(const char* op, DType dt, const py::list& params, const py::list& grads,
                                   const std::vector<py::object>& states, const std::vector<const char*>& names) {
  const size_t n = params.size();
  check(grads.size() == n, op, ": got ", n, " params but ", grads.size(), " grads");
  for (size_t s = 0; s < states.size(); ++s) {
    const size_t len = states[s].is_none() ? n : py::len(states[s]);
    check(len == n, op, ": got ", n, " params but ", len, " ", names[s]);
  }
  std::vector<OptimTensor<T>> out(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string at = "[" + std::to_string(i) + "]";
    const Array P = cpu_array(params[i], op, ("params" + at).c_str());
    expect_dtype(P, {dt}, op, ("params" + at).c_str());
    out[i].param = P.ptr<T>();
    out[i].grad = cpu_operand(grads[i], op, ("grads" + at).c_str(), P.shape, dt).ptr<T>();
    out[i].n = numel(P.shape);
    for (size_t s = 0; s < states.size(); ++s)
      if (!states[s].is_none())
        out[i].state[s] = cpu_operand(states[s][py::int_(i)], op, (names[s] + at).c_str(), P.shape, dt).ptr<T>();
  }
  total_size(out);
  return out;
}

void bind_args(py::module_& m) {
  py::class_<SgdArgs>(m, "SgdArgs", "Validated hyper-parameters of one SGD update")
      .def(py::init(&make_sgd_args), py::arg("lr"), py::arg("momentum"), py::arg("dampening"),
           py::arg("weight_decay"), py::arg("nesterov"))
      .def_readonly("lr", &SgdArgs::lr)
      .def_readonly("momentum", &SgdArgs::momentum)
      .def_readonly("dampening", &SgdArgs::dampening)
      .def_readonly("weight_decay", &SgdArgs::weight_decay)
      .def_readonly("nesterov", &SgdArgs::nesterov);
  py::class_<AdamArgs>(m, "AdamArgs", "Validated hyper-parameters of one Adam (decoupled: AdamW) update")
      .def(py::init(&make_adam_args), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
           py::arg("weight_decay"), py::arg("decoupled"), py::arg("amsgrad"))
      .def_readonly("lr", &AdamArgs::lr)
      .def_readonly("beta1", &AdamArgs::beta1)
      .def_readonly("beta2", &AdamArgs::beta2)
      .def_readonly("eps", &AdamArgs::eps)
      .def_readonly("weight_decay", &AdamArgs::weight_decay)
      .def_readonly("decoupled", &AdamArgs::decoupled)
      .def_readonly("amsgrad", &AdamArgs::amsgrad);
}

void bind_cpu(py::module_& cpu) {
  cpu.def(
      "sgd_step",
      [](const SgdArgs& a, const py::list& params, const py::list& grads, const py::object& momentum_buffers,
         const std::vector<bool>& new_buffers) {
        const char* op = "sgd_step";
        const DType dt = list_dtype(op, params);
        check(a.momentum == 0 || !momentum_buffers.is_none(), op, ": momentum_buffers are required with momentum");
        const py::object bufs = a.momentum == 0 ? py::none() : momentum_buffers;
        check(bufs.is_none() || new_buffers.size() == params.size(), op, ": got ", params.size(), " params but ",
              new_buffers.size(), " new_buffers flags");
        with_float_type(dt, [&](auto z) {
          using T = decltype(z);
          auto ts = gather<T>(op, dt, params, grads, {bufs}, {"momentum_buffers"});
          for (size_t i = 0; i < ts.size() && !bufs.is_none(); ++i) ts[i].init = new_buffers[i];
          py::gil_scoped_release nogil;
          cpu::sgd_step_cpu<T>(a, ts);
        });
      },
      py::arg("args"), py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("new_buffers"),
      "in place: params (and momentum buffers; a new buffer, flagged True, becomes the gradient)");
  cpu.def(
      "adam_step",
      [](const AdamArgs& a, const py::list& params, const py::list& grads, const py::list& exp_avgs,
         const py::list& exp_avg_sqs, const py::object& max_exp_avg_sqs, const std::vector<int64_t>& steps) {
        const char* op = "adam_step";
        const DType dt = list_dtype(op, params);
        check(!a.amsgrad || !max_exp_avg_sqs.is_none(), op, ": max_exp_avg_sqs are required with amsgrad");
        check(steps.size() == params.size(), op, ": got ", params.size(), " params but ", steps.size(), " steps");
        for (int64_t s : steps) check(s >= 1, op, ": steps must be >= 1, got ", s);
        with_float_type(dt, [&](auto z) {
          using T = decltype(z);
          auto ts = gather<T>(op, dt, params, grads, {exp_avgs, exp_avg_sqs, a.amsgrad ? max_exp_avg_sqs : py::none()},
                              {"exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"});
          for (size_t i = 0; i < ts.size(); ++i) ts[i].step = steps[i];
          py::gil_scoped_release nogil;
          cpu::adam_step_cpu<T>(a, ts);
        });
      },
      py::arg("args"), py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
      py::arg("max_exp_avg_sqs"), py::arg("steps"),
      "in place: params and their moments; steps[i] is parameter i's step count after this update");
  add_family(cpu, "optim");
}

}  // namespace

void bind_optim(py::module_& m) {
  bind_args(m);
  auto cpu = m.attr("cpu").cast<py::module_>();
  bind_cpu(cpu);
}

}  // namespace pyfastdl
