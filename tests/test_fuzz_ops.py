"""A short run of the op fuzz loop (python/bench/fuzz_ops.py; `make test-asan` runs a
longer one under ASan + UBSan): every case raises a clean argument error or returns
outputs that obey the ops' invariants."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "bench"))
import fuzz_ops  # noqa: E402


def test_fuzz_loop_finds_nothing():
    counts = fuzz_ops.fuzz(seconds=60, seed=1, cases=1500)
    assert counts["cases"] == 1500
    assert counts["ok"] > 1000  # most cases run the kernels, not just the argument checks
    assert min(counts[k] for k in ("raw", "wrapper", "resample", "unmask")) > 100


def test_the_invariants_catch_an_out_of_range_id():
    """Power: the fuzz loop's id check fails on what main returned for T = 2e45 (id 303 of V = 300)."""
    with pytest.raises(AssertionError, match=r"outside \[0, V = 300\)"):
        fuzz_ops._check_ids(torch.tensor([[303, 5]]), 300, "masked_sample")
