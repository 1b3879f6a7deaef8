"""``python -m edlm_ext sample``: in-process, and under torchrun with 2 CPU ranks (gloo)."""
import json
import os
import subprocess
import sys

import pytest

from edlm_ext.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 64  # the CLI's default tiny vocabulary; [MASK] = 63


def _read(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _check_records(records, n, seq_len):
    assert [r["index"] for r in records] == list(range(n))
    for r in records:
        assert len(r["tokens"]) == seq_len
        assert all(0 <= t < VOCAB - 1 for t in r["tokens"])  # no [MASK], in range


@pytest.mark.parametrize("method", ["mdlm", "edlm-ar"])
def test_sample_in_process_is_reproducible(tmp_path, method):
    args = ["sample", "--models", "tiny", "--method", method, "--num-samples", "5", "--seq-len", "10", "--steps", "6",
            "--batch-size", "2", "--k", "3", "--window", "0.5", "--seed", "3"]
    assert main(args + ["--output", str(tmp_path / "a.jsonl")]) == 0
    assert main(args + ["--output", str(tmp_path / "b.jsonl")]) == 0
    a = _read(tmp_path / "a.jsonl")
    _check_records(a, 5, 10)
    assert a == _read(tmp_path / "b.jsonl")
    assert main(args[:-1] + ["4", "--output", str(tmp_path / "c.jsonl")]) == 0
    assert _read(tmp_path / "c.jsonl") != a


@pytest.mark.parametrize("bad", [["--steps", "0"], ["--window", "2"], ["--num-samples", "0"], ["--method", "x"]])
def test_bad_flags_exit(tmp_path, bad):
    with pytest.raises(SystemExit):
        main(["sample", "--models", "tiny", "--output", str(tmp_path / "o.jsonl")] + bad)


def test_torchrun_two_cpu_ranks_rank0_writes_all(tmp_path):
    out = tmp_path / "samples.jsonl"
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "edlm_ext", "sample", "--models", "tiny", "--method", "edlm-ar", "--num-samples", "7", "--seq-len", "12",
           "--steps", "6", "--batch-size", "2", "--device", "cpu", "--output", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = _read(out)
    _check_records(records, 7, 12)
    assert [r["rank"] for r in records] == [0, 0, 0, 1, 1, 1, 1]  # split across both ranks
    assert len({tuple(r["tokens"]) for r in records}) == 7  # distinct streams per rank
    assert "wrote 7 samples from 2 rank(s)" in proc.stderr


def test_sample_with_the_shipped_models_prints_text(capsys):
    from edlm_ext.cli import _shipped_available

    if not _shipped_available():
        pytest.skip("no trained models in edlm_ext/assets")
    assert main(["sample", "--models", "shipped", "--method", "edlm-ar", "--num-samples", "2", "--seq-len", "32",
                 "--steps", "8", "--k", "2", "--window", "0.5", "--prompt", "Emma Woodhouse,"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- sample") == 2 and "Emma Woodhouse," in out and "method=edlm-ar" in out


def test_eval_scores_a_sample_file(tmp_path, capsys):
    from edlm_ext.cli import _shipped_available

    if not _shipped_available():
        pytest.skip("no trained models in edlm_ext/assets")
    out = tmp_path / "s.jsonl"
    assert main(["sample", "--models", "shipped", "--num-samples", "2", "--seq-len", "16", "--steps", "4",
                 "--output", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("samples=2 ") and "gen_ppl_ar=" in line and "entropy_nats=" in line
    tiny = tmp_path / "t.jsonl"
    tiny.write_text(json.dumps({"index": 0, "tokens": [10**6]}) + "\n")
    with pytest.raises(SystemExit, match="token id 1000000 outside the Austen vocabulary"):
        main(["eval", str(tiny)])


def test_bench_runs_a_microbenchmark_and_writes_csv(tmp_path, capsys):
    import csv

    out = tmp_path / "bench.csv"
    assert main(["bench", "sampling", "--quick", "--device", "cpu", "--baselines", "mdlm", "--dtypes", "fp32",
                 "--masked", "all", "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["method"] for r in rows] == ["ours", "mdlm"]
    assert all(float(r["ms"]) > 0 for r in rows) and float(rows[0]["speedup_vs_ours"]) == 1.0
    assert "x ours" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "nonsense"])


def test_edlm_console_script_is_declared(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)], cwd=root, check=True,
                   capture_output=True)
    eps = next(tmp_path.glob("*.egg-info")) / "entry_points.txt"
    assert "edlm = edlm_ext.cli:main" in eps.read_text()


@pytest.mark.parametrize("flags", [["--proposal", "unmask-first"], ["--proposal", "smc", "--window", "1"],
                                   ["--window", "0.4,0.6", "--is-temp", "0.5"], ["--is-start", "0.7"]])
def test_sample_edlm_options_with_tiny_models(tmp_path, flags):
    out = tmp_path / "s.jsonl"
    assert main(["sample", "--models", "tiny", "--method", "edlm-ar", "--num-samples", "3", "--seq-len", "8",
                 "--steps", "4", "--k", "2", "--output", str(out), *flags]) == 0
    records = _read(out)
    _check_records(records, 3, 8)
    assert records[0]["method"] == "edlm-ar" and records[0]["steps"] == 4 and records[0]["k"] == 2


@pytest.mark.parametrize("flags, match", [
    (["--window", "0.6,0.4"], "LO <= HI"), (["--window", "0.5", "--is-start", "0.6"], "not both"),
    (["--proposal", "smc", "--window", "0.5"], "--window 1"), (["--proposal", "smc", "--is-temp", "2"], "--is-temp 1"),
    (["--is-temp", "0"], "must be > 0")])
def test_sample_edlm_bad_options(tmp_path, flags, match, capsys):
    with pytest.raises(SystemExit) as e:
        main(["sample", "--models", "tiny", "--method", "edlm-ar", "--output", str(tmp_path / "o.jsonl"), *flags])
    assert match in str(e.value.code) + capsys.readouterr().err  # (InputError: the exit message; argparse: stderr)


def test_eval_frontier_and_likelihood(tmp_path, capsys):
    import csv

    from edlm_ext.cli import _shipped_available

    if not _shipped_available():
        pytest.skip("no trained models in edlm_ext/assets")
    files = []
    for i, flags in enumerate([["--method", "mdlm"], ["--method", "mdlm", "--temperature", "0.8"],
                               ["--method", "edlm-ar", "--k", "2", "--proposal", "unmask-first"]]):
        files.append(str(tmp_path / f"{i}.jsonl"))
        assert main(["sample", "--num-samples", "6", "--seq-len", "16", "--steps", "2", "--seed", str(i),
                     "--output", files[-1], *flags]) == 0
    capsys.readouterr()
    table = tmp_path / "f.csv"
    assert main(["eval", "--frontier", *files, "--csv", str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert {r["label"] for r in rows} == {"mdlm:T=1", "mdlm:T=0.8", "edlm-ar:proposal=unmask-first:k=2:w=0-1"}
    edlm = next(r for r in rows if r["label"].startswith("edlm-ar"))
    assert float(edlm["rel_lo"]) <= float(edlm["rel"]) <= float(edlm["rel_hi"])
    with pytest.raises(SystemExit, match="need --frontier"):
        main(["eval", *files])
    assert main(["eval", "--likelihood", "--num-seqs", "2", "--seq-len", "16", "--steps", "2", "--k", "2",
                 "--csv", str(tmp_path / "l.csv")]) == 0
    out = capsys.readouterr().out
    assert "mdlm (2-step ELBO)" in out and "edlm-ar (2-step bound" in out and "IS sd" in out
    with pytest.raises(SystemExit, match="give no input"):
        main(["eval", "--likelihood", files[0]])


def test_edlm_defaults_fill_only_what_the_flags_leave_unset():
    # the best measured EDLM-AR arm (SMC, every step) unless the flags ask for what SMC cannot
    # do: then the best measured proposal that takes a window / an energy temperature
    from edlm_ext.cli import EDLM_DEFAULTS, _parser, edlm_settings

    d = EDLM_DEFAULTS["edlm-ar"]

    def settings(*flags):
        return edlm_settings(_parser().parse_args(["sample", "--method", "edlm-ar", *flags]))

    assert settings() == {"k": d["k"], "proposal": "smc", "is_temp": 1.0, "window": (0.0, 1.0)}
    assert settings("--window", "1")["proposal"] == "smc"
    for flags in (["--window", "0.5"], ["--window", "0.4,0.6"], ["--is-start", "0.6"], ["--is-temp", "0.5"]):
        assert settings(*flags)["proposal"] == d["windowed"], flags
    assert settings("--window", "0.5", "--proposal", "joint")["proposal"] == "joint"
    assert settings("--k", "3")["k"] == 3
