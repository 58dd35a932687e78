// Bindings of the conv family (placeholder until the family lands).
#include <pybind11/pybind11.h>

namespace pyfastdl {
void bind_conv(pybind11::module_&) {}
}  // namespace pyfastdl
