// Device queries for `pyfastdl info`. The runtime is linked statically and finds the driver only
// when first called, so a machine without a GPU or a driver can import pyfastdl._C.
#include "runtime.h"

namespace pyfastdl {

int cuda_device_count() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    throw std::runtime_error(std::string("no usable CUDA device: ") + cudaGetErrorString(err));
  }
  return n;
}

int cuda_runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

}  // namespace pyfastdl
