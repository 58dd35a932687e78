// Winograd F(4x4, 3x3) convolution kernels (see conv_winograd.cpp), compiled once per instruction set
// (cpu/isa.h) and called through the dispatchers in conv_dispatch.cpp. Same arrays and shapes as
// conv2d.h; only 3x3 kernels with stride 1, dilation 1, groups 1 and padding <= 2 (winograd_applies).
#pragma once
#include "common/conv_args.h"

namespace pyfastdl::cpu {

inline bool winograd_applies(const Conv2dArgs& a) {
  return a.R == 3 && a.S == 3 && a.stride_h == 1 && a.stride_w == 1 && a.dil_h == 1 && a.dil_w == 1 &&
         a.groups == 1 && a.pad_h == a.pad_w && a.pad_h <= 2;
}

// The dispatching entry points (a ValueError-style std::invalid_argument when !winograd_applies(a)).
template <class T>
void conv2d_forward_winograd_cpu(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y);
template <class T>
void conv2d_backward_input_winograd_cpu(const Conv2dArgs& a, const T* dy, const T* w, T* dx);
template <class T>
void conv2d_backward_weight_winograd_cpu(const Conv2dArgs& a, const T* x, const T* dy, T* dw);

}  // namespace pyfastdl::cpu

// The per-instruction-set copies.
#define PYFASTDL_CONV_WINOGRAD_KERNELS                                                                   \
  template <class T>                                                                                     \
  void conv2d_forward_winograd(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y);        \
  template <class T>                                                                                     \
  void conv2d_backward_input_winograd(const Conv2dArgs& a, const T* dy, const T* w, T* dx);              \
  template <class T>                                                                                     \
  void conv2d_backward_weight_winograd(const Conv2dArgs& a, const T* x, const T* dy, T* dw);

#define PYFASTDL_CONV_WINOGRAD_INSTANTIATE(T)                                                            \
  template void conv2d_forward_winograd<T>(const Conv2dArgs&, const T*, const T*, const T*, T*);         \
  template void conv2d_backward_input_winograd<T>(const Conv2dArgs&, const T*, const T*, T*);            \
  template void conv2d_backward_weight_winograd<T>(const Conv2dArgs&, const T*, const T*, T*);

namespace pyfastdl::cpu {
namespace base { PYFASTDL_CONV_WINOGRAD_KERNELS }
namespace avx2 { PYFASTDL_CONV_WINOGRAD_KERNELS }
namespace avx512 { PYFASTDL_CONV_WINOGRAD_KERNELS }
}  // namespace pyfastdl::cpu
