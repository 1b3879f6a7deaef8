"""Sequential Monte Carlo (proposal="smc", edlm_ext/smc.py) by exact enumeration.

On the tiny joint of tests/tiny_joint.py (exact-marginal denoiser, the joint's own AR
model as energy), SMC's weighted particles are unbiased at any number of particles N:
E[Ẑ Σ_j W_j 1{x_j = c}] = p(c) for every cell c consistent with the prefix (and
E[Ẑ] = p(prefix)), with resampling at every step, triggered by the ESS, or never. Each
cell with p(c) >= 2e-3 (98.6% of the mass; the estimator of a rarer cell is too
heavy-tailed for a z-test at this size) and Ẑ are z-tested (Bonferroni); three
deliberately wrong variants must fail the same test: dropping the 1/q of the newly
unmasked tokens from the incremental weight, weights recomputed from scratch at each step
(no carried information), and resampled particles that keep their ancestors' weights
(double counting). As N grows the returned sample (one particle drawn by its weight)
converges to p(x0 | prefix).
"""
import numpy as np
import pytest
import torch
from scipy import stats

import edlm_ext
from edlm_ext import smc
from tests.stats import CHI2_ALPHA, chisquare_pvalue
from tests.tiny_joint import BOS, CELLS, JOINT, MASK, T, L, MarginalDenoiser, ar_logits, cell_counts, code, tv

ROWS, N, STEPS = 20000, 4, 3
Z_CELLS = float(stats.norm.isf(CHI2_ALPHA / 2 / (T ** L + 1)))  # Bonferroni over (at most) every cell and Ẑ


def _run(rows=ROWS, n=N, steps=STEPS, seed=0, prefix=None, ess_threshold=0.5):
    return edlm_ext.sample(MarginalDenoiser(), batch_size=rows, seq_len=L, mask_id=MASK, steps=steps,
                           energy=edlm_ext.AREnergy(ar_logits, bos_id=BOS), k=n, window=1.0, proposal="smc",
                           prefix=prefix, ess_threshold=ess_threshold, seed=seed)


BIG = JOINT.reshape(-1) >= 2e-3


def _z_scores(out, prefix_token=None) -> np.ndarray:
    """z of the mean of Ẑ Σ_j W_j 1{x_j = c} against p(c) for the cells of BIG, and of
    E[Ẑ] (last)."""
    d = out.smc
    z_hat = d.log_z.exp()
    W = d.log_weights.exp()
    cells = code(d.particles, T)  # [R, N]
    contrib = torch.zeros(cells.shape[0], T ** L, dtype=torch.float64)
    contrib.scatter_add_(1, cells, W)
    contrib = contrib * z_hat[:, None]
    target = JOINT.reshape(-1).clone()
    if prefix_token is not None:
        target[CELLS[:, 0] != prefix_token] = 0
    keep = BIG & (target > 0)
    cols = torch.cat([contrib[:, keep], z_hat[:, None]], 1)
    want = torch.cat([target[keep], target.sum().reshape(1)])
    se = cols.std(0) / cols.shape[0] ** 0.5
    return ((cols.mean(0) - want) / se).numpy()


@pytest.mark.parametrize("prefix, ess_threshold", [(None, 0.5), (1, 0.5), (None, 1.0), (None, 0.0)])
def test_weighted_particles_are_unbiased(prefix, ess_threshold):
    out = _run(prefix=None if prefix is None else torch.tensor([prefix]), ess_threshold=ess_threshold)
    assert bool((out.smc.particles != MASK).all())
    if ess_threshold > 0:
        assert out.stats.resamples > 0, "the test must exercise resampling"
    z = _z_scores(out, prefix)
    assert np.abs(z).max() < Z_CELLS, np.abs(z).max()


def _fails(monkeypatch, name, fn):
    monkeypatch.setattr(smc, name, fn)
    z = _z_scores(_run(seed=1))
    assert np.abs(z).max() > Z_CELLS, f"the wrong variant {name} was not caught (max |z| {np.abs(z).max():.2f})"


def test_dropping_the_new_tokens_q_fails(monkeypatch):
    # carried = log A(x_n, y_n) alone: the 1/q_N of the tokens the move kept is lost
    _fails(monkeypatch, "_carried", lambda log_a, logp, newly: log_a)


def test_weights_from_scratch_fail(monkeypatch):
    _fails(monkeypatch, "_incremental", lambda log_a, carried: log_a)


def test_resampled_particles_keeping_their_weights_fail(monkeypatch):
    def keep(log_W, redo, anc):  # double counting: resampled AND still weighted
        kept = log_W.gather(1, anc)
        kept = kept - kept.logsumexp(1, keepdim=True)
        return torch.where(redo.unsqueeze(1), kept, log_W)

    _fails(monkeypatch, "_after_resampling", keep)


def test_the_sample_converges_to_the_joint():
    # The returned sample (one particle per row, drawn by its weight) approaches p as N grows;
    # a plain MDLM chain (N = 1) is far from it.
    rows = 4000
    exact = JOINT.reshape(-1).numpy()
    mdlm = edlm_ext.sample(MarginalDenoiser(), batch_size=rows, seq_len=L, mask_id=MASK, steps=STEPS, seed=2)
    far = tv(cell_counts(mdlm.tokens) / rows, exact)
    near = tv(cell_counts(_run(rows=rows, n=64, seed=3).tokens) / rows, exact)
    assert far > 0.15 and near < far / 3, (far, near)
    assert chisquare_pvalue(cell_counts(_run(rows=rows, n=64, seed=4).tokens), exact) > CHI2_ALPHA


def test_smc_argument_checks():
    den, e = MarginalDenoiser(), edlm_ext.AREnergy(ar_logits, bos_id=BOS)
    kw = dict(batch_size=2, seq_len=L, mask_id=MASK, steps=2, k=4, proposal="smc")
    with pytest.raises(ValueError, match="needs an energy"):
        edlm_ext.sample(den, window=1.0, **kw)
    with pytest.raises(ValueError, match="window=1.0"):
        edlm_ext.sample(den, energy=e, window=0.5, **kw)
    with pytest.raises(ValueError, match="is_temp must be 1"):
        edlm_ext.sample(den, energy=e, window=1.0, is_temp=0.5, **kw)
    with pytest.raises(ValueError, match="strategy='ancestral'"):
        edlm_ext.sample(den, energy=e, window=1.0, strategy="confidence", **kw)
    with pytest.raises(ValueError, match="ess_threshold"):
        edlm_ext.sample(den, energy=e, window=1.0, ess_threshold=1.5, **kw)
