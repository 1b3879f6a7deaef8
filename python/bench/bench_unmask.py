"""Microbenchmark of edlm_ext.unmask / unmask_confident against the PyTorch code they replace.

Steps (x_t [B, L] int64 with half its positions [MASK], x0 [B, L], confidence [B, L] fp32):

* posterior  MDLM's q(x_s | x_t, x0): each masked position takes x0 with probability p.
             ours: edlm_ext.unmask(x_t, x0, mask_id, p)
             torch: torch.where((x_t == mask_id) & (torch.rand(B, L) < p), x0, x_t)
* top_n      LLaDA's low-confidence remasking: the n most confident masked positions.
             ours: edlm_ext.unmask_confident(..., n=n)
             torch: confidence with -inf at unmasked positions, topk, scatter, where
* threshold  Fast-dLLM's parallel decoding: masked positions above a threshold, at least
             one per row. ours: edlm_ext.unmask_confident(..., threshold=t)
             torch: compare, plus the row argmax where nothing passes, scatter, where

"ours" is called the way a user calls it (argument checks included; unmask_confident's
NaN / n check is one host synchronization). Each case first checks that the two
deterministic steps agree. Median of the timed calls; speedup = torch ms / ours ms.

    python python/bench/bench_unmask.py                    # CUDA when available, else CPU
    python python/bench/bench_unmask.py --device cpu --quick

The table goes to stdout, the CSV to python/bench/results/bench_unmask_<device>.csv (none
with --quick unless --csv), a plot of ours vs the torch way next to it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (device, timer, CSV, plot, the common options)

import edlm_ext  # noqa: E402  (common put the checkout on sys.path if needed)
from edlm_ext._cli_util import ArgumentParser, run  # noqa: E402
from edlm_ext.integrations.stock import steps as stock  # noqa: E402  (every PyTorch baseline)

SHAPES = [(16, 1024), (64, 4096), (256, 1024)]
QUICK_SHAPES = [(4, 300)]
MASKED_FRACTION = 0.5
P = 0.3  # posterior: (t - s) / t
TOP_N_FRACTION = 1 / 8  # top_n: n = L / 8
THRESHOLD = 0.9
COLUMNS = ("device", "device_name", "torch_version", "date", "step", "B", "L", "masked_fraction",
           "ours_ms", "torch_ms", "speedup", "repeats")


# ---------------------------------------------------------------------------
# Measurement


def make_inputs(B: int, L: int, device: torch.device, seed: int = 0):
    """x_t with MASKED_FRACTION of its positions at mask_id = 0, x0, and a confidence in [0, 1)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    mask_id = 0
    x_t = torch.randint(1, 1000, (B, L), device=device, generator=gen)
    x_t[torch.rand(B, L, device=device, generator=gen) < MASKED_FRACTION] = mask_id
    x0 = torch.randint(1, 1000, (B, L), device=device, generator=gen)
    confidence = torch.rand(B, L, device=device, generator=gen)
    return x_t, x0, confidence, mask_id


def steps(x_t, x0, confidence, mask_id, device):
    """(name, ours, torch way, deterministic) for one input."""
    n = max(1, int(x_t.shape[1] * TOP_N_FRACTION))
    g_ours = torch.Generator(device=device).manual_seed(1)
    g_torch = torch.Generator(device=device).manual_seed(1)
    return [
        ("posterior", lambda: edlm_ext.unmask(x_t, x0, mask_id, P, generator=g_ours),
         lambda: stock.posterior(x_t, x0, mask_id, P, generator=g_torch), False),
        ("top_n", lambda: edlm_ext.unmask_confident(x_t, x0, confidence, mask_id, n=n),
         lambda: stock.top_n(x_t, x0, confidence, mask_id, n), True),
        ("threshold", lambda: edlm_ext.unmask_confident(x_t, x0, confidence, mask_id, threshold=THRESHOLD),
         lambda: stock.threshold_select(x_t, x0, confidence, mask_id, THRESHOLD), True),
    ]


def run_device(device: torch.device, shapes, warmup: int, repeats: int, csv_path: Path | None) -> None:
    """Time every step at every shape on device; print the table, write the CSV and plot (unless None)."""
    fields = common.common_fields(device)
    print(f"\ndevice: {device.type} ({fields['device_name']}), torch {torch.__version__}")
    header = f"{'step':<10} {'B x L':>11} {'ours ms':>9} {'torch ms':>9} {'speedup':>8}"
    print(header)
    print("-" * len(header))
    rows = []
    for B, L in shapes:
        x_t, x0, confidence, mask_id = make_inputs(B, L, device)
        fraction = float((x_t == mask_id).float().mean())
        for step, ours, baseline, deterministic in steps(x_t, x0, confidence, mask_id, device):
            if deterministic and not torch.equal(ours(), baseline()):
                raise RuntimeError(f"{step} at {B}x{L}: ours and the torch way disagree")
            ours_ms = common.time_ms(ours, device, warmup, repeats)
            torch_ms = common.time_ms(baseline, device, warmup, repeats)
            print(f"{step:<10} {f'{B}x{L}':>11} {ours_ms:>9.3f} {torch_ms:>9.3f} {torch_ms / ours_ms:>7.1f}x",
                  flush=True)
            rows.append({**fields, "step": step, "B": B, "L": L, "masked_fraction": f"{fraction:.4f}",
                         "ours_ms": f"{ours_ms:.4f}", "torch_ms": f"{torch_ms:.4f}",
                         "speedup": f"{torch_ms / ours_ms:.3f}", "repeats": repeats})
    if csv_path is not None:
        common.write_csv(csv_path, rows, COLUMNS)
        print(f"wrote {csv_path}")
        groups = list(dict.fromkeys(f"{r['step']}\n{r['B']}x{r['L']}" for r in rows))
        series = {name: [float(r[col]) for r in rows] for name, col in (("ours", "ours_ms"), ("torch", "torch_ms"))}
        common.plot_bars(csv_path.with_suffix(".png"), groups, series, "ms per call",
                         f"unmask / unmask_confident vs the torch way ({fields['device_name'][:60]})")


def main(argv=None) -> None:
    p = ArgumentParser(prog="bench_unmask.py", description=__doc__.split("\n\n")[0])
    common.add_common_args(p, quick_help=f"smoke test: shape {QUICK_SHAPES[0]}, 1 warmup, 3 repeats, no CSV "
                                         "unless --csv")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    device, csv_path = common.resolve(args, p, "unmask")
    shapes, warmup, repeats = (QUICK_SHAPES, 1, 3) if args.quick else (SHAPES, args.warmup, args.repeats)
    run_device(device, shapes, warmup, repeats, csv_path)


if __name__ == "__main__":
    sys.exit(run("bench_unmask.py", main))
