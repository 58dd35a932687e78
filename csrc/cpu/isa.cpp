// Run-time choice of the instruction set for the kernels compiled per ISA (see isa.h).
#include "cpu/isa.h"

#include <atomic>
#include <stdexcept>
#include <string>

namespace pyfastdl::cpu {
namespace {

Isa detect() {
#if defined(PYFASTDL_HAVE_X86_ISAS)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::base;
}

std::atomic<Isa>& active() {
  static std::atomic<Isa> isa{best_isa()};
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "base";
  }
}

Isa best_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa active_isa() { return active().load(std::memory_order_relaxed); }

void set_isa(const char* name) {
  const std::string n = name;
  const Isa isa = n == "avx512" ? Isa::avx512 : n == "avx2" ? Isa::avx2 : Isa::base;
  if (isa_name(isa) != n)
    throw std::invalid_argument("set_isa: name must be 'base', 'avx2' or 'avx512', got '" + n + "'");
  if (int(isa) > int(best_isa()))
    throw std::invalid_argument("set_isa: '" + n + "' is not supported here (best: '" +
                                std::string(isa_name(best_isa())) + "')");
  active().store(isa, std::memory_order_relaxed);
}

}  // namespace pyfastdl::cpu
