"""unmask (the MDLM posterior step): exact replay by the reference, the semantics of
docs/DESIGN.md §4, the unmask rate (z-tests that a wrong rule fails), seeds and generators."""
import numpy as np
import pytest
import torch
from scipy import stats

import edlm_ext
from edlm_ext import reference

from .conftest import requires_cuda
from .stats import CHI2_ALPHA, Z_CRIT, binomial_z

MASK = 7


def _tokens(B, L, device, frac_masked=0.6, seed=0):
    """x_t with about frac_masked of its positions at MASK; x0 with no MASK at all."""
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randint(0, 50, (B, L), generator=g)
    x_t[x_t == MASK] = MASK + 1
    x_t[torch.rand(B, L, generator=g) < frac_masked] = MASK
    x0 = torch.randint(100, 200, (B, L), generator=g)
    return x_t.to(device), x0.to(device)


def _replay(x_t, x0, p, seed):
    u = reference.row_uniforms((seed, 0), x_t.numel(), reference.DOMAIN_UNMASK)
    return reference.unmask(x_t.cpu(), x0.cpu(), MASK, p.cpu() if isinstance(p, torch.Tensor) else p, u)


@pytest.mark.parametrize("B,L", [(1, 1), (3, 1), (1, 777), (5, 300)])
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0])
def test_matches_reference(device, B, L, p):
    x_t, x0 = _tokens(B, L, device, seed=B * L)
    got = edlm_ext.unmask(x_t, x0, MASK, p, seed=11)
    assert got.shape == (B, L) and got.dtype == torch.int64 and got.is_contiguous()
    assert torch.equal(got.cpu(), _replay(x_t, x0, p, 11))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_per_row_p_matches_reference(device, dtype):
    x_t, x0 = _tokens(6, 500, device, frac_masked=0.9)
    p = torch.tensor([0.0, 0.1, 0.3, 0.7, 0.999, 1.0], dtype=dtype, device=device)
    got = edlm_ext.unmask(x_t, x0, MASK, p, seed=-5)
    assert torch.equal(got.cpu(), _replay(x_t, x0, p, -5))
    assert torch.equal(got[0], x_t[0]) and bool((got[5] != MASK).all())


def test_non_contiguous_inputs(device):
    x_big, x0_big = _tokens(40, 12, device)
    x_t, x0 = x_big.t(), x0_big.t()  # [12, 40], transposed strides
    p = torch.linspace(0, 1, 24, dtype=torch.float64, device=device)[::2]  # [12], stride 2
    got = edlm_ext.unmask(x_t, x0, MASK, p, seed=3)
    assert torch.equal(got, edlm_ext.unmask(x_t.contiguous(), x0.contiguous(), MASK, p.contiguous(), seed=3))
    assert torch.equal(got.cpu(), _replay(x_t, x0, p, 3))


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_unmasked_positions_never_change(device, p):
    x_t, x0 = _tokens(4, 2000, device, frac_masked=0.5)
    got = edlm_ext.unmask(x_t, x0, MASK, p, seed=1)
    keep = x_t != MASK
    assert torch.equal(got[keep], x_t[keep])
    masked = ~keep
    taken = got[masked] != MASK
    assert torch.equal(got[masked][taken], x0[masked][taken])  # a masked position is MASK or x0
    if p == 0.0:
        assert torch.equal(got, x_t)
    if p == 1.0:
        assert torch.equal(got, torch.where(masked, x0, x_t))


def test_x0_values_are_copied_as_they_are(device):
    # x0 may hold any id (even MASK or negative ids): the op copies, never interprets.
    x_t = torch.full((2, 5), MASK, device=device)
    x0 = torch.tensor([[MASK, -1, 2**40, 0, 3]] * 2, device=device)
    assert torch.equal(edlm_ext.unmask(x_t, x0, MASK, 1.0, seed=0), x0)


def test_empty(device):
    for shape in ((0, 4), (3, 0)):
        x = torch.zeros(shape, dtype=torch.long, device=device)
        assert edlm_ext.unmask(x, x, 0, 0.5, seed=1).shape == shape


# ---------------------------------------------------------------------------
# Statistics: the unmask rate is p per row, positions and rows independent.

RATES = [0.001, 0.05, 0.3, 0.5, 0.93]


def _max_rate_z(x_s, x_t, p):
    """Largest |z| over rows of the number of unmasked positions against Binomial(#masked, p_b)."""
    masked = x_t == MASK
    taken = (masked & (x_s != MASK)).sum(1).tolist()
    counts = masked.sum(1).tolist()
    return max(abs(binomial_z(t, c, q)) for t, c, q in zip(taken, counts, p))


