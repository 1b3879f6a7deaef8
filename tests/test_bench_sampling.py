"""bench_sampling.py's in_cache row (CPU): one call of masked_sample over as many rows as the
case, all of them views of one block of at most IN_CACHE_BYTES, with the case's share of
masked rows. No timing is asserted."""
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python" / "bench"))
import bench_sampling  # noqa: E402


@pytest.mark.parametrize("shape,dtype,fraction", [((4, 64, 1000), torch.float32, 1.0),
                                                  ((2, 100, 8192), torch.bfloat16, 0.5),
                                                  ((1, 7, 300), torch.float32, 0.5)])
def test_in_cache_draws_as_many_rows_from_one_cached_block(shape, dtype, fraction, monkeypatch):
    logits, x_t, mask_id, n_masked = bench_sampling.make_inputs(shape, dtype, fraction, torch.device("cpu"))
    seen = {}
    real = bench_sampling.edlm_ext.masked_sample

    def spy(rows, ids, *args, **kwargs):
        seen["rows"], seen["ids"] = rows, ids
        return real(rows, ids, *args, **kwargs)

    monkeypatch.setattr(bench_sampling.edlm_ext, "masked_sample", spy)
    fn, note = bench_sampling.in_cache(logits, x_t, mask_id, torch.device("cpu"))
    tokens, logp = fn()
    rows, ids = seen["rows"], seen["ids"]
    B, L, V = shape
    assert rows.shape[0] * rows.shape[1] == B * L and rows.shape[2] == V and tokens.shape == ids.shape
    assert rows.stride(0) == 0 and ids.stride(0) == 0  # every batch entry is the same block
    n = rows.shape[1]
    assert n * V * logits.element_size() <= max(bench_sampling.IN_CACHE_BYTES, V * logits.element_size())
    assert torch.equal(rows[0], logits.reshape(-1, V)[:n])  # the case's own first rows
    masked = (ids == mask_id)
    share = float(masked.float().mean())
    assert abs(share - n_masked / (B * L)) <= 0.5 / n + 1e-6  # (float32 mean)
    assert (note != "") == (abs(share - n_masked / (B * L)) > 0.005)
    # masked positions got a token drawn (finite logp), the others kept theirs
    assert bool(torch.isfinite(logp[masked]).all()) and bool((logp[~masked] == 0).all())
    assert bool((tokens[~masked] == ids[~masked]).all())


def test_in_cache_is_cpu_only():
    logits = torch.randn(1, 2, 8, device="meta")
    with pytest.raises(RuntimeError, match="skipped"):
        bench_sampling.in_cache(logits, torch.zeros(1, 2, dtype=torch.long, device="meta"), 7, torch.device("meta"))
