// Bindings of the pooling family: `_C.Pool2dArgs` (shape arithmetic, shared by both devices), the
// CPU kernels on `_C.cpu` and, in the PYFASTDL_WITH_CUDA block, the CUDA kernels on `_C.cuda` (fast
// variant under the plain name, the simple one with a `_reference` suffix, on both devices).
//
//   a = _C.Pool2dArgs.max_pool(x.shape, (3, 3), (2, 2), (1, 1), (1, 1), False)
//   y = xp.empty(a.out_shape, x.dtype); idx = xp.empty(a.out_shape, xp.int64)   # or None
//   _C.cpu.max_pool2d_forward(a, x, y, idx)
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <utility>

#include "bind/array.h"
#include "common/pool_args.h"
#include "cpu/pool.h"
#ifdef PYFASTDL_WITH_CUDA
#include "pool.h"
#endif

namespace pyfastdl {
namespace {

void expect_kind(const char* op, const Pool2dArgs& a, PoolKind kind) {
  check(a.kind == kind, op, ": args were made by Pool2dArgs for ", pool_kind_name(a.kind), ", expected ",
        pool_kind_name(kind));
}

// A float array of the expected shape: float32/float64 on the CPU, float32 on the GPU.
template <bool Cuda>
Array float_array(py::handle obj, const char* op, const char* name, const Shape& shape) {
  Array a = Cuda ? cuda_array(obj, op, name) : cpu_array(obj, op, name);
  if (Cuda)
    expect_dtype(a, {DType::f32}, op, name);
  else
    expect_dtype(a, {DType::f32, DType::f64}, op, name);
  expect_shape(a, shape, op, name);
  return a;
}

// The argmax indices (int64, the output's shape), or a null Array for None.
template <bool Cuda>
Array index_array(py::handle obj, const char* op, const Shape& shape) {
  if (obj.is_none()) return Array{};
  Array a = Cuda ? cuda_array(obj, op, "indices") : cpu_array(obj, op, "indices");
  expect_dtype(a, {DType::i64}, op, "indices");
  expect_shape(a, shape, op, "indices");
  return a;
}

// The CPU kernels' check of max_pool2d_backward's indices (see fail_bad_argmax); on the GPU the
// backward kernels check each index they read (kernels/pool.cu).
void check_argmax(const Pool2dArgs& a, const Array& indices) {
  const int64_t plane = a.h * a.w, n = numel(a.out_shape);
  const int64_t* idx = indices.ptr<int64_t>();
  for (int64_t o = 0; o < n; ++o)
    if (idx[o] < -1 || idx[o] >= plane) fail_bad_argmax(a, o, idx[o]);
}

// The pair of float arrays every pooling kernel reads and writes: (src of src_shape) -> (dst of dst_shape).
template <bool Cuda>
std::pair<Array, Array> float_pair(const char* op, py::handle src, const char* src_name, const Shape& src_shape,
                                   py::handle dst, const char* dst_name, const Shape& dst_shape) {
  Array s = float_array<Cuda>(src, op, src_name, src_shape);
  Array d = float_array<Cuda>(dst, op, dst_name, dst_shape);
  expect_same_dtype(s, d, op, src_name, dst_name);
  return {s, d};
}

// The arrays of avg and adaptive avg: forward input -> output, backward grad_output -> grad_input.
template <bool Cuda>
std::pair<Array, Array> unary_io(const char* op, bool backward, const Pool2dArgs& a, py::handle src,
                                 py::handle dst) {
  if (backward) return float_pair<Cuda>(op, src, "grad_output", a.out_shape, dst, "grad_input", a.in_shape);
  return float_pair<Cuda>(op, src, "input", a.in_shape, dst, "output", a.out_shape);
}

// The arrays of max pooling: forward input -> output plus the argmax indices it may write (None for
// none), backward grad_output -> grad_input plus the indices the forward wrote (required).
struct MaxPoolArrays {
  Array src, dst, indices;
};
template <bool Cuda>
MaxPoolArrays max_pool_arrays(const char* op, bool backward, const Pool2dArgs& a, py::handle src, py::handle dst,
                              py::handle indices) {
  expect_kind(op, a, PoolKind::max);
  const auto io = unary_io<Cuda>(op, backward, a, src, dst);
  check(!backward || !indices.is_none(), op, ": indices are required");
  return {io.first, io.second, index_array<Cuda>(indices, op, a.out_shape)};
}

void bind_args(py::module_& m) {
  py::class_<Pool2dArgs>(m, "Pool2dArgs",
                         "Validated shape arithmetic of one pooling call (build with max_pool, avg_pool or "
                         "adaptive_avg_pool); out_shape is the output's shape")
      .def_static("max_pool", &make_max_pool2d_args, py::arg("input_shape"), py::arg("kernel_size"),
                  py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"))
      .def_static("avg_pool", &make_avg_pool2d_args, py::arg("input_shape"), py::arg("kernel_size"),
                  py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"), py::arg("count_include_pad"),
                  py::arg("divisor_override"), "divisor_override: 0 for none")
      .def_static("adaptive_avg_pool", &make_adaptive_avg_pool2d_args, py::arg("input_shape"),
                  py::arg("output_size"))
      .def_property_readonly("kind", [](const Pool2dArgs& a) { return pool_kind_name(a.kind); })
      .def_property_readonly("in_shape", [](const Pool2dArgs& a) { return as_tuple(a.in_shape); })
      .def_property_readonly("out_shape", [](const Pool2dArgs& a) { return as_tuple(a.out_shape); })
      .def_property_readonly("planes", [](const Pool2dArgs& a) { return a.planes; })
      .def_property_readonly("kernel_size", [](const Pool2dArgs& a) { return as_tuple({a.kh, a.kw}); })
      .def_property_readonly("stride", [](const Pool2dArgs& a) { return as_tuple({a.sh, a.sw}); })
      .def_property_readonly("padding", [](const Pool2dArgs& a) { return as_tuple({a.ph, a.pw}); })
      .def_property_readonly("dilation", [](const Pool2dArgs& a) { return as_tuple({a.dh, a.dw}); })
      .def_property_readonly("ceil_mode", [](const Pool2dArgs& a) { return a.ceil_mode; })
      .def_property_readonly("count_include_pad", [](const Pool2dArgs& a) { return a.count_include_pad; })
      .def_property_readonly("divisor_override", [](const Pool2dArgs& a) { return a.divisor_override; })
      .def("__repr__", [](const Pool2dArgs& a) {
        return std::string("Pool2dArgs(") + pool_kind_name(a.kind) + ", in " + shape_str(a.in_shape) + " -> out " +
               shape_str(a.out_shape) + ")";
      });
}

// The fast kernel, or the reference one (csrc/cpu/pool_reference.cpp) when Reference.
template <bool Reference, class F> F* pick(F* fast, F* reference) { return Reference ? reference : fast; }

// The six CPU kernels of one variant, under their names plus `suffix` ("" or "_reference").
template <bool Reference> void bind_cpu(py::module_& cpu, const std::string& suffix) {
  cpu.def(
      ("max_pool2d_forward" + suffix).c_str(),
      [](const Pool2dArgs& a, py::handle x, py::handle y, py::handle indices) {
        const auto m = max_pool_arrays<false>("max_pool2d_forward", false, a, x, y, indices);
        py::gil_scoped_release nogil;
        with_float_type(m.src.dtype, [&](auto z) {
          using T = decltype(z);
          pick<Reference>(cpu::max_pool2d_forward_cpu<T>, cpu::max_pool2d_forward_reference_cpu<T>)(
              a, m.src.ptr<T>(), m.dst.ptr<T>(), m.indices.ptr<int64_t>());
        });
      },
      py::arg("args"), py::arg("input"), py::arg("output"), py::arg("indices"),
      "output = max over each window; indices (int64 or None) = the argmax, flat within each plane");
  cpu.def(
      ("max_pool2d_backward" + suffix).c_str(),
      [](const Pool2dArgs& a, py::handle gy, py::handle indices, py::handle gx) {
        const auto m = max_pool_arrays<false>("max_pool2d_backward", true, a, gy, gx, indices);
        py::gil_scoped_release nogil;
        check_argmax(a, m.indices);
        with_float_type(m.src.dtype, [&](auto z) {
          using T = decltype(z);
          pick<Reference>(cpu::max_pool2d_backward_cpu<T>, cpu::max_pool2d_backward_reference_cpu<T>)(
              a, m.src.ptr<T>(), m.indices.ptr<int64_t>(), m.dst.ptr<T>());
        });
      },
      py::arg("args"), py::arg("grad_output"), py::arg("indices"), py::arg("grad_input"));

  // avg and adaptive avg: (src) -> (dst), forward from input to output, backward the other way.
  struct Unary {
    const char* name;
    PoolKind kind;
    bool backward;
    void (*f32)(const Pool2dArgs&, const float*, float*);
    void (*f64)(const Pool2dArgs&, const double*, double*);
  };
#define PYFASTDL_UNARY(name, kind, backward)                                                             \
  {#name, kind, backward, pick<Reference>(cpu::name##_cpu<float>, cpu::name##_reference_cpu<float>),      \
   pick<Reference>(cpu::name##_cpu<double>, cpu::name##_reference_cpu<double>)}
  const Unary unary[] = {
      PYFASTDL_UNARY(avg_pool2d_forward, PoolKind::avg, false),
      PYFASTDL_UNARY(avg_pool2d_backward, PoolKind::avg, true),
      PYFASTDL_UNARY(adaptive_avg_pool2d_forward, PoolKind::adaptive_avg, false),
      PYFASTDL_UNARY(adaptive_avg_pool2d_backward, PoolKind::adaptive_avg, true),
  };
#undef PYFASTDL_UNARY
  for (const Unary& u : unary) {
    cpu.def(
        (u.name + suffix).c_str(),
        [u](const Pool2dArgs& a, py::handle src, py::handle dst) {
          expect_kind(u.name, a, u.kind);
          const auto io = unary_io<false>(u.name, u.backward, a, src, dst);
          const Array &S = io.first, &D = io.second;
          py::gil_scoped_release nogil;
          if (S.dtype == DType::f32)
            u.f32(a, S.ptr<float>(), D.ptr<float>());
          else
            u.f64(a, S.ptr<double>(), D.ptr<double>());
        },
        py::arg("args"), py::arg(u.backward ? "grad_output" : "input"),
        py::arg(u.backward ? "grad_input" : "output"));
  }
}

#ifdef PYFASTDL_WITH_CUDA
void bind_cuda(py::module_& cuda) {
  const std::pair<const char*, PoolVariant> variants[] = {{"", PoolVariant::fast},
                                                          {"_reference", PoolVariant::reference}};
  for (auto [suffix, v] : variants) {
    auto name = [suffix = suffix](const char* base) { return std::string(base) + suffix; };
    cuda.def(
        name("max_pool2d_forward").c_str(),
        [v = v](const Pool2dArgs& a, py::handle x, py::handle y, py::handle indices, std::uintptr_t stream) {
          const auto m = max_pool_arrays<true>("max_pool2d_forward", false, a, x, y, indices);
          max_pool2d_forward_cuda(a, m.src.ptr<float>(), m.dst.ptr<float>(), m.indices.ptr<int64_t>(), v,
                                  reinterpret_cast<cudaStream_t>(stream));
        },
        py::arg("args"), py::arg("input"), py::arg("output"), py::arg("indices"), py::arg("stream"));
    cuda.def(
        name("max_pool2d_backward").c_str(),
        [v = v](const Pool2dArgs& a, py::handle gy, py::handle indices, py::handle gx, std::uintptr_t stream) {
          const auto m = max_pool_arrays<true>("max_pool2d_backward", true, a, gy, gx, indices);
          max_pool2d_backward_cuda(a, m.src.ptr<float>(), m.indices.ptr<int64_t>(), m.dst.ptr<float>(), v,
                                   reinterpret_cast<cudaStream_t>(stream));
        },
        py::arg("args"), py::arg("grad_output"), py::arg("indices"), py::arg("grad_input"), py::arg("stream"));

    struct Unary {
      const char* name;
      PoolKind kind;
      bool backward;
      void (*f)(const Pool2dArgs&, const float*, float*, PoolVariant, cudaStream_t);
    };
    const Unary unary[] = {
        {"avg_pool2d_forward", PoolKind::avg, false, avg_pool2d_forward_cuda},
        {"avg_pool2d_backward", PoolKind::avg, true, avg_pool2d_backward_cuda},
        {"adaptive_avg_pool2d_forward", PoolKind::adaptive_avg, false, adaptive_avg_pool2d_forward_cuda},
        {"adaptive_avg_pool2d_backward", PoolKind::adaptive_avg, true, adaptive_avg_pool2d_backward_cuda},
    };
    for (const Unary& u : unary) {
      cuda.def(
          name(u.name).c_str(),
          [u, v = v](const Pool2dArgs& a, py::handle src, py::handle dst, std::uintptr_t stream) {
            expect_kind(u.name, a, u.kind);
            const auto io = unary_io<true>(u.name, u.backward, a, src, dst);
            const Array &S = io.first, &D = io.second;
            u.f(a, S.ptr<float>(), D.ptr<float>(), v, reinterpret_cast<cudaStream_t>(stream));
          },
          py::arg("args"), py::arg(u.backward ? "grad_output" : "input"),
          py::arg(u.backward ? "grad_input" : "output"), py::arg("stream"));
    }
  }
  add_family(cuda, "pool");
}
#endif

}  // namespace

void bind_pool(py::module_& m) {
  bind_args(m);
  auto cpu = m.attr("cpu").cast<py::module_>();
  bind_cpu<false>(cpu, "");
  bind_cpu<true>(cpu, "_reference");
  add_family(cpu, "pool");
#ifdef PYFASTDL_WITH_CUDA
  auto cuda = m.attr("cuda").cast<py::module_>();
  bind_cuda(cuda);
#endif
}

}  // namespace pyfastdl
