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
import math
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
from edlm_ext import atomic, data, evaluate, paths
from edlm_ext._cli_util import run
from edlm_ext.models import load_model

OUT = Path(__file__).resolve().parent / "results"


@torch.no_grad()
def ar_samples(ar, n: int, seq_len: int, bos: int, seed: int, device=torch.device("cpu")) -> torch.Tensor:
    """Ancestral samples of the AR model (temperature 1), with edlm_ext's exact sampler."""
    x = torch.full((n, 1), bos, dtype=torch.long, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    masked = torch.ones((n, 1), dtype=torch.long, device=device)
    for _ in range(seq_len):
        logits = ar(x)[:, -1:].float().contiguous()
        nxt, _ = edlm_ext.masked_sample(logits, masked, 1, generator=g)
        x = torch.cat([x, nxt], dim=1)
    return x[:, 1:]


def _autocast(name: str, device: torch.device):
    """The autocast context of the sampling runs (bf16: AMX on recent Xeons, tensor cores on GPUs)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=name == "bf16")


def _read_rows(path: Path) -> list[dict]:
    """Rows of an earlier (interrupted) run of the same CSV, numbers parsed."""
    if not path.exists():
        return []
    rows = []
    with path.open() as f:
        for r in csv.DictReader(f):
            rows.append({k: (v if k == "method" else (float(v) if v not in ("", None) else None)) for k, v in r.items()})
    for r in rows:
        r["steps"] = int(r["steps"])
    return rows


def _write_rows(rows: list[dict], path: Path) -> None:
    atomic.write_csv(path, rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="16,32,64,128,256")
    ap.add_argument("--methods", default="mdlm,edlm-ar,edlm-nce")
    ap.add_argument("--num-samples", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--window", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--autocast", choices=("bf16", "none"), default="bf16",
                    help="autocast of the model forwards while sampling (evaluation runs in float32)")
    ap.add_argument("--no-judge", action="store_true")
    ap.add_argument("--energy-chunk", type=int, default=0, help="at most this many candidates per energy call")
    ap.add_argument("--no-reference", action="store_true", help="skip the AR-samples and validation-data rows")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in --out, run the missing ones")
    ap.add_argument("--out", type=Path, default=OUT / "edlm_table.csv")
    ap.add_argument("--report-only", action="store_true", help="redo the plot and markdown of an existing --out")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    for path in (a.out, a.out.with_suffix(".md"), a.out.with_suffix(".png")):
        atomic.check_output_file(path, "--out")
    if a.report_only:
        return report(_read_rows(a.out), a)

    tok = data.load_tokenizer()
    eot, mask = data.special_ids(tok)
    den, ar = load_model(paths.ASSETS / "denoiser").to(device), load_model(paths.ASSETS / "ar").to(device)
    ar_eval = load_model(paths.ASSETS / "ar")  # float32 CPU copy for Gen PPL
    nce = load_model(paths.ASSETS / "nce").to(device) if (paths.ASSETS / "nce" / "model.safetensors").exists() else None
    judge = None
    if not a.no_judge:
        from edlm_ext.judge import SmolLM2Judge

        judge = SmolLM2Judge()
    chunk = a.energy_chunk or None
    energies = {"mdlm": None, "edlm-ar": edlm_ext.AREnergy(ar, bos_id=eot)}
    if nce is not None:
        energies["edlm-nce"] = edlm_ext.NCEEnergy(nce)
    rows = _read_rows(a.out) if a.resume else []
    done = {(r["method"], r["steps"]) for r in rows}

    def record(method, steps, tokens, stats=None, seconds=None):
        m = evaluate.evaluate(tokens.cpu(), tok, eot, ar_model=ar_eval, judge=judge, stats=stats)
        row = {"method": method, "steps": steps, "num_samples": tokens.shape[0], "entropy": m["entropy_nats"], **m}
        if seconds is not None:
            row["seconds_per_sample"] = seconds / tokens.shape[0]
        if stats is not None and stats.ess:
            row["mean_ess"] = sum(stats.ess) / len(stats.ess)
        rows.append(row)
        _write_rows(rows, a.out)  # row by row: an interrupted run keeps what it finished (--resume)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    grid = [(m, int(s)) for m in a.methods.split(",") for s in a.steps.split(",")]
    for method, steps in grid:
        if method not in energies:
            print(f"skipping {method}: no model", flush=True)
            continue
        if (method, steps) in done:
            continue
        with torch.no_grad(), _autocast(a.autocast, device):
            out = edlm_ext.sample(den, batch_size=a.num_samples, seq_len=a.seq_len, mask_id=mask, steps=steps,
                                  energy=energies[method], k=a.k, window=a.window, seed=a.seed, device=device,
                                  energy_chunk=chunk)
        record(method, steps, out.tokens, out.stats)
    if ("ar", a.seq_len) not in done and not a.no_reference:
        t0 = time.perf_counter()
        with _autocast(a.autocast, device):
            ar_toks = ar_samples(ar, a.num_samples, a.seq_len, eot, a.seed, device)
        record("ar", a.seq_len, ar_toks, seconds=time.perf_counter() - t0)
    if ("data", 0) not in done and not a.no_reference:
        valid = data.Batches(data.token_stream("valid", tok), a.num_samples, a.seq_len).fixed(1)[0]
        record("data", 0, valid)
    print(f"wrote {a.out}")
    report(rows, a)


def report(rows: list[dict], a) -> None:
    """The plot (.png) and the markdown table (.md) beside the CSV."""
    plot(rows, a.out)
    md = a.out.with_suffix(".md")
    atomic.write_text(md, markdown(rows, a))
    print(md.read_text())


def _metric(rows) -> str:
    return "gen_ppl_smollm2" if any(r.get("gen_ppl_smollm2") for r in rows) else "gen_ppl_ar"


def _crossing(pts: list[dict], key: str, target: float) -> tuple[float, float] | None:
    """Where a method's Gen PPL curve first reaches target: (steps, seconds per sample),
    interpolated linearly in log(steps), log(seconds) and log(Gen PPL) between grid points."""
    pts = sorted(pts, key=lambda r: r["steps"])
    if pts and pts[0][key] <= target:
        return float(pts[0]["steps"]), pts[0]["seconds_per_sample"]
    for lo, hi in zip(pts, pts[1:]):
        if hi[key] == target:
            return float(hi["steps"]), hi["seconds_per_sample"]
        if hi[key] < target < lo[key]:
            f = (math.log(lo[key]) - math.log(target)) / (math.log(lo[key]) - math.log(hi[key]))
            lerp = lambda a, b: math.exp(math.log(a) + f * (math.log(b) - math.log(a)))  # noqa: E731
            return lerp(lo["steps"], hi["steps"]), lerp(lo["seconds_per_sample"], hi["seconds_per_sample"])
    return None


def speed_rows(rows: list[dict], key: str) -> list[dict]:
    """The speed claim at equal quality: for each MDLM step count S, the target is MDLM's
    Gen PPL there; every method's first crossing of it along its own curve gives the
    steps and seconds per sample it needs, and the speed-up is MDLM's own first-crossing
    time over the method's (> 1: the method reaches that quality faster)."""
    mdlm = sorted((r for r in rows if r["method"] == "mdlm"), key=lambda r: r["steps"])
    methods = list(dict.fromkeys(r["method"] for r in rows if r["method"] not in ("ar", "data")))
    out = []
    for ref in mdlm:
        target = ref[key]
        base = _crossing(mdlm, key, target)
        for method in methods:
            hit = _crossing([r for r in rows if r["method"] == method], key, target)
            out.append({"mdlm_steps": ref["steps"], "target_gen_ppl": target, "method": method,
                        "steps": hit[0] if hit else None, "seconds_per_sample": hit[1] if hit else None,
                        "speedup_vs_mdlm": (base[1] / hit[1]) if hit else None})
    return out


def markdown(rows: list[dict], a) -> str:
    """The table and the speed claim as markdown (pasted into the report)."""
    f = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    lines = [f"k = {a.k}, window = {a.window}, {a.num_samples} samples of {a.seq_len} tokens per row, seed {a.seed}, "
             f"autocast {a.autocast}; Gen PPL with its 95% interval.", "",
             "| method | steps | Gen PPL SmolLM2 | Gen PPL our AR | entropy (nats) | mean ESS | s / sample |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        cell = lambda k: (f"{r[k]:.0f} ({r[k + '_lo']:.0f}-{r[k + '_hi']:.0f})"  # noqa: E731
                          if r.get(k) is not None else "-")
        lines.append(f"| {r['method']} | {r['steps'] if r['method'] != 'data' else '-'} | {cell('gen_ppl_smollm2')} | "
                     f"{cell('gen_ppl_ar')} | {r['entropy_nats']:.2f} | {f(r.get('mean_ess'), '.2f')} | "
                     f"{f(r.get('seconds_per_sample'), '.2f')} |")
    key = _metric(rows)
    sp = speed_rows(rows, key)
    if sp:
        lines += ["", f"Speed at equal quality ({key}): the target is MDLM's value at each of its step counts; "
                      "each method's first crossing of it (log-log interpolation between grid points) gives the "
                      "steps and seconds per sample it needs; speed-up = MDLM's own first-crossing time / the "
                      "method's.", "",
                  "| target (MDLM steps: Gen PPL) | method | steps | s / sample | speed-up vs MDLM |",
                  "| --- | --- | --- | --- | --- |"]
        for r in sp:
            lines.append(f"| {r['mdlm_steps']}: {r['target_gen_ppl']:.0f} | {r['method']} | {f(r['steps'], '.0f')} | "
                         f"{f(r['seconds_per_sample'], '.2f')} | {f(r['speedup_vs_mdlm'], '.2f')} |")
    return "\n".join(lines) + "\n"


def plot(rows, out: Path) -> None:
    """Gen PPL (with 95% intervals) vs steps and vs seconds per sample; AR samples and
    validation data as horizontal reference lines. Both judges when present."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    keys = [k for k in ("gen_ppl_smollm2", "gen_ppl_ar") if any(r.get(k) for r in rows)]
    fig, axes = plt.subplots(len(keys), 2, figsize=(11, 4 * len(keys)), squeeze=False)
    for row_axes, key in zip(axes, keys):
        for method in dict.fromkeys(r["method"] for r in rows if r["method"] not in ("ar", "data")):
            pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["steps"])
            y = [r[key] for r in pts]
            err = [[r[key] - r[key + "_lo"] for r in pts], [r[key + "_hi"] - r[key] for r in pts]]
            for ax, x in zip(row_axes, ([r["steps"] for r in pts], [r["seconds_per_sample"] for r in pts])):
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method)
        for ax, xlabel in zip(row_axes, ("steps", "seconds per sample")):
            for r in rows:
                if r["method"] in ("ar", "data") and r.get(key):
                    ax.axhline(r[key], ls="--", lw=1, color="gray")
                    ax.annotate("AR samples" if r["method"] == "ar" else "validation data", (0.01, r[key]),
                                xycoords=("axes fraction", "data"), fontsize=8, va="bottom")
            ax.set_xscale("log", base=2 if xlabel == "steps" else 10)
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(key.replace("gen_ppl_", "Gen PPL, judge: "))
            ax.legend()
    fig.tight_layout()
    with atomic.atomic_path(out.with_suffix(".png")) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(run("edlm_table.py", main))
