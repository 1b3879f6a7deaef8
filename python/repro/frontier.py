"""The frontier evaluation (issue 15): every method against MDLM's temperature frontier
at equal entropy, per step count, under two judges (SmolLM2-135M and our AR model).

    python python/repro/frontier.py --steps 8,16 --num-samples 256 \
        --arms "mdlm:T=0.8,mdlm:T=0.85,mdlm:T=0.9,mdlm:T=0.95,mdlm:T=1,edlm-ar:proposal=unmask-first"
    python python/repro/frontier.py --report-only          # table, CSV, plot, report from the samples

An arm is ``method[:key=value]...``: method mdlm, edlm-ar or edlm-nce; keys T (sampling
temperature, default 1), k (candidates / particles, default --k), w (window: a number w,
t >= 1 - w, or lo-hi, t in [lo, hi]; default 1 = every step), proposal (joint,
unmask-first, smc), is_temp, ess (SMC's resampling threshold). Each arm draws from its
own seed (from --seed, the arm, the step count and the batch), so arms are independent
and the bootstrap may resample each on its own.

Per sample (written batch by batch to ``--samples``, default results/frontier_samples.csv,
so a killed run resumes with --resume where it stopped): the judges' NLL and token
count, the unigram entropy, and the batch's wall time, ESS and model calls. The report
(``--out`` .csv / .md / .png): per judge and step count, each arm's Gen PPL and entropy
with 95% intervals, the MDLM frontier (the mdlm arms at that step count, log Gen PPL
linear in entropy between them) at the arm's entropy, the ratio to it with a bootstrap
interval that resamples the frontier's arms too (edlm_ext.evaluate.compare_to_frontier),
its p-value and Holm's correction over the table's arms; the plot; and the speed
table: the steps and seconds per sample each method needs to reach a reference step
count's frontier (interpolated in log steps).
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
import zlib
from pathlib import Path

import numpy as np
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
JUDGES = ("smollm2", "ar")
FIELDS = ["arm", "steps", "index", "smollm2_nll", "smollm2_tokens", "ar_nll", "ar_tokens", "entropy", "seconds",
          "ess", "nfe_denoiser", "nfe_energy"]


def parse_arm(spec: str, k_default: int) -> dict:
    """'edlm-ar:proposal=smc:k=8' -> sampler settings (see the module docstring)."""
    method, *opts = spec.split(":")
    if method not in ("mdlm", "edlm-ar", "edlm-nce"):
        raise ValueError(f"arm {spec!r}: unknown method {method!r}")
    cfg = {"method": method, "temperature": 1.0, "k": k_default, "window": 1.0, "proposal": "joint",
           "is_temp": 1.0, "ess_threshold": 0.5}
    for o in opts:
        key, _, val = o.partition("=")
        if key == "T":
            cfg["temperature"] = float(val)
        elif key == "k":
            cfg["k"] = int(val)
        elif key == "w":
            cfg["window"] = tuple(float(v) for v in val.split("-")) if "-" in val else float(val)
        elif key == "proposal":
            cfg["proposal"] = val
        elif key == "is_temp":
            cfg["is_temp"] = float(val)
        elif key == "ess":
            cfg["ess_threshold"] = float(val)
        else:
            raise ValueError(f"arm {spec!r}: unknown key {key!r}")
    return cfg


def arm_seed(seed: int, spec: str, steps: int, batch: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(f"{spec}|{steps}|{batch}".encode())) % (2**62)


def read_samples(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in FIELDS[1:]:
            r[k] = float(r[k]) if r[k] not in ("", None) else None
        r["steps"], r["index"] = int(r["steps"]), int(r["index"])
    return rows


class Models:
    """The shipped models, the judge, and an energy per method (loaded once)."""

    def __init__(self, device, judge: bool):
        self.tok = data.load_tokenizer()
        self.eot, self.mask = data.special_ids(self.tok)
        self.den = load_model(paths.ASSETS / "denoiser").to(device)
        ar = load_model(paths.ASSETS / "ar").to(device)
        self.ar_eval = load_model(paths.ASSETS / "ar")  # float32 CPU copy for Gen PPL
        self.energies = {"mdlm": None, "edlm-ar": edlm_ext.AREnergy(ar, bos_id=self.eot)}
        if (paths.ASSETS / "nce" / "model.safetensors").exists():
            self.energies["edlm-nce"] = edlm_ext.NCEEnergy(load_model(paths.ASSETS / "nce").to(device))
        self.judge = None
        if judge:
            from edlm_ext.judge import SmolLM2Judge

            self.judge = SmolLM2Judge()

    def score(self, tokens: torch.Tensor) -> list[dict]:
        """Per sample: judge NLL and tokens, our AR's NLL (each sample after a BOS), entropy."""
        tokens = tokens.cpu()
        ar = evaluate.ar_nlls(tokens, self.ar_eval, self.eot)
        ent = evaluate.sample_entropies(tokens)
        texts = evaluate.decode(tokens, self.tok, self.eot)
        judged = evaluate.judge_nlls(self.judge, texts) if self.judge is not None else [(None, None)] * len(texts)
        return [{"smollm2_nll": nll, "smollm2_tokens": n, "ar_nll": ar[i], "ar_tokens": tokens.shape[1],
                 "entropy": ent[i]} for i, (nll, n) in enumerate(judged)]


