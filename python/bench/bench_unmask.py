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

    python python/bench/bench_unmask.py                    # CPU, and CUDA when available
    python python/bench/bench_unmask.py --device cpu --quick

The table goes to stdout, one CSV per device to python/bench/results/bench_unmask_<device>.csv.
"""
from __future__ import annotations

import datetime
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sampling  # noqa: E402  (shared device facts)

try:
    import edlm_ext
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import edlm_ext
from edlm_ext import atomic  # noqa: E402
from edlm_ext._cli_util import ArgumentParser, run  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SHAPES = [(16, 1024), (64, 4096), (256, 1024)]
QUICK_SHAPES = [(4, 300)]
MASKED_FRACTION = 0.5
P = 0.3  # posterior: (t - s) / t
TOP_N_FRACTION = 1 / 8  # top_n: n = L / 8
THRESHOLD = 0.9
COLUMNS = ("device", "device_name", "torch_version", "date", "step", "B", "L", "masked_fraction",
           "ours_ms", "torch_ms", "speedup", "repeats")


# ---------------------------------------------------------------------------
# The PyTorch way


def posterior_torch(x_t, x0, mask_id, p, generator):
    """MDLM's posterior with float32 uniforms."""
    u = torch.rand(x_t.shape, generator=generator, device=x_t.device)
    return torch.where((x_t == mask_id) & (u < p), x0, x_t)


def top_n_torch(x_t, x0, confidence, mask_id, n):
    """LLaDA's selection (get_num_transfer_tokens / topk), batched for a common n."""
    masked = x_t == mask_id
    conf = torch.where(masked, confidence, float("-inf"))
    index = torch.topk(conf, n, dim=1).indices
    chosen = torch.zeros_like(masked).scatter_(1, index, True)
    return torch.where(chosen & masked, x0, x_t)


def threshold_torch(x_t, x0, confidence, mask_id, threshold):
    """Fast-dLLM's selection: above the threshold, else the row's most confident one."""
    masked = x_t == mask_id
    chosen = masked & (confidence > threshold)
    best = torch.where(masked, confidence, float("-inf")).argmax(dim=1, keepdim=True)
    none_passed = ~chosen.any(dim=1, keepdim=True) & masked.any(dim=1, keepdim=True)
    chosen = chosen | torch.zeros_like(chosen).scatter_(1, best, none_passed)
    return torch.where(chosen, x0, x_t)


# ---------------------------------------------------------------------------
# Measurement


def device_name(device: torch.device) -> str:
    """bench_sampling's device name, plus the CPU kernels' vector path on CPU."""
    name = bench_sampling.device_name(device)
    return name if device.type == "cuda" else f"{name[:-1]}, {edlm_ext._C.cpu_simd()} path)"


def time_ms(fn, device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of fn in ms (perf_counter around a device synchronization)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


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
         lambda: posterior_torch(x_t, x0, mask_id, P, g_torch), False),
        ("top_n", lambda: edlm_ext.unmask_confident(x_t, x0, confidence, mask_id, n=n),
         lambda: top_n_torch(x_t, x0, confidence, mask_id, n), True),
        ("threshold", lambda: edlm_ext.unmask_confident(x_t, x0, confidence, mask_id, threshold=THRESHOLD),
         lambda: threshold_torch(x_t, x0, confidence, mask_id, THRESHOLD), True),
    ]


def run_device(device: torch.device, shapes, warmup: int, repeats: int, csv_path: Path | None) -> None:
    """Time every step at every shape on device; print the table, write the CSV (unless None)."""
    name = device_name(device)
    common = dict(device=device.type, device_name=name, torch_version=torch.__version__,
                  date=datetime.datetime.now().isoformat(timespec="seconds"))
    print(f"\ndevice: {device.type} ({name}), torch {torch.__version__}")
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
            ours_ms = time_ms(ours, device, warmup, repeats)
            torch_ms = time_ms(baseline, device, warmup, repeats)
            print(f"{step:<10} {f'{B}x{L}':>11} {ours_ms:>9.3f} {torch_ms:>9.3f} {torch_ms / ours_ms:>7.1f}x",
                  flush=True)
            rows.append({**common, "step": step, "B": B, "L": L, "masked_fraction": f"{fraction:.4f}",
                         "ours_ms": f"{ours_ms:.4f}", "torch_ms": f"{torch_ms:.4f}",
                         "speedup": f"{torch_ms / ours_ms:.3f}", "repeats": repeats})
    if csv_path is not None:
        atomic.write_csv(csv_path, rows, COLUMNS)
        print(f"wrote {csv_path}")


def main(argv=None) -> None:
    p = ArgumentParser(prog="bench_unmask.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                   help="all: CPU, and CUDA when available (default)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: shape {QUICK_SHAPES[0]}, 1 warmup, 3 repeats, no CSV unless --out-dir")
    p.add_argument("--out-dir", type=Path, help=f"where the CSVs go (default: {RESULTS_DIR})")
    args = p.parse_args(argv)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            p.error("--device cuda: CUDA is not available")
        devices.remove("cuda")
    shapes, warmup, repeats = (QUICK_SHAPES, 1, 3) if args.quick else (SHAPES, args.warmup, args.repeats)
    out_dir = args.out_dir or (None if args.quick else RESULTS_DIR)
    if out_dir is not None:
        atomic.check_output_dir(out_dir, "--out-dir")
    for dev in devices:
        csv_path = out_dir / f"bench_unmask_{dev}.csv" if out_dir is not None else None
        run_device(torch.device(dev), shapes, warmup, repeats, csv_path)


if __name__ == "__main__":
    sys.exit(run("bench_unmask.py", main))
