#include "bind/array.h"

#include <sstream>

namespace pyfastdl {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::u8: return "uint8";
    case DType::u16: return "uint16";
    case DType::b8: return "bool";
  }
  return "?";
}

namespace {

[[noreturn]] void type_fail(const std::string& msg) { throw py::type_error(msg); }

// The byte-order character of a numpy/cupy typestr for this machine's order ('<' little, '>' big).
constexpr char kNativeOrder = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? '<' : '>';

// numpy/cupy typestr ("<f4") or numpy dtype char -> DType. The kernels read memory as native
// numbers, so an array in the other byte order (x.astype('>f4')) is refused, never misread.
DType dtype_from_typestr(const std::string& t, const char* op, const char* name) {
  if (t.size() > 1 && (t[0] == '<' || t[0] == '>') && t[0] != kNativeOrder)
    type_fail(std::string(op) + ": " + name + " has non-native byte order (dtype '" + t +
              "'); convert it first, e.g. " + name + ".astype(" + name + ".dtype.newbyteorder('='))");
  std::string k = t.size() > 1 ? t.substr(1) : t;
  if (k == "f2") return DType::f16;
  if (k == "f4") return DType::f32;
  if (k == "f8") return DType::f64;
  if (k == "i4") return DType::i32;
  if (k == "i8") return DType::i64;
  if (k == "u1") return DType::u8;
  if (k == "u2") return DType::u16;
  if (k == "b1") return DType::b8;
  if (k == "V2") return DType::bf16;  // ml_dtypes / cupy bfloat16 exposes itself as raw 2 bytes
  type_fail(std::string(op) + ": " + name + " has unsupported dtype '" + t + "'");
}

// A numpy dtype as a DType, read from the descriptor's type number and byte order (no Python calls:
// asking numpy for dtype.str cost a microsecond an array); the typestr, for the messages of the
// dtypes refused, only when refusing. Type numbers are numpy's stable NPY_TYPES (LP64: int64 is
// NPY_LONG, or NPY_LONGLONG); user-defined ones (from NPY_USERDEF = 256, ml_dtypes' bfloat16) are
// asked their name, as is a raw 2-byte void (a bfloat16 view).
DType numpy_dtype(const py::dtype& dt, const char* op, const char* name) {
  const auto by_typestr = [&] { return dtype_from_typestr(std::string(py::str(dt.attr("str"))), op, name); };
  const char order = dt.byteorder();
  if ((order == '<' || order == '>') && order != kNativeOrder) return by_typestr();  // refuses it, naming it
  switch (dt.num()) {
    case 0: return DType::b8;                                         // NPY_BOOL
    case 2: return DType::u8;                                         // NPY_UBYTE
    case 4: return DType::u16;                                        // NPY_USHORT
    case 5: return dt.itemsize() == 4 ? DType::i32 : by_typestr();    // NPY_INT
    case 7:                                                           // NPY_LONG
    case 9: return dt.itemsize() == 8 ? DType::i64 : by_typestr();    // NPY_LONGLONG
    case 11: return DType::f32;                                       // NPY_FLOAT
    case 12: return DType::f64;                                       // NPY_DOUBLE
    case 23: return DType::f16;                                       // NPY_HALF
    default: break;
  }
  if (dt.num() >= 256 && std::string(py::str(dt.attr("name"))) == "bfloat16") return DType::bf16;
  return by_typestr();
}

// The numpy array `obj`, read-write, with its dtype read (TypeError / ValueError naming op and name).
Array numpy_view(py::handle obj, const char* op, const char* name, py::array& arr) {
  if (!py::isinstance<py::array>(obj))
    type_fail(std::string(op) + ": " + name + " must be a numpy array, got " +
              std::string(py::str(py::type::of(obj).attr("__name__"))));
  arr = py::reinterpret_borrow<py::array>(obj);
  Array a;
  // Every array must be writeable (the Python layer copies read-only inputs before the kernels).
  if (!arr.writeable())
    fail(op, ": ", name, " is a read-only array; pass a writeable copy (", name, ".copy())");
  a.data = arr.mutable_data();
  a.shape.assign(arr.shape(), arr.shape() + arr.ndim());
  a.dtype = numpy_dtype(arr.dtype(), op, name);
  return a;
}

}  // namespace

Array cpu_array(py::handle obj, const char* op, const char* name) {
  py::array arr;
  Array a = numpy_view(obj, op, name, arr);
  if (!(arr.flags() & py::array::c_style))
    fail(op, ": ", name, " must be C-contiguous (call numpy.ascontiguousarray first)");
  return a;
}

Array cpu_rows_array(py::handle obj, const char* op, const char* name, bool output) {
  py::array arr;
  Array a = numpy_view(obj, op, name, arr);
  const auto item = static_cast<int64_t>(arr.itemsize());
  for (py::ssize_t d = 0; d < arr.ndim(); ++d) {
    const int64_t st = arr.strides(d), n = arr.shape(d);
    const bool last = d == arr.ndim() - 1;
    check(n <= 1 || (st >= 0 && st % item == 0 && (!last || st == item)), op, ": ", name,
          " must have contiguous rows (its last dimension) and non-negative strides, got strides ",
          shape_str(Shape(arr.strides(), arr.strides() + arr.ndim())), " (call numpy.ascontiguousarray first)");
    check(!output || n <= 1 || st != 0, op, ": ", name, " is written and must not be a broadcast view (stride 0)");
    a.strides.push_back(n <= 1 ? 0 : st / item);
  }
  return a;
}

