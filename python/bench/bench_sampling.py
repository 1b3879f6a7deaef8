"""Microbenchmark of edlm_ext.masked_sample against the sampling steps it replaces, and
where its own time goes.

Methods (all draw one token per masked position of x_t from softmax(logits / T)):

* ours        edlm_ext.masked_sample (exact, reads only the masked rows)
* in_cache    ours with its memory traffic taken away (CPU): one call over as many rows,
              which are one block of the rows small enough to stay in cache (IN_CACHE_BYTES),
              read again and again; its %copy is what the op would reach if it waited on
              nothing but its own arithmetic: the most memory tuning could give it here
* entropy     ours with return_entropy=True (the entropy's extra work)
* topk_topp   ours with top_k=50, top_p=0.9 (the filters' extra work)
* top_k, top_p, min_p   ours with one filter: top_k=50, top_p=0.9, min_p=0.05 (top_p alone
              keeps thousands of tokens of these rows: the general path's radix selects)
* reference   edlm_ext.reference.masked_sample (float64 inverse CDF, pure PyTorch)
* mdlm        MDLM's ancestral step (_ddpm_update + _sample_categorical): subs
              log-probabilities, then float64 q(x_s | x_t) and a float64 Gumbel draw
* llada       LLaDA's step: float64 Gumbel noise (add_gumbel_noise), argmax, and the
              float64 softmax confidence of the drawn token (low-confidence remasking)
* compile     torch.compile of a float32 Gumbel-max (inexact: fp32 noise)
* multinomial float32 softmax, then torch.multinomial (inexact: float32 CDF)
* flashinfer  FlashInfer's sampling_from_logits (CUDA, when the package is installed)

Every method is timed on the same inputs. GB/s counts the bytes the op itself must
move (the masked rows of logits, x_t, x0 and logp), whatever a method really reads,
so it is an effective bandwidth; %copy divides it by the device's copy bandwidth
(bytes read + written by a 512 MB copy; 1 GB on CUDA) measured right before each case,
since a shared machine's bandwidth drifts within a run (copy_gbps, in the CSV). "x ours" is method ms / ours ms, so
the entropy and topk_topp rows say what those options cost. On CPU, "cpu" is the share
of the CPU the process got while timing (threads x 100% when nothing else runs).

Run from the repository root:

    python python/bench/bench_sampling.py --quick            # smoke test, seconds
    python python/bench/bench_sampling.py --device cpu       # default CPU set, minutes
    python python/bench/bench_sampling.py --device cuda      # the three issue shapes
    python python/bench/bench_sampling.py --shapes 16x1024x50258 --dtypes fp32 \\
        --masked all --baselines mdlm,llada --csv /tmp/out.csv

The table goes to stdout; the CSV (default python/bench/results/bench_sampling_<device>.csv)
is written row by row, and a plot of ms per method next to it. Baselines whose
estimated peak memory exceeds 60% of the available host (CPU) or free device (CUDA)
memory are skipped, and a failing baseline (e.g. a torch.compile error) is recorded as
failed; neither stops the run.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (device, timer, CSV, plot, the common options)

import edlm_ext  # noqa: E402  (common put the checkout on sys.path if needed)
import edlm_ext.reference  # noqa: E402
from edlm_ext._cli_util import ArgumentParser, run  # noqa: E402
from edlm_ext.integrations.stock import steps as stock  # noqa: E402  (every PyTorch baseline)

ISSUE_SHAPES = "16x1024x50258,64x128x30522,4x1024x126464"
CPU_SHAPES = "16x1024x8192"
QUICK_SHAPES = "3x33x1000"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MASKED = {"all": 1.0, "half": 0.5}
BASELINES = ("in_cache", "entropy", "topk_topp", "top_k", "top_p", "min_p", "reference", "mdlm", "llada", "compile",
             "multinomial", "flashinfer")
FILTERS = dict(top_k=50, top_p=0.9)  # the topk_topp row
OPTIONS = {"ours": {}, "entropy": dict(return_entropy=True), "topk_topp": FILTERS,  # our rows' options
           "top_k": dict(top_k=50), "top_p": dict(top_p=0.9), "min_p": dict(min_p=0.05)}
TEMPERATURE = 1.0
IN_CACHE_BYTES = 512 << 10  # the in_cache row's block: within one core's L2
MEMORY_FRACTION = 0.6  # skip a method whose estimated peak exceeds this share of free memory
CSV_COLUMNS = ("device", "device_name", "torch_version", "date", "shape", "B", "L", "V", "dtype",
               "masked_fraction", "logit_std", "method", "ms", "gbps", "frac_copy_bw", "copy_gbps",
               "speedup_vs_ours", "cpu_share", "repeats", "note")


# ---------------------------------------------------------------------------
# Methods


def ours(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int, generator: torch.Generator, **options):
    """edlm_ext.masked_sample as a user calls it (check=True: one host sync)."""
    return edlm_ext.masked_sample(logits, x_t, mask_id, temperature=TEMPERATURE, generator=generator, **options)


def in_cache(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int, device: torch.device):
    """ours in one call over a (B * L / n, n, V) view whose batch stride is 0: the first n
    rows of the batch (n * V elements within IN_CACHE_BYTES, n dividing B * L) again and
    again, so as many rows as ours, from cache (CPU only), the case's share of them masked
    (to the nearest row of the block; a note says the share where that is off by 0.5%)."""
    if device.type != "cpu":
        raise RuntimeError("skipped (CPU only)")
    V = logits.shape[-1]
    total = x_t.numel()
    fit = max(1, IN_CACHE_BYTES // (V * logits.element_size()))
    n = max(d for d in range(1, min(fit, total) + 1) if total % d == 0)
    block = logits.reshape(-1, V)[:n]
    rows = block.as_strided((total // n, n, V), (0, block.stride(0), 1))
    case_masked = float((x_t == mask_id).float().mean())
    k = round(case_masked * n)
    block_ids = torch.where(torch.arange(n, device=device) < k, mask_id, (mask_id + 1) % V).to(x_t.dtype)
    ids = block_ids.as_strided((total // n, n), (0, 1))
    gen = torch.Generator(device=device).manual_seed(4321)
    note = f"block {100 * k / n:.1f}% masked" if abs(k / n - case_masked) > 0.005 else ""
    return (lambda: edlm_ext.masked_sample(rows, ids, mask_id, temperature=TEMPERATURE, generator=gen)), note


def reference(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int):
    """The float64 pure-PyTorch reference of masked_sample."""
    return edlm_ext.reference.masked_sample(logits, x_t, mask_id, temperature=TEMPERATURE)


def flashinfer_step(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int):
    """FlashInfer's sampling_from_logits on every row (CUDA; [MASK] set to -inf first)."""
    import flashinfer  # raises ImportError where it is not installed: recorded as skipped

    x = logits.clone()
    x[..., mask_id] = float("-inf")
    tok = flashinfer.sampling.sampling_from_logits(x.view(-1, x.shape[-1])).view(x_t.shape)
    return torch.where(x_t == mask_id, tok.to(x_t.dtype), x_t)


