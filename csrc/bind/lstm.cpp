// Bindings of the lstm family (placeholder until the family lands).
#include <pybind11/pybind11.h>

namespace pyfastdl {
void bind_lstm(pybind11::module_&) {}
}  // namespace pyfastdl
