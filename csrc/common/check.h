// Shared argument checking for the kernel families: plain C++ (no pybind11, no CUDA), so the CPU
// code, the CUDA launchers and the bindings all use the same shape arithmetic and the same messages.
// A failed check throws std::invalid_argument, which pybind11 turns into a Python ValueError.
#pragma once
#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace pyfastdl {

using Shape = std::vector<int64_t>;

inline std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  if (s.size() == 1) os << ",";
  os << ")";
  return os.str();
}

// Builds a message from any streamable pieces: fail("conv2d: ", "stride must be > 0, got ", s).
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw std::invalid_argument(os.str());
}

template <class... Parts>
void check(bool ok, const Parts&... parts) {
  if (!ok) fail(parts...);
}

inline void check_rank(const char* op, const char* name, const Shape& s, size_t rank) {
  check(s.size() == rank, op, ": ", name, " must have ", rank, " dimensions, got shape ", shape_str(s));
}

inline void check_nonempty(const char* op, const char* name, const Shape& s) {
  for (int64_t d : s) check(d > 0, op, ": ", name, " has a zero-size dimension, shape ", shape_str(s));
}

inline int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) fail("tensor size overflows 64 bits: ", shape_str(s));
    n *= d;
  }
  return n;
}

// Checked 64-bit arithmetic for shape computations: a + b and a * b of sizes that may come straight
// from the user (padding=2**63-1, dilation=2**62), or fail naming the op and what was computed,
// instead of wrapping around to a plausible-looking size.
inline int64_t add_or_fail(int64_t a, int64_t b, const char* op, const char* what) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max(), kMin = std::numeric_limits<int64_t>::min();
  if ((b > 0 && a > kMax - b) || (b < 0 && a < kMin - b))
    fail(op, ": ", what, " overflows 64 bits (", a, " + ", b, ")");
  return a + b;
}

inline int64_t mul_or_fail(int64_t a, int64_t b, const char* op, const char* what) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  if (a < 0 || b < 0) fail(op, ": ", what, " has a negative factor (", a, " * ", b, ")");
  if (a != 0 && b > kMax / a) fail(op, ": ", what, " overflows 64 bits (", a, " * ", b, ")");
  return a * b;
}

// Kernels index with 64-bit integers on the CPU; CUDA kernels that use 32-bit offsets call this.
inline void check_fits_int32(const char* op, const char* name, const Shape& s) {
  check(numel(s) <= std::numeric_limits<int32_t>::max(), op, ": ", name, " has ", numel(s),
        " elements, more than this kernel's 32-bit indexing allows (2^31 - 1), shape ", shape_str(s));
}

}  // namespace pyfastdl
