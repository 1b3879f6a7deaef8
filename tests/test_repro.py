"""The reproduction script's bookkeeping: the speed claim's interpolation, the report
table and the resumable CSV (synthetic rows: no sampling)."""
import importlib.util
import math
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "python" / "repro" / "edlm_table.py"
spec = importlib.util.spec_from_file_location("edlm_table", PATH)
edlm_table = importlib.util.module_from_spec(spec)
sys.modules["edlm_table"] = edlm_table
spec.loader.exec_module(edlm_table)


def _row(method, steps, ppl, secs):
    return {"method": method, "steps": steps, "gen_ppl_smollm2": ppl, "gen_ppl_smollm2_lo": ppl * 0.9,
            "gen_ppl_smollm2_hi": ppl * 1.1, "entropy_nats": 4.0, "seconds_per_sample": secs}


ROWS = [_row("mdlm", 16, 400.0, 1.0), _row("mdlm", 64, 200.0, 4.0),
        _row("edlm-ar", 16, 300.0, 2.0), _row("edlm-ar", 64, 100.0, 8.0),
        _row("edlm-nce", 16, 500.0, 1.5), _row("edlm-nce", 64, 250.0, 6.0),
        {"method": "data", "steps": 0, "gen_ppl_smollm2": 50.0, "gen_ppl_smollm2_lo": 45.0,
         "gen_ppl_smollm2_hi": 55.0, "entropy_nats": 4.2}]


def test_speed_claim_interpolates_in_log_log():
    rows = edlm_table.speed_rows(ROWS, "gen_ppl_smollm2")
    assert [(r["mdlm_steps"], r["method"]) for r in rows] == [
        (s, m) for s in (16, 64) for m in ("mdlm", "edlm-ar", "edlm-nce")]
    sp = {r["method"]: r for r in rows if r["mdlm_steps"] == 64}
    assert sp["mdlm"]["steps"] == 64 and sp["mdlm"]["speedup_vs_mdlm"] == 1.0
    # edlm-ar: log ppl falls linearly in log steps from 300 at 16 to 100 at 64; 200 is reached at
    # f = log(1.5) / log(3) of the way, i.e. 16 * 4**f steps and 2 * 4**f seconds
    f = math.log(1.5) / math.log(3.0)
    assert sp["edlm-ar"]["steps"] == pytest.approx(16 * 4 ** f)
    assert sp["edlm-ar"]["speedup_vs_mdlm"] == pytest.approx(4.0 / (2 * 4 ** f))
    assert sp["edlm-nce"]["steps"] is None  # never reaches 200
    first = {r["method"]: r for r in rows if r["mdlm_steps"] == 16}  # target 400: edlm-ar is there at once
    assert first["edlm-ar"]["steps"] == 16 and first["edlm-ar"]["speedup_vs_mdlm"] == pytest.approx(0.5)


def test_markdown_and_resumable_csv(tmp_path):
    class Args:
        k, window, num_samples, seq_len, seed, autocast = 8, 0.2, 64, 128, 0, "bf16"

    md = edlm_table.markdown(ROWS, Args)
    assert "| edlm-ar | 64 | 100 (90-110) |" in md and "| 64: 200 | edlm-nce | - | - | - |" in md
    path = tmp_path / "t.csv"
    edlm_table._write_rows(ROWS, path)
    back = edlm_table._read_rows(path)
    assert [(r["method"], r["steps"]) for r in back] == [(r["method"], r["steps"]) for r in ROWS]
    assert back[3]["gen_ppl_smollm2"] == 100.0 and back[-1].get("seconds_per_sample") is None
    edlm_table.plot(back, path)
    assert path.with_suffix(".png").stat().st_size > 0


# ---- python/repro/frontier.py ---------------------------------------------------------------------------------------

FPATH = PATH.parent / "frontier.py"
fspec = importlib.util.spec_from_file_location("frontier", FPATH)
frontier = importlib.util.module_from_spec(fspec)
sys.modules["frontier"] = frontier
fspec.loader.exec_module(frontier)


def test_parse_arm():
    c = frontier.parse_arm("edlm-ar:proposal=smc:k=16:w=0.4-0.6:T=0.9:is_temp=0.5:ess=1", 8)
    assert c == {"method": "edlm-ar", "temperature": 0.9, "k": 16, "window": (0.4, 0.6), "proposal": "smc",
                 "is_temp": 0.5, "ess_threshold": 1.0}
    assert frontier.parse_arm("mdlm", 8)["window"] == 1.0 and frontier.parse_arm("mdlm", 8)["k"] == 8
    for bad in ("gpt:T=1", "mdlm:x=1"):
        with pytest.raises(ValueError):
            frontier.parse_arm(bad, 8)
    # every arm, step count and batch draws from its own seed
    seeds = {frontier.arm_seed(0, a, s, b) for a in ("mdlm:T=1", "mdlm:T=0.9") for s in (8, 16) for b in (0, 1)}
    assert len(seeds) == 8