def sample_arm(models: Models, cfg: dict, steps: int, n: int, seq_len: int, seed: int, device, chunk, autocast):
    energy = models.energies[cfg["method"]]
    kw = {}
    if energy is not None:
        kw = dict(energy=energy, k=cfg["k"], window=cfg["window"], proposal=cfg["proposal"],
                  is_temp=cfg["is_temp"], ess_threshold=cfg["ess_threshold"], energy_chunk=chunk)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        out = edlm_ext.sample(models.den, batch_size=n, seq_len=seq_len, mask_id=models.mask, steps=steps,
                              temperature=cfg["temperature"], seed=seed, device=device, **kw)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="8,16")
    ap.add_argument("--arms", default="mdlm:T=0.8,mdlm:T=0.85,mdlm:T=0.9,mdlm:T=0.95,mdlm:T=1")
    ap.add_argument("--num-samples", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--autocast", choices=("bf16", "none"), default="bf16")
    ap.add_argument("--energy-chunk", type=int, default=512)
    ap.add_argument("--no-judge", action="store_true")
    ap.add_argument("--resume", action="store_true", help="keep the samples already in --samples")
    ap.add_argument("--samples", type=Path, default=OUT / "frontier_samples.csv")
    ap.add_argument("--out", type=Path, default=OUT / "frontier.csv")
    ap.add_argument("--speed-ref", type=int, default=16, help="the step count whose frontier the speed table targets")
    ap.add_argument("--n-boot", type=int, default=4000)
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args(argv)
    for p in (a.samples, a.out, a.out.with_suffix(".md"), a.out.with_suffix(".png")):
        atomic.check_output_file(p, "--out")
    if a.report_only:
        return report(read_samples(a.samples), a)
    device = torch.device(a.device)
    specs = [s for s in a.arms.split(",") if s]
    cfgs = {s: parse_arm(s, a.k) for s in specs}
    models = Models(device, judge=not a.no_judge)
    rows = read_samples(a.samples) if a.resume else []
    done = {(r["arm"], r["steps"], r["index"]) for r in rows}
    for steps in (int(s) for s in a.steps.split(",")):
        for spec in specs:
            if cfgs[spec]["method"] not in models.energies:
                print(f"skipping {spec}: no model", flush=True)
                continue
            for b, start in enumerate(range(0, a.num_samples, a.batch_size)):
                n = min(a.batch_size, a.num_samples - start)
                if all((spec, steps, start + i) in done for i in range(n)):
                    continue
                t0 = time.perf_counter()
                out = sample_arm(models, cfgs[spec], steps, n, a.seq_len, arm_seed(a.seed, spec, steps, b), device,
                                 a.energy_chunk or None, a.autocast == "bf16")
                secs = time.perf_counter() - t0
                ess = sum(out.stats.ess) / len(out.stats.ess) if out.stats.ess else None
                for i, m in enumerate(models.score(out.tokens)):
                    rows.append({"arm": spec, "steps": steps, "index": start + i, **m, "seconds": secs / n, "ess": ess,
                                 "nfe_denoiser": out.stats.denoiser_calls, "nfe_energy": out.stats.energy_calls})
                atomic.write_csv(a.samples, rows, FIELDS)  # batch by batch: --resume continues here
                print(f"{spec} steps={steps} samples {start}-{start + n - 1}: {secs:.0f} s sampling, "
                      f"{time.perf_counter() - t0 - secs:.0f} s scoring; ess={ess}", flush=True)
    report(rows, a)


# ---------------------------------------------------------------------------------
# The report


def sample_sets(rows: list[dict], judge: str) -> dict:
    """{(arm, steps): SampleSet} of one judge's numbers, in the order the arms first appear."""
    groups: dict = {}
    for r in rows:
        if r[f"{judge}_nll"] is None:
            continue
        groups.setdefault((r["arm"], r["steps"]), []).append(r)
    return {key: evaluate.SampleSet([r[f"{judge}_nll"] for r in g], [r[f"{judge}_tokens"] for r in g],
                                    [r["entropy"] for r in g]) for key, g in groups.items()}


def is_mdlm(label: str) -> bool:
    return label.split(":")[0] == "mdlm"


def summary_rows(rows: list[dict], n_boot: int, seed: int) -> list[dict]:
    """One row per (judge, arm, steps): the frontier comparison plus the arm's cost."""
    cost: dict = {}
    for r in rows:
        cost.setdefault((r["arm"], r["steps"]), []).append(r)
    out = []
    for judge in JUDGES:
        sets = sample_sets(rows, judge)
        if not sets:
            continue
        for r in evaluate.frontier_rows(sets, is_mdlm, n_boot=n_boot, seed=seed):
            g = cost[(r["label"], r["steps"])]
            ess = [x["ess"] for x in g if x["ess"] is not None]
            out.append({"judge": judge, "arm": r.pop("label"), **r,
                        "seconds_per_sample": float(np.mean([x["seconds"] for x in g])),
                        "mean_ess": float(np.mean(ess)) if ess else None,
                        "nfe_denoiser": g[0]["nfe_denoiser"], "nfe_energy": g[0]["nfe_energy"]})
    return out


def speed_rows(summary: list[dict], ref_steps: int, judge: str = "smollm2") -> list[dict]:
    """The speed claim at equal quality: the target is the ``ref_steps`` frontier (MDLM over
    its temperatures at ref_steps). Each arm's quality at S steps is its Gen PPL relative to
    that frontier at its own entropy (rel_ref); the steps it needs are where log rel_ref
    crosses 0, linear in log steps between measured step counts (at most the smallest
    measured step count if already below there; none if never), and the seconds per
    sample likewise. The speed-up is MDLM's own seconds at ref_steps (T = 1) over the arm's."""
    rows = [r for r in summary if r["judge"] == judge]
    ref = [r for r in rows if r["steps"] == ref_steps and r["frontier"]]
    if len(ref) < 2:
        return []
    e_f = np.array([r["entropy"] for r in ref])
    y_f = np.log([r["gen_ppl"] for r in ref])
    base = next((r for r in ref if r["arm"] in ("mdlm", "mdlm:T=1", "mdlm:T=1.0")), None)
    out = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        pts = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["steps"])
        rel = [math.log(p["gen_ppl"]) - float(evaluate.frontier_log_ppl(e_f, y_f, p["entropy"])[0][0]) for p in pts]
        rel = [0.0 if abs(x) < 1e-9 else x for x in rel]  # a frontier point itself
        need = secs = None
        at_most = False
        if rel and rel[0] <= 0:
            need, secs = float(pts[0]["steps"]), pts[0]["seconds_per_sample"]
            at_most = rel[0] < 0  # already below at the fewest steps measured: it needs at most that
        else:
            for (p0, r0), (p1, r1) in zip(zip(pts, rel), zip(pts[1:], rel[1:])):
                if r0 > 0 >= r1:
                    f = r0 / (r0 - r1)
                    need = math.exp(math.log(p0["steps"]) + f * (math.log(p1["steps"]) - math.log(p0["steps"])))
                    secs = math.exp(math.log(p0["seconds_per_sample"]) + f * (
                        math.log(p1["seconds_per_sample"]) - math.log(p0["seconds_per_sample"])))
                    break
        out.append({"arm": arm, "ref_steps": ref_steps, "rel_at_steps": {p["steps"]: math.exp(x) for p, x in zip(pts, rel)},
                    "steps_needed": need, "at_most": at_most, "seconds_needed": secs,
                    "speedup_vs_mdlm": (base["seconds_per_sample"] / secs) if (base and secs) else None})
    return out


