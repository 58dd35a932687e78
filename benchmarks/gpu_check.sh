#!/usr/bin/env bash
# The GPU check, for a lent H100/H200 (the device tool): build pyfastdl there, run the GPU tests and
# the GPU benchmarks against torch/cuDNN on the same card, and write everything to $OUT.
# Budget: under 8 minutes. That machine has no network; its python3 holds cupy, torch, pybind11 and
# scikit-build-core but not scipy-openblas32, which travels as a wheel in .whl/ (ignored by git):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl scipy-openblas32
# and the run names .whl in carry:   bash benchmarks/gpu_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/pyfastdl-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
log() { echo "[gpu_check $(date +%T)] $*" | tee -a "$OUT/summary.txt"; }

log "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
if ! python3 -c "import scipy_openblas32" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || { log "no scipy-openblas32 wheel in .whl/"; exit 1; }
  export PYTHONPATH=/tmp/site
fi

t0=$(date +%s)
# sm_90 only: the card is a Hopper, and one architecture halves the build.
if ! PYFASTDL_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90" CMAKE_BUILD_PARALLEL_LEVEL=16 \
    python3 -m pip install --no-build-isolation --no-deps . > "$OUT/build.log" 2>&1; then
  log "build FAILED"; tail -40 "$OUT/build.log"; exit 1
fi
log "build ok in $(( $(date +%s) - t0 )) s"
python3 -m pyfastdl info | tee -a "$OUT/summary.txt"

# python3 -P: the checkout's pyfastdl/ (no compiled module) must not shadow the installed package.
t0=$(date +%s)
timeout 200 python3 -P -m pytest tests -m gpu -q -p no:cacheprovider -x --timeout=60 > "$OUT/gpu_tests.txt" 2>&1
log "gpu tests rc=$? in $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/gpu_tests.txt")"

t0=$(date +%s)
PYFASTDL_BENCH_OUT="$OUT" timeout 200 python3 -P -m pytest benchmarks -m gpu -q -p no:cacheprovider \
    --benchmark-disable > "$OUT/gpu_bench.txt" 2>&1
log "gpu benchmarks rc=$? in $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/gpu_bench.txt")"
cat "$OUT"/*.md 2>/dev/null | tail -60
