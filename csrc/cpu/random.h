// Random bits on the CPU, compiled once (baseline instruction set): the draws of dropout's mask on
// their own, for the array-code paths (float16, non-native byte order) and for study and tests. The
// dropout kernel (cpu/activation.cpp) draws the same bits inside its own pass.
#pragma once
#include <cstdint>

namespace pyfastdl::cpu {

// bits[i] = draw i of seed's SplitMix64 stream (cpu/splitmix.h: 16 bits of word i / 4) for i in [0, n):
// blocks of 4,096 draws split between the OpenMP team above 16k draws; the result does not depend
// on the thread count.
void random_bits_cpu(uint64_t seed, int64_t n, uint16_t* bits);

}  // namespace pyfastdl::cpu
