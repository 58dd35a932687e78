// CPU optimizer kernels (csrc/cpu/optim.cpp, compiled once per instruction set, cpu/isa.h): fused
// in-place updates of a list of float or double parameters, each in one pass over its arrays.
#pragma once
#include <vector>

#include "common/optim_args.h"
#include "cpu/isa.h"

// The kernels, as an X-macro of (T, name, (parameters), (arguments)) (see cpu/isa.h).
// sgd_step: state[0] is the momentum buffer (unused when momentum == 0).
// adam_step: state[0..2] are exp_avg, exp_avg_sq, max_exp_avg_sq (the last only with amsgrad).
#define PYFASTDL_OPTIM_KERNELS(X, T)                                                                            \
  X(T, sgd_step_cpu, (const SgdArgs& a, const std::vector<OptimTensor<T>>& params), (a, params))                \
  X(T, adam_step_cpu, (const AdamArgs& a, const std::vector<OptimTensor<T>>& params), (a, params))
PYFASTDL_ISA_DECLARE(PYFASTDL_OPTIM_KERNELS)
