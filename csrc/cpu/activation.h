// CPU activation kernels: ReLU, leaky ReLU, GLU, dropout (csrc/cpu/activation.cpp, compiled once per instruction set, cpu/isa.h):
// float and double, contiguous, any shape (element-wise over a.numel values).
#pragma once
#include <cstdint>

#include "common/activation_args.h"
#include "cpu/isa.h"

// The kernels, as an X-macro of (T, name, (parameters), (arguments)) (see cpu/isa.h).
// leaky_relu_forward: y = x > 0 ? x : slope * x (ReLU when a.negative_slope == 0).
// leaky_relu_backward: grad_x from grad_y and ref, positive exactly where x is (common/activation_args.h).
// glu_forward: y = a * sigmoid(b); glu_backward: grad_x (x's shape) from x and grad_y.
// dropout_forward: y and the kept mask from x, the mask drawn from seed's stream (cpu/splitmix.h);
// dropout_backward: grad_x from the mask.
#define PYFASTDL_ACTIVATION_KERNELS(X, T)                                                               \
  X(T, leaky_relu_forward_cpu, (const ActivationArgs& a, const T* x, T* y), (a, x, y))                  \
  X(T, leaky_relu_backward_cpu, (const ActivationArgs& a, const T* ref, const T* grad_y, T* grad_x),    \
    (a, ref, grad_y, grad_x))                                                                           \
  X(T, glu_forward_cpu, (const GluArgs& a, const T* x, T* y), (a, x, y))                                \
  X(T, glu_backward_cpu, (const GluArgs& a, const T* x, const T* grad_y, T* grad_x), (a, x, grad_y, grad_x))  \
  X(T, dropout_forward_cpu, (const DropoutArgs& a, const T* x, uint64_t seed, T* y, uint8_t* keep),          \
    (a, x, seed, y, keep))                                                                              \
  X(T, dropout_backward_cpu, (const DropoutArgs& a, const T* grad_y, const uint8_t* keep, T* grad_x),         \
    (a, grad_y, keep, grad_x))
PYFASTDL_ISA_DECLARE(PYFASTDL_ACTIVATION_KERNELS)
