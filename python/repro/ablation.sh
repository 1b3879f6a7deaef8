#!/usr/bin/env bash
# Does EDLM help where the factorized denoiser errs most (few steps, many tokens per step) if
# importance sampling runs at every step (window 1) and with more candidates (k = 32)?
# 64 samples per row, the shipped models, seed 0. Writes python/repro/results/ablation_*.{csv,md,png}.
# Run from the repository root after `make build`:  bash python/repro/ablation.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
R=python/repro/results
export PYTHONPATH=${PYTHONPATH:-$PWD}
run() { "$PY" python/repro/edlm_table.py --steps 8,16 --window 1.0 --no-reference --energy-chunk 512 "$@"; }
run --methods mdlm,edlm-ar,edlm-nce --k 8 --out $R/ablation_w1_k8.csv
run --methods edlm-ar,edlm-nce --k 32 --out $R/ablation_w1_k32.csv