@dataclass(frozen=True)
class Method:
    """A benchmarked method: how slow it is and how much memory it takes beyond its inputs."""

    slow: bool  # fewer repeats on CPU
    temp_bytes_per_elem: int  # estimated peak temporaries per logits element
    note: str


METHODS = {
    "ours": Method(False, 0, ""),
    "in_cache": Method(False, 0, "ours, one cache-sized block of rows read over and over"),
    "entropy": Method(False, 0, "ours, return_entropy"),
    "topk_topp": Method(False, 0, "ours, top_k=50 top_p=0.9"),
    "top_k": Method(False, 0, "ours, top_k=50"),
    "top_p": Method(False, 0, "ours, top_p=0.9"),
    "min_p": Method(False, 0, "ours, min_p=0.05"),
    "reference": Method(True, 4 * 8, "float64"),
    "mdlm": Method(True, 4 * 8 + 2 * 4, "float64"),
    "llada": Method(True, 5 * 8, "float64"),
    "compile": Method(False, 4, "inexact fp32 Gumbel"),
    "multinomial": Method(False, 2 * 4, "inexact fp32 CDF"),
    "flashinfer": Method(False, 4, "FlashInfer"),
}


# ---------------------------------------------------------------------------
# Cases


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """'16x1024x8192,64x128x30522' -> [(16, 1024, 8192), (64, 128, 30522)]."""
    shapes = []
    for item in text.split(","):
        dims = tuple(int(d) for d in item.lower().split("x"))
        if len(dims) != 3 or min(dims) < 1 or dims[2] < 2:
            raise argparse.ArgumentTypeError(f"bad shape {item!r}: want BxLxV with V >= 2")
        shapes.append(dims)
    return shapes


