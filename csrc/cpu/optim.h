// CPU optimizer kernels (csrc/cpu/optim.cpp): fused in-place updates of a list of float or double
// parameters, each in one pass over its arrays.
#pragma once
#include <vector>

#include "common/optim_args.h"

namespace pyfastdl::cpu {

// state[0]: the momentum buffer (unused when momentum == 0).
template <class T> void sgd_step_cpu(const SgdArgs& a, const std::vector<OptimTensor<T>>& params);
// state[0..2]: exp_avg, exp_avg_sq, max_exp_avg_sq (the last only with amsgrad).
template <class T> void adam_step_cpu(const AdamArgs& a, const std::vector<OptimTensor<T>>& params);

}  // namespace pyfastdl::cpu
