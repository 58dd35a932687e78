#!/usr/bin/env bash
# The GPU check, for a lent H100/H200 (the device tool): build pyfastdl there, run the GPU tests (a
# process per test file), the GPU benchmarks against torch/cuDNN on the same card, two one-epoch training
# smoke runs and compute-sanitizer (memcheck, racecheck) on a small case per family, and write the
# evidence to $OUT. One run, under 8 minutes (GPU_CHECK_BUDGET_S, default 450 s): every step has
# its own `timeout`, capped by the time left, and later steps are skipped rather than overrun.
#
# Preparation, once, on the machine that calls the device tool, in the repository that travels (the
# session's checkout): that machine has no network and its python3 (3.12: cupy, torch, pybind11,
# scikit-build-core, pytest, pytest-benchmark, pytest-timeout) lacks scipy-openblas32, which
# travels as a wheel in .whl/ (ignored by git, so it needs naming in `carry`):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl scipy-openblas32
# then the device call (the copy there may have no .git: pass the commit for the records):
#   command "PYFASTDL_COMMIT=<git rev-parse --short HEAD> bash benchmarks/gpu_check.sh",
#   carry [".whl"], timeout_s 540.
# A rerun on the same warm machine (to fill in what a first run's budget cut) can skip steps:
#   GPU_CHECK_SKIP_BUILD=1  GPU_CHECK_TESTS=0  GPU_CHECK_BENCH="attention lstm"  GPU_CHECK_TRAIN=0
#   GPU_CHECK_SANITIZE=0
# and a later window can train the ten models 200 steps each against the committed CPU run:
#   GPU_CHECK_TESTS=0 GPU_CHECK_BENCH=none GPU_CHECK_TRAIN=all GPU_CHECK_SANITIZE=0
#
# What comes back in $OUT (at most 8 files: the tool returns no more, each <= 16 MiB):
#   summary.txt  the step log and, last, the compact summary (also printed at the end)
#   build.log    pip's verbose build output          tests.log / tests.xml  pytest -m gpu (text, JUnit),
#                                                    and compute-sanitizer's reports
#   bench.log    the benchmark runs' output          bench.jsonl  one line per case, written as it ends
#   bench.md     each family's table                 train.jsonl  GPU_CHECK_TRAIN=all: a line per model
# Expected on an H100 (estimates; nothing has run there yet): build 1.5-2.5 min (caps: 270 s), 336 GPU
# tests 1-2 min (200 s), benchmarks - conv 84 cases ~30 s (90 s), attention 26 ~25 s (75 s), pool 62
# ~20 s (60 s), lstm 6 ~10 s (45 s) - two training smoke runs ~30 s each (60 s) and the sanitizers
# (60 s each): about 6-8 min, the rest skipped when the budget runs out.
# Partial results still land: a step cut by its timeout gets SIGINT first, so pytest writes its
# JUnit file and the benchmark records of the cases already run; the summary runs on exit (trap).
set -uo pipefail
OUT=${OUT:-/tmp/pyfastdl-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-450}
RESERVE=15  # seconds kept for the summary
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)  # per-family benchmark records, combined into $OUT at the end
cd "$(dirname "$0")/.."

log() { echo "[gpu_check +$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/summary.txt"; }
# The timeout for a step: its own cap, or what is left of the budget if that is less.
limit() {
  local left=$(( BUDGET - RESERVE - ($(date +%s) - START) ))
  (( left < $1 )) && echo "$left" || echo "$1"
}
# run_step NAME CAP MIN LOGFILE CMD...: CMD under `timeout`, SIGINT at the limit, SIGKILL 15 s later.
run_step() {
  local name=$1 cap=$2 min=$3 logfile=$4 t rc t0
  shift 4
  t=$(limit "$cap")
  if (( t < min )); then
    log "$name: SKIPPED, ${t}s left of the budget"
    return 99
  fi
  t0=$(date +%s)
  timeout -s INT -k 15 "$t" "$@" >> "$logfile" 2>&1
  rc=$?
  log "$name: rc=$rc in $(( $(date +%s) - t0 ))s (limit ${t}s)$( ((rc == 124 || rc == 137)) && echo ', TIMED OUT')"
  return $rc
}