def report(rows: list[dict], a) -> None:
    summary = summary_rows(rows, a.n_boot, a.seed)
    atomic.write_csv(a.out, summary, list(dict.fromkeys(k for r in summary for k in r)))
    plot(summary, a.out.with_suffix(".png"))
    md = markdown(summary, speed_rows(summary, a.speed_ref), a)
    atomic.write_text(a.out.with_suffix(".md"), md)
    print(md)


def markdown(summary: list[dict], speed: list[dict], a) -> str:
    f = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    n = sorted({r["n"] for r in summary})
    lines = [f"Frontier evaluation: {', '.join(map(str, n))} samples of {a.seq_len} tokens per arm; k = {a.k} unless the "
             "arm says; Gen PPL and entropy with 95% intervals (samples as units); frontier = MDLM's temperature "
             "arms at the same steps (log Gen PPL linear in entropy); rel = Gen PPL / frontier at the arm's "
             "entropy, 95% percentile bootstrap over samples of every arm (the frontier's included); p two-sided "
             "(bootstrap); * = significant after Holm's correction over the table's non-MDLM arms (5%).", ""]
    for judge in JUDGES:
        rows = [r for r in summary if r["judge"] == judge]
        if not rows:
            continue
        lines += [f"### Judge: {'SmolLM2-135M' if judge == 'smollm2' else 'our AR model (the EDLM-AR energy)'}", "",
                  "| steps | arm | Gen PPL | entropy | frontier at its entropy | rel | p | mean ESS | s / sample |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in sorted(rows, key=lambda r: (r["steps"], not r["frontier"], r["entropy"])):
            rel = "-"
            if "rel" in r and not r["frontier"]:
                rel = (f"{r['rel']:.3f} ({r['rel_lo']:.3f}-{r['rel_hi']:.3f}){'*' if r.get('holm') else ''}"
                       f"{' (extrapolated)' if r['extrapolated'] else ''}")
            lines.append(f"| {r['steps']} | {r['arm']} | {r['gen_ppl']:.0f} ({r['gen_ppl_lo']:.0f}-{r['gen_ppl_hi']:.0f}) "
                         f"| {r['entropy']:.3f} | {f(r.get('frontier_ppl'), '.0f') if not r['frontier'] else '-'} | {rel} "
                         f"| {f(r.get('p'), '.3g') if not r['frontier'] else '-'} | {f(r['mean_ess'], '.2f')} "
                         f"| {r['seconds_per_sample']:.2f} |")
        lines.append("")
    if speed:
        lines += [f"### Speed at equal quality (SmolLM2): steps and seconds per sample to reach the {a.speed_ref}-step "
                  "MDLM frontier at equal entropy", "",
                  "| arm | rel to that frontier at each step count | steps needed | s / sample | speed-up vs MDLM |",
                  "| --- | --- | --- | --- | --- |"]
        for r in speed:
            rel = ", ".join(f"{s}: {v:.3f}" for s, v in r["rel_at_steps"].items())
            le = "<= " if r["at_most"] else ""
            lines.append(f"| {r['arm']} | {rel} | {le}{f(r['steps_needed'], '.1f')} | {le}{f(r['seconds_needed'], '.2f')} "
                         f"| {'>= ' if r['at_most'] else ''}{f(r['speedup_vs_mdlm'], '.2f')} |")
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], path: Path) -> None:
    """Gen PPL vs entropy per judge: MDLM's frontier per step count (dashed, points
    labelled by temperature) and one curve per other arm through its step counts
    (points labelled by steps), with 95% intervals."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    judges = [j for j in JUDGES if any(r["judge"] == j for r in summary)]
    if not judges:
        return
    fig, axes = plt.subplots(1, len(judges), figsize=(7 * len(judges), 5.5), squeeze=False)
    for ax, judge in zip(axes[0], judges):
        rows = [r for r in summary if r["judge"] == judge]
        for steps in sorted({r["steps"] for r in rows}):
            fr = sorted((r for r in rows if r["frontier"] and r["steps"] == steps), key=lambda r: r["entropy"])
            ax.plot([r["entropy"] for r in fr], [r["gen_ppl"] for r in fr], "--", marker="s", ms=4,
                    label=f"MDLM frontier, {steps} steps")
            for r in fr:
                ax.annotate(r["arm"].split("T=")[-1] if "T=" in r["arm"] else "1", (r["entropy"], r["gen_ppl"]),
                            fontsize=7, xytext=(2, -8), textcoords="offset points")
        for arm in dict.fromkeys(r["arm"] for r in rows if not r["frontier"]):
            pts = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["steps"])
            x, y = [r["entropy"] for r in pts], [r["gen_ppl"] for r in pts]
            err = [[r["gen_ppl"] - r["gen_ppl_lo"] for r in pts], [r["gen_ppl_hi"] - r["gen_ppl"] for r in pts]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=arm)
            for r in pts:
                ax.annotate(str(r["steps"]), (r["entropy"], r["gen_ppl"]), fontsize=8, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xlabel("unigram entropy per sample (nats)")
        ax.set_ylabel("Gen PPL, judge: " + ("SmolLM2-135M" if judge == "smollm2" else "our AR"))
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(run("frontier.py", main))
