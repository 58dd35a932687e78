// Turning Python arrays into raw views for the kernels, with the checks every binding needs.
// CPU bindings take numpy arrays; CUDA bindings take any object with __cuda_array_interface__
// (cupy arrays) plus the stream to launch on. Wrong type -> TypeError, wrong layout or shape ->
// ValueError, each naming the operation and the argument.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "common/check.h"

namespace pyfastdl {
namespace py = pybind11;

enum class DType { f16, bf16, f32, f64, i32, i64, u8, u16, b8 };
const char* dtype_name(DType d);

struct Array {
  void* data = nullptr;
  Shape shape;
  DType dtype = DType::f32;
  Shape strides;  // in elements; filled by cpu_rows_array only (the others are C-contiguous)
  template <class T> T* ptr() const { return static_cast<T*>(data); }
};

// A C-contiguous numpy array (TypeError if it is not a numpy array, ValueError if not contiguous).
Array cpu_array(py::handle obj, const char* op, const char* name);
// A numpy array whose last dimension is contiguous, with any non-negative strides (whole elements)
// over the others: a view the kernel reads, or writes when `output` (which must not overlap itself:
// no zero stride along a dimension longer than 1). `strides` is filled.
Array cpu_rows_array(py::handle obj, const char* op, const char* name, bool output);
// A C-contiguous device array, read through __cuda_array_interface__.
Array cuda_array(py::handle obj, const char* op, const char* name);
// The same, or a null Array for None (optional arguments such as bias).
Array cpu_array_or_none(py::handle obj, const char* op, const char* name);
Array cuda_array_or_none(py::handle obj, const char* op, const char* name);

// A Python int (anything with __index__ but bool) as a 64-bit size: TypeError for other types,
// ValueError naming the argument when it does not fit (pybind11 alone says "Unable to cast").
int64_t int_arg(py::handle obj, const char* op, const char* name);

// The Args object of a kernel call: TypeError naming the op and the expected class for anything
// else (None, a tuple...), instead of pybind11's list of overloads.
template <class Args>
const Args& args_arg(py::handle obj, const char* op, const char* made_by) {
  if (!py::isinstance<Args>(obj))
    throw py::type_error(std::string(op) + ": args must be the Args object made by " + made_by + ", got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  return obj.cast<const Args&>();
}

// A shape as the Python tuple numpy and cupy take and report (the Args classes' *_shape properties).
py::tuple as_tuple(const Shape& s);

void expect_dtype(const Array& a, std::initializer_list<DType> allowed, const char* op, const char* name);
void expect_same_dtype(const Array& a, const Array& b, const char* op, const char* name_a, const char* name_b);
void expect_shape(const Array& a, const Shape& expected, const char* op, const char* name);

// A CPU operand of one expected shape and dtype (the checks of cpu_array, expect_dtype and
// expect_shape in one call). With `optional`, None gives a null Array.
Array cpu_operand(py::handle obj, const char* op, const char* name, const Shape& shape, DType dtype,
                  bool optional = false);

// A float32 or float64 CPU array of one expected shape: a call's first float operand, whose dtype
// the others (cpu_operand) must then have.
Array cpu_float_operand(py::handle obj, const char* op, const char* name, const Shape& shape);

// Calls f(T{}) with T = float or double for a float32 / float64 CPU array (after expect_dtype).
template <class F>
void with_float_type(DType d, F&& f) {
  if (d == DType::f32)
    f(float{});
  else
    f(double{});
}

// Scratch memory for a CUDA kernel from cupy's memory pool: `ptr` stays valid while `owner` lives
// (null for zero bytes). Allocating through cupy keeps the pool's caching and its stream ordering.
struct CudaWorkspace {
  py::object owner = py::none();
  void* ptr = nullptr;
};
CudaWorkspace cuda_workspace(std::size_t bytes);

// Registers a kernel family as served by a device submodule (listed by `pyfastdl info`).
void add_family(py::module_& device, const char* family);

// A CUDA family's float dtype enum E (with members f32, f16, bf16): of an array's dtype, or named
// "float32", "float16" or "bfloat16" (ValueError naming `op` otherwise).
template <class E> E cuda_float_dtype(DType d) {
  return d == DType::f32 ? E::f32 : d == DType::f16 ? E::f16 : E::bf16;
}
template <class E> E cuda_float_dtype_named(const std::string& name, const char* op) {
  if (name == "float32") return E::f32;
  if (name == "float16") return E::f16;
  if (name == "bfloat16") return E::bf16;
  fail(op, ": dtype must be 'float32', 'float16' or 'bfloat16', got '", name, "'");
}

}  // namespace pyfastdl