def test_unmask_rate_is_p(device):
    B, L = len(RATES), 200_000
    x_t, x0 = _tokens(B, L, device, frac_masked=0.8, seed=2)
    p = torch.tensor(RATES, dtype=torch.float64, device=device)
    assert _max_rate_z(edlm_ext.unmask(x_t, x0, MASK, p, seed=2024).cpu(), x_t.cpu(), RATES) < Z_CRIT
    # The same z-test rejects a wrong rule fed the op's own uniforms: p^2 instead of p,
    # and row 0's p for every row.
    u = reference.row_uniforms((2024, 0), B * L, reference.DOMAIN_UNMASK)
    for wrong_p in (p**2, p[:1].expand(B)):
        wrong = reference.unmask(x_t.cpu(), x0.cpu(), MASK, wrong_p.cpu(), u)
        assert _max_rate_z(wrong, x_t.cpu(), RATES) > Z_CRIT


def test_positions_and_rows_are_independent(device):
    # P(both (0, l) and (1, l) unmask) = p^2 when rows draw independent uniforms;
    # P(l and l + 1 both unmask) = p^2 when neighbouring positions do.
    p, L = 0.5, 100_000
    x_t = torch.full((2, L), MASK, device=device)
    x0 = torch.zeros(2, L, dtype=torch.long, device=device)
    got = (edlm_ext.unmask(x_t, x0, MASK, p, seed=9) != MASK).cpu()
    both_rows = int((got[0] & got[1]).sum())
    both_neighbours = int((got[0, :-1] & got[0, 1:]).sum())
    assert abs(binomial_z(both_rows, L, p * p)) < Z_CRIT
    assert abs(binomial_z(both_neighbours, L - 1, p * p)) < Z_CRIT
    # A generator that reuses row 0's uniforms for row 1 fails the first check.
    u = reference.row_uniforms((9, 0), L, reference.DOMAIN_UNMASK)
    shared = reference.unmask(x_t.cpu(), x0.cpu(), MASK, p, torch.cat([u, u])) != MASK
    assert abs(binomial_z(int((shared[0] & shared[1]).sum()), L, p * p)) > Z_CRIT


def test_rate_over_many_calls_with_a_generator(device):
    # Generator-keyed draws, 2000 calls on 64 positions: every position unmasks at
    # rate p over the calls (the sum of the 64 per-position z^2 is ~ chi2(64)).
    p, calls, L = 0.2, 2000, 64
    gen = torch.Generator(device=device).manual_seed(5)
    x_t = torch.full((1, L), MASK, device=device)
    x0 = torch.zeros(1, L, dtype=torch.long, device=device)
    hits = torch.zeros(L, dtype=torch.int64)
    for _ in range(calls):
        hits += (edlm_ext.unmask(x_t, x0, MASK, p, generator=gen)[0] != MASK).cpu()
    z = np.array([binomial_z(int(h), calls, p) for h in hits])
    assert stats.chi2.sf(float((z**2).sum()), df=L) > CHI2_ALPHA


# ---------------------------------------------------------------------------
# Streams


def test_seed_determinism_and_generator_advance(device):
    x_t, x0 = _tokens(4, 1000, device, frac_masked=1.0)
    a = edlm_ext.unmask(x_t, x0, MASK, 0.5, seed=42)
    assert torch.equal(a, edlm_ext.unmask(x_t, x0, MASK, 0.5, seed=42))
    assert not torch.equal(a, edlm_ext.unmask(x_t, x0, MASK, 0.5, seed=43))
    gen = torch.Generator(device=device).manual_seed(1)
    first = edlm_ext.unmask(x_t, x0, MASK, 0.5, generator=gen)
    second = edlm_ext.unmask(x_t, x0, MASK, 0.5, generator=gen)
    assert not torch.equal(first, second), "the generator did not advance"
    gen.manual_seed(1)
    assert torch.equal(first, edlm_ext.unmask(x_t, x0, MASK, 0.5, generator=gen))


def test_thread_count_does_not_change_the_result():
    x_t, x0 = _tokens(8, 5000, "cpu")
    a = edlm_ext.unmask(x_t, x0, MASK, 0.4, seed=8)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        b = edlm_ext.unmask(x_t, x0, MASK, 0.4, seed=8)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a, b)


@requires_cuda
def test_cpu_and_cuda_agree():
    x_t, x0 = _tokens(16, 3000, "cpu")
    p = torch.rand(16, generator=torch.Generator().manual_seed(0))
    for pp in (p, p.double(), 0.37):
        cpu = edlm_ext.unmask(x_t, x0, MASK, pp, seed=77)
        gpu_p = pp.cuda() if isinstance(pp, torch.Tensor) else pp
        gpu = edlm_ext.unmask(x_t.cuda(), x0.cuda(), MASK, gpu_p, seed=77)
        assert torch.equal(cpu, gpu.cpu())
