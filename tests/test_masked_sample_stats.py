"""Distribution tests for masked_sample (docs/DESIGN.md §5): full-vocabulary chi-square,
the rare-token tail at the right rate (and float32 Gumbel noise failing that same
check), temperature. Fixed seeds; thresholds from chi-square / normal quantiles."""
import numpy as np
import pytest
import torch

import edlm_ext
from edlm_ext import reference

from .stats import CHI2_ALPHA, Z_CRIT, binomial_z, chisquare_pvalue


def _draw_counts(row_logits, n, mask_id, temperature=1.0, seed=0, device="cpu", chunk=250_000):
    """Token counts of n draws from one logits row (broadcast with stride 0: one row in memory)."""
    V = row_logits.numel()
    counts = torch.zeros(V, dtype=torch.long)
    done, k = 0, 0
    while done < n:
        m = min(chunk, n - done)
        logits = row_logits.to(device).view(1, 1, V).expand(1, m, V)
        x_t = torch.full((1, m), mask_id, dtype=torch.long, device=device)
        x0, _ = edlm_ext.masked_sample(logits, x_t, mask_id, temperature=temperature, seed=seed * 1000 + k)
        counts += torch.bincount(x0.flatten().cpu(), minlength=V)
        done, k = done + m, k + 1
    return counts.numpy()


def _heavy_tailed_logits(V, seed=0):
    """Zipf-like target over V tokens (the last is [MASK]): p_i ∝ 1/(i+1)^1.1 times noise."""
    g = torch.Generator().manual_seed(seed)
    ranks = torch.randperm(V - 1, generator=g).double()
    logits = -1.1 * torch.log(ranks + 1) + 0.3 * torch.randn(V - 1, generator=g, dtype=torch.float64)
    return torch.cat([logits, torch.tensor([5.0], dtype=torch.float64)]).float()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_full_vocabulary_chisquare(device, dtype):
    V = 1000
    logits = _heavy_tailed_logits(V).to(dtype)
    counts = _draw_counts(logits, 1_000_000, V - 1, seed=1, device=device)
    probs = reference.tempered_log_probs(logits.view(1, V), V - 1).exp().view(-1).numpy()
    assert counts[V - 1] == 0, "[MASK] was drawn"
    assert chisquare_pvalue(counts, probs) > CHI2_ALPHA


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_is_honoured(device, temperature):
    V = 500
    logits = _heavy_tailed_logits(V, seed=3)
    counts = _draw_counts(logits, 300_000, V - 1, temperature=temperature, seed=2, device=device)
    probs = reference.tempered_log_probs(logits.view(1, V), V - 1, temperature).exp().view(-1).numpy()
    assert chisquare_pvalue(counts, probs) > CHI2_ALPHA
    wrong = reference.tempered_log_probs(logits.view(1, V), V - 1, 1.0).exp().view(-1).numpy()
    assert chisquare_pvalue(counts, wrong) < CHI2_ALPHA, "the test cannot tell T from 1"


# Heavy tail: one dominant token and K tokens of probability ~5e-8 each.
TAIL_K, TAIL_P = 20_000, 5e-8


def _tail_logits():
    gap = -np.log(TAIL_P)
    row = torch.full((TAIL_K + 2,), -gap, dtype=torch.float32)
    row[0] = 0.0  # the dominant token
    row[-1] = 0.0  # [MASK] (excluded)
    return row


def _tail_probability(row):
    lp = reference.tempered_log_probs(row.view(1, -1), row.numel() - 1).view(-1)
    return float(lp[1:-1].exp().sum())


def _tail_z(tail_draws, n, row):
    return binomial_z(tail_draws, n, _tail_probability(row))


def _fp32_gumbel_tail_draws(row, n, seed, chunk=4000):
    """The sampler we must not be: argmax(l + g) with g = -log(-log(u)), u = torch.rand (float32)."""
    g = torch.Generator().manual_seed(seed)
    scores_row = row[:-1]  # [MASK] dropped
    tail = 0
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        u = torch.rand(m, scores_row.numel(), generator=g)
        noise = u.log_().neg_().log_().neg_()
        winners = (noise + scores_row).argmax(-1)
        tail += int((winners > 0).sum())
    return tail


def test_rare_tokens_drawn_at_the_right_rate(device):
    row = _tail_logits()
    n = 1_000_000
    counts = _draw_counts(row, n, row.numel() - 1, seed=5, device=device)
    tail = int(counts[1:-1].sum())
    z = _tail_z(tail, n, row)
    assert abs(z) < Z_CRIT, f"tail drawn {tail} times, z = {z:.2f}"
    assert counts[-1] == 0


@pytest.mark.slow
def test_float32_gumbel_fails_the_tail_check():
    row = _tail_logits()
    n = 160_000
    tail = _fp32_gumbel_tail_draws(row, n, seed=0)
    z = _tail_z(tail, n, row)
    assert z < -Z_CRIT, f"float32 Gumbel passed the tail check (z = {z:.2f}): the check is too weak"
