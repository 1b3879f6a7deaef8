"""The unmask-first EDLM step by exact enumeration (docs/DESIGN.md §9).

On the tiny joint of tests/tiny_joint.py (exact-marginal denoiser q, the joint's own AR
model as energy): for an x_t and a set S of positions unmasking at this step, one shared
draw y ~ q fills the other masked positions O, k candidates re-draw S, weights are
p_AR(candidate) / q_S. What it converges to as k grows, for each y, is p(x_S | y, x_U);
over y, Σ_y q_O(y) p(x_S | y, x_U). The paper's step restricted to S converges to the
marginal p(x_S | x_U) = Σ_y p(y | x_U) p(x_S | y, x_U) instead: the two differ when q's
law of O is not the joint's (|O| >= 2 here, where q is a product of marginals). The
draws must follow the exact finite-k law of the unmask-first step; the paper's step (a
fresh fill per candidate) and a weight without log q must fail it.
"""
import itertools

import numpy as np
import pytest
import torch

import edlm_ext
from tests.stats import CHI2_ALPHA, chisquare_pvalue
from tests.tiny_joint import (BOS, JOINT, MASK, T, L, MarginalDenoiser, Group, ar_logits, cell_counts, code,
                              exact_law, tv)

K = 64
ROWS = 6000


def _energy():
    return edlm_ext.AREnergy(ar_logits, bos_id=BOS)


class Case:
    """An x_t pattern and a hit set S: the exact laws of the draw of x_S."""

    def __init__(self, x_t: tuple[int, ...], hits: tuple[int, ...]):
        self.g = Group(x_t)
        self.x_t, self.S = torch.tensor(x_t), list(hits)
        self.O = [i for i in range(L) if x_t[i] == MASK and i not in hits]
        marg = self.g.log_marg.exp()
        self.q_S = torch.tensor([float(np.prod([marg[i, v] for i, v in zip(self.S, c)]))
                                 for c in itertools.product(range(T), repeat=len(self.S))], dtype=torch.float64)
        self.fills = list(itertools.product(range(T), repeat=len(self.O)))
        self.q_O = torch.tensor([float(np.prod([marg[i, v] for i, v in zip(self.O, y)])) for y in self.fills],
                                dtype=torch.float64)

    def target_given(self, y) -> torch.Tensor:
        """p(x_S | y, x_U) over the T^|S| cells of S."""
        out = torch.zeros(T ** len(self.S), dtype=torch.float64)
        for j, c in enumerate(itertools.product(range(T), repeat=len(self.S))):
            x = self.x_t.clone()
            x[self.S] = torch.tensor(c)
            if self.O:
                x[self.O] = torch.tensor(y)
            out[j] = JOINT[tuple(x.tolist())]
        return out / out.sum()

    def limit(self) -> torch.Tensor:
        """What unmask-first converges to as k grows: Σ_y q_O(y) p(x_S | y, x_U)."""
        return sum(w * self.target_given(y) for w, y in zip(self.q_O, self.fills))

    def law(self, k: int) -> np.ndarray:
        """The exact finite-k law of x_S: the resample's exact law given y, mixed over y ~ q_O."""
        return sum(float(w) * exact_law(self.q_S, self.target_given(y), k) for w, y in zip(self.q_O, self.fills))

    def paper_limit(self) -> torch.Tensor:
        """The paper's step on S as k grows: the marginal p(x_S | x_U)."""
        return torch.from_numpy(self._on_S(self.g.p.numpy()))

    def paper_law(self, k: int) -> np.ndarray:
        return self._on_S(exact_law(self.g.q, self.g.p, k))

    def _on_S(self, law) -> np.ndarray:
        idx = code(self.g.cells[:, self.S], T).numpy()
        return np.bincount(idx, weights=np.asarray(law), minlength=T ** len(self.S))

    def batch(self, rows: int):
        x_t = self.x_t.expand(rows, L).clone()
        hits = torch.zeros(rows, L, dtype=torch.bool)
        hits[:, self.S] = True
        return x_t, self.g.logits().expand(rows, L, -1).contiguous(), hits


def _cases() -> list[Case]:
    """Patterns with >= 3 masked positions and each hit set S leaving |O| >= 2 or not; the
    four where the unmask-first limit is farthest from the paper's (ties: enumeration order)."""
    out = []
    for x in [(MASK,) * L] + [(v, MASK, MASK, MASK) for v in range(T)] + [(MASK, MASK, v, MASK) for v in range(T)]:
        masked = [i for i in range(L) if x[i] == MASK]
        for r in range(1, len(masked)):
            for S in itertools.combinations(masked, r):
                c = Case(x, S)
                out.append((-round(tv(c.limit(), c.paper_limit()), 9), c))
    return [c for _, c in sorted(out, key=lambda r: r[0])[:4]]


CASES = _cases()


