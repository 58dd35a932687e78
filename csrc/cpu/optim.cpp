// Fused optimizer updates on the CPU: SGD (momentum, dampening, Nesterov, L2 weight decay) and
// Adam / AdamW (bias correction, AMSGrad), in torch's formulas and operation order.
//
// Algorithm. An update is elementwise: each value of a parameter reads its gradient and state and
// writes itself and its state, so the whole update of one value happens in registers, in one pass:
//   SGD:   g = grad + wd p;  buf = g (first step) or momentum buf + (1 - dampening) g;
//          g = g + momentum buf (Nesterov) or buf;  p -= lr g
//   Adam:  g = grad + wd p (Adam) or p *= 1 - lr wd (AdamW);  m += (1 - beta1)(g - m);
//          v = beta2 v + (1 - beta2) g^2;  vmax = max(vmax, v) (AMSGrad);
//          p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// numpy needs a temporary array and a pass per operator (about ten passes for Adam). Here one call
// covers every parameter of a group: the list is cut into chunks of at most kChunk values (a small
// tensor is one chunk), and OpenMP splits the chunks between threads, so a network of many small
// tensors costs one fork, not one per tensor.
//
// Cost. SGD with momentum moves 4 arrays (read p, g, buf; write p, buf), Adam 6 (8 with AMSGrad)
// per value, a handful of flops each: bound by memory bandwidth once the parameters leave the cache.
#include "cpu/optim.h"

#include <algorithm>
#include <cmath>

#include "cpu/vec.h"

namespace pyfastdl::cpu::PYFASTDL_ISA {
namespace {

constexpr int64_t kChunk = int64_t{1} << 14;  // values per work item

struct Chunk {
  int64_t tensor, begin, end;
};

// Calls f(tensor, begin, end) for every chunk of the list, the chunks split between threads.
template <class T, class F>
void for_each_chunk(const std::vector<OptimTensor<T>>& ts, F f) {
  std::vector<Chunk> chunks;
  for (int64_t i = 0; i < int64_t(ts.size()); ++i)
    for (int64_t b = 0; b < ts[i].n; b += kChunk) chunks.push_back({i, b, std::min(ts[i].n, b + kChunk)});
  const int64_t count = int64_t(chunks.size());
#pragma omp parallel for schedule(static) if (total_size(ts) >= kParallelMin)
  for (int64_t c = 0; c < count; ++c) f(ts[chunks[c].tensor], chunks[c].begin, chunks[c].end);
}

}  // namespace

template <class T>
void sgd_step_cpu(const SgdArgs& a, const std::vector<OptimTensor<T>>& params) {
  const T lr = T(a.lr), wd = T(a.weight_decay), mom = T(a.momentum), keep = T(1 - a.dampening);
  const bool momentum = a.momentum != 0, nesterov = a.nesterov;
  for_each_chunk(params, [&](const OptimTensor<T>& t, int64_t b, int64_t e) {
    T* __restrict p = t.param;
    const T* __restrict grad = t.grad;
    T* __restrict buf = t.state[0];
    const bool init = t.init;
#pragma omp simd
    for (int64_t i = b; i < e; ++i) {
      T g = grad[i] + wd * p[i];
      if (momentum) {
        const T bv = init ? g : mom * buf[i] + keep * g;
        buf[i] = bv;
        g = nesterov ? g + mom * bv : bv;
      }
      p[i] -= lr * g;
    }
  });
}

template <class T>
void adam_step_cpu(const AdamArgs& a, const std::vector<OptimTensor<T>>& params) {
  const T wd = T(a.weight_decay), beta2 = T(a.beta2), one_m_beta1 = T(1 - a.beta1), one_m_beta2 = T(1 - a.beta2);
  const T eps = T(a.eps), shrink = T(1 - a.lr * a.weight_decay);
  const bool decoupled = a.decoupled, amsgrad = a.amsgrad;
  for_each_chunk(params, [&](const OptimTensor<T>& t, int64_t b, int64_t e) {
    const double s = double(t.step);
    const T step_size = T(a.lr / (1 - std::pow(a.beta1, s)));
    const T bc2_sqrt = T(std::sqrt(1 - std::pow(a.beta2, s)));
    T* __restrict p = t.param;
    const T* __restrict grad = t.grad;
    T* __restrict m = t.state[0];
    T* __restrict v = t.state[1];
    T* __restrict vmax = t.state[2];
#pragma omp simd
    for (int64_t i = b; i < e; ++i) {
      T g = grad[i];
      T pv = p[i];
      if (decoupled)
        pv *= shrink;
      else
        g += wd * pv;
      const T mv = m[i] + one_m_beta1 * (g - m[i]);
      const T vv = v[i] * beta2 + one_m_beta2 * g * g;
      m[i] = mv;
      v[i] = vv;
      T second = vv;
      if (amsgrad) {
        second = vmax[i] > vv ? vmax[i] : vv;
        vmax[i] = second;
      }
      p[i] = pv - step_size * (mv / (std::sqrt(second) / bc2_sqrt + eps));
    }
  });
}

PYFASTDL_ISA_INSTANTIATE(PYFASTDL_OPTIM_KERNELS)

}  // namespace pyfastdl::cpu::PYFASTDL_ISA
