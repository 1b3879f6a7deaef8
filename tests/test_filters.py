"""Filters (top_k, top_p, min_p) and the entropy output: exact draws from the
filtered, renormalized distribution, against a float64 reference that sorts."""
import numpy as np
import pytest
import torch

import edlm_ext
from edlm_ext import reference

from . import helpers
from .stats import CHI2_ALPHA, chisquare_pvalue

FILTERS = [
    {"top_k": 1},
    {"top_k": 7},
    {"top_p": 0.9},
    {"top_p": 0.3},
    {"min_p": 0.05},
    {"top_k": 50, "top_p": 0.8},
    {"top_k": 50, "top_p": 0.8, "min_p": 0.02},
]


def _case(B, L, V, device, dtype=torch.float32, seed=0):
    return helpers.sampling_case(B, L, V, device, dtype, frac=0.8, scale=2.5, seed=seed)


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("temperature", [0.7, 1.0])
def test_filtered_draws_match_reference(device, filters, temperature):
    B, L, V = 3, 50, 700
    logits, x_t = _case(B, L, V, device)
    x0, logp, h = edlm_ext.masked_sample(logits, x_t, 0, temperature=temperature, seed=21, return_entropy=True,
                                         **filters)
    u = reference.row_uniforms((21, 0), B * L)
    rx, rlp = reference.masked_sample(logits.cpu(), x_t.cpu(), 0, temperature, uniforms=u, **filters)
    assert int((x0.cpu() != rx).sum()) <= 1
    masked = (x_t == 0).cpu()
    helpers.assert_logp_close(logp, logits, rx, 0, temperature, rlp, masked & (x0.cpu() == rx), **filters)
    lp = reference.tempered_log_probs(logits.cpu(), 0, temperature, **filters)
    drawn_lp = lp.gather(-1, x0.cpu().unsqueeze(-1)).squeeze(-1)
    assert bool(torch.isfinite(drawn_lp[masked]).all()), "a filtered-out token was drawn"
    rh = reference.entropy(logits.cpu(), 0, temperature, **filters)
    helpers.assert_entropy_close(h, logits, 0, temperature, rh, masked, **filters)
    assert bool((h.cpu()[~masked] == 0).all())


@pytest.mark.parametrize("scale", [2.0, 4.0])
def test_top_p_alone_over_a_large_nucleus_matches_reference(device, scale):
    # V = 8192: at scale 2 the nucleus holds ~1900 tokens (the CPU's candidates are selected,
    # not sorted), at scale 4 ~70 (its group maxima hold too little mass: the bound from the
    # masses' bit lengths); min_p on top in the second call
    B, L, V = 2, 8, 8192
    logits, x_t = helpers.sampling_case(B, L, V, device, torch.float32, frac=0.8, scale=scale, seed=3)
    masked = (x_t == 0).cpu()
    for filters in ({"top_p": 0.9}, {"top_p": 0.9, "min_p": 1e-3}):
        x0, logp, h = edlm_ext.masked_sample(logits, x_t, 0, seed=5, return_entropy=True, **filters)
        u = reference.row_uniforms((5, 0), B * L)
        rx, rlp = reference.masked_sample(logits.cpu(), x_t.cpu(), 0, 1.0, uniforms=u, **filters)
        assert int((x0.cpu() != rx).sum()) <= 1
        helpers.assert_logp_close(logp, logits, rx, 0, 1.0, rlp, masked & (x0.cpu() == rx), **filters)
        helpers.assert_entropy_close(h, logits, 0, 1.0, reference.entropy(logits.cpu(), 0, 1.0, **filters), masked,
                                     **filters)


@pytest.mark.parametrize("filters", [{"top_k": 5}, {"top_p": 0.5}, {"min_p": 0.2}])
def test_filtered_proposals_match_reference(device, filters):
    B, L, V, k = 2, 30, 300, 4
    logits, x_t = _case(B, L, V, device, torch.bfloat16, seed=1)
    props, log_q = edlm_ext.sample_proposals(logits, x_t, 0, k, seed=8, **filters)
    u = torch.stack([reference.row_uniforms((8, 0), B * L, j) for j in range(k)])
    rp, rlq = reference.sample_proposals(logits.cpu(), x_t.cpu(), 0, k, uniforms=u, **filters)
    assert int((props.cpu() != rp).sum()) <= 1
    helpers.assert_log_q_close(log_q, logits, x_t, rp, 0, 1.0, rlq, **filters)


def test_ties_at_the_threshold_are_kept(device):
    V = 20
    row = torch.tensor([5.0, 3.0, 3.0, 3.0, 1.0] + [-1.0] * (V - 5))
    logits = row.view(1, 1, V).expand(1, 4000, V).to(device)
    x_t = torch.full((1, 4000), V - 1, dtype=torch.long, device=device)
    x0, _ = edlm_ext.masked_sample(logits, x_t, V - 1, top_k=2, seed=0)
    assert set(x0.unique().tolist()) == {0, 1, 2, 3}  # the three tokens tied at the 2nd value stay


def test_greedy_with_filters(device):
    logits, x_t = _case(2, 40, 500, device)
    x0, logp, h = edlm_ext.masked_sample(logits, x_t, 0, temperature=0.0, top_p=0.5, return_entropy=True)
    rx, rlp = reference.masked_sample(logits.cpu(), x_t.cpu(), 0, 0.0, top_p=0.5)
    assert torch.equal(x0.cpu(), rx)
    masked = (x_t == 0).cpu()
    helpers.assert_logp_close(logp, logits, rx, 0, 0.0, rlp, masked, top_p=0.5)
    rh = reference.entropy(logits.cpu(), 0, 0.0, top_p=0.5)
    helpers.assert_entropy_close(h, logits, 0, 0.0, rh, masked, top_p=0.5)


@pytest.mark.parametrize("filters", [{"top_p": 0.9}, {"top_k": 20, "min_p": 0.01}])
def test_filtered_distribution_chisquare(device, filters):
    V, n, T = 200, 300_000, 0.8
    g = torch.Generator().manual_seed(2)
    row = torch.randn(V, generator=g) * 2
    logits = row.view(1, 1, V).expand(1, n, V).to(device)
    x_t = torch.full((1, n), V - 1, dtype=torch.long, device=device)
    x0, _ = edlm_ext.masked_sample(logits, x_t, V - 1, temperature=T, seed=6, **filters)
    counts = np.bincount(x0.cpu().numpy().ravel(), minlength=V)
    p = reference.tempered_log_probs(row.view(1, V), V - 1, T, **filters).exp().view(-1).numpy()
    assert chisquare_pvalue(counts, p) > CHI2_ALPHA
    unfiltered = reference.tempered_log_probs(row.view(1, V), V - 1, T).exp().view(-1).numpy()
    assert chisquare_pvalue(counts, unfiltered) < CHI2_ALPHA, "the check cannot see the filter"


def test_entropy_without_filters(device):
    logits, x_t = _case(4, 30, 1000, device, torch.float16, seed=3)
    for T in (0.5, 1.0, 0.0):
        _, _, h = edlm_ext.masked_sample(logits, x_t, 0, temperature=T, seed=1, return_entropy=True)
        rh = reference.entropy(logits.cpu(), 0, T)
        masked = (x_t == 0).cpu()
        helpers.assert_entropy_close(h, logits, 0, T, rh, masked)
