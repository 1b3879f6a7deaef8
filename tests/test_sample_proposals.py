"""sample_proposals: k exact draws per sequence from one read of the logits."""
import numpy as np
import pytest
import torch

import edlm_ext
from edlm_ext import reference

from . import helpers
from .helpers import sampling_case as _case
from .stats import CHI2_ALPHA, chisquare_pvalue


@pytest.mark.parametrize("k", [1, 3, 8, 11])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_reference(device, k, dtype):
    B, L, V = 3, 40, 700
    logits, x_t = _case(B, L, V, device, dtype)
    props, log_q = edlm_ext.sample_proposals(logits, x_t, 0, k, seed=5)
    assert props.shape == (B, k, L) and log_q.shape == (B, k) and log_q.dtype == torch.float32
    u = torch.stack([reference.row_uniforms((5, 0), B * L, j) for j in range(k)])
    rp, rlq = reference.sample_proposals(logits.cpu(), x_t.cpu(), 0, k, uniforms=u)
    assert int((props.cpu() != rp).sum()) <= 1
    helpers.assert_log_q_close(log_q, logits, x_t, rp, 0, 1.0, rlq)
    masked = (x_t == 0).unsqueeze(1).expand(B, k, L)
    assert bool((props[~masked] == x_t.unsqueeze(1).expand(B, k, L)[~masked]).all())
    assert bool((props[masked] != 0).all())


def test_first_proposal_is_masked_sample(device):
    logits, x_t = _case(2, 64, 300, device)
    props, _ = edlm_ext.sample_proposals(logits, x_t, 0, 4, seed=17)
    x0, logp = edlm_ext.masked_sample(logits, x_t, 0, seed=17)
    assert torch.equal(props[:, 0], x0)
    assert not torch.equal(props[:, 1], x0)


def test_greedy_proposals_are_all_the_argmax(device):
    logits, x_t = _case(2, 30, 100, device)
    props, log_q = edlm_ext.sample_proposals(logits, x_t, 0, 5, temperature=0.0, seed=1)
    x0, logp = edlm_ext.masked_sample(logits, x_t, 0, temperature=0.0)
    assert torch.equal(props, x0.unsqueeze(1).expand_as(props))
    assert torch.allclose(log_q, logp.double().sum(-1, keepdim=True).float().expand_as(log_q))


def test_each_proposal_has_the_right_distribution_and_pairs_are_independent(device):
    # One masked position, V = 12 (10 tokens + 2 zero-mass + [MASK]); 200k sequences x k = 4.
    V, n, k = 13, 200_000, 4
    row = torch.linspace(-2.0, 1.5, V)
    row[3] = float("-inf")  # zero mass
    logits = row.view(1, 1, V).expand(n, 1, V).to(device)
    x_t = torch.full((n, 1), V - 1, dtype=torch.long, device=device)
    props, _ = edlm_ext.sample_proposals(logits, x_t, V - 1, k, seed=3)
    draws = props[:, :, 0].cpu().numpy()
    p = reference.tempered_log_probs(row.view(1, V), V - 1).exp().view(-1).numpy()
    for j in range(k):
        assert chisquare_pvalue(np.bincount(draws[:, j], minlength=V), p) > CHI2_ALPHA
    for a, b in [(0, 1), (1, 3), (2, 3)]:
        joint = np.bincount(draws[:, a] * V + draws[:, b], minlength=V * V)
        assert chisquare_pvalue(joint, np.outer(p, p).ravel()) > CHI2_ALPHA
    # The same check must catch dependent proposals (proposal b a copy of a, half the time).
    dependent = np.where(np.arange(n) % 2 == 0, draws[:, 0], draws[:, 1])
    joint = np.bincount(draws[:, 0] * V + dependent, minlength=V * V)
    assert chisquare_pvalue(joint, np.outer(p, p).ravel()) < CHI2_ALPHA


def test_bad_k():
    logits, x_t = _case(1, 2, 5, "cpu")
    with pytest.raises(ValueError, match="k must be >= 1"):
        edlm_ext.sample_proposals(logits, x_t, 0, 0)
    with pytest.raises(TypeError, match="k must be an int"):
        edlm_ext.sample_proposals(logits, x_t, 0, 2.0)


def test_invalid_row_raises(device):
    logits, x_t = _case(2, 3, 9, device, frac=1.0)
    logits[1, 2, 4] = float("nan")
    with pytest.raises(ValueError, match=r"logits\[1, 2\].*NaN"):
        edlm_ext.sample_proposals(logits, x_t, 0, 3)


def test_compile(device):  # (opcheck: tests/test_op_registry.py)
    logits, x_t = _case(2, 5, 33, device)

    def step(lg, x):
        props, log_q = edlm_ext.sample_proposals(lg, x, 0, 3, seed=2)
        return props, log_q.logsumexp(-1)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    a, b = compiled(logits, x_t), step(logits, x_t)
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1])
