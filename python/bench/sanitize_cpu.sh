#!/usr/bin/env bash
# make test-asan: the CPU extension built with AddressSanitizer + UndefinedBehaviorSanitizer
# (float-cast-overflow included) into build/asan — never the in-place build — then the op
# tests and a fuzz loop (python/bench/fuzz_ops.py) under it. Every report aborts the
# process (-fno-sanitize-recover), and the logs are searched for reports as well: the
# script exits 0 only with zero reports. Logs: build/asan/{build,tests,fuzz}.log.
#   bash python/bench/sanitize_cpu.sh        # FUZZ_SECONDS (default 60), PY, MAX_JOBS
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
B=build/asan
mkdir -p "$B"
TESTS="tests/test_masked_sample.py tests/test_masked_sample_api.py tests/test_filters.py
  tests/test_sample_proposals.py tests/test_importance_resample.py tests/test_unmask.py tests/test_unmask_api.py
  tests/test_unmask_confident.py tests/test_rng.py tests/test_philox_batch.py tests/test_op_edge_cases.py"

echo "== build (ASan + UBSan, $B)"
EDLM_CUDA=0 EDLM_SANITIZE=address,undefined,float-cast-overflow MAX_JOBS=${MAX_JOBS:-2} \
  "$PY" setup.py -q build_ext --build-temp "$B/temp" --build-lib "$B/lib" > "$B/build.log" 2>&1 \
  || { tail -30 "$B/build.log"; exit 1; }

# A package tree: links to our Python sources and assets, and the sanitized _C.
rm -rf "$B/root"
mkdir -p "$B/root/edlm_ext"
for f in edlm_ext/*; do
  case "$(basename "$f")" in _C*.so|__pycache__) ;; *) ln -s "$PWD/$f" "$B/root/edlm_ext/" ;; esac
done
ln -s "$PWD"/$B/lib/edlm_ext/_C*.so "$B/root/edlm_ext/"

# ASan's runtime must come first in an uninstrumented python; libstdc++ too, or ASan's
# __cxa_throw interceptor aborts on the first C++ exception (a TORCH_CHECK).
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libstdc++.so.6)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$PWD/$B/root"
# -P: no script or working directory on sys.path, so `import edlm_ext` is the tree above.
"$PY" -P -c "import os, edlm_ext._C as c; f = os.path.realpath(c.__file__); assert '/$B/lib/' in f, f; print('sanitized build:', f)"
syms=$(nm -D "$B"/lib/edlm_ext/_C*.so)  # (not piped into grep -q: under pipefail its early exit fails nm)
for sym in __asan_report_load8 __ubsan_handle_float_cast_overflow_abort; do  # the checks are compiled in
  grep -q "$sym" <<< "$syms" || { echo "no $sym in the sanitized build"; exit 1; }
done

echo "== op tests"
# shellcheck disable=SC2086
"$PY" -P -m pytest -q -s -p no:cacheprovider --import-mode=append -m "not slow" $TESTS 2>&1 | tee "$B/tests.log" | tail -3
echo "== fuzz loop (${FUZZ_SECONDS:-60} s)"
"$PY" -P python/bench/fuzz_ops.py --seconds "${FUZZ_SECONDS:-60}" 2>&1 | tee "$B/fuzz.log"

if grep -nE "runtime error:|ERROR: AddressSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer" "$B/tests.log" "$B/fuzz.log"; then
  echo "sanitizer reports found"
  exit 1
fi
echo "sanitizers: zero reports"
