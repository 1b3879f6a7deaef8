"""EDLM exactness by enumeration (docs/DESIGN.md §5).

A known joint p over L = 4 positions (tokens 0..2), a denoiser giving its exact
conditional marginals p(x_i | unmasked tokens of x_t) (the factorized proposal q), and
the exact next-token conditionals of p as the AR model. For each x_t pattern everything
is enumerated: the true conditional p(x0 | x_t), what each energy converges to as the
number of proposals k grows (the normalized q · exp(-E)), and the exact law of the
resampled x0 at finite k. The draws of propose_and_resample must follow the exact
finite-k law of the true target; each defect (the old carry-over AR energy, and those of
the public reference code, docs/DESIGN.md §1) must miss it.

Patterns put unmasked tokens before, between and after masked ones: an AR term at an
unmasked position depends on the masked candidates to its left, so an energy that
drops it targets something else (the old carry-over rule, checked below). With only a
fixed prefix unmasked (the first pattern), that rule happens to be exact, which is why
a test with the unmasked token at position 0 alone cannot see it.
"""
import itertools

import numpy as np
import pytest
import torch

import edlm_ext
from tests.stats import CHI2_ALPHA, chisquare_pvalue
from tests.tiny_joint import (BOS, CELLS, JOINT, MASK, PREFIX, T, L, M, V, Group, ar_logits, call, code, exact_law,
                              tv)

N_PER_GROUP = 1500
K = 64

# ---- the x_t patterns ---------------------------------------------------------------------------------------------

# Unmasked positions (the rest masked). Two settings of the unmasked tokens each.
PATTERNS = {
    "prefix only (x, M, M, M)": (0,),
    "middle (x, M, x, M)": (0, 2),
    "end (x, M, M, x)": (0, 3),
    "middle and end (x, x, M, x)": (0, 1, 3),
    "position 0 masked, middle (M, M, x, M)": (2,),
    "position 0 masked, end (M, x, M, x)": (1, 3),
}