def parse_choices(text: str, choices) -> list[str]:
    """Comma-separated names, each one of choices."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in choices]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
    return names


def make_inputs(shape, dtype, fraction: float, device: torch.device, seed: int = 0, std: float = 2.0):
    """Random logits (std 2 unless told: at V = 8192 top_p=0.9 keeps ~1900 tokens at std 2, ~390
    at 3, ~70 at 4), and x_t with round(fraction * B * L) positions at mask_id = V - 1."""
    B, L, V = shape
    gen = torch.Generator(device=device).manual_seed(seed)
    logits = torch.randn(B, L, V, dtype=dtype, device=device, generator=gen).mul_(std)
    mask_id = V - 1
    x_t = torch.randint(0, V - 1, (B * L,), device=device, generator=gen)
    n_masked = round(fraction * B * L)
    x_t[torch.randperm(B * L, device=device, generator=gen)[:n_masked]] = mask_id
    return logits, x_t.view(B, L), mask_id, n_masked


def useful_bytes(n_masked: int, shape, dtype) -> int:
    """Bytes the op must move: masked logits rows, x_t in, x0 (int64) and logp (fp32) out."""
    B, L, V = shape
    return n_masked * V * dtype.itemsize + B * L * (8 + 8 + 4)


def memory_note(method: Method, shape, device: torch.device) -> str:
    """'' if the method's estimated peak fits, else a 'skipped (memory)' note."""
    need = method.temp_bytes_per_elem * shape[0] * shape[1] * shape[2]
    if need == 0:
        return ""
    free = common.free_memory_bytes(device)
    if need <= MEMORY_FRACTION * free:
        return ""
    return f"skipped (memory): needs ~{need / 1e9:.1f} GB, {free / 1e9:.1f} GB free"


class CompiledGumbel:
    """torch.compile(stock.gumbel_max_fp32), compiled afresh for each (shape, dtype)."""

    def __init__(self):
        self.key = None
        self.fn = None

    def get(self, key) -> tuple[Callable, bool]:
        """The compiled function for key, and whether this is a new compilation."""
        if key == self.key:
            return self.fn, False
        torch.compiler.reset()
        self.key, self.fn = key, torch.compile(stock.gumbel_max_fp32, dynamic=False)
        return self.fn, True


def runner(name: str, logits, x_t, mask_id: int, device: torch.device, compiled: CompiledGumbel):
    """A no-argument callable running method name on the inputs, and a note about setup."""
    if name in OPTIONS:
        gen = torch.Generator(device=device).manual_seed(1234)
        return (lambda: ours(logits, x_t, mask_id, gen, **OPTIONS[name])), ""
    if name == "in_cache":
        return in_cache(logits, x_t, mask_id, device)
    if name == "multinomial":
        gen = torch.Generator(device=device).manual_seed(99)
        return (lambda: stock.multinomial_step(logits, x_t, mask_id, TEMPERATURE, generator=gen)), ""
    if name == "flashinfer":
        if device.type != "cuda":
            raise RuntimeError("skipped (CUDA only)")
        flashinfer_step(logits, x_t, mask_id)  # the import, and the first call out of the timing
        return (lambda: flashinfer_step(logits, x_t, mask_id)), ""
    if name != "compile":
        if name == "reference":
            return (lambda: reference(logits, x_t, mask_id)), ""
        fn = {"mdlm": stock.mdlm_step, "llada": lambda lg, x, m: stock.llada_step(lg, x, m, TEMPERATURE)}[name]
        return (lambda: fn(logits, x_t, mask_id)), ""
    fn, fresh = compiled.get((tuple(logits.shape), logits.dtype, device))
    t0 = time.perf_counter()
    fn(logits, x_t, mask_id)  # compiles on the first call: keep it out of the timing
    common.synchronize(device)
    note = f"compile {time.perf_counter() - t0:.1f} s" if fresh else ""
    return (lambda: fn(logits, x_t, mask_id)), note


def first_line(exc: Exception) -> str:
    """'TypeName: first line of the message', short enough for a table cell."""
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0][:120] if msg else ''}"


# ---------------------------------------------------------------------------
# Output


