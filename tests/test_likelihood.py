"""The likelihood bounds of edlm_ext.likelihood on the tiny joint, against exact enumeration.

Denoiser: p's exact conditional marginals (tests/tiny_joint.py); energy: the joint's own
AR model. Exact values: the T-step MDLM bound by enumeration of the masks; the EDLM-AR
bound, which is -log p(x) itself for every x (the per-step marginals telescope); and the
exact expectation of the EDLM estimator at finite k (enumerated over k-tuples of draws),
which lies between and approaches -log p(x) as k grows. The estimators must match these
expectations (z-tests over independent replicates); an EDLM term without log Z (the joint
treated as normalized) must fail. And the plug-in of the joint's log-likelihood into
MDLM's continuous-time weight is shown not to be a bound (below the joint's entropy).
"""
import itertools
import math

import numpy as np
import pytest
import torch

import edlm_ext
from edlm_ext import likelihood
from tests.stats import Z_CRIT
from tests.tiny_joint import BOS, CELLS, JOINT, MASK, T, L, Group, MarginalDenoiser, ar_logits, code

STEPS = 2
X0 = [int(i) for i in torch.argsort(JOINT.reshape(-1), descending=True)[[0, 5, 20]]]  # likely .. rarer cells
ROWS = 3000


def _energy():
    return edlm_ext.AREnergy(ar_logits, bos_id=BOS)


def _configs(t: float, s: float):
    """Every (unmasked at t, newly unmasked in (s, t], still masked at s) assignment of the
    positions with its probability: states 0 / 1 / 2 with probabilities 1 - t, t - s, s."""
    probs = (1 - t, t - s, s)
    for states in itertools.product(range(3), repeat=L):
        yield states, math.prod(probs[v] for v in states)


def _expected_log_mean(q: np.ndarray, w: np.ndarray, k: int) -> float:
    """E[log (1/k) Σ_j w(c_j)], c_j iid ~ q (exact, over all k-tuples)."""
    keep = q > 0
    q, w = q[keep], w[keep]
    total = 0.0
    for tup in itertools.product(range(len(q)), repeat=k):
        total += float(np.prod(q[list(tup)])) * math.log(float(np.mean(w[list(tup)])))
    return total


def _exact(x0_code: int, k: int | None) -> tuple[float, float]:
    """(MDLM T-step bound, expected EDLM estimate at k draws; k=None: the exact EDLM bound)."""
    x0 = CELLS[x0_code]
    mdlm = edlm = 0.0
    for n in range(STEPS):
        t, s = 1 - n / STEPS, 1 - (n + 1) / STEPS
        for states, pr in _configs(t, s):
            if pr == 0 or 1 not in states:
                continue
            x_t = tuple(MASK if v else int(x0[i]) for i, v in enumerate(states))
            g = Group(x_t)
            marg = g.log_marg.exp()
            new = [i for i, v in enumerate(states) if v == 1]
            mdlm -= pr * sum(math.log(float(marg[i, x0[i]])) for i in new)
            if k is None:
                continue
            p = g.p.numpy()  # p(c | x_t) over g.cells; w = p / q up to the constant p(x_t's tokens)
            q = g.q.numpy()
            rest = np.array([all(int(c[i]) == int(x0[i]) for i in new) for c in g.cells])
            q_new = math.prod(float(marg[i, x0[i]]) for i in new)
            q_rest = q[rest] / q_new  # the draws' probability outside N
            edlm += pr * (-_expected_log_mean(q_rest, p[rest] / q_rest, k) + _expected_log_mean(q, p / q, k))
    return mdlm, edlm


def _rows(x0_code: int) -> torch.Tensor:
    return CELLS[x0_code].expand(ROWS, L).clone()


def _z(est: torch.Tensor, want: float) -> float:
    return float((est.mean() - want) / (est.std() / math.sqrt(len(est))))


