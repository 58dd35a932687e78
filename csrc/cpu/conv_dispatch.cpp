// The convolution family's entry points that choose: the Winograd kernels' copy for the instruction
// set in use (cpu/isa.h), and the "fast" variant's choice of algorithm per shape.
#include <stdexcept>
#include <string>

#include "cpu/conv2d.h"
#include "cpu/conv_winograd.h"
#include "cpu/isa.h"

namespace pyfastdl::cpu {
namespace {

#if defined(PYFASTDL_HAVE_X86_ISAS)
#define PYFASTDL_ISA_CALL(fn, ...)                          \
  switch (active_isa()) {                                   \
    case Isa::avx512: return avx512::fn<T>(__VA_ARGS__);    \
    case Isa::avx2: return avx2::fn<T>(__VA_ARGS__);        \
    default: return base::fn<T>(__VA_ARGS__);               \
  }
#else
#define PYFASTDL_ISA_CALL(fn, ...) return base::fn<T>(__VA_ARGS__);
#endif

void check_winograd(const Conv2dArgs& a, const char* op) {
  check(winograd_applies(a), op, ": the winograd variant needs a 3x3 kernel, stride 1, dilation 1, groups 1 and "
        "equal padding <= 2; got kernel (", a.R, ", ", a.S, "), stride (", a.stride_h, ", ", a.stride_w,
        "), dilation (", a.dil_h, ", ", a.dil_w, "), groups ", a.groups, ", padding (", a.pad_h, ", ", a.pad_w, ")");
}

// Whether Winograd beats im2col + GEMM: measured on the models' shapes (conv_winograd.cpp's table),
// it loses only where the channels are too few for its products to outweigh its transforms.
bool winograd_pays(const Conv2dArgs& a) { return winograd_applies(a) && a.C >= 8 && a.K >= 8; }

}  // namespace

template <class T>
void conv2d_forward_winograd_cpu(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y) {
  check_winograd(a, "conv2d_forward_winograd");
  PYFASTDL_ISA_CALL(conv2d_forward_winograd, a, x, w, bias, y)
}

template <class T>
void conv2d_backward_input_winograd_cpu(const Conv2dArgs& a, const T* dy, const T* w, T* dx) {
  check_winograd(a, "conv2d_backward_input_winograd");
  PYFASTDL_ISA_CALL(conv2d_backward_input_winograd, a, dy, w, dx)
}

template <class T>
void conv2d_backward_weight_winograd_cpu(const Conv2dArgs& a, const T* x, const T* dy, T* dw) {
  check_winograd(a, "conv2d_backward_weight_winograd");
  PYFASTDL_ISA_CALL(conv2d_backward_weight_winograd, a, x, dy, dw)
}

template <class T>
void conv2d_forward_cpu(const Conv2dArgs& a, const T* x, const T* w, const T* bias, T* y) {
  if (winograd_pays(a)) return conv2d_forward_winograd_cpu(a, x, w, bias, y);
  conv2d_forward_im2col_cpu(a, x, w, bias, y);
}

template <class T>
void conv2d_backward_input_cpu(const Conv2dArgs& a, const T* dy, const T* w, T* dx) {
  if (winograd_pays(a)) return conv2d_backward_input_winograd_cpu(a, dy, w, dx);
  conv2d_backward_input_im2col_cpu(a, dy, w, dx);
}

template <class T>
void conv2d_backward_weight_cpu(const Conv2dArgs& a, const T* x, const T* dy, T* dw) {
  if (winograd_pays(a)) return conv2d_backward_weight_winograd_cpu(a, x, dy, dw);
  conv2d_backward_weight_im2col_cpu(a, x, dy, dw);
}

#define PYFASTDL_INSTANTIATE(T)                                                                              \
  template void conv2d_forward_winograd_cpu<T>(const Conv2dArgs&, const T*, const T*, const T*, T*);         \
  template void conv2d_backward_input_winograd_cpu<T>(const Conv2dArgs&, const T*, const T*, T*);            \
  template void conv2d_backward_weight_winograd_cpu<T>(const Conv2dArgs&, const T*, const T*, T*);           \
  template void conv2d_forward_cpu<T>(const Conv2dArgs&, const T*, const T*, const T*, T*);                  \
  template void conv2d_backward_input_cpu<T>(const Conv2dArgs&, const T*, const T*, T*);                     \
  template void conv2d_backward_weight_cpu<T>(const Conv2dArgs&, const T*, const T*, T*);
PYFASTDL_INSTANTIATE(float)
PYFASTDL_INSTANTIATE(double)
#undef PYFASTDL_INSTANTIATE

}  // namespace pyfastdl::cpu
