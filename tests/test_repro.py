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
