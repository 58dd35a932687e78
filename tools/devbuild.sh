#!/usr/bin/env bash
# Incremental developer build: compiles pyfastdl._C into build/dev and drops it into pyfastdl/,
# so `PYTHONPATH=$PWD pytest ...` tests this checkout without reinstalling.
#   tools/devbuild.sh            CPU + CUDA (when nvcc exists)
#   PYFASTDL_CUDA=OFF tools/devbuild.sh    CPU only (faster)
set -euo pipefail
cd "$(dirname "$0")/.."
cuda=${PYFASTDL_CUDA:-AUTO}
if [ ! -f build/dev/build.ninja ] || [ "$(cat build/dev/.cuda 2>/dev/null)" != "$cuda" ]; then
  rm -rf build/dev
  cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DPYFASTDL_CUDA="$cuda" \
    -DPython_EXECUTABLE="$(command -v python3)" -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >/dev/null
  echo "$cuda" > build/dev/.cuda
fi
cmake --build build/dev -j "${JOBS:-2}"
cp build/dev/_C*.so pyfastdl/