def _sample_rows():
    """Synthetic per-sample rows: MDLM at 3 temperatures and 2 step counts, and a method
    whose log Gen PPL is 0.2 below the 16-step frontier at 8 steps."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []

    def add(arm, steps, h, y, secs, n=48):
        for i in range(n):
            rows.append({"arm": arm, "steps": steps, "index": i, "smollm2_nll": 100 * (y + 0.1 * rng.standard_normal()),
                         "smollm2_tokens": 100, "ar_nll": 128 * y, "ar_tokens": 128,
                         "entropy": h + 0.02 * rng.standard_normal(), "seconds": secs, "ess": None,
                         "nfe_denoiser": steps, "nfe_energy": 0})

    for steps, off in ((8, 0.3), (16, 0.0)):
        for T, h in ((0.9, 4.2), (1.0, 4.3), (1.05, 4.4)):
            add(f"mdlm:T={T:g}", steps, h, 6 + 4 * (h - 4.3) + off, 0.1 * steps)
    add("edlm-ar:proposal=smc", 8, 4.3, 6 - 0.2, 2.0)
    add("edlm-ar:proposal=smc", 16, 4.3, 6 - 0.3, 4.0)
    return rows


def test_frontier_report_and_speed(tmp_path):
    rows = _sample_rows()
    path = tmp_path / "s.csv"
    import edlm_ext.atomic as atomic

    atomic.write_csv(path, rows, frontier.FIELDS)
    back = frontier.read_samples(path)
    assert len(back) == len(rows) and back[0]["steps"] == 8 and isinstance(back[0]["smollm2_nll"], float)
    summary = frontier.summary_rows(back, n_boot=500, seed=0)
    smc8 = next(r for r in summary if r["judge"] == "smollm2" and r["arm"].startswith("edlm") and r["steps"] == 8)
    # 0.3 + ... : at 8 steps the method is 0.5 below the 8-step frontier (log), significantly
    assert smc8["rel"] == pytest.approx(math.exp(-0.5), rel=0.05) and smc8["rel_hi"] < 1 and smc8["holm"]
    speed = {r["arm"]: r for r in frontier.speed_rows(summary, 16)}
    # MDLM T=1 is on the 16-step frontier at 16 steps and 0.3 above it at 8: it needs 16 steps
    assert speed["mdlm:T=1"]["steps_needed"] == pytest.approx(16) and not speed["mdlm:T=1"]["at_most"]
    assert speed["mdlm:T=1"]["speedup_vs_mdlm"] == pytest.approx(1.0)
    # the method is already below the 16-step frontier at 8 steps: at most 8 steps, 2 s vs MDLM's 1.6 s
    assert speed["edlm-ar:proposal=smc"]["steps_needed"] == 8 and speed["edlm-ar:proposal=smc"]["at_most"]

    class A:
        seq_len, k, speed_ref = 128, 8, 16

    md = frontier.markdown(summary, frontier.speed_rows(summary, 16), A)
    assert "| 8 | edlm-ar:proposal=smc |" in md and "<= 8.0" in md
    frontier.plot(summary, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0


# ---- the CLI's default EDLM method is the best measured one ------------------------------------------------------

def _settings(cfg: dict) -> dict:
    window = cfg["window"]
    window = (1.0 - window, 1.0) if not isinstance(window, tuple) else window
    return {"proposal": cfg["proposal"], "k": cfg["k"], "window": tuple(float(w) for w in window)}


def test_cli_default_edlm_method_is_the_best_measured():
    # python/repro/results/frontier.csv (committed): among the EDLM-AR arms measured at every
    # step count of the table, the lowest mean Gen PPL relative to the MDLM frontier (SmolLM2)
    # must be the one edlm_ext.cli.EDLM_DEFAULTS names
    import csv

    from edlm_ext.cli import EDLM_DEFAULTS

    with (PATH.parent / "results" / "frontier.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["judge"] == "smollm2" and r["arm"].startswith("edlm-ar")]
    steps = {r["steps"] for r in rows}
    rel: dict = {}
    for r in rows:
        rel.setdefault(r["arm"], {})[r["steps"]] = math.log(float(r["rel"]))
    complete = {arm: sum(v.values()) / len(v) for arm, v in rel.items() if set(v) == steps}
    assert len(complete) >= 2, "the table must compare several EDLM-AR arms at every step count"
    best = min(complete, key=complete.get)
    assert _settings(frontier.parse_arm(best, 8)) == _settings(EDLM_DEFAULTS["edlm-ar"]), (best, complete)
