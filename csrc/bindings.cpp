// pyfastdl._C: the compiled half of pyfastdl.
//
//   _C.cpu   the C++ kernels (always present)
//   _C.cuda  the CUDA kernels (present when the package was built with nvcc)
//
// Each kernel family (conv, pool, lstm, attention; on the CPU also norm, softmax, optim, activation) binds itself from csrc/bind/<family>.cpp: its
// argument struct at the top level (shared by both devices), its functions in each device submodule
// (the CUDA ones in a #ifdef PYFASTDL_WITH_CUDA block of the same file), and its name in FAMILIES.
#include <omp.h>
#include <pybind11/pybind11.h>

#include <string>

#include "cpu/gemm.h"
#include "cpu/isa.h"

#ifdef PYFASTDL_WITH_CUDA
#include "runtime.h"
#endif

namespace py = pybind11;

namespace pyfastdl {
void bind_conv(py::module_& m);
void bind_pool(py::module_& m);
void bind_lstm(py::module_& m);
void bind_attention(py::module_& m);
void bind_norm(py::module_& m);
void bind_softmax(py::module_& m);
void bind_optim(py::module_& m);
void bind_gemm(py::module_& m);
void bind_activation(py::module_& m);
void bind_memory(py::module_& m);
}  // namespace pyfastdl


PYBIND11_MODULE(_C, m) {
  m.doc() = "pyfastdl's compiled kernels (CPU in _C.cpu, CUDA in _C.cuda when built with nvcc)";

  auto cpu = m.def_submodule("cpu", "C++ kernels: OpenMP, vectorised, OpenBLAS for matrix products");
  pyfastdl::cpu::pin_blas_to_one_thread();
  cpu.attr("FAMILIES") = py::list();
  cpu.def("get_num_threads", [] { return omp_get_max_threads(); }, "OpenMP threads the CPU kernels use");
  cpu.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
        omp_set_num_threads(n);
      },
      py::arg("n"),
      "Set the threads of the CPU kernels' one pool, OpenMP's (OpenBLAS stays at one thread: the team "
      "splits large matrix products itself)");
  cpu.def("best_isa", [] { return pyfastdl::cpu::isa_name(pyfastdl::cpu::best_isa()); },
          "Widest instruction set ('base', 'avx2', 'avx512') this build has and this CPU supports");
  cpu.def(
      "available_isas",
      [] {
        py::list names;
        for (auto isa : {pyfastdl::cpu::Isa::base, pyfastdl::cpu::Isa::avx2, pyfastdl::cpu::Isa::avx512})
          if (pyfastdl::cpu::isa_available(isa)) names.append(pyfastdl::cpu::isa_name(isa));
        return names;
      },
      "Instruction sets set_isa accepts (this build has them and this CPU supports them), narrowest first");
  cpu.def("get_isa", [] { return pyfastdl::cpu::isa_name(pyfastdl::cpu::active_isa()); },
          "Instruction set the CPU kernels (every family: each is compiled once per set) use now");
  cpu.def("set_isa", [](const std::string& name) { pyfastdl::cpu::set_isa(name.c_str()); }, py::arg("name"),
          "Use a narrower instruction set ('base', 'avx2') for every CPU kernel family, or the best again; "
          "ValueError for a set this CPU lacks or this build left out");

#ifdef PYFASTDL_WITH_CUDA
  m.attr("WITH_CUDA") = true;
  m.attr("CUDA_ARCHITECTURES") = PYFASTDL_CUDA_ARCHS;
  auto cuda = m.def_submodule("cuda", "CUDA kernels, launched on the caller's (cupy's) stream");
  cuda.attr("FAMILIES") = py::list();
  cuda.def("device_count", &pyfastdl::cuda_device_count,
           "Number of CUDA devices; raises RuntimeError with the runtime's reason when none is usable");
  cuda.def("runtime_version", &pyfastdl::cuda_runtime_version, "CUDA runtime version compiled in, e.g. 13000");
#else
  m.attr("WITH_CUDA") = false;
  m.attr("CUDA_ARCHITECTURES") = "";
#endif

  pyfastdl::bind_conv(m);
  pyfastdl::bind_pool(m);
  pyfastdl::bind_lstm(m);
  pyfastdl::bind_attention(m);
  pyfastdl::bind_norm(m);
  pyfastdl::bind_softmax(m);
  pyfastdl::bind_optim(m);
  pyfastdl::bind_gemm(m);
  pyfastdl::bind_activation(m);
  pyfastdl::bind_memory(m);
}
