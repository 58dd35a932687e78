#!/usr/bin/env bash
# Build the sdist and a binary wheel, repair the wheel to a manylinux tag, and check that it installs
# into a fresh virtual environment with no compiler on the PATH and passes the test suite there.
#
#   PYFASTDL_CUDA=OFF tools/build_wheel.sh     the CPU wheel (what a release's CPU wheels are)
#   tools/build_wheel.sh                       CPU + CUDA kernels where nvcc is found (AUTO)
#   SKIP_TESTS=1 tools/build_wheel.sh          build and repair only
#   SKIP_BUILD=1 tools/build_wheel.sh          test the wheel already in dist/repaired
#   BUILD_ARGS="--sdist --wheel" ...           the wheel from the source tree, not from the sdist: the
#                                              compiled objects stay in build/<tag> for the next build
#   PYTEST_ARGS="-x -q" (default) ...          options of the test run
#
# Steps:
#   1. python -m build: dist/pyfastdl-X.tar.gz and a wheel built from that sdist (so the sdist is
#      complete). CMAKE_BUILD_PARALLEL_LEVEL (default 2) sets the compile jobs.
#   2. auditwheel repair -> dist/repaired/: libgomp is copied into the wheel; OpenBLAS is left out
#      (--exclude), since the scipy-openblas32 dependency brings libscipy_openblas.so and pyfastdl
#      imports it before its extension (pyfastdl/_core.py). The CUDA runtime is linked statically and
#      libcuda is loaded when first needed, so the CUDA wheel needs no exclusion of its own.
#   3. a venv under $TMPDIR, a PATH without cc/gcc/g++/clang/nvcc, pip install --only-binary :all:
#      of the repaired wheel with its test extras (and torch for the cross-checks), then the tests,
#      run from a copy of tests/ so that nothing imports the source folder.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
dist=$repo/dist
tmp=${TMPDIR:-/tmp}/pyfastdl-wheel-check
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}

rm -rf "$tmp"
mkdir -p "$tmp"
if [ -z "${SKIP_BUILD:-}" ]; then
  rm -rf "$dist"
  # shellcheck disable=SC2086
  python3 -m build ${BUILD_ARGS:-} --outdir "$dist" .
  wheel=$(ls "$dist"/pyfastdl-*.whl)
  auditwheel show "$wheel"
  auditwheel repair --exclude libscipy_openblas.so -w "$dist/repaired" "$wheel"
fi
repaired=$(ls "$dist"/repaired/pyfastdl-*.whl)
auditwheel show "$repaired"
echo "build_wheel: $(basename "$repaired") ($(du -k "$repaired" | cut -f1) KiB); sdist $(du -k "$dist"/*.tar.gz | cut -f1) KiB"
[ -n "${SKIP_TESTS:-}" ] && exit 0

# A PATH with every program of the usual folders except the compilers.
mkdir -p "$tmp/bin"
for dir in /usr/local/bin /usr/bin /bin; do
  for program in "$dir"/*; do
    name=$(basename "$program")
    case "$name" in
      cc|c++|cpp|gcc|g++|gcc-*|g++-*|cpp-*|*-gcc|*-g++|*-gcc-*|*-g++-*|clang*|nvcc|icx|icpx) continue ;;
    esac
    [ -e "$tmp/bin/$name" ] || ln -s "$program" "$tmp/bin/$name"
  done
done
python3 -m venv "$tmp/venv"
export PATH="$tmp/venv/bin:$tmp/bin"
for compiler in cc c++ gcc g++ clang nvcc; do
  if command -v "$compiler" >/dev/null; then echo "build_wheel: $compiler is still on the PATH"; exit 1; fi
done
python -m pip install --quiet --only-binary :all: "${repaired}[test]" torch==2.13.0

mkdir -p "$tmp/suite"
cp -r "$repo/tests" "$repo/conftest.py" "$repo/pyproject.toml" "$tmp/suite/"
cd "$tmp/suite"
python -P -c "import pyfastdl, sys; assert 'site-packages' in pyfastdl.__file__, pyfastdl.__file__; print('build_wheel: testing', pyfastdl.__file__)"
pyfastdl info
# shellcheck disable=SC2086
pytest ${PYTEST_ARGS:--x -q} -p no:cacheprovider
