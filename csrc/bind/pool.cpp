// Bindings of the pool family (placeholder until the family lands).
#include <pybind11/pybind11.h>

namespace pyfastdl {
void bind_pool(pybind11::module_&) {}
}  // namespace pyfastdl
