// Random bits (cpu/random.h): SplitMix64's words (cpu/splitmix.h) cut into 16-bit draws. Cost: two
// 64-bit multiplies per four draws; this baseline (SSE2) copy builds each from 32-bit multiplies, two
// words at a time.
#include "cpu/random.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "cpu/splitmix.h"

namespace pyfastdl::cpu {

void random_bits_cpu(uint64_t seed, int64_t n, uint16_t* bits) {
  typedef uint64_t Words __attribute__((vector_size(16)));
  constexpr int64_t kBlock = 4096;  // draws: 1,024 words
#pragma omp parallel for schedule(static) if (n >= 4 * kBlock)
  for (int64_t b = 0; b < n; b += kBlock) {
    uint16_t draws[kBlock];
    const int64_t len = std::min(kBlock, n - b);
    splitmix::fill_draws<Words>(seed, uint64_t(b) / 4, (len + 3) / 4, draws);
    std::memcpy(bits + b, draws, len * sizeof(uint16_t));
  }
}

}  // namespace pyfastdl::cpu
