#!/usr/bin/env bash
# On the GPU machine, in one call: the whole test suite compiled (gpu-marked tests included),
# then every benchmark. Logs go to $OUT (or ./gpu_out); a short summary table prints last.
#   bash scripts/gpu_suite.sh            tests + benchmarks
#   bash scripts/gpu_suite.sh tests      tests only (extra args go to pytest)
#   bash scripts/gpu_suite.sh bench      benchmarks only
#   bash scripts/gpu_suite.sh bench models profile_models
#                                        only those (bench/bench_<name>.py or bench/<name>.py); the
#                                        whole bench set takes ~12 min on an H200, over one
#                                        10-minute device call: split it
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 EET_BENCH_OUT=$OUT
what=${1:-all}; shift || true

python3 - <<'PY' | tee "$OUT/env.txt"
import torch, triton, transformers, platform
print(f"gpu={torch.cuda.get_device_name()} torch={torch.__version__} triton={triton.__version__} "
      f"transformers={transformers.__version__} python={platform.python_version()}")
PY

if [ "$what" = all ] || [ "$what" = tests ]; then
    # 8 processes (pytest-xdist, when installed): ~400 s cold on an H100. The tuning-capture failures
    # of 2026-12-06 (RESULTS.md) came from Python's GC finalising a CUDA graph mid-capture, now
    # paused during captures (kernels._common.gc_paused); 12 processes ran two test files clean after
    # that, but 8 is the count a full run has passed with. -v names every test as it ends, so a run
    # cut short by the device call's limit still names its failures.
    procs=()
    python3 -c "import xdist" 2>/dev/null && procs=(-n "${EET_TEST_PROCS:-8}")
    python3 -m pytest -v -rf -p no:cacheprovider "${procs[@]}" tests "$@" > "$OUT/tests.log" 2>&1
    grep -E "(FAILED|ERROR) tests/" "$OUT/tests.log" | sort -u | head -40
    tail -n 1 "$OUT/tests.log"
fi
if [ "$what" = all ] || [ "$what" = bench ]; then
    scripts=(bench/bench_*.py bench/profile_models.py)  # profile last: it needs the tuned kernels
    if [ "$what" = bench ] && [ $# -gt 0 ]; then
        scripts=()
        for name in "$@"; do
            if [ -f "bench/bench_$name.py" ]; then scripts+=("bench/bench_$name.py")
            elif [ -f "bench/$name.py" ]; then scripts+=("bench/$name.py")
            else echo "no benchmark named $name (bench/bench_$name.py or bench/$name.py)" >&2; exit 2
            fi
        done
    fi
    for script in "${scripts[@]}"; do
        echo "== $script"
        python3 "$script" 2>&1 | tee -a "$OUT/bench.log"
    done
fi

echo; echo "==== summary ($(cat "$OUT/env.txt"))"
[ -f "$OUT/tests.log" ] && tail -n 1 "$OUT/tests.log"
cat "$OUT"/summary_*.md 2>/dev/null
