"""Why importance sampling cannot correct much at our scale: the spread of the EDLM
log-weights between the k candidates of one row, and the resulting ESS, at several
masking levels t (validation windows masked at rate t; the shipped models).

    python python/repro/logweight_spread.py          # prints a table, writes results/logweight_spread.csv

With k candidates, ESS near 1 means one candidate takes nearly all the weight: the
resample is then a best-of-k pick, not a draw from the energy-corrected target.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
try:
    import edlm_ext
except ImportError:
    sys.path.insert(0, str(ROOT))
    import edlm_ext
from edlm_ext import atomic, data, paths
from edlm_ext._cli_util import run
from edlm_ext.models import load_model

OUT = Path(__file__).resolve().parent / "results" / "logweight_spread.csv"


@torch.no_grad()
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ts", default="1.0,0.8,0.5,0.2,0.05")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    atomic.check_output_file(a.out, "--out")
    tok = data.load_tokenizer()
    eot, mask = data.special_ids(tok)
    den, ar, nce = (load_model(paths.ASSETS / m) for m in ("denoiser", "ar", "nce"))
    energies = {"edlm-ar": edlm_ext.AREnergy(ar, bos_id=eot), "edlm-nce": edlm_ext.NCEEnergy(nce)}
    x0 = data.Batches(data.token_stream("valid", tok), a.rows, a.seq_len).fixed(1)[0]
    g = torch.Generator().manual_seed(0)
    rows = []
    for t in (float(s) for s in a.ts.split(",")):
        x_t = torch.where(torch.rand(x0.shape, generator=g) < t, mask, x0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = den(x_t).float()
        for name, energy in energies.items():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                _, d = edlm_ext.propose_and_resample(logits, x_t, mask, energy, a.k, seed=1)
            row = {"energy": name, "t": t, "masked_per_row": float((x_t == mask).sum(1).double().mean()),
                   "k": a.k, "log_w_std": float(d.log_w.std(dim=1).mean()),
                   "log_w_range": float((d.log_w.max(1).values - d.log_w.min(1).values).mean()),
                   "log_q_std": float(d.log_q.std(dim=1).mean()), "mean_ess": float(d.ess.mean())}
            rows.append(row)
            print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    atomic.write_csv(a.out, rows, list(rows[0]))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    sys.exit(run("logweight_spread.py", main))
