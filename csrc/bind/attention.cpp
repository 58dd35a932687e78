// Bindings of the attention family (placeholder until the family lands).
#include <pybind11/pybind11.h>

namespace pyfastdl {
void bind_attention(pybind11::module_&) {}
}  // namespace pyfastdl
