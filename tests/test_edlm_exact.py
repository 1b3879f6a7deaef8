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
import math

import numpy as np
import pytest
import torch

import edlm_ext
from tests.stats import CHI2_ALPHA, chisquare_pvalue

T, L = 3, 4  # real tokens 0..2 at each of 4 positions
MASK, BOS = 3, 4
V = 5
M = MASK
CELLS = torch.tensor(list(itertools.product(range(T), repeat=L)))  # [81, L], index = base-3 code
N_PER_GROUP = 1500
K = 64


def _joint() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    j = torch.rand((T,) * L, generator=g, dtype=torch.float64) ** 4  # peaked: far from its marginals' product
    return j / j.sum()


JOINT = _joint()
PREFIX = {m: JOINT.sum(tuple(range(m, L))) if m < L else JOINT for m in range(1, L + 1)}  # [x_<m] -> p(x_<m)


def _code(x: torch.Tensor, base: int) -> torch.Tensor:
    """Row-wise base-`base` code of integer rows (first column most significant)."""
    w = base ** torch.arange(x.shape[-1] - 1, -1, -1)
    return (x * w).sum(-1)


# ---- the oracles: AR model, denoiser, true conditional ------------------------------------------------------------


def _ar_logits(ids: torch.Tensor) -> torch.Tensor:
    """Exact next-token logits of the joint: logits[:, i] predicts the token after ids[:, i].
    A leading BOS column means "nothing read yet" (then logits[:, 0] predicts x_0)."""
    n = ids.shape[0]
    bos = ids[:, 0] == BOS
    assert bool(bos.all()) or not bool(bos.any()), "BOS in some rows only"
    s = 1 if bool(bos.any()) else 0
    out = torch.zeros(n, L, V, dtype=torch.float64)
    out[..., MASK:] = float("-inf")
    for i in range(L):
        m = i + 1 - s  # tokens read so far
        if m >= L:
            continue  # predicts beyond the sequence: never scored
        ctx = ids[:, s:i + 1]
        assert bool((ctx < T).all()), "the AR model read a [MASK] or BOS"
        table = PREFIX[m + 1].reshape(T ** m, T)[_code(ctx, T) if m else torch.zeros(n, dtype=torch.long)]
        out[:, i, :T] = (table / table.sum(-1, keepdim=True)).log()
    return out.float()


class _Group:
    """One x_t row pattern: its true conditional and its exact factorized proposal."""

    def __init__(self, x_t: tuple[int, ...]):
        self.x_t = torch.tensor(x_t)
        self.masked = self.x_t == MASK
        keep = ((CELLS == self.x_t) | self.masked).all(1)
        self.cells = CELLS[keep]  # [C, L] the x0 consistent with x_t
        p = JOINT.reshape(-1)[keep]
        self.log_pu = p.sum().log()  # log p(unmasked tokens of x_t)
        self.p = p / p.sum()  # true conditional p(x0 | x_t) over self.cells
        self.log_marg = torch.zeros(L, T, dtype=torch.float64)  # log p(x_i | x_t) (0 at unmasked positions)
        for i in torch.nonzero(self.masked).flatten().tolist():
            self.log_marg[i] = torch.zeros(T, dtype=torch.float64).index_add_(0, self.cells[:, i], self.p).log()
        self.q = self.log_q(self.cells).exp()

    def log_q(self, x0: torch.Tensor) -> torch.Tensor:
        return (self.log_marg[torch.arange(L), x0] * self.masked).sum(-1)

    def logits(self) -> torch.Tensor:
        lg = torch.full((L, V), float("-inf"), dtype=torch.float64)
        lg[:, :T] = self.log_marg
        return lg.float()

    def forced(self) -> torch.Tensor:
        """Π_{i masked} p(x_i | x_<i) over self.cells, normalized: what the old carry-over rule targets."""
        lw = torch.zeros(self.cells.shape[0], dtype=torch.float64)
        for i in torch.nonzero(self.masked).flatten().tolist():
            lw += PREFIX[i + 1].reshape(-1)[_code(self.cells[:, :i + 1], T)].log()
            lw -= PREFIX[i].reshape(-1)[_code(self.cells[:, :i], T)].log() if i else 0.0
        return (lw - lw.logsumexp(0)).exp()

    def limit(self, energy) -> torch.Tensor:
        """What importance resampling under `energy` converges to as k -> inf: ∝ q · exp(-E)."""
        n = self.cells.shape[0]
        e = _call(energy, self.cells, self.x_t.expand(n, L), self.log_q(self.cells))
        lw = self.q.log() - e.double()
        return (lw - lw.logsumexp(0)).exp()


def _call(energy, cand, x_t, log_q):
    return energy(cand, x_t, log_q=log_q, mask_id=MASK)


