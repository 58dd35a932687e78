// CUDA bindings of the attention family (placeholder until the CUDA kernels land).
#ifdef PYFASTDL_WITH_CUDA
#include <pybind11/pybind11.h>

namespace pyfastdl {
void bind_attention_cuda(pybind11::module_&) {}
}  // namespace pyfastdl
#endif