@pytest.mark.parametrize("x0", X0)
def test_bounds_match_enumeration(x0):
    k = 2
    mdlm_exact, edlm_k = _exact(x0, k)
    nll = -math.log(float(JOINT.reshape(-1)[x0]))
    out = likelihood.likelihood_bounds(MarginalDenoiser(), _rows(x0), MASK, steps=STEPS, energy=_energy(), k=k,
                                       reps=2, seed=x0)
    assert abs(_z(out["mdlm"], mdlm_exact)) < Z_CRIT
    assert abs(_z(out["edlm_reps"][0], edlm_k)) < Z_CRIT
    # the finite-k expectation approaches the exact EDLM-AR bound -log p(x) as k grows
    _, edlm_1 = _exact(x0, 1)
    assert abs(edlm_k - nll) < abs(edlm_1 - nll)
    assert bool((out["edlm_is_var"] >= 0).all()) and float(out["edlm_is_var"].mean()) > 0


def test_a_term_without_log_z_fails(monkeypatch):
    x0 = X0[0]
    _, edlm_k = _exact(x0, 2)
    monkeypatch.setattr(likelihood, "_edlm_term", lambda q_new, log_num, log_z: -q_new - log_num)
    out = likelihood.likelihood_bounds(MarginalDenoiser(), _rows(x0), MASK, steps=STEPS, energy=_energy(), k=2,
                                       reps=1, seed=1)
    assert abs(_z(out["edlm"], edlm_k)) > Z_CRIT


def test_mdlm_continuous_bound_is_unbiased():
    # exact continuous bound: Σ_i E_t[(1/t) 1{i masked} (-log p(x_i | x_t))] = Σ over mask sets
    x0 = X0[1]
    x = CELLS[x0]
    exact = 0.0
    for states in itertools.product(range(2), repeat=L):  # 1 = masked
        m = sum(states)
        if m == 0:
            continue
        w = math.gamma(m) * math.gamma(L - m + 1) / math.gamma(L + 1)  # ∫ t^(m-1) (1-t)^(L-m) dt
        g = Group(tuple(MASK if v else int(x[i]) for i, v in enumerate(states)))
        exact -= w * sum(float(g.log_marg[i, x[i]]) for i in range(L) if states[i])
    est = likelihood.mdlm_continuous_nelbo(MarginalDenoiser(), _rows(x0), MASK, n_t=4, seed=3)
    assert abs(_z(est, exact)) < Z_CRIT


def test_the_joint_plug_in_is_not_a_bound():
    # ∫ (1/t) E[-log p(x_M | x_U)] dt with the exact joint conditional, averaged over data:
    # Σ_M B(|M|, L - |M| + 1) H(x_M | x_U). For a dependent joint it falls below H(x).
    p = JOINT.reshape(-1)
    H = float(-(p * p.log()).sum())
    plug = 0.0
    for states in itertools.product(range(2), repeat=L):
        m = sum(states)
        if m == 0:
            continue
        w = math.gamma(m) * math.gamma(L - m + 1) / math.gamma(L + 1)
        unmasked = [i for i in range(L) if not states[i]]
        marg_u = JOINT.sum(tuple(i for i in range(L) if states[i])).reshape(-1) if unmasked else torch.ones(1)
        key = code(CELLS[:, unmasked], T) if unmasked else torch.zeros(len(p), dtype=torch.long)
        plug += w * float(-(p * (p / marg_u[key]).log()).sum())
    assert plug < H - 0.1, (plug, H)


def test_argument_checks():
    x = _rows(X0[0])[:2]
    with pytest.raises(ValueError, match="mask_id"):
        likelihood.likelihood_bounds(MarginalDenoiser(), torch.full_like(x, MASK), MASK, steps=2)
    with pytest.raises(ValueError, match="steps"):
        likelihood.likelihood_bounds(MarginalDenoiser(), x, MASK, steps=0)
    with pytest.raises(ValueError, match="int64"):
        likelihood.likelihood_bounds(MarginalDenoiser(), x.int(), MASK, steps=2)
