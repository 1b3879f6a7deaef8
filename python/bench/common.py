"""The one helper module of the python/bench benchmarks: device, timer, CSV, plot, and the
command-line options every ``bench_*.py`` takes (so ``python -m edlm_ext bench <which>
--device cuda --quick --csv F`` works for each of them).

* ``add_common_args(parser)``: ``--device {auto,cpu,cuda}``, ``--quick``, ``--csv FILE``,
  ``--threads N``; ``resolve(args, parser, name)`` turns them into a ``torch.device`` and an
  output path, checked before any work (a bad path or ``--device cuda`` without CUDA is a
  usage error), and sets torch's CPU threads.
* ``time_ms(fn, device, warmup, repeats)``: the median of ``repeats`` calls, timed with CUDA
  events on a GPU and ``time.perf_counter`` on the CPU; ``timed(...)`` also reports the
  share of the CPU the process got while it ran (the development machine is shared: a
  share below the thread count means other jobs took cores, and ratios measured in one run
  are then the figures to compare).
* ``device_name(device)``, ``copy_bandwidth_gbps(device)``: what the CSV rows record.
* ``write_csv(path, rows, columns)``: atomic (a killed run leaves the previous file or the
  complete new one); ``plot_bars(...)``: one PNG per op when matplotlib is installed.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

try:
    import edlm_ext
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import edlm_ext
from edlm_ext import atomic  # noqa: E402
from edlm_ext.errors import InputError  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------------------
# Options


def add_common_args(p: argparse.ArgumentParser, *, quick_help: str = "smoke test: tiny shapes, few repeats",
                    threads_default: int | None = None) -> None:
    """--device, --quick, --csv, --threads: the options every benchmark takes."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: cuda if available, else cpu (default: auto)")
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--csv", type=Path, default=None,
                   help="output CSV (default: python/bench/results/bench_<name>_<device>.csv; with --quick, none)")
    p.add_argument("--threads", type=int, default=threads_default,
                   help="CPU threads (torch.set_num_threads; 1 is steadiest on a shared machine, where a "
                        "descheduled thread stalls the others at every parallel region's barrier; default: "
                        + (str(threads_default) if threads_default else "torch's") + ")")


def resolve(args: argparse.Namespace, p: argparse.ArgumentParser, name: str) -> tuple[torch.device, Path | None]:
    """The device and the CSV path of a parsed command line (a usage error when impossible).
    --quick writes no CSV unless --csv names one."""
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available in this torch build or on this machine")
    else:
        device = torch.device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    path = args.csv
    if path is None and not args.quick:
        path = RESULTS_DIR / f"bench_{name}_{device.type}.csv"
    if path is not None:
        try:
            atomic.check_output_file(path, "--csv")
        except InputError as e:
            p.error(str(e))
    return device, path


# ---------------------------------------------------------------------------
# Device facts


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model with torch's thread count and the CPU kernels' vector path."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} threads, {edlm_ext._C.cpu_simd()} path)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory_bytes(device: torch.device) -> int:
    """Free device memory (CUDA) or available host memory."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30  # unknown: assume a small machine


def common_fields(device: torch.device) -> dict:
    """device, device_name, torch_version, date: the columns every CSV row starts with."""
    return dict(device=device.type, device_name=device_name(device), torch_version=torch.__version__,
                date=datetime.datetime.now().isoformat(timespec="seconds"))


# ---------------------------------------------------------------------------
# Timing


@dataclass
class Timing:
    ms: float         # median wall time of one call
    cpu_share: float  # process CPU seconds per wall second while the calls ran (CPU only; nan on CUDA)


def timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> Timing:
    """Median wall time of fn: CUDA events on a GPU, perf_counter on the CPU."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    wall = time.perf_counter() - wall0
    share = (time.process_time() - cpu0) / wall if device.type == "cpu" and wall > 0 else float("nan")
    return Timing(statistics.median(times), share)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of fn in ms (see timed)."""
    return timed(fn, device, warmup, repeats).ms


def copy_bandwidth_gbps(device: torch.device, nbytes: int | None = None) -> float:
    """Memory bandwidth of dst.copy_(src), counting bytes read plus written."""
    nbytes = nbytes or ((1 << 30) if device.type == "cuda" else (512 << 20))
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device, warmup=2, repeats=10)
    return 2 * nbytes / (ms * 1e-3) / 1e9


# ---------------------------------------------------------------------------
# Output


def write_csv(path: Path | None, rows: list[dict], columns: Iterable[str]) -> None:
    """Writes the rows atomically (nothing when path is None)."""
    if path is not None:
        atomic.write_csv(path, rows, list(columns))


def plot_bars(path: Path | None, groups: list[str], series: dict[str, list[float | None]], ylabel: str, title: str,
              log: bool = True) -> Path | None:
    """One grouped bar chart (series name -> one value per group; None: no bar), written
    atomically next to the CSV; returns the path, or None without matplotlib or a path."""
    if path is None:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 3), 4))
    width = 0.8 / max(1, len(series))
    # (the default cycle repeats after 10 colours: past that, tab20's 20)
    colours = plt.get_cmap("tab10" if len(series) <= 10 else "tab20").colors
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        pts = [(x, v) for x, v in zip(xs, values) if v is not None and v > 0]
        if pts:
            ax.bar([x for x, _ in pts], [v for _, v in pts], width=width, label=name, color=colours[i % len(colours)])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    print(f"wrote {path}")
    return path


def fmt(value: float | None, width: int, spec: str) -> str:
    """A right-aligned table cell; '-' for a missing value."""
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def csv_cell(value: float | None, spec: str) -> str:
    """A CSV cell; empty for a missing value."""
    return "" if value is None else format(value, spec)


def threads_note() -> str:
    """How many threads torch uses and how many the machine has (for the table header)."""
    return f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs"