def exact_law(q: torch.Tensor, target: torch.Tensor, k: int) -> np.ndarray:
    """Exact law of one importance resample among k proposals from q with weights
    w = target / q: P(x) = k q(x) w(x) E[1 / (w(x) + S)], S the sum of the other k - 1
    weights, and E[1 / (a + S)] = ∫_0^∞ e^{-ta} M(t)^{k-1} dt with M(t) = Σ_y q(y) e^{-t w(y)}.
    The integral is taken over log t (Simpson's rule, float64), where the integrand is smooth."""
    q, target = q.double(), target.double()
    w = target / q
    w = w / w.max()
    s = torch.linspace(-40.0, math.log(60.0 / float(w.min())), 40_001, dtype=torch.float64)
    t = s.exp()
    e = torch.exp(-t[:, None] * w[None, :])  # [S, C]
    f = e * (e @ q).pow(k - 1)[:, None] * t[:, None]  # integrand in s (dt = t ds)
    h = float(s[1] - s[0])
    simpson = torch.ones(len(s), dtype=torch.float64)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    law = k * q * w * (simpson @ f) * h / 3
    assert abs(float(law.sum()) - 1) < 1e-7, float(law.sum())
    return law.numpy()


def _tv(a, b) -> float:
    return 0.5 * float(np.abs(np.asarray(a) - np.asarray(b)).sum())


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
        g = _Group(tuple(x))
        rows.append((-round(_tv(g.forced(), g.p), 9), tuple(x)))
    return [x for _, x in sorted(rows, key=lambda r: r[0])[:2]]


GROUPS = [_Group(x) for u in PATTERNS.values() for x in _settings(u)]
NAMES = [f"{name} {tuple('M' if v == M else v for v in g.x_t.tolist())}"
         for name, g in zip([n for n in PATTERNS for _ in range(2)], GROUPS)]
POS0_FIXED = [i for i, g in enumerate(GROUPS) if not bool(g.masked[0])]
PATTERNS_FIRST = {name: 2 * j for j, name in enumerate(PATTERNS)}  # each pattern's first group
PREFIX_ONLY = [0, 1]  # the groups of the first pattern
# Groups where the factorized proposal is far from the target (TV >= 0.2): an energy
# defect that reweights by anything but p / q must show there. (With one masked position
# the proposal is already exact: weights that depend on p / q alone stay uniform.)
FAR = [i for i, g in enumerate(GROUPS) if _tv(g.q, g.p) >= 0.2]


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
        local = {int(c): j for j, c in enumerate(_code(GROUPS[i].cells, T))}
        idx = torch.tensor([local[int(c)] for c in _code(rows, T)])
        out[i] = np.bincount(idx.numpy(), minlength=GROUPS[i].cells.shape[0])
    return out


def _pvalues(energy, k: int, groups: list[int], seed: int = 0) -> dict[int, float]:
    """Chi-square p-value per group of the draws against the exact finite-k law of the TRUE target."""
    counts = _draws(energy, k, groups, seed)
    return {i: chisquare_pvalue(counts[i], exact_law(GROUPS[i].q, GROUPS[i].p, k)) for i in groups}


# ---- the energies -------------------------------------------------------------------------------------------------


def _ar(bos: bool) -> edlm_ext.AREnergy:
    return edlm_ext.AREnergy(_ar_logits, bos_id=BOS if bos else None)


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
        code = _code(x_t, V)
        e = torch.empty(x0.shape[0], dtype=torch.float64)
        for g in GROUPS:
            rows = code == int(_code(g.x_t, V))
            logp = JOINT.reshape(-1)[_code(x0[rows], T)].log() - g.log_pu
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
        old = g.limit(_OldCarryOverAREnergy(_ar_logits, bos_id=BOS))
        assert torch.allclose(old, g.forced(), atol=1e-5), NAMES[i]
        if i in PREFIX_ONLY:
            assert torch.allclose(old, g.p, atol=1e-5)
        else:
            assert _tv(old, g.p) > 0.1, f"{NAMES[i]}: the power check is too weak ({_tv(old, g.p):.3f})"


def test_importance_sampling_approaches_the_joint():
    # Exact laws: the factorized proposal is far from the target (k = 1), and the resampled
    # law approaches it as k grows; the draws follow the exact finite-k law at each k.
    groups = list(range(len(GROUPS)))
    tv = {k: [_tv(exact_law(g.q, g.p, k), g.p) for g in GROUPS] for k in (1, 4, K)}
    assert len(FAR) >= 6, "the joint is too close to its marginals' product for this test"
    for a, b, c in zip(tv[1], tv[4], tv[K]):
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
        _call(_ar(False), g.cells, x_t, g.log_q(g.cells))
    with pytest.raises(ValueError, match="log_q"):
        _ar(True)(g.cells, x_t, log_q=g.log_q(g.cells)[:-1].float())


def test_nce_energy_at_its_optimum_is_exact():
    p = _pvalues(edlm_ext.NCEEnergy(_RatioNet()), K, list(range(len(GROUPS))), seed=2)
    assert min(p.values()) > CHI2_ALPHA, {NAMES[i]: v for i, v in p.items()}


def test_old_carry_over_rule_fails():
    # Power check: the former default is run and misses the true target in every pattern
    # with a masked token before an unmasked one, while its draws follow its own target.
    groups = list(range(len(GROUPS)))
    old = _OldCarryOverAREnergy(_ar_logits, bos_id=BOS)
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
    _fails_everywhere(_ProbSumAREnergy(_ar_logits, bos_id=BOS))


def test_candidate_regrouping_mixup_fails():
    ar = _ar(True)

    def regrouped(c, x, *, log_q, mask_id):  # tiled j*B + b but regrouped as b*k + j
        e = ar(c, x, log_q=log_q, mask_id=mask_id)
        B = e.shape[0] // K
        return e.view(K, B).t().reshape(-1)

    _fails_everywhere(regrouped)
