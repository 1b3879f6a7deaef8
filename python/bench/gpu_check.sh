#!/usr/bin/env bash
# The GPU check of edlm_ext, from the repository root of a machine with a CUDA GPU:
#   bash python/bench/gpu_check.sh            # results under $OUT (default /tmp/edlm_gpu_out)
# 1. builds edlm_ext in place with EDLM_CUDA=1 against that machine's torch,
# 2. the CPU/CUDA agreement table on the device first (tests/test_cuda.py: the cases the
#    CUDA simulation runs on every commit, plus the boundary-mismatch rate at 30k draws
#    and CUDA-graph capture), then the rest of the suite (the simulation's own tests and
#    the slow float32-Gumbel demo skipped: they need no GPU and run in CI),
# 3. compute-sanitizer memcheck + racecheck on a small case,
# 4. every microbenchmark of python/bench on CUDA (sampling, proposals, unmask, generation;
#    CSV + plots; the common options of python/bench/common.py),
# and writes logs + CSV + environment to $OUT. Each step has its own timeout, which
# bounds the whole at 9.5 minutes (build ~2, agreement 100 s, other tests 100 s,
# sanitizers 2 x 75 s, benchmarks: sampling 150 s without the float64 reference,
# proposals 40, unmask 25, generation 25); run it with timeout_s=570.
set -uo pipefail
OUT=${OUT:-/tmp/edlm_gpu_out}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
step() { echo "== $* ($(date -u +%H:%M:%S))" | tee -a "$OUT/summary.txt"; }

step env
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv;
  $PY -c "import torch,sys; print(sys.version); print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())";
  nvcc --version | tail -2; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" >> "$OUT/summary.txt"

step build
EDLM_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=16 \
  $PY setup.py -q build_ext --inplace > "$OUT/build.log" 2>&1
rc=$?; echo "build rc=$rc" | tee -a "$OUT/summary.txt"
[ $rc -eq 0 ] || { tail -40 "$OUT/build.log"; exit 1; }
$PY -c "import edlm_ext; print(edlm_ext.build_info())" | tee -a "$OUT/summary.txt"

step agreement
timeout 100 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py > "$OUT/agreement.log" 2>&1
echo "agreement rc=$?: $(tail -1 "$OUT/agreement.log")" | tee -a "$OUT/summary.txt"
grep -E "FAILED|boundary mismatches" "$OUT/agreement.log" | head -20 | tee -a "$OUT/summary.txt"

step tests
timeout 100 $PY -m pytest -q -m "not slow" -p no:cacheprovider tests --ignore=tests/test_cuda.py \
  --ignore=tests/test_cuda_sim.py --ignore=tests/test_cuda_sim_selftest.py > "$OUT/tests.log" 2>&1
echo "tests rc=$?: $(tail -1 "$OUT/tests.log")" | tee -a "$OUT/summary.txt"

step compute-sanitizer
for tool in memcheck racecheck; do
  timeout 75 compute-sanitizer --tool $tool --error-exitcode 9 $PY python/bench/sanitize_case.py \
    > "$OUT/sanitizer_$tool.log" 2>&1
  echo "$tool rc=$?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer_$tool.log" | tail -1)" | tee -a "$OUT/summary.txt"
done

step benchmark
timeout 150 $PY python/bench/bench_sampling.py --device cuda --masked all \
  --baselines entropy,topk_topp,top_k,top_p,min_p,mdlm,llada,compile,multinomial,flashinfer --csv "$OUT/bench_sampling_cuda.csv" \
  > "$OUT/bench.log" 2>&1
echo "bench rc=$?" | tee -a "$OUT/summary.txt"
tail -40 "$OUT/bench.log"
timeout 40 $PY python/bench/bench_proposals.py --device cuda --csv "$OUT/bench_proposals_cuda.csv" \
  > "$OUT/bench_proposals.log" 2>&1
echo "bench_proposals rc=$?" | tee -a "$OUT/summary.txt"
tail -20 "$OUT/bench_proposals.log"
timeout 25 $PY python/bench/bench_unmask.py --device cuda --csv "$OUT/bench_unmask_cuda.csv" > "$OUT/bench_unmask.log" 2>&1
echo "bench_unmask rc=$?" | tee -a "$OUT/summary.txt"
tail -12 "$OUT/bench_unmask.log"
timeout 25 $PY python/bench/bench_generation.py --device cuda --csv "$OUT/bench_generation_cuda.csv" \
  > "$OUT/bench_generation.log" 2>&1
echo "bench_generation rc=$?" | tee -a "$OUT/summary.txt"
tail -14 "$OUT/bench_generation.log"
step done