# pytest with SIGINT raising KeyboardInterrupt even where the caller started us with SIGINT ignored
# (as background jobs are): interrupted, pytest still writes its JUnit file and benchmark records.
# -P everywhere: the checkout's pyfastdl/ (no compiled module) must not shadow the installed package.
PYTEST=(python3 -P -c 'import signal, sys, pytest
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(pytest.main(sys.argv[1:]))')

# A slow test or case fails alone after 60 s (pytest-timeout, when installed: it is on the device);
# one stuck inside a CUDA call (no Python runs to fail it) still gets every thread's Python stack
# dumped into the log at 45 s (faulthandler), and -v names each test before it runs.
PER_TEST=(-v -o faulthandler_timeout=45)
python3 -c "import pytest_timeout" 2>/dev/null && PER_TEST+=(--timeout=60)

summarize() {
  python3 - "$OUT" "$WORK" <<'EOF' 2>&1 | tee -a "$OUT/summary.txt"
import glob, json, os, re, statistics, sys
import xml.etree.ElementTree as ET

out, work = sys.argv[1], sys.argv[2]
FAMILIES = ("conv", "pool", "lstm", "attention")
def family(text):
    return next((f for f in FAMILIES if f in text), "other")

print("\n==== summary ====")
# -- tests, per family (from the JUnit file) --
path = os.path.join(out, "tests.xml")
if os.path.exists(path):
    counts, failed, first = {}, [], {}
    for case in ET.parse(path).getroot().iter("testcase"):
        module = [p for p in case.get("classname", "").split(".") if p.startswith("test_")]
        fam = family(module[0] if module else "")
        state = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                state = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                if state != "skipped":
                    msg = (child.get("message") or "").splitlines()
                    line = f"{case.get('classname')}::{case.get('name')}: {msg[0][:150] if msg else ''}"
                    failed.append(line)
                    first.setdefault(module[0] if module else "?", (line, child.get("message") or ""))
        c = counts.setdefault(fam, {"passed": 0, "failed": 0, "error": 0, "skipped": 0})
        c[state] += 1
    print("tests (pytest -m gpu, one process per kernel family):")
    for fam, c in sorted(counts.items()):
        print(f"  {fam:10s} " + "  ".join(f"{k} {v}" for k, v in c.items() if v or k == "failed"))
    # each file's first failure, singled out: a CUDA fault there can make every later test of that file fail
    for module, (line, message) in sorted(first.items()):
        fault = re.search(r"illegal|misaligned|cudaError|CUDA_ERROR|launch failure", message, re.I)
        print(f"  FIRST FAILURE in {module}: {line}"
              + (" [a CUDA fault: later failures in this file may only be its consequence]" if fault else ""))
    for line in failed[:25]:
        print("  FAIL " + line)
    if len(failed) > 25:
        print(f"  ... and {len(failed) - 25} more failures (tests.log)")
else:
    print("tests: no tests.xml (not run)")

# -- benchmarks: each case was appended to bench.jsonl as it finished (a cut run keeps what it measured);
# the per-family tables (written at the end of each family's run) are combined into bench.md --
cases, md = [], []
if os.path.exists(os.path.join(out, "bench.jsonl")):
    with open(os.path.join(out, "bench.jsonl")) as fh:
        cases = [json.loads(line) for line in fh if line.strip()]
for f in sorted(glob.glob(os.path.join(work, "*", "*.md"))):
    with open(f) as fh:
        md.append(fh.read())
if md:
    with open(os.path.join(out, "bench.md"), "w") as fh:
        fh.write("\n\n".join(md))
# group each family's cases by the option words in their names (direction, dtype, variant, ...)
WORDS = ("forward", "backward_input", "backward_weight", "backward", "float32", "bfloat16", "float16",
         "fast", "reference", "causal", "noidx")
groups = {}
for r in cases:
    tokens = re.split(r"-", r["case"])
    key = (r["family"], " ".join(t for t in tokens if t in WORDS))
    groups.setdefault(key, []).append(r)
print("benchmarks (ratio = reference time / ours; > 1: pyfastdl faster):" if cases else "benchmarks: none recorded")
for (fam, opts), rows in sorted(groups.items()):
    ratios = [r["ratio"] for r in rows if r["ratio"]]
    rate = "ours median"
    if any("ours_GFLOPs" in r for r in rows):
        rate += f" {statistics.median(r.get('ours_GFLOPs', 0) for r in rows) / 1e3:7.2f} TFLOP/s"
    elif any("ours_GBps" in r for r in rows):
        rate += f" {statistics.median(r.get('ours_GBps', 0) for r in rows):7.0f} GB/s"
    else:
        rate += f" {statistics.median(r['ours_ms'] for r in rows):7.3f} ms"
    if ratios:
        worst = min(rows, key=lambda r: r["ratio"] or float("inf"))
        ratio = (f"ratio median {statistics.median(ratios):.2f} [min {min(ratios):.2f} {worst['case']}, "
                 f"max {max(ratios):.2f}]")
    else:
        ratio = "no reference"
    print(f"  {fam:10s} {opts:30s} n={len(rows):3d}  {rate}  {ratio}")
EOF
}
finish() {
  summarize
  rm -rf "$WORK"
  log "done; files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
}
trap finish EXIT

# ---- 0. the machine ----------------------------------------------------------------------------------
log "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,temperature.gpu --format=csv,noheader 2>&1)"
log "commit: $(git rev-parse --short HEAD 2>/dev/null || echo "${PYFASTDL_COMMIT:-unknown (no .git here)}")"
export PYFASTDL_COMMIT=${PYFASTDL_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH CUDACXX=/usr/local/cuda/bin/nvcc
fi
log "python3: $(command -v python3), $(python3 --version 2>&1); nvcc: $(nvcc --version 2>&1 | tail -1)"
# The build needs the interpreter's headers: say so now rather than after minutes of a failed build.
py_include=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if [ -z "${GPU_CHECK_SKIP_BUILD:-}" ] && [ ! -f "$py_include/Python.h" ]; then
  log "FAILED: no Python.h in $py_include (the device's python3 lacks its development headers); nothing built"
  exit 1
fi
if ! python3 -c "import scipy_openblas32" 2>/dev/null; then
  if ! python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl >> "$OUT/build.log" 2>&1; then
    log "FAILED: scipy-openblas32 is not installed and no wheel of it in .whl/ (see this script's header)"
    exit 1
  fi
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

# ---- 1. build (sm_90 only: the card is a Hopper, and one architecture halves the nvcc time) -----------
# GPU_CHECK_SKIP_BUILD=1: a rerun on the same warm machine keeps the package the last run installed.
if [ -n "${GPU_CHECK_SKIP_BUILD:-}" ]; then
  log "build: skipped (GPU_CHECK_SKIP_BUILD), using $(python3 -P -c 'import pyfastdl; print(pyfastdl.__file__)' 2>&1)"
elif ! PYFASTDL_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=16 CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90$(
    d=$(python3 -m pybind11 --cmakedir 2>/dev/null) && echo " -Dpybind11_DIR=$d")" \
    run_step build 270 60 "$OUT/build.log" python3 -m pip install -v --no-build-isolation --no-deps --no-cache-dir .; then
  log "build FAILED; the end of build.log:"
  grep -E "error|Error|FAILED" "$OUT/build.log" | head -20 | tee -a "$OUT/summary.txt"
  tail -30 "$OUT/build.log"
  exit 1
fi
python3 -P -m pyfastdl info 2>&1 | tee -a "$OUT/summary.txt"

# ---- 2. GPU tests: every test marked gpu, one pytest process per kernel family ---------------------------
# A CUDA fault (an illegal address, say) leaves the CUDA context unusable: tests/conftest.py then stops
# that process at once, naming the test, instead of letting every later test fail in its wake; with a
# process per family the other families still run. The summary singles out each process's first failure.
if [ "${GPU_CHECK_TESTS:-1}" != 0 ]; then
  tests_end=$(( $(date +%s) + 200 ))
  mkdir -p "$WORK/junit"
  family_files=""
  for fam in conv pool lstm attention other; do
    if [ "$fam" = other ]; then
      files=$(ls tests/test_*.py | grep -v -x -F "$family_files")
    else
      files=$(ls tests/test_"$fam"*.py 2>/dev/null)
      family_files+="$files"$'\n'
    fi
    [ -n "$files" ] || continue
    echo "==== gpu tests: $fam ====" >> "$OUT/tests.log"
    # shellcheck disable=SC2086
    run_step "gpu tests $fam" $(( tests_end - $(date +%s) )) 10 "$OUT/tests.log" "${PYTEST[@]}" $files \
      -m "gpu and not slow" -p no:cacheprovider "${PER_TEST[@]}" --tb=short -rfE --junitxml="$WORK/junit/$fam.xml"
  done
  python3 - "$WORK/junit" "$OUT/tests.xml" <<'EOF2'
import glob, sys, xml.etree.ElementTree as ET
suites = ET.Element("testsuites")
for f in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    root = ET.parse(f).getroot()
    suites.extend(root.iter("testsuite"))
ET.ElementTree(suites).write(sys.argv[2])
EOF2
fi

# ---- 3. GPU benchmarks, one pytest run per family (its own timeout; records kept per family) -----------
bench() {
  local fam=$1 cap=$2
  shift 2
  [[ " ${GPU_CHECK_BENCH:-conv attention pool lstm} " == *" $fam "* ]] || return 0
  echo "==== $fam ====" >> "$OUT/bench.log"
  PYFASTDL_BENCH_OUT="$WORK/$fam" PYFASTDL_BENCH_JSONL="$OUT/bench.jsonl" run_step "bench $fam" "$cap" 20 "$OUT/bench.log" "${PYTEST[@]}" "$@" -m "gpu and not slow" \
    -s -p no:cacheprovider --benchmark-disable "${PER_TEST[@]}" --tb=short -rfE
}
bench conv 90 benchmarks/bench_conv_cuda.py
bench attention 75 benchmarks/bench_attention_cuda.py
bench pool 60 benchmarks/bench_pool.py
bench lstm 45 benchmarks/bench_lstm.py

# ---- 4. training on cuda. GPU_CHECK_TRAIN=1 (default): the training loop's --device cuda path, one short
# epoch of LeNet on digits (conv, pooling) and of the Transformer on generated number translation
# (attention), ~10 s each. GPU_CHECK_TRAIN=all (a window of its own): the ten models for 200 steps each,
# compared step for step with the committed CPU run (benchmarks/gpu_train_check.py), into train.jsonl.
case "${GPU_CHECK_TRAIN:-1}" in
  0) ;;
  all)
    run_step "train the ten models 200 steps on cuda" 400 60 "$OUT/bench.log" python3 -P benchmarks/gpu_train_check.py \
      --device cuda --steps 200 --reference benchmarks/results/train-cpu-reference.jsonl --out "$OUT/train.jsonl"
    tail -14 "$OUT/bench.log" | tee -a "$OUT/summary.txt" ;;
  *)
    echo "==== train lenet --device cuda ====" >> "$OUT/bench.log"
    run_step "train lenet --device cuda" 60 20 "$OUT/bench.log" python3 -P -m pyfastdl train lenet --device cuda \
      --epochs 1 --limit 1024 --quiet --out "$WORK/train-lenet"
    echo "==== train transformer --device cuda ====" >> "$OUT/bench.log"
    run_step "train transformer --device cuda" 60 30 "$OUT/bench.log" python3 -P -m pyfastdl train transformer \
      --device cuda --epochs 1 --train-size 256 --val-size 32 --test-size 32 --limit 256 --quiet --out "$WORK/train-transformer" ;;
esac

# ---- 5. compute-sanitizer, memcheck then racecheck, on one small case per kernel family (into tests.log)
if [ "${GPU_CHECK_SANITIZE:-1}" != 0 ] && command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    echo "==== compute-sanitizer --tool $tool ====" >> "$OUT/tests.log"
    run_step "compute-sanitizer $tool" 60 20 "$OUT/tests.log" compute-sanitizer --tool "$tool" --error-exitcode 1 \
      python3 -P benchmarks/gpu_sanitize.py
    log "compute-sanitizer $tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/tests.log" | tail -1)"
  done
fi