def _draws(case: Case, k: int, seed: int, energy=None, fresh_fill: bool = False) -> np.ndarray:
    x_t, logits, hits = case.batch(ROWS)
    energy = energy or _energy()
    if fresh_fill:  # the paper's step: candidates over every masked position, S kept
        x0, _ = edlm_ext.propose_and_resample(logits, x_t, MASK, energy, k, seed=seed)
    else:
        x0, diag = edlm_ext.propose_unmask_first(logits, x_t, MASK, energy, k, hits, seed=seed)
        assert bool((diag.ess >= 1 - 1e-6).all() & (diag.ess <= k + 1e-6).all())
    assert bool(((x0 == x_t) | (x_t == MASK)).all()), "an unmasked token changed"
    return cell_counts(x0, case.S)


def test_what_unmask_first_converges_to():
    """Unmask-first converges to Σ_y q_O(y) p(x_S | y, x_U); the paper's step to p(x_S | x_U).
    They differ where q's law of the other masked positions O is not the joint's (here
    |O| >= 2) and agree where q is exact on O (|O| <= 1 with the exact-marginal denoiser)."""
    for c in CASES:
        assert len(c.O) >= 2
        assert tv(c.limit(), c.paper_limit()) > 0.05, "the power check is too weak"
        for k in (4, K):  # the exact finite-k law is a law, and approaches the limit as k grows
            assert abs(c.law(k).sum() - 1) < 1e-6
        assert tv(c.law(K), c.limit()) < tv(c.law(4), c.limit())
    same = Case((0, MASK, MASK, MASK), (1, 2))  # O = {3}: q_O is the exact conditional marginal
    assert torch.allclose(same.limit(), same.paper_limit(), atol=1e-9)


@pytest.mark.parametrize("k, seed", [(4, 1), (K, 0)])
def test_draws_follow_the_exact_law(k, seed):
    p = {i: chisquare_pvalue(_draws(c, k, seed), c.law(k)) for i, c in enumerate(CASES)}
    assert min(p.values()) > CHI2_ALPHA, p


def test_the_papers_step_on_S_fails():
    # Power check: fresh candidates over every masked position (the paper's step, S kept)
    # follow the paper's law and miss the unmask-first law.
    for c in CASES:
        counts = _draws(c, K, 2, fresh_fill=True)
        assert chisquare_pvalue(counts, c.paper_law(K)) > CHI2_ALPHA
        assert chisquare_pvalue(counts, c.law(K)) < CHI2_ALPHA, "the paper's step was not told apart"


def test_weights_without_log_q_fail():
    ar = _energy()

    def no_log_q(cand, x_t, *, log_q, mask_id):  # E = -log p_AR: weights p_AR, not p_AR / q_S
        return ar(cand, x_t, log_q=torch.zeros_like(log_q), mask_id=mask_id)

    p = [chisquare_pvalue(_draws(c, K, 3, energy=no_log_q), c.law(K)) for c in CASES]
    assert max(p) < CHI2_ALPHA, p


def test_the_sampler_runs_unmask_first_as_tested():
    """sample(proposal="unmask-first") over 2 steps from all [MASK]: step 1 (t = 1 -> 1/2)
    unmasks each position with probability 1/2, drawn by unmask-first; step 2 unmasks the
    rest (the set S is then every masked position, O empty: the paper's step). The
    chain's exact law is enumerated over the hit sets of step 1; a sampler that ignores
    the hit set (the joint proposal, whose chain law is 0.015 away in TV at k = 16) has
    another law and fails."""
    k, rows = 16, 60000
    eps = 1e-5
    chain = np.zeros(T ** L)
    for r in range(0, L + 1):
        for S in itertools.combinations(range(L), r):
            p_S = 0.5 ** L
            if not S:
                g = Group((MASK,) * L)
                chain += p_S * exact_law(g.q, g.p, k)
                continue
            c = Case((MASK,) * L, S)
            law_S = c.law(k) if c.O else exact_law(c.g.q, c.g.p, k)
            for j, xs in enumerate(itertools.product(range(T), repeat=len(S))):
                if len(S) == L:
                    chain[code(torch.tensor(xs), T)] += p_S * law_S[j]
                    continue
                x = [MASK] * L
                for i, v in zip(S, xs):
                    x[i] = v
                g = Group(tuple(x))
                law2 = exact_law(g.q, g.p, k)
                idx = code(g.cells, T).numpy()
                np.add.at(chain, idx, p_S * law_S[j] * law2)
    assert abs(chain.sum() - 1) < 1e-6
    kw = dict(batch_size=rows, seq_len=L, mask_id=MASK, steps=2, energy=_energy(), k=k, window=1.0, eps=eps)
    out = edlm_ext.sample(MarginalDenoiser(), proposal="unmask-first", seed=4, **kw)
    assert chisquare_pvalue(cell_counts(out.tokens), chain) > CHI2_ALPHA
    joint = edlm_ext.sample(MarginalDenoiser(), proposal="joint", seed=4, **kw)
    assert chisquare_pvalue(cell_counts(joint.tokens), chain) < CHI2_ALPHA
