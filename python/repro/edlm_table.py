"""The EDLM paper's table at our scale: Gen PPL and entropy of MDLM, EDLM-AR and
EDLM-NCE samples against the number of steps, plus reference rows.

    python python/repro/edlm_table.py                       # steps 16..256, 64 samples each
    python python/repro/edlm_table.py --steps 16,32 --num-samples 16 --no-judge   # quick

Uses the models shipped in edlm_ext/assets (denoiser, ar, nce), the same seeds for
every method, and writes python/repro/results/edlm_table.csv (columns: method,
steps, gen_ppl_smollm2, gen_ppl_ar, entropy, seconds_per_sample, ...) and plots
(Gen PPL vs steps, Gen PPL vs wall time). Reference rows: our AR model's own
samples and validation windows of the corpus.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
try:
    import edlm_ext
except ImportError:
    sys.path.insert(0, str(ROOT))
    import edlm_ext
from edlm_ext import data, evaluate
from edlm_ext.train import load_model

ASSETS = ROOT / "edlm_ext" / "assets"
OUT = Path(__file__).resolve().parent / "results"


@torch.no_grad()
def ar_samples(ar, n: int, seq_len: int, bos: int, seed: int) -> torch.Tensor:
    """Ancestral samples of the AR model (temperature 1), with edlm_ext's exact sampler."""
    x = torch.full((n, 1), bos, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    for _ in range(seq_len):
        logits = ar(x)[:, -1:].contiguous()
        nxt, _ = edlm_ext.masked_sample(logits, torch.full((n, 1), 1, dtype=torch.long), 1, generator=g)
        x = torch.cat([x, nxt], dim=1)
    return x[:, 1:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="16,32,64,128,256")
    ap.add_argument("--methods", default="mdlm,edlm-ar,edlm-nce")
    ap.add_argument("--num-samples", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--window", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-judge", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT / "edlm_table.csv")
    a = ap.parse_args(argv)

    tok = data.load_tokenizer()
    eot, mask = data.special_ids(tok)
    den, ar = load_model(ASSETS / "denoiser"), load_model(ASSETS / "ar")
    nce = load_model(ASSETS / "nce") if (ASSETS / "nce" / "model.safetensors").exists() else None
    judge = None
    if not a.no_judge:
        from edlm_ext.judge import SmolLM2Judge

        judge = SmolLM2Judge()
    energies = {"mdlm": None, "edlm-ar": edlm_ext.AREnergy(ar, carry_over=True, bos_id=eot)}
    if nce is not None:
        energies["edlm-nce"] = edlm_ext.NCEEnergy(nce)
    rows = []

    def record(method, steps, tokens, stats=None):
        m = evaluate.evaluate(tokens, tok, eot, ar_model=ar, judge=judge, stats=stats)
        row = {"method": method, "steps": steps, "num_samples": tokens.shape[0], **m}
        rows.append(row)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    for method in a.methods.split(","):
        if method not in energies:
            print(f"skipping {method}: no model", flush=True)
            continue
        for steps in (int(s) for s in a.steps.split(",")):
            with torch.no_grad():
                out = edlm_ext.sample(den, batch_size=a.num_samples, seq_len=a.seq_len, mask_id=mask, steps=steps,
                                      energy=energies[method], k=a.k, window=a.window, seed=a.seed)
            record(method, steps, out.tokens, out.stats)
    t0 = time.perf_counter()
    ar_toks = ar_samples(ar, a.num_samples, a.seq_len, eot, a.seed)
    record("ar", a.seq_len, ar_toks)
    rows[-1]["seconds_per_sample"] = (time.perf_counter() - t0) / a.num_samples
    valid = data.Batches(data.token_stream("valid", tok), a.num_samples, a.seq_len).fixed(1)[0]
    record("data", 0, valid)

    a.out.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    with a.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {a.out}")
    plot(rows, a.out)


def plot(rows, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    metric = "gen_ppl_smollm2" if any("gen_ppl_smollm2" in r for r in rows) else "gen_ppl_ar"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method in dict.fromkeys(r["method"] for r in rows if r["method"] not in ("ar", "data")):
        pts = [r for r in rows if r["method"] == method]
        axes[0].plot([r["steps"] for r in pts], [r[metric] for r in pts], marker="o", label=method)
        axes[1].plot([r["seconds_per_sample"] for r in pts], [r[metric] for r in pts], marker="o", label=method)
    for r in rows:
        if r["method"] in ("ar", "data"):
            for ax in axes:
                ax.axhline(r[metric], ls="--", lw=1, color="gray")
                ax.text(ax.get_xlim()[0], r[metric], r["method"], fontsize=8, va="bottom")
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("steps")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("seconds per sample")
    for ax in axes:
        ax.set_ylabel(metric)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()
