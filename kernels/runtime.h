// Host-side helpers shared by every CUDA launcher: device queries and launch checking.
#pragma once
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace pyfastdl {

int cuda_device_count();
int cuda_runtime_version();

// Throws std::runtime_error naming the kernel if the last launch (or the runtime) reported an error.
inline void check_launch(const char* kernel) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(kernel) + ": CUDA launch failed: " + cudaGetErrorString(err));
}

inline unsigned ceil_div(long long a, long long b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace pyfastdl