class Report:
    """Prints aligned table rows as they come and rewrites the CSV after each one
    (atomically: a kill leaves the complete CSV of the rows measured so far)."""

    HEADER = f"{'shape':<16} {'dtype':<5} {'masked':>6} {'method':<11} {'ms':>10} {'GB/s':>8} " \
             f"{'%copy':>6} {'x ours':>7} {'cpu':>5}  note"

    def __init__(self, path: Path | None, common_fields: dict):
        self.path, self.rows = path, []
        self.common = common_fields
        print(self.HEADER)
        print("-" * len(self.HEADER))

    def row(self, shape, dtype_name: str, fraction: float, method: str, repeats: int,
            ms: float | None, gbps: float | None, speedup: float | None, cpu_share: float | None, note: str,
            copy_gbps: float) -> None:
        """Record one measurement (ms None: skipped or failed, see note) beside the copy
        bandwidth measured just before its case."""
        frac = gbps / copy_gbps if gbps is not None else None
        share = None if cpu_share is None or cpu_share != cpu_share else cpu_share
        shape_s = "x".join(map(str, shape))
        cells = [f"{shape_s:<16}", f"{dtype_name:<5}", f"{fraction:>6.2f}", f"{method:<11}",
                 common.fmt(ms, 10, ".2f"), common.fmt(gbps, 8, ".2f"),
                 common.fmt(None if frac is None else 100 * frac, 6, ".1f"), common.fmt(speedup, 7, ".2f"),
                 common.fmt(None if share is None else 100 * share, 4, ".0f") + ("%" if share is not None else " ")]
        print(" ".join(cells) + f"  {note}", flush=True)
        self.rows.append({
            **self.common, "shape": shape_s, "B": shape[0], "L": shape[1], "V": shape[2],
            "dtype": dtype_name, "masked_fraction": f"{fraction:.4f}", "method": method,
            "ms": common.csv_cell(ms, ".4f"), "gbps": common.csv_cell(gbps, ".3f"),
            "frac_copy_bw": common.csv_cell(frac, ".4f"), "copy_gbps": f"{copy_gbps:.2f}",
            "speedup_vs_ours": common.csv_cell(speedup, ".3f"), "cpu_share": common.csv_cell(share, ".2f"),
            "repeats": repeats if ms is not None else "", "note": note,
        })
        common.write_csv(self.path, self.rows, CSV_COLUMNS)

    def close(self) -> None:
        """Write the CSV (also when no row was measured: the header alone) and the plot."""
        common.write_csv(self.path, self.rows, CSV_COLUMNS)
        if self.path is None or not self.rows:
            return
        groups = list(dict.fromkeys(f"{r['shape']}\n{r['dtype']} {float(r['masked_fraction']):.2f}" for r in self.rows))
        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        series = {m: [next((float(r["ms"]) for r in self.rows if r["method"] == m and r["ms"] and
                            f"{r['shape']}\n{r['dtype']} {float(r['masked_fraction']):.2f}" == g), None)
                      for g in groups] for m in methods}
        common.plot_bars(self.path.with_suffix(".png"), groups, series, "ms per call",
                         f"masked_sample and the steps it replaces ({self.common['device_name'][:60]})")


# ---------------------------------------------------------------------------
# Main