Array cuda_array(py::handle obj, const char* op, const char* name) {
  if (!py::hasattr(obj, "__cuda_array_interface__"))
    type_fail(std::string(op) + ": " + name + " must be a device (cupy) array, got " +
              std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::dict cai = obj.attr("__cuda_array_interface__");
  Array a;
  for (auto d : cai["shape"].cast<py::tuple>()) a.shape.push_back(d.cast<int64_t>());
  a.dtype = dtype_from_typestr(cai["typestr"].cast<std::string>(), op, name);
  a.data = reinterpret_cast<void*>(cai["data"].cast<py::tuple>()[0].cast<uintptr_t>());
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    // Explicit strides: accept them only if they are the C-contiguous ones.
    int64_t itemsize = a.dtype == DType::f64 || a.dtype == DType::i64 ? 8
                       : a.dtype == DType::f32 || a.dtype == DType::i32 ? 4
                       : a.dtype == DType::u8 || a.dtype == DType::b8 ? 1 : 2;
    auto strides = cai["strides"].cast<py::tuple>();
    int64_t expect = itemsize;
    for (int i = static_cast<int>(a.shape.size()) - 1; i >= 0; --i) {
      if (a.shape[i] != 1 && strides[i].cast<int64_t>() != expect)
        fail(op, ": ", name, " must be C-contiguous (call cupy.ascontiguousarray first)");
      expect *= a.shape[i];
    }
  }
  return a;
}

int64_t int_arg(py::handle obj, const char* op, const char* name) {
  if (py::isinstance<py::bool_>(obj) || !py::hasattr(obj, "__index__"))
    type_fail(std::string(op) + ": " + name + " must be an int, got " +
              std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::object v = obj.attr("__index__")();
  try {
    return v.cast<int64_t>();
  } catch (const py::cast_error&) {
    fail(op, ": ", name, " = ", std::string(py::str(v)), " is out of range (a size must fit in 64 bits)");
  }
}

py::tuple as_tuple(const Shape& s) {
  py::tuple t(s.size());
  for (size_t i = 0; i < s.size(); ++i) t[i] = s[i];
  return t;
}

Array cpu_array_or_none(py::handle obj, const char* op, const char* name) {
  return obj.is_none() ? Array{} : cpu_array(obj, op, name);
}

Array cuda_array_or_none(py::handle obj, const char* op, const char* name) {
  return obj.is_none() ? Array{} : cuda_array(obj, op, name);
}

void expect_dtype(const Array& a, std::initializer_list<DType> allowed, const char* op, const char* name) {
  for (DType d : allowed)
    if (a.dtype == d) return;
  std::ostringstream os;
  os << op << ": " << name << " has dtype " << dtype_name(a.dtype) << ", expected ";
  int i = 0;
  for (DType d : allowed) os << (i++ ? " or " : "") << dtype_name(d);
  type_fail(os.str());
}

void expect_same_dtype(const Array& a, const Array& b, const char* op, const char* name_a, const char* name_b) {
  if (a.dtype != b.dtype)
    type_fail(std::string(op) + ": " + name_a + " is " + dtype_name(a.dtype) + " but " + name_b + " is " +
              dtype_name(b.dtype) + "; they must match");
}

void expect_shape(const Array& a, const Shape& expected, const char* op, const char* name) {
  check(a.shape == expected, op, ": ", name, " has shape ", shape_str(a.shape), ", expected ", shape_str(expected));
}

Array cpu_operand(py::handle obj, const char* op, const char* name, const Shape& shape, DType dtype,
                  bool optional) {
  if (optional && obj.is_none()) return Array{};
  Array a = cpu_array(obj, op, name);
  expect_dtype(a, {dtype}, op, name);
  expect_shape(a, shape, op, name);
  return a;
}

Array cpu_float_operand(py::handle obj, const char* op, const char* name, const Shape& shape) {
  Array a = cpu_array(obj, op, name);
  expect_dtype(a, {DType::f32, DType::f64}, op, name);
  expect_shape(a, shape, op, name);
  return a;
}

CudaWorkspace cuda_workspace(std::size_t bytes) {
  CudaWorkspace ws;
  if (bytes == 0) return ws;
  ws.owner = py::module_::import("cupy").attr("empty")(py::int_(bytes), "uint8");
  ws.ptr = reinterpret_cast<void*>(ws.owner.attr("data").attr("ptr").cast<std::uintptr_t>());
  return ws;
}

void add_family(py::module_& device, const char* family) {
  py::list fams = device.attr("FAMILIES");
  fams.append(family);
}

}  // namespace pyfastdl
