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
//
// Every CPU kernel family goes through this one mechanism, and one switch (_C.cpu.set_isa) moves them
// all. To plug a family's file in:
//   1. CMakeLists.txt: add the file to ISA_SOURCES (one line); it is then compiled once per set, with
//      PYFASTDL_ISA defined to the set's name (a non-x86 build compiles only the baseline copy, and
//      CMake's PYFASTDL_ISAS can leave sets out: tools/sanitize.sh builds base and the host's best).
//   2. The file puts its code in `namespace pyfastdl::cpu::PYFASTDL_ISA { ... }` and ends with
//      PYFASTDL_ISA_INSTANTIATE(PYFASTDL_<FAMILY>_KERNELS).
//   3. Its header lists the kernels once, as an X-macro of (T, name, (parameters), (arguments)), and
//      declares them in every namespace with PYFASTDL_ISA_DECLARE:
//        #define PYFASTDL_NORM_KERNELS(X, T) (backslash)
//          X(T, layer_norm_forward_cpu, (const NormArgs& a, const T* x, T* y), (a, x, y))
//        PYFASTDL_ISA_DECLARE(PYFASTDL_NORM_KERNELS)
//      Every kernel is a function template over the element type T (instantiated for float and
//      double) returning void.
//   4. csrc/cpu/isa_dispatch.cpp: include the header and add PYFASTDL_ISA_DISPATCH(PYFASTDL_NORM_KERNELS)
//      (the table entry): it defines pyfastdl::cpu::<name><T>, which calls the copy for active_isa().
#pragma once

namespace pyfastdl::cpu {

enum class Isa { base, avx2, avx512 };

const char* isa_name(Isa isa);
bool isa_available(Isa isa);  // this build has the set's copy (CMake's PYFASTDL_ISAS) and this CPU runs it
Isa best_isa();               // the widest available set
Isa active_isa();             // what the dispatched kernels use: best_isa() unless set_isa lowered it
void set_isa(const char* name);  // "base", "avx2" or "avx512"; std::invalid_argument if not available

}  // namespace pyfastdl::cpu

// The X-macro plumbing of steps 2-4 above. KERNELS(X, T) expands X(T, name, (parameters), (arguments))
// once per kernel.
#define PYFASTDL_ISA_DECLARE_ONE(T, name, params, args) template <class T> void name params;
#define PYFASTDL_ISA_DECLARE(KERNELS)                            \
  namespace pyfastdl::cpu {                                      \
  KERNELS(PYFASTDL_ISA_DECLARE_ONE, T)                           \
  namespace base { KERNELS(PYFASTDL_ISA_DECLARE_ONE, T) }        \
  namespace avx2 { KERNELS(PYFASTDL_ISA_DECLARE_ONE, T) }        \
  namespace avx512 { KERNELS(PYFASTDL_ISA_DECLARE_ONE, T) }      \
  }

#define PYFASTDL_ISA_INSTANTIATE_ONE(T, name, params, args) template void name<T> params;
#define PYFASTDL_ISA_INSTANTIATE(KERNELS)          \
  KERNELS(PYFASTDL_ISA_INSTANTIATE_ONE, float)     \
  KERNELS(PYFASTDL_ISA_INSTANTIATE_ONE, double)

// The dispatch: one case per copy this build has (CMake defines PYFASTDL_HAVE_ISA_<set> for each set
// in PYFASTDL_ISAS); active_isa() is never a set left out, so the base copy takes everything else.
#if defined(PYFASTDL_HAVE_ISA_avx512)
#define PYFASTDL_ISA_CASE_avx512(T, name, args) case Isa::avx512: return avx512::name<T> args;
#else
#define PYFASTDL_ISA_CASE_avx512(T, name, args)
#endif
#if defined(PYFASTDL_HAVE_ISA_avx2)
#define PYFASTDL_ISA_CASE_avx2(T, name, args) case Isa::avx2: return avx2::name<T> args;
#else
#define PYFASTDL_ISA_CASE_avx2(T, name, args)
#endif
#define PYFASTDL_ISA_CALL(T, name, args)       \
  switch (active_isa()) {                      \
    PYFASTDL_ISA_CASE_avx512(T, name, args)    \
    PYFASTDL_ISA_CASE_avx2(T, name, args)      \
    default: return base::name<T> args;        \
  }
#define PYFASTDL_ISA_DISPATCH_ONE(T, name, params, args) \
  template <class T> void name params { PYFASTDL_ISA_CALL(T, name, args) }
#define PYFASTDL_ISA_DISPATCH(KERNELS)            \
  namespace pyfastdl::cpu {                       \
  KERNELS(PYFASTDL_ISA_DISPATCH_ONE, T)           \
  PYFASTDL_ISA_INSTANTIATE(KERNELS)               \
  }

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
