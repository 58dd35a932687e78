// The LSTM cell's pointwise equations for one hidden unit, written once for the CPU and CUDA kernels.
// Gate order is PyTorch's (i, f, g, o). `Math` supplies sigmoid and tanh (a vectorisable float
// version on the CPU, the hardware intrinsics on the GPU). Plain C++; nvcc sees host+device functions.
//
//   i = sigmoid(zi)  f = sigmoid(zf)  g = tanh(zg)  o = sigmoid(zo)     (z: gate pre-activations)
//   c = f * c_prev + i * g            h = o * tanh(c)
// Backward, from dh and dc (the gradient reaching c from the next step):
//   dc_total = dc + dh * o * (1 - tanh(c)^2)
//   dzi = dc_total * g * i (1 - i)    dzf = dc_total * c_prev * f (1 - f)
//   dzg = dc_total * i * (1 - g^2)    dzo = dh * tanh(c) * o (1 - o)     dc_prev = dc_total * f
#pragma once

#if defined(__CUDACC__)
#define PYFASTDL_HD __host__ __device__ __forceinline__
#else
#define PYFASTDL_HD inline
#endif

namespace pyfastdl {

// z{i,f,g,o}: pre-activations in, activations out. Returns c; writes h.
template <class T, class Math>
PYFASTDL_HD T lstm_unit_forward(T& zi, T& zf, T& zg, T& zo, T c_prev, T& h) {
  zi = Math::sigmoid(zi);
  zf = Math::sigmoid(zf);
  zg = Math::tanh(zg);
  zo = Math::sigmoid(zo);
  const T c = zf * c_prev + zi * zg;
  h = zo * Math::tanh(c);
  return c;
}

// i, f, g, o: the saved activations. d{i,f,g,o}: gradients of the pre-activations. Returns dc_prev.
template <class T, class Math>
PYFASTDL_HD T lstm_unit_backward(T dh, T dc, T i, T f, T g, T o, T c_prev, T& di, T& df, T& dg, T& do_) {
  const T tc = Math::tanh(f * c_prev + i * g);
  const T dct = dc + dh * o * (T(1) - tc * tc);
  di = dct * g * i * (T(1) - i);
  df = dct * c_prev * f * (T(1) - f);
  dg = dct * i * (T(1) - g * g);
  do_ = dh * tc * o * (T(1) - o);
  return dct * f;
}

}  // namespace pyfastdl
