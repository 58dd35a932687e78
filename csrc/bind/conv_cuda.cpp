// CUDA bindings of the conv family (placeholder until the CUDA kernels land).
#ifdef PYFASTDL_WITH_CUDA
#include <pybind11/pybind11.h>

namespace pyfastdl {
void bind_conv_cuda(pybind11::module_&) {}
}  // namespace pyfastdl
#endif
