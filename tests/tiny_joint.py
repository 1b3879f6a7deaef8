"""A tiny joint that can be enumerated, and its exact oracles (docs/DESIGN.md §5).

A known joint p over L = 4 positions (tokens 0..2), the exact next-token conditionals of
p as the AR model (:func:`ar_logits`), a denoiser giving p's exact conditional marginals
p(x_i | unmasked tokens of x_t) (:class:`Group` per x_t pattern; :func:`marginal_logits`
for any batch), and the exact law of one importance resample at finite k
(:func:`exact_law`). Shared by tests/test_edlm_exact.py, test_unmask_first.py,
test_smc.py and test_likelihood.py.
"""
import itertools
import math

import numpy as np
import torch

T, L = 3, 4  # real tokens 0..2 at each of 4 positions
MASK, BOS = 3, 4
V = 5
M = MASK
CELLS = torch.tensor(list(itertools.product(range(T), repeat=L)))  # [81, L], index = base-3 code


def _joint() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    j = torch.rand((T,) * L, generator=g, dtype=torch.float64) ** 4  # peaked: far from its marginals' product
    return j / j.sum()


JOINT = _joint()
PREFIX = {m: JOINT.sum(tuple(range(m, L))) if m < L else JOINT for m in range(1, L + 1)}  # [x_<m] -> p(x_<m)


def code(x: torch.Tensor, base: int) -> torch.Tensor:
    """Row-wise base-`base` code of integer rows (first column most significant)."""
    w = base ** torch.arange(x.shape[-1] - 1, -1, -1)
    return (x * w).sum(-1)


# ---- the oracles: AR model, denoiser, true conditional ------------------------------------------------------------


def ar_logits(ids: torch.Tensor) -> torch.Tensor:
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
        table = PREFIX[m + 1].reshape(T ** m, T)[code(ctx, T) if m else torch.zeros(n, dtype=torch.long)]
        out[:, i, :T] = (table / table.sum(-1, keepdim=True)).log()
    return out.float()


class Group:
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
            lw += PREFIX[i + 1].reshape(-1)[code(self.cells[:, :i + 1], T)].log()
            lw -= PREFIX[i].reshape(-1)[code(self.cells[:, :i], T)].log() if i else 0.0
        return (lw - lw.logsumexp(0)).exp()

    def limit(self, energy) -> torch.Tensor:
        """What importance resampling under `energy` converges to as k -> inf: ∝ q · exp(-E)."""
        n = self.cells.shape[0]
        e = call(energy, self.cells, self.x_t.expand(n, L), self.log_q(self.cells))
        lw = self.q.log() - e.double()
        return (lw - lw.logsumexp(0)).exp()


def call(energy, cand, x_t, log_q):
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


def tv(a, b) -> float:
    return 0.5 * float(np.abs(np.asarray(a) - np.asarray(b)).sum())


def marginal_logits(x_t: torch.Tensor) -> torch.Tensor:
    """[R, L, V] float32 logits of the exact conditional marginals p(x_i | x_t's unmasked
    tokens) for any batch x_t [R, L] (one-hot at unmasked positions; [MASK] and BOS -inf)."""
    masked = x_t == MASK
    keep = ((CELLS[None] == x_t[:, None]) | masked[:, None]).all(-1).double()  # [R, C]
    p = keep * JOINT.reshape(-1)[None]
    p = p / p.sum(-1, keepdim=True)
    onehot = torch.nn.functional.one_hot(CELLS, T).double()  # [C, L, T]
    marg = torch.einsum("rc,clt->rlt", p, onehot)
    lg = torch.full((x_t.shape[0], L, V), float("-inf"), dtype=torch.float64)
    lg[..., :T] = marg.log()
    return lg.float()


class MarginalDenoiser:
    """The exact-marginal denoiser as the sampler calls it: (x_t [R, L], t [R]) -> logits."""

    time_independent = True

    def __call__(self, x_t, t):
        return marginal_logits(x_t)


def cell_counts(rows: torch.Tensor, positions: list[int] | None = None) -> np.ndarray:
    """Counts of rows [R, L] over the T^|positions| cells of those positions (all: 81 cells)."""
    pos = list(range(L)) if positions is None else positions
    return np.bincount(code(rows[:, pos], T).numpy(), minlength=T ** len(pos))
