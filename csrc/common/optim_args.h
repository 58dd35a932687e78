// Hyper-parameters of the optimizer family (SGD, Adam, AdamW), validated in one place, and the
// per-parameter view the fused update kernels take. Plain C++.
//
// One call updates a whole list of parameters (all of one dtype): each entry names the parameter,
// its gradient and its state arrays (n values each) and its own step count, so a parameter group is
// one kernel call however many tensors it holds.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/check.h"

namespace pyfastdl {

struct SgdArgs {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
};

struct AdamArgs {
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  bool decoupled = false;  // AdamW: p *= 1 - lr * weight_decay instead of g += weight_decay * p
  bool amsgrad = false;
};

// One parameter of a fused update: n values each in param, grad and the state arrays in use.
template <class T>
struct OptimTensor {
  T* param = nullptr;
  const T* grad = nullptr;
  T* state[3] = {nullptr, nullptr, nullptr};  // SGD: momentum buffer; Adam: exp_avg, exp_avg_sq, max_exp_avg_sq
  int64_t n = 0;
  int64_t step = 0;    // Adam: the step count after this update (>= 1)
  bool init = false;   // SGD: the momentum buffer is new (it becomes the gradient)
};

namespace detail {
inline void check_hyper(const char* op, const char* name, double v, double lo, double hi = HUGE_VAL) {
  check(std::isfinite(v) && v >= lo && v <= hi, op, ": invalid ", name, "=", v, " (must be in [", lo, ", ", hi,
        "])");
}
}  // namespace detail

inline SgdArgs make_sgd_args(double lr, double momentum, double dampening, double weight_decay, bool nesterov) {
  const char* op = "SGD";
  detail::check_hyper(op, "lr", lr, 0);
  detail::check_hyper(op, "momentum", momentum, 0);
  detail::check_hyper(op, "dampening", dampening, -HUGE_VAL);
  detail::check_hyper(op, "weight_decay", weight_decay, 0);
  check(!nesterov || (momentum > 0 && dampening == 0), op, ": nesterov momentum requires a momentum and zero dampening");
  return SgdArgs{lr, momentum, dampening, weight_decay, nesterov};
}

inline AdamArgs make_adam_args(double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled,
                               bool amsgrad) {
  const char* op = decoupled ? "AdamW" : "Adam";
  detail::check_hyper(op, "lr", lr, 0);
  detail::check_hyper(op, "beta1", beta1, 0, std::nextafter(1.0, 0.0));
  detail::check_hyper(op, "beta2", beta2, 0, std::nextafter(1.0, 0.0));
  detail::check_hyper(op, "eps", eps, 0);
  detail::check_hyper(op, "weight_decay", weight_decay, 0);
  return AdamArgs{lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad};
}

// The total size of a parameter list (64-bit, overflow checked).
template <class T>
int64_t total_size(const std::vector<OptimTensor<T>>& ts) {
  int64_t total = 0;
  for (const auto& t : ts) {
    check(t.n <= std::numeric_limits<int64_t>::max() - total, "optimizer: total parameter size overflows 64 bits");
    total += t.n;
  }
  return total;
}

}  // namespace pyfastdl
