// SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014,
// doi:10.1145/2660193.2660195; the fixed-increment form is Vigna's splitmix64.c, "a very fast generator
// passing BigCrush", https://prng.di.unimi.it/) read as a counter-based generator: word k of the stream
// of `seed` is
//   mix(seed + (k + 1) * gamma),  gamma = 0x9e3779b97f4a7c15 (2^64 / golden ratio, odd)
//   mix(z): z = (z ^ z >> 30) * 0xbf58476d1ce4e5b9; z = (z ^ z >> 27) * 0x94d049bb133111eb; z ^ z >> 31
// (all mod 2^64), exactly the k-th output of splitmix64.c started from `seed`: any word is computed
// without the ones before it, so threads and vector lanes draw their own parts of one stream, and the
// result depends on neither the thread count nor the vector width. Cost: two 64-bit multiplies and six
// shifts/xors per word (AVX-512DQ multiplies 8 words per instruction; AVX2 and SSE2 build the multiply
// from 32-bit ones). Not for cryptography: two words reveal the state.
//
// The 16-bit draws of a stream (dropout's mask) are its words' bytes in little-endian order: draw i is
// bits 16 (i % 4) .. 16 (i % 4) + 15 of word i / 4.
//
// Header-only for the per-instruction-set files and the baseline one alike: `static`, so every file keeps
// its own copy (cpu/isa.h: a shared symbol could be merged into the AVX-512 one).
#pragma once
#include <cstdint>
#include <cstring>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the draws are words' bytes in little-endian order");

namespace pyfastdl::cpu::splitmix {

inline constexpr uint64_t kGamma = 0x9e3779b97f4a7c15u;

// The draws of words first, first + 1, ... of seed's stream: `count` words rounded up to whole vectors of
// Words (a GCC vector of uint64_t), four draws each, into draws[0, 4 count rounded up) (which must have room).
template <class Words>
static inline void fill_draws(uint64_t seed, uint64_t first, int64_t count, uint16_t* draws) {
  constexpr int kWords = sizeof(Words) / sizeof(uint64_t);
  Words state;  // the Weyl sequence seed + (k + 1) * gamma, one k per lane
  for (int l = 0; l < kWords; ++l) state[l] = seed + (first + 1 + l) * kGamma;
  for (int64_t w = 0; w < count; w += kWords, state += kWords * kGamma) {
    Words z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    z ^= z >> 31;
    std::memcpy(draws + 4 * w, &z, sizeof z);
  }
}

}  // namespace pyfastdl::cpu::splitmix
