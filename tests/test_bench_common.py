"""The benchmarks' helper module (python/bench/common.py): the common options behave the same
in every bench_*.py (as the README's `bench ... [--quick] [--device cuda] [--csv F]` says),
the timer takes the median of its repeats, CSV and plot are written whole. No timing is
asserted: the timer runs on a scripted clock."""
import argparse
import csv
import sys
from pathlib import Path

import pytest
import torch

from edlm_ext.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python" / "bench"))
import common  # noqa: E402

BENCHES = ("sampling", "proposals", "unmask", "generation")


@pytest.mark.parametrize("which", BENCHES)
def test_every_benchmark_takes_the_common_options(which, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", which, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--device", "--quick", "--csv", "--threads"):
        assert flag in text, f"bench {which} has no {flag}"
    assert "{auto,cpu,cuda}" in text


def _parser():
    p = argparse.ArgumentParser(prog="x")
    common.add_common_args(p)
    return p


def test_resolve_device_and_csv(tmp_path):
    p = _parser()
    dev, path = common.resolve(p.parse_args(["--device", "cpu"]), p, "demo")
    assert dev == torch.device("cpu") and path == common.RESULTS_DIR / "bench_demo_cpu.csv"
    dev, path = common.resolve(p.parse_args(["--quick", "--device", "cpu"]), p, "demo")
    assert path is None  # --quick writes nothing unless asked
    out = tmp_path / "a.csv"
    _, path = common.resolve(p.parse_args(["--quick", "--csv", str(out)]), p, "demo")
    assert path == out
    with pytest.raises(SystemExit):  # a directory as the output: a usage error, before any work
        common.resolve(p.parse_args(["--csv", str(tmp_path)]), p, "demo")
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            common.resolve(p.parse_args(["--device", "cuda"]), p, "demo")
        dev, _ = common.resolve(p.parse_args(["--quick"]), p, "demo")
        assert dev.type == "cpu"  # auto


def test_timer_takes_the_median_on_the_cpu(monkeypatch):
    # perf_counter scripted: call i takes durations[i] seconds; the median must come back
    durations = [0.005, 0.001, 0.020, 0.003, 0.007]
    ticks = []
    t = 100.0
    for d in durations:
        ticks += [t, t + d]
        t += d + 1.0
    clock = iter([0.0] + ticks + [t])  # (the wall clock around all calls, then each call's pair)
    monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))
    calls = []
    got = common.timed(lambda: calls.append(1), torch.device("cpu"), warmup=2, repeats=len(durations))
    assert len(calls) == 2 + len(durations)
    assert got.ms == pytest.approx(1e3 * sorted(durations)[2])
    assert got.ms != pytest.approx(1e3 * sum(durations) / len(durations))  # the median, not the mean


def test_csv_and_plot_are_written(tmp_path):
    rows = [{"a": 1, "b": 2.5}, {"a": 3, "b": ""}]
    out = tmp_path / "r.csv"
    common.write_csv(out, rows, ("a", "b"))
    assert list(csv.DictReader(out.open())) == [{"a": "1", "b": "2.5"}, {"a": "3", "b": ""}]
    common.write_csv(None, rows, ("a", "b"))  # no path: nothing, no error
    png = common.plot_bars(tmp_path / "r.png", ["x", "y"], {"ours": [1.0, 2.0], "torch": [3.0, None]}, "ms", "t")
    if png is not None:  # matplotlib installed
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert common.plot_bars(None, ["x"], {"a": [1.0]}, "ms", "t") is None


def test_device_name_says_threads_and_vector_path():
    name = common.device_name(torch.device("cpu"))
    assert f"{torch.get_num_threads()} threads" in name
    assert any(p in name for p in ("scalar", "avx2", "avx512"))
