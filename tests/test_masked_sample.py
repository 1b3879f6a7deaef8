"""masked_sample against the float64 reference: same uniforms -> same tokens,
log-probabilities to float32 tolerance, and the semantics of docs/DESIGN.md §4."""
import pytest
import torch

import edlm_ext
from edlm_ext import reference

from . import helpers

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _case(B, L, V, dtype, device, mask_id, frac=0.7, seed=0):
    """logits [B, L, V] ~ 3 N(0, 1), x_t with a fraction ~frac of [MASK] (tests/helpers.py)."""
    return helpers.sampling_case(B, L, V, device, dtype, mask_id=mask_id, frac=frac, scale=3.0, seed=seed)


def _check_against_reference(logits, x_t, mask_id, temperature, seed):
    x0, logp = edlm_ext.masked_sample(logits, x_t, mask_id, temperature=temperature, seed=seed)
    B, L, _ = logits.shape
    u = reference.row_uniforms((seed, 0), B * L)
    rx, rlp = reference.masked_sample(logits.cpu(), x_t.cpu(), mask_id, temperature, uniforms=u)
    mismatches = int((x0.cpu() != rx).sum())
    # A token can differ only when u falls within float32 rounding (~1e-7 relative) of a
    # boundary of the CDF: expected count << 1 at these sizes.
    assert mismatches <= max(1, B * L // 10000), f"{mismatches} of {B * L} rows differ from the reference"
    masked = x_t == mask_id
    helpers.assert_logp_close(logp, logits, rx, mask_id, temperature, rlp, (x0.cpu() == rx) & masked.cpu())
    assert bool((x0[~masked] == x_t[~masked]).all()) and bool((logp[~masked] == 0).all())
    assert bool((x0[masked] != mask_id).all())
    return x0, logp


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V", [2, 999, 50258])
def test_matches_reference(device, dtype, V):
    B, L = (2, 64) if V == 50258 else (4, 250)
    logits, x_t = _case(B, L, V, dtype, device, V - 1)
    _check_against_reference(logits, x_t, V - 1, 1.0, seed=123)


def test_the_tolerance_rule_sees_a_small_logp_bias():
    """Power of the rule above: a logp off by 2e-5 (about 20 float32 ulps here) fails it."""
    logits, x_t = _case(4, 100, 777, torch.float32, "cpu", 5)
    x0, logp = edlm_ext.masked_sample(logits, x_t, 5, seed=9)
    rx, rlp = reference.masked_sample(logits, x_t, 5, uniforms=reference.row_uniforms((9, 0), 400))
    rows = (x_t == 5) & (x0 == rx)
    helpers.assert_logp_close(logp, logits, rx, 5, 1.0, rlp, rows)
    with pytest.raises(AssertionError, match="max error"):
        helpers.assert_logp_close(logp - 2e-5, logits, rx, 5, 1.0, rlp, rows)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_temperature_matches_reference(device, temperature):
    logits, x_t = _case(4, 100, 777, torch.float32, device, 5)
    _check_against_reference(logits, x_t, 5, temperature, seed=9)


@pytest.mark.parametrize("B,L", [(1, 1), (1, 3), (3, 1), (10, 100)])
def test_odd_sizes(device, B, L):
    logits, x_t = _case(B, L, 1001, torch.bfloat16, device, 0, frac=1.0)
    _check_against_reference(logits, x_t, 0, 1.0, seed=B * 100 + L)


def test_large_vocabulary(device):
    logits, x_t = _case(1, 8, 126464, torch.bfloat16, device, 126336, frac=1.0)
    _check_against_reference(logits, x_t, 126336, 1.0, seed=4)


def test_mask_id_in_first_and_middle_positions(device):
    for mask_id in (0, 300):
        logits, x_t = _case(2, 50, 600, torch.float32, device, mask_id)
        logits[..., mask_id] = 1e4  # a huge [MASK] logit is still never drawn
        _check_against_reference(logits, x_t, mask_id, 1.0, seed=mask_id)


@pytest.mark.parametrize("layout", ["strided_rows", "permuted", "expanded", "last_dim_strided"])
def test_non_contiguous_logits(device, layout):
    base, _ = _case(6, 40, 513, torch.float32, device, 3)
    if layout == "strided_rows":
        logits = base[::2, ::3]
    elif layout == "permuted":
        logits = base.permute(1, 0, 2)
    elif layout == "expanded":
        logits = base[:1, :1].expand(5, 7, 513)
    else:
        logits = torch.cat([base, base], dim=-1)[..., ::2]
    B, L, V = logits.shape
    x_t = _case(B, L, V, torch.float32, device, 3, seed=1)[1]
    x0, logp = _check_against_reference(logits, x_t, 3, 1.0, seed=77)
    x0c, logpc = edlm_ext.masked_sample(logits.contiguous(), x_t, 3, seed=77)
    assert torch.equal(x0, x0c) and torch.equal(logp, logpc)


def test_non_contiguous_x_t(device):
    logits, _ = _case(3, 20, 300, torch.float32, device, 7)
    x_big = _case(20, 3, 300, torch.float32, device, 7, seed=1)[1].t()  # [3, 20], transposed strides
    x0, _ = _check_against_reference(logits, x_big, 7, 1.0, seed=2)
    x0c, _ = edlm_ext.masked_sample(logits, x_big.contiguous(), 7, seed=2)
    assert torch.equal(x0, x0c)


def test_zero_probability_tokens_never_drawn(device):
    V = 64
    logits = torch.full((1, 20000, V), float("-inf"), device=device)
    allowed = torch.tensor([3, 17, 40], device=device)
    logits[..., allowed] = torch.tensor([0.0, 1.0, -2.0], device=device)
    x_t = torch.zeros(1, 20000, dtype=torch.long, device=device)
    x0, logp = edlm_ext.masked_sample(logits, x_t, 0, seed=1)
    assert bool(torch.isin(x0, allowed).all())
    assert set(x0.unique().tolist()) == {3, 17, 40}
    assert bool(torch.isfinite(logp).all())


def test_one_hot_rows(device):
    V = 1000
    logits = torch.full((2, 300, V), float("-inf"), device=device)
    target = torch.randint(1, V, (2, 300), generator=torch.Generator().manual_seed(0)).to(device)
    logits.scatter_(-1, target.unsqueeze(-1), 0.5)
    x_t = torch.zeros(2, 300, dtype=torch.long, device=device)
    for temperature in (0.0, 0.01, 1.0, 100.0):
        x0, logp = edlm_ext.masked_sample(logits, x_t, 0, temperature=temperature, seed=3)
        assert torch.equal(x0, target)
        assert bool((logp == 0).all())


def test_greedy_is_argmax_with_lowest_index_on_ties(device):
    logits = torch.zeros(2, 3, 10, device=device)
    logits[0, 0, [4, 7]] = 5.0  # tie: 4 wins
    logits[0, 1, 0] = 100.0  # [MASK] = 0 is never chosen, even greedily
    logits[0, 1, 9] = 1.0
    logits[1, 2, 2] = -1.0  # every other token ties at 0: lowest non-mask id = 1
    x_t = torch.zeros(2, 3, dtype=torch.long, device=device)
    x0, logp = edlm_ext.masked_sample(logits, x_t, 0, temperature=0.0, seed=0)
    assert x0[0, 0] == 4 and x0[0, 1] == 9 and x0[1, 2] == 1
    # logp at greedy: the argmax's log-probability under softmax(logits) (LLaDA's confidence)
    _, want_lp = reference.masked_sample(logits.cpu(), x_t.cpu(), 0, temperature=0.0)
    assert torch.allclose(logp.cpu().double(), want_lp, atol=1e-6)
    big, _ = _case(3, 50, 50258, torch.bfloat16, device, 0)
    x_t = torch.zeros(3, 50, dtype=torch.long, device=device)
    want, want_lp = reference.masked_sample(big.cpu(), x_t.cpu(), 0, temperature=0.0)
    got, got_lp = edlm_ext.masked_sample(big, x_t, 0, temperature=0.0)
    assert torch.equal(got.cpu(), want)
    helpers.assert_logp_close(got_lp, big.cpu(), want, 0, 1.0, want_lp, x_t == 0)


def test_unmasked_rows_are_not_read(device):
    logits, x_t = _case(2, 30, 100, torch.float32, device, 1)
    poisoned = logits.clone()
    poisoned[x_t != 1] = float("nan")
    a = edlm_ext.masked_sample(logits, x_t, 1, seed=8)
    b = edlm_ext.masked_sample(poisoned, x_t, 1, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_same_seed_same_draws_and_thread_count_independent(device):
    logits, x_t = _case(8, 128, 2048, torch.float32, device, 0)
    a = edlm_ext.masked_sample(logits, x_t, 0, seed=42)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        b = edlm_ext.masked_sample(logits, x_t, 0, seed=42)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = edlm_ext.masked_sample(logits, x_t, 0, seed=43)
    assert not torch.equal(a[0], c[0])


def test_empty_batch(device):
    logits = torch.zeros(0, 5, 10, device=device)
    x0, logp = edlm_ext.masked_sample(logits, torch.zeros(0, 5, dtype=torch.long, device=device), 0, seed=1)
    assert x0.shape == (0, 5) and logp.shape == (0, 5)
