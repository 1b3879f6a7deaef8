"""The CPU kernels' batched uniforms (csrc/cpu/philox_batch.cpp): every vectorized path
this CPU has gives exactly the uniforms of the float64 replay in edlm_ext.reference."""
import numpy as np
import pytest
import torch

from edlm_ext import _C, reference

LEVELS = ["scalar", "avx2", "avx512"]


def _expected(rng, rows: np.ndarray, stream: int) -> torch.Tensor:
    """reference.row_uniforms for arbitrary counters: the values at positions rows."""
    seed, offset = rng
    seed &= 2**64 - 1
    stream = (stream + offset) & (2**64 - 1)
    r = rows.astype(np.uint64)
    ctr = np.stack([r & np.uint64(0xFFFFFFFF), r >> np.uint64(32),
                    np.full(len(r), stream & 0xFFFFFFFF, dtype=np.uint64),
                    np.full(len(r), stream >> 32, dtype=np.uint64)], axis=1)
    out = reference.philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32))
    bits = (out[:, 1] << np.uint64(32)) | out[:, 0]
    return torch.from_numpy(((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53)


def test_expected_matches_row_uniforms():
    # _expected is reference.row_uniforms at arbitrary counters: check it on 0..N-1.
    rng = (123, 4)
    assert torch.equal(_expected(rng, np.arange(1000), reference.DOMAIN_UNMASK),
                       reference.row_uniforms(rng, 1000, reference.DOMAIN_UNMASK))


@pytest.mark.parametrize("simd", LEVELS)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 15, 16, 17, 1000])
def test_paths_match_the_reference(simd, n):
    if LEVELS.index(simd) > LEVELS.index(_C.cpu_simd()):
        pytest.skip(f"this CPU has no {simd}")
    g = np.random.default_rng(n)
    rows = g.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)  # high words set too
    rows[: n // 2] = np.arange(n // 2)
    for seed, offset, stream in ((0, 0, 0), (-1, 2**40 + 3, reference.DOMAIN_UNMASK), (2**62 + 5, 7, 3)):
        rng = torch.tensor([seed, offset])
        got = torch.ops.edlm_ext_testing.philox_uniforms(rng, torch.from_numpy(rows), stream, simd)
        assert torch.equal(got, _expected((seed, offset), rows.view(np.uint64), stream))


def test_unknown_or_missing_path():
    with pytest.raises(ValueError, match="unknown simd"):
        torch.ops.edlm_ext_testing.philox_uniforms(torch.tensor([1, 0]), torch.arange(4), 0, "sse9")
    if _C.cpu_simd() != "avx512":
        with pytest.raises(ValueError, match="this CPU has no avx512"):
            torch.ops.edlm_ext_testing.philox_uniforms(torch.tensor([1, 0]), torch.arange(4), 0, "avx512")