def _settings(unmasked: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The two settings of the unmasked tokens where the old carry-over target is farthest
    from the true conditional (ties: enumeration order) — the strongest power check."""
    rows = []
    for vals in itertools.product(range(T), repeat=len(unmasked)):
        x = [M] * L
        for i, v in zip(unmasked, vals):
            x[i] = v
        g = Group(tuple(x))
        rows.append((-round(tv(g.forced(), g.p), 9), tuple(x)))
    return [x for _, x in sorted(rows, key=lambda r: r[0])[:2]]


GROUPS = [Group(x) for u in PATTERNS.values() for x in _settings(u)]
NAMES = [f"{name} {tuple('M' if v == M else v for v in g.x_t.tolist())}"
         for name, g in zip([n for n in PATTERNS for _ in range(2)], GROUPS)]
POS0_FIXED = [i for i, g in enumerate(GROUPS) if not bool(g.masked[0])]
PATTERNS_FIRST = {name: 2 * j for j, name in enumerate(PATTERNS)}  # each pattern's first group
PREFIX_ONLY = [0, 1]  # the groups of the first pattern
# Groups where the factorized proposal is far from the target (TV >= 0.2): an energy
# defect that reweights by anything but p / q must show there. (With one masked position
# the proposal is already exact: weights that depend on p / q alone stay uniform.)
FAR = [i for i, g in enumerate(GROUPS) if tv(g.q, g.p) >= 0.2]


def _batch(groups: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x_t and denoiser logits for the groups interleaved row by row; and each row's group."""
    gid = torch.tensor(groups).repeat(N_PER_GROUP)
    x_t = torch.stack([GROUPS[i].x_t for i in groups])[torch.arange(len(gid)) % len(groups)]
    logits = torch.stack([GROUPS[i].logits() for i in groups])[torch.arange(len(gid)) % len(groups)]
    return x_t, logits, gid


def _draws(energy, k: int, groups: list[int], seed: int = 0) -> dict[int, np.ndarray]:
    """Counts over each group's cells of the x0 resampled by propose_and_resample."""
    x_t, logits, gid = _batch(groups)
    x0, diag = edlm_ext.propose_and_resample(logits, x_t, MASK, energy, k, seed=seed)
    assert bool(((x0 == x_t) | (x_t == MASK)).all()), "an unmasked token changed"
    assert bool(((diag.ess >= 1 - 1e-6) & (diag.ess <= k + 1e-6)).all())
    out = {}
    for i in groups:
        rows = x0[gid == i]
        local = {int(c): j for j, c in enumerate(code(GROUPS[i].cells, T))}
        idx = torch.tensor([local[int(c)] for c in code(rows, T)])
        out[i] = np.bincount(idx.numpy(), minlength=GROUPS[i].cells.shape[0])
    return out


def _pvalues(energy, k: int, groups: list[int], seed: int = 0) -> dict[int, float]:
    """Chi-square p-value per group of the draws against the exact finite-k law of the TRUE target."""
    counts = _draws(energy, k, groups, seed)
    return {i: chisquare_pvalue(counts[i], exact_law(GROUPS[i].q, GROUPS[i].p, k)) for i in groups}


# ---- the energies -------------------------------------------------------------------------------------------------


def _ar(bos: bool) -> edlm_ext.AREnergy:
    return edlm_ext.AREnergy(ar_logits, bos_id=BOS if bos else None)


class _OldCarryOverAREnergy(edlm_ext.AREnergy):
    """Defect: the former ``AREnergy(carry_over=True)`` (and the public code's
    ``ar_carry_over``): AR terms at positions unmasked in x_t left out."""

    def __call__(self, candidates, x_t, *, log_q, mask_id):
        lp = self.ar_log_probs(candidates) * (x_t == mask_id)
        return -lp.sum(-1, dtype=torch.float64).float() + log_q.float()


class _ProbSumAREnergy(edlm_ext.AREnergy):
    """Defect: adds AR probabilities instead of log-probabilities."""

    def ar_log_probs(self, ids):
        return super().ar_log_probs(ids).exp()


class _RatioNet(torch.nn.Module):
    """An NCE energy net at its optimum: E = -log p(x0 | x_t) + log q(x0 | x_t) (the
    log density ratio of data to proposal, up to a constant per x_t)."""

    def forward(self, x0, x_t):
        key = code(x_t, V)
        e = torch.empty(x0.shape[0], dtype=torch.float64)
        for g in GROUPS:
            rows = key == int(code(g.x_t, V))
            logp = JOINT.reshape(-1)[code(x0[rows], T)].log() - g.log_pu
            e[rows] = -logp + g.log_q(x0[rows])
        return e.float()


# ---- tests --------------------------------------------------------------------------------------------------------


def test_enumeration_tables_are_consistent():
    # The AR chain rule multiplies back to the joint, with and without BOS (guards the oracle).
    for bos in (True, False):
        lp = _ar(bos).ar_log_probs(CELLS).double().sum(-1)
        want = JOINT.reshape(-1).log() - (0 if bos else PREFIX[1][CELLS[:, 0]].log())
        assert torch.allclose(lp, want, atol=1e-5)
    for g in GROUPS:
        assert abs(float(g.q.sum()) - 1) < 1e-9 and abs(float(g.p.sum()) - 1) < 1e-9
    # exact_law against brute force over all k-tuples of proposals (k = 3, 9 cells).
    g = GROUPS[PATTERNS_FIRST["end (x, M, M, x)"]]
    w = g.p / g.q
    brute = torch.zeros_like(g.p)
    for tup in itertools.product(range(len(g.q)), repeat=3):
        tup = list(tup)
        brute.index_add_(0, torch.tensor(tup), g.q[tup].prod() * w[tup] / w[tup].sum())
    assert np.allclose(exact_law(g.q, g.p, 3), brute.numpy(), atol=1e-9)


def test_what_each_energy_converges_to():
    """As k grows, importance resampling converges to the normalized q · exp(-E):
    * AREnergy (full AR log-likelihood of the candidate minus log q) -> p(x0 | x_t),
      with bos_id (every pattern) and without it (patterns with position 0 unmasked);
    * an NCE energy at its optimum (the log density ratio) -> p(x0 | x_t);
    * the old carry-over rule -> Π_{i masked} p(x_i | x_<i), which is p(x0 | x_t) only
      when the unmasked tokens form a prefix, and far from it in every other pattern."""
    for i, g in enumerate(GROUPS):
        for energy in [_ar(True), edlm_ext.NCEEnergy(_RatioNet())] + ([_ar(False)] if i in POS0_FIXED else []):
            assert torch.allclose(g.limit(energy), g.p, atol=1e-5), NAMES[i]
        old = g.limit(_OldCarryOverAREnergy(ar_logits, bos_id=BOS))
        assert torch.allclose(old, g.forced(), atol=1e-5), NAMES[i]
        if i in PREFIX_ONLY:
            assert torch.allclose(old, g.p, atol=1e-5)
        else:
            assert tv(old, g.p) > 0.1, f"{NAMES[i]}: the power check is too weak ({tv(old, g.p):.3f})"


def test_importance_sampling_approaches_the_joint():
    # Exact laws: the factorized proposal is far from the target (k = 1), and the resampled
    # law approaches it as k grows; the draws follow the exact finite-k law at each k.
    groups = list(range(len(GROUPS)))
    dist = {k: [tv(exact_law(g.q, g.p, k), g.p) for g in GROUPS] for k in (1, 4, K)}
    assert len(FAR) >= 6, "the joint is too close to its marginals' product for this test"
    for a, b, c in zip(dist[1], dist[4], dist[K]):
        assert (a > b > c or a < 1e-9) and c < 0.05
    for k, seed in ((4, 1), (K, 0)):
        p = _pvalues(_ar(True), k, groups, seed)
        assert min(p.values()) > CHI2_ALPHA, {NAMES[i]: v for i, v in p.items()}


def test_ar_energy_without_bos_is_exact_while_position_0_is_fixed():
    p = _pvalues(_ar(False), K, POS0_FIXED)
    assert min(p.values()) > CHI2_ALPHA, {NAMES[i]: v for i, v in p.items()}


def test_ar_energy_without_bos_refuses_a_masked_position_0():
    g = GROUPS[-1]
    assert bool(g.masked[0])
    x_t = g.x_t.expand(g.cells.shape[0], L)
    with pytest.raises(ValueError, match="bos_id"):
        call(_ar(False), g.cells, x_t, g.log_q(g.cells))
    with pytest.raises(ValueError, match="log_q"):
        _ar(True)(g.cells, x_t, log_q=g.log_q(g.cells)[:-1].float())


def test_nce_energy_at_its_optimum_is_exact():
    p = _pvalues(edlm_ext.NCEEnergy(_RatioNet()), K, list(range(len(GROUPS))), seed=2)
    assert min(p.values()) > CHI2_ALPHA, {NAMES[i]: v for i, v in p.items()}


def test_old_carry_over_rule_fails():
    # Power check: the former default is run and misses the true target in every pattern
    # with a masked token before an unmasked one, while its draws follow its own target.
    groups = list(range(len(GROUPS)))
    old = _OldCarryOverAREnergy(ar_logits, bos_id=BOS)
    counts = _draws(old, K, groups)
    for i in groups:
        g = GROUPS[i]
        p_true = chisquare_pvalue(counts[i], exact_law(g.q, g.p, K))
        p_own = chisquare_pvalue(counts[i], exact_law(g.q, g.forced(), K))
        assert p_own > CHI2_ALPHA, NAMES[i]
        if i in PREFIX_ONLY:  # exact there
            assert p_true > CHI2_ALPHA, NAMES[i]
        else:
            assert p_true < CHI2_ALPHA, f"{NAMES[i]}: the old carry-over rule was not caught (p = {p_true:.3g})"


def _fails_everywhere(energy) -> None:
    p = _pvalues(energy, K, list(range(len(GROUPS))))
    assert max(p[i] for i in FAR) < CHI2_ALPHA, {NAMES[i]: v for i, v in p.items()}


def test_sign_flip_fails():
    ar = _ar(True)

    def flipped(c, x, *, log_q, mask_id):  # softmax(+E): favours the worse candidate
        return -ar(c, x, log_q=log_q, mask_id=mask_id)

    _fails_everywhere(flipped)


def test_probabilities_for_log_probabilities_fails():
    _fails_everywhere(_ProbSumAREnergy(ar_logits, bos_id=BOS))


def test_candidate_regrouping_mixup_fails():
    ar = _ar(True)

    def regrouped(c, x, *, log_q, mask_id):  # tiled j*B + b but regrouped as b*k + j
        e = ar(c, x, log_q=log_q, mask_id=mask_id)
        B = e.shape[0] // K
        return e.view(K, B).t().reshape(-1)

    _fails_everywhere(regrouped)
