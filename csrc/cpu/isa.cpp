// Run-time choice of the instruction set for the kernels compiled per ISA (see isa.h).
#include "cpu/isa.h"

#include <atomic>
#include <stdexcept>
#include <string>

namespace pyfastdl::cpu {
namespace {

constexpr Isa kAll[] = {Isa::base, Isa::avx2, Isa::avx512};  // narrowest first

bool built(Isa isa) {
  switch (isa) {
#if defined(PYFASTDL_HAVE_ISA_avx512)
    case Isa::avx512: return true;
#endif
#if defined(PYFASTDL_HAVE_ISA_avx2)
    case Isa::avx2: return true;
#endif
    case Isa::base: return true;
    default: return false;
  }
}

bool cpu_runs(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0).
  switch (isa) {
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default: return true;
  }
#else
  return isa == Isa::base;
#endif
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

bool isa_available(Isa isa) { return built(isa) && cpu_runs(isa); }

Isa best_isa() {
  static const Isa best = [] {
    Isa widest = Isa::base;
    for (Isa isa : kAll)
      if (isa_available(isa)) widest = isa;
    return widest;
  }();
  return best;
}

Isa active_isa() { return active().load(std::memory_order_relaxed); }

void set_isa(const char* name) {
  const std::string n = name;
  const Isa isa = n == "avx512" ? Isa::avx512 : n == "avx2" ? Isa::avx2 : Isa::base;
  if (isa_name(isa) != n)
    throw std::invalid_argument("set_isa: name must be 'base', 'avx2' or 'avx512', got '" + n + "'");
  if (!built(isa))
    throw std::invalid_argument("set_isa: '" + n + "' is not supported here: this build compiled the kernels for '" +
                                PYFASTDL_BUILT_ISAS + "' only (CMake option PYFASTDL_ISAS)");
  if (!cpu_runs(isa))
    throw std::invalid_argument("set_isa: '" + n + "' is not supported here: this CPU lacks it (best: '" +
                                std::string(isa_name(best_isa())) + "')");
  active().store(isa, std::memory_order_relaxed);
}

}  // namespace pyfastdl::cpu
