#!/usr/bin/env bash
# The CPU extension built with AddressSanitizer + UndefinedBehaviorSanitizer, and the CPU tests run
# under it. Any report fails the run: UBSan halts on its first finding, ASan always does.
#
#   tools/sanitize.sh                 the kernel-family tests (what CI runs; see SANITIZE_TESTS)
#   tools/sanitize.sh tests/          any pytest arguments instead
#
# The build goes to build/sanitize (incremental, CPU only) and the package is assembled beside it in
# build/sanitize/pkg, so neither the developer build in pyfastdl/ nor an installed pyfastdl changes.
# CPython is not built with ASan, so libasan is preloaded (it must be the first library loaded) and
# leak detection is off (the interpreter keeps its objects until exit on purpose).
set -euo pipefail
cd "$(dirname "$0")/.."

# CI's subset: every test of the CPU kernel families (conv, pool, lstm, attention, norm, softmax and
# cross-entropy, optim, activation; each on every instruction set built) and of the matrix products,
# every public op's error inputs, the property tests and nn.functional: ~2.5 min on 2 busy cores. The
# model and training tests run the same kernels on bigger shapes (~10x slower under ASan);
# `tools/sanitize.sh tests/` runs everything.
SANITIZE_TESTS=(tests/test_conv.py tests/test_pool.py tests/test_lstm.py tests/test_attention.py
                tests/test_norm.py tests/test_loss.py tests/test_optim.py tests/test_isa.py tests/test_activation.py
                tests/test_gemm.py tests/test_softmax.py
                tests/test_error_inputs.py tests/test_properties.py tests/test_nn_functional.py)

# The build needs what pyproject's build-system lists; a fresh venv (CI) has only the runtime ones.
python3 -c "import pybind11" 2>/dev/null || python3 -m pip install --quiet "pybind11>=2.12"
command -v cmake >/dev/null || python3 -m pip install --quiet cmake ninja
# RelWithDebInfo: the module keeps its symbols (a Release build strips them and links with LTO, which
# makes the reports unreadable and the link slow); CMake compiles a sanitizer build at -O1.
# Only two copies of the per-ISA kernels: the baseline and the widest set this CPU runs (the copies
# it cannot run would compile for minutes and never execute under the sanitizers).
isas=base
native="$(echo | ${CXX:-g++} -march=native -dM -E -x c++ - 2>/dev/null || true)"
if grep -q __AVX512BW__ <<<"$native" && grep -q __AVX512VL__ <<<"$native" && grep -q __AVX512DQ__ <<<"$native"; then
  isas="base;avx512"
elif grep -q __AVX2__ <<<"$native" && grep -q __FMA__ <<<"$native"; then
  isas="base;avx2"
fi
build=build/sanitize
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" $(command -v ninja >/dev/null && echo -G Ninja) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPYFASTDL_CUDA=OFF \
    -DPYFASTDL_SANITIZE=address,undefined -DPYFASTDL_ISAS="$isas" \
    -DPython_EXECUTABLE="$(command -v python3)" -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >/dev/null
fi
cmake --build "$build" -j "${JOBS:-2}"

pkg="$build/pkg"
rm -rf "$pkg"
mkdir -p "$pkg"
cp -r pyfastdl "$pkg/pyfastdl"
rm -f "$pkg"/pyfastdl/_C*.so
cp "$build"/_C*.so "$pkg/pyfastdl/"
cp -r benchmarks "$pkg/pyfastdl/benchmarks"

libasan="$(${CXX:-g++} -print-file-name=libasan.so)"
[ -f "$libasan" ] || { echo "sanitize: libasan.so not found (is the compiler's ASan runtime installed?)" >&2; exit 1; }
# libstdc++ right after it: the python executable does not link it, and ASan's interceptor of C++
# throws finds the real __cxa_throw only if libstdc++ is loaded when ASan starts.
libstdcxx="$(${CXX:-g++} -print-file-name=libstdc++.so.6)"

# The reports go to stderr (the sanitizers' log_path was not honoured by GCC 12's UBSan runtime, and
# pytest's default capture of file descriptor 2 swallowed them when the process died): pytest
# captures at the Python level only (--capture=sys), so a report reaches this job's log, and the
# process it ends exits non-zero. allocator_may_return_null: a huge request becomes numpy's
# MemoryError rather than an ASan abort.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export OMP_NUM_THREADS=2  # the OpenMP regions run with more than one thread
export PYFASTDL_SANITIZER=address,undefined  # tests that measure resident memory skip (ASan's quarantine)

# -P: the checkout itself must not shadow the package assembled in $pkg.
if ! PYTHONPATH="$PWD/$pkg" LD_PRELOAD="$libasan:$libstdcxx" python3 -P -m pytest -q --capture=sys -p no:cacheprovider -x \
    "${@:-${SANITIZE_TESTS[@]}}"; then
  echo "sanitize: a test failed or a sanitizer reported an error (above: 'runtime error' or 'ERROR: AddressSanitizer')" >&2
  exit 1
fi
