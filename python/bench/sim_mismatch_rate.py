"""How often the CUDA kernels draw a different token than the CPU op for the same seed.

Both backends are exact to float32 relative accuracy, but they sum a row's terms in
different tiles (CPU: 256 tokens; CUDA: 32 lanes x 4 vectors = 512 fp32 / 1024 16-bit
tokens) with different exp2 code, so a uniform that falls within float rounding of a CDF
boundary can pick the neighbouring token on the other backend. This script measures that
rate on the CPU simulation of the CUDA kernels (csrc/sim, plain build) with k proposals
per row: every mismatch must be a boundary case (tests/agreement.py checks each), and the
count gives the rate with a Poisson 99.9% upper confidence limit. tests/agreement.py's
MEASURED_RATE_UPPER (the bound of tests/agreement.py) is derived from it.

    python python/bench/sim_mismatch_rate.py [--draws 30000] [--out python/bench/results/sim_mismatch_rate.md]
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import agreement, cuda_sim  # noqa: E402


def measure(V: int, dtype: torch.dtype, draws: int, k: int, scale: float, seed: int) -> dict:
    rows = max(1, draws // k)
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(1, rows, V, generator=g) * scale).to(dtype)
    x_t = torch.zeros(1, rows, dtype=torch.long)
    case = agreement.Case(f"rate_V{V}_{str(dtype).split('.')[-1]}", "sample_proposals",
                          agreement._proposal_args(logits, x_t, 0, k, 1.0, rng=agreement._rng(seed)))
    t = time.time()
    res = cuda_sim.run([agreement.sim_case(case)], "plain")
    sim_s = time.time() - t
    out = agreement.compare_sampling(case, agreement.run_op(case), agreement.sim_outputs(case, res[case.name]),
                                     max_mismatches=10**9)
    n, m = out["draws"], out["boundary_mismatches"]
    upper = stats.chi2.ppf(0.999, 2 * (m + 1)) / 2 / n  # Poisson upper confidence limit on the rate
    return dict(V=V, dtype=str(dtype).split(".")[-1], scale=scale, draws=n, mismatches=m, rate=m / n,
                upper_999=upper, sim_seconds=sim_s)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=30_000)
    ap.add_argument("--k", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "python/bench/results/sim_mismatch_rate.md"))
    a = ap.parse_args()
    rows = []
    for V in (999, 8192, 50258, 126464):
        for dtype in (torch.float32, torch.bfloat16):
            for scale in (1.0, 4.0):  # flat and peaked rows (logits ~ N(0, scale^2))
                r = measure(V, dtype, a.draws, a.k, scale, seed=V + int(scale))
                print(r, flush=True)
                rows.append(r)
    total_n = sum(r["draws"] for r in rows)
    total_m = sum(r["mismatches"] for r in rows)
    upper = stats.chi2.ppf(0.999, 2 * (total_m + 1)) / 2 / total_n
    lines = [
        "# CPU vs simulated-CUDA boundary mismatches (same seed, same inputs)",
        "",
        f"Measured {datetime.date.today()} on a {torch.get_num_threads()}-thread {cpu_name()} machine, "
        f"torch {torch.__version__}, the plain build of csrc/sim (no GPU).",
        "",
        f"Command: `python python/bench/sim_mismatch_rate.py --draws {a.draws} --k {a.k}`",
        "",
        "| V | dtype | logit scale | draws | mismatches | rate | 99.9% upper limit |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['V']} | {r['dtype']} | {r['scale']} | {r['draws']} | {r['mismatches']} | "
                     f"{r['rate']:.2e} | {r['upper_999']:.2e} |")
    lines += ["", f"All together: {total_m} mismatches in {total_n} draws; 99.9% upper limit on the rate "
              f"{upper:.2e} per draw. tests/agreement.py derives its bound from these (MEASURED_RATE_UPPER: "
              "see its docstring)."]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