def run_case(shape, dtype_name: str, fraction: float, methods: list[str], device: torch.device,
             args, compiled: CompiledGumbel, report: Report) -> None:
    """Time every method on one (shape, dtype, masked fraction) and report each row, the
    %copy column against the copy bandwidth measured right before the case (a shared
    machine's bandwidth drifts by 1.5x within minutes: a figure from the run's start would
    not describe the later cases)."""
    dtype = DTYPES[dtype_name]
    copy_gbps = common.copy_bandwidth_gbps(device)
    logits, x_t, mask_id, n_masked = make_inputs(shape, dtype, fraction, device, std=args.logit_std)
    nbytes = useful_bytes(n_masked, shape, dtype)
    fraction = n_masked / (shape[0] * shape[1])
    ours_ms = None
    for name in methods:
        method = METHODS[name]
        slow = method.slow and device.type == "cpu"
        warmup, repeats = (args.slow_warmup, args.slow_repeats) if slow else (args.warmup, args.repeats)
        notes = [method.note]
        ms = share = None
        skip = memory_note(method, shape, device)
        if skip:
            notes.append(skip)
        else:
            try:
                fn, setup_note = runner(name, logits, x_t, mask_id, device, compiled)
                notes.append(setup_note)
                t = common.timed(fn, device, warmup, repeats)
                ms, share = t.ms, t.cpu_share
            except ImportError as exc:
                notes.append(f"skipped (not installed: {exc.name or exc})")
            except RuntimeError as exc:
                msg = str(exc)
                notes.append(msg if msg.startswith("skipped") else f"failed: {first_line(exc)}")
            except Exception as exc:  # a failing baseline is a result, not a crash
                notes.append(f"failed: {first_line(exc)}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if name == "ours":
            ours_ms = ms
        gbps = nbytes / (ms * 1e-3) / 1e9 if ms else None
        speedup = ms / ours_ms if ms and ours_ms else None
        report.row(shape, dtype_name, fraction, name, repeats, ms, gbps, speedup, share,
                   "; ".join(n for n in notes if n), copy_gbps)


def parse_args(argv=None) -> tuple[argparse.Namespace, torch.device, Path | None]:
    """Command line, with device-dependent defaults filled in."""
    p = ArgumentParser(prog="bench_sampling.py", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p, quick_help=f"smoke test: shape {QUICK_SHAPES}, 1 warmup and 2 repeats for every "
                                         "method (explicit options win), no CSV unless --csv")
    p.add_argument("--shapes", type=parse_shapes,
                   help=f"comma-separated BxLxV (default: {ISSUE_SHAPES} on CUDA, {CPU_SHAPES} on CPU)")
    p.add_argument("--dtypes", type=lambda s: parse_choices(s, DTYPES), default="fp32,bf16",
                   help="comma-separated, from fp32, bf16, fp16 (default: fp32,bf16)")
    p.add_argument("--masked", type=lambda s: parse_choices(s, MASKED), default="all,half",
                   help="masked rows: all, half (default: all,half)")
    p.add_argument("--baselines", type=lambda s: parse_choices(s, BASELINES), default=",".join(BASELINES),
                   help=f"methods besides ours, from {', '.join(BASELINES)} (default: all)")
    p.add_argument("--logit-std", type=float, default=2.0, help="std of the random logits (default: 2)")
    p.add_argument("--warmup", type=int, help="untimed calls per method (default: 3 CUDA, 1 CPU)")
    p.add_argument("--repeats", type=int, help="timed calls per method, median reported (default: 20 CUDA, 3 CPU)")
    p.add_argument("--slow-warmup", type=int,
                   help="warmup of reference, mdlm, llada on CPU (default: 0)")
    p.add_argument("--slow-repeats", type=int,
                   help="repeats of reference, mdlm, llada on CPU, which take seconds (default: 2)")
    args = p.parse_args(argv)
    device, csv_path = common.resolve(args, p, "sampling")
    cuda = device.type == "cuda"
    if args.quick:
        defaults = dict(shapes=parse_shapes(QUICK_SHAPES), warmup=1, repeats=2, slow_warmup=1, slow_repeats=2)
    else:
        defaults = dict(shapes=parse_shapes(ISSUE_SHAPES if cuda else CPU_SHAPES),
                        warmup=3 if cuda else 1, repeats=20 if cuda else 3,
                        slow_warmup=0, slow_repeats=2)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args, device, csv_path


def main(argv=None) -> None:
    """Every (shape, dtype, masked) case, each after a measurement of the copy bandwidth."""
    args, device, csv_path = parse_args(argv)
    start = time.perf_counter()
    torch.manual_seed(0)
    fields = common.common_fields(device)
    print(f"device: {device.type} ({fields['device_name']}), torch {torch.__version__}; "
          f"%copy: of the copy bandwidth (read + write) measured before each case (column copy_gbps)")
    report = Report(csv_path, dict(fields, logit_std=args.logit_std))
    methods = ["ours"] + [b for b in BASELINES if b in args.baselines]
    compiled = CompiledGumbel()
    try:
        for shape in args.shapes:
            for dtype_name in args.dtypes:
                for masked in args.masked:
                    run_case(shape, dtype_name, MASKED[masked], methods, device, args, compiled, report)
    finally:
        report.close()
    print(f"{'wrote ' + str(csv_path) if csv_path else 'no CSV (--quick)'} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    sys.exit(run("bench_sampling.py", main))
