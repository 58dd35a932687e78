// Instruction sets for the CPU kernels, chosen at run time.
//
// A wheel or source build must run on any x86-64 CPU, so the default compile targets the baseline
// (SSE2: 4 floats per vector). Kernels whose inner loops gain from wider vectors are compiled once
// more per instruction set -- AVX2+FMA (8 floats, 16 registers) and AVX-512 (16 floats, 32
// registers) -- each copy in its own namespace (CMake passes -DPYFASTDL_ISA=base|avx2|avx512 and the
// matching -m flags), and a dispatcher calls the copy for the best set this CPU and OS support.
//
// Those files must keep all their code in the ISA namespace (or inlined): a non-inline function that
// two copies share by name would be merged by the linker into one, possibly the AVX-512 one, run on
// every CPU. CMake links the baseline copy first, so any such merge keeps the baseline code.
#pragma once

namespace pyfastdl::cpu {

enum class Isa { base, avx2, avx512 };

const char* isa_name(Isa isa);
Isa best_isa();               // the widest set this build has and this CPU supports
Isa active_isa();             // what the dispatched kernels use: best_isa() unless set_isa lowered it
void set_isa(const char* name);  // "base", "avx2" or "avx512"; std::invalid_argument if unsupported here

}  // namespace pyfastdl::cpu

// Inside a file compiled per ISA: the vector width and the register count of the set it targets.
#ifdef PYFASTDL_ISA
namespace pyfastdl::cpu::PYFASTDL_ISA {
#if defined(__AVX512F__)
inline constexpr int kVectorBytes = 64, kVectorRegisters = 32;
#elif defined(__AVX2__)
inline constexpr int kVectorBytes = 32, kVectorRegisters = 16;
#else
inline constexpr int kVectorBytes = 16, kVectorRegisters = 16;
#endif
// A GCC/Clang vector of T filling one register; arithmetic on it compiles to SIMD instructions.
template <class T> struct VectorOf {
  typedef T type __attribute__((vector_size(kVectorBytes)));
};
template <class T> using Vector = typename VectorOf<T>::type;
template <class T> inline constexpr int kLanes = kVectorBytes / int(sizeof(T));
}  // namespace pyfastdl::cpu::PYFASTDL_ISA
#endif
