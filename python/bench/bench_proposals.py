"""Benchmarks of EDLM's importance-sampling step kernels, side by side in one run.

* proposals  k proposals per sequence for k in {1, 2, 4, 8, 16}:
    ours      edlm_ext.sample_proposals (k draws from one read of the logits)
    k_calls   k separate edlm_ext.masked_sample calls (k reads)
    repeat    the public EDLM code's way: logits repeated k times along the batch,
              then MDLM's float64 Gumbel step on the k-fold tensor (edlm_ext.integrations.stock.steps.repeat_then_step)
* resample   normalize [B, k] log-weights, one draw per row, gather [B, L]:
    ours      edlm_ext.importance_resample (one launch, no host sync)
    torch     logsumexp / softmax / ESS / torch.multinomial / gather in PyTorch

Run from the repository root:

    python python/bench/bench_proposals.py                 # CPU: (8, 512, 8192) fp32
    python python/bench/bench_proposals.py --device cuda   # GPU: (16, 1024, 50258) bf16
    python python/bench/bench_proposals.py --quick

Prints a table, writes CSV (python/bench/results/bench_proposals_<device>.csv; none with
--quick unless --csv) and, when matplotlib is installed, a plot of time vs k
(bench_proposals_<device>.png). Timings are medians of repeats; no test asserts them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (device, timer, CSV, plot, the common options)

import edlm_ext  # noqa: E402  (common put the checkout on sys.path if needed)
from edlm_ext import atomic  # noqa: E402
from edlm_ext._cli_util import ArgumentParser, run  # noqa: E402
from edlm_ext.integrations.stock import steps as stock  # noqa: E402  (every PyTorch baseline)

KS = (1, 2, 4, 8, 16)


def proposal_methods(logits, x_t, mask_id, k, gen):
    """name -> zero-argument callable producing k proposals per sequence."""
    def repeat():
        return stock.repeat_then_step(logits, x_t, mask_id, k)  # the public code tiles j*B + b

    return {
        "ours": lambda: edlm_ext.sample_proposals(logits, x_t, mask_id, k, generator=gen),
        "k_calls": lambda: [edlm_ext.masked_sample(logits, x_t, mask_id, generator=gen) for _ in range(k)],
        "repeat": repeat,
    }


def parse_args(argv=None):
    ap = ArgumentParser(prog="bench_proposals.py", description=__doc__.split("\n\n")[0])
    common.add_common_args(ap, quick_help="tiny shape, smoke test (no CSV unless --csv)")
    ap.add_argument("--shape", default=None, help="BxLxV (default: 8x512x8192 on CPU, 16x1024x50258 on CUDA)")
    ap.add_argument("--dtype", default=None, choices=["fp32", "bf16"], help="default: fp32 on CPU, bf16 on CUDA")
    ap.add_argument("--ks", default=",".join(map(str, KS)))
    ap.add_argument("--skip-repeat-above", type=int, default=None,
                    help="skip the repeat baseline for larger k (default: 4 on CPU, none on CUDA)")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    device, out = common.resolve(args, ap, "proposals")
    return args, device, out


def main(argv=None):
    args, device, out = parse_args(argv)
    cuda = device.type == "cuda"
    shape = args.shape or ("4x64x1000" if args.quick else ("16x1024x50258" if cuda else "8x512x8192"))
    B, L, V = (int(v) for v in shape.split("x"))
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype or ("bf16" if cuda else "fp32")]
    ks = [int(k) for k in args.ks.split(",")]
    repeats = args.repeats or (20 if cuda else 3)
    skip_repeat = args.skip_repeat_above if args.skip_repeat_above is not None else (None if cuda else 4)
    gen = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(B, L, V, device=device, generator=gen).mul_(3).to(dtype)
    mask_id = V - 1
    x_t = torch.full((B, L), mask_id, dtype=torch.long, device=device)

    rows = []
    info = {**common.common_fields(device), "shape": f"{B}x{L}x{V}", "dtype": str(dtype).split(".")[-1]}
    print(f"{info['device_name']} | torch {info['torch_version']} | logits {info['shape']} {info['dtype']}, all masked")
    one = common.time_ms(lambda: edlm_ext.masked_sample(logits, x_t, mask_id, generator=gen), device, 2, repeats)
    print(f"{'bench':<10}{'k':>4}  {'method':<9}{'ms':>10}  {'x one sample':>12}")
    for k in ks:
        for name, fn in proposal_methods(logits, x_t, mask_id, k, gen).items():
            if name == "repeat" and skip_repeat is not None and k > skip_repeat:
                continue
            reps = repeats if name != "repeat" else max(1, repeats // 3)
            ms = common.time_ms(fn, device, 1, reps)
            rows.append({**info, "bench": "proposals", "k": k, "method": name, "ms": ms, "ratio_vs_one_sample": ms / one})
            print(f"{'proposals':<10}{k:>4}  {name:<9}{ms:>10.3f}  {ms / one:>12.2f}")

    for k in (8, 16):
        log_w = torch.randn(16, k, device=device, generator=gen, dtype=torch.float32) * 3
        props = torch.randint(0, V, (16, k, 1024), device=device, generator=gen)
        for name, fn in {"ours": lambda: edlm_ext.importance_resample(log_w, props, generator=gen, check=False),
                         "torch": lambda: stock.resample(log_w, props, generator=gen)}.items():
            ms = common.time_ms(fn, device, 3, max(repeats, 20))
            rows.append({**info, "shape": f"16x{k}x1024", "bench": "resample", "k": k, "method": name, "ms": ms,
                         "ratio_vs_one_sample": ""})
            print(f"{'resample':<10}{k:>4}  {name:<9}{ms * 1e3:>8.1f}us")

    if out is None:
        return
    common.write_csv(out, rows, list(rows[0].keys()))
    print(f"wrote {out}")
    plot(rows, out.with_suffix(".png"), info)


def plot(rows, path: Path, info) -> None:
    """Time vs k per method (proposals), if matplotlib is available."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in ("ours", "k_calls", "repeat"):
        pts = [(r["k"], r["ms"]) for r in rows if r["bench"] == "proposals" and r["method"] == method]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=method)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("k (proposals per sequence)")
    ax.set_ylabel("ms")
    ax.set_title(f"k proposals, {info['shape']} {info['dtype']} ({info['device_name'][:40]})", fontsize=9)
    ax.legend()
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(run("bench_proposals.py", main))
