"""EDLM exactness by enumeration (DESIGN §5): tiny V and L, two known joints in one
batch, a denoiser giving their exact marginals and the exact AR energy. The IS
step's x0 distribution must approach the joint as k grows; each defect of the
public reference code (DESIGN §1) injected into the energy must break it."""
import itertools

import pytest
import torch

import edlm_ext

T = 3  # real tokens 0..2
MASK = 3  # [MASK]
V = 4
N_PER_JOINT = 12_000


def _joints():
    """Two correlated joints over (x1, x2, x3) in {0,1,2}^3, indexed by a label token x0."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(2):
        j = torch.rand(T, T, T, generator=g, dtype=torch.float64) ** 4  # peaked: far from its marginals' product
        out.append(j / j.sum())
    return torch.stack(out)  # [2, T, T, T]


JOINTS = _joints()


def _marginal_logits(label: torch.Tensor) -> torch.Tensor:
    """Denoiser for x_t = (label, M, M, M): the exact marginals of the label's joint."""
    J = JOINTS[label]  # [N, T, T, T]
    m = torch.stack([J.sum((2, 3)), J.sum((1, 3)), J.sum((1, 2))], dim=1)  # [N, 3, T]
    logits = torch.full((label.shape[0], 4, V), float("-inf"), dtype=torch.float64)
    logits[:, 1:, :T] = m.log()
    logits[:, 0, :T] = 0.0  # the label position is unmasked: never read
    return logits.float()


def _ar_logits(ids: torch.Tensor, prob_instead_of_log: bool = False) -> torch.Tensor:
    """Exact next-token logits of the label's joint: logits[:, i] predicts x_{i+1}."""
    J = JOINTS[ids[:, 0]]
    x1, x2 = ids[:, 1].clamp_max(T - 1), ids[:, 2].clamp_max(T - 1)
    n = ids.shape[0]
    p1 = J.sum((2, 3))
    p2 = J.sum(3)[torch.arange(n), x1]
    p3 = J[torch.arange(n), x1, x2]
    out = torch.full((n, 4, V), float("-inf"), dtype=torch.float64)
    for i, p in enumerate((p1, p2, p3)):
        out[:, i, :T] = (p / p.sum(-1, keepdim=True)).log()
    out[:, 3, :T] = 0.0
    return out.float()


class _ProbSumAREnergy(edlm_ext.AREnergy):
    """Defect: adds AR probabilities instead of log-probabilities."""

    def ar_log_probs(self, ids):
        return super().ar_log_probs(ids).exp()


def _empirical_tv(x0: torch.Tensor, labels: torch.Tensor) -> float:
    """Max over the two joints of TV(empirical distribution of (x1, x2, x3), joint)."""
    tvs = []
    for lab in (0, 1):
        rows = x0[labels == lab][:, 1:]
        idx = rows[:, 0] * 9 + rows[:, 1] * 3 + rows[:, 2]
        emp = torch.bincount(idx, minlength=27).double() / rows.shape[0]
        tvs.append(0.5 * (emp - JOINTS[lab].reshape(-1)).abs().sum().item())
    return max(tvs)


def _is_tv(k: int, energy, seed: int = 0) -> float:
    labels = torch.arange(2 * N_PER_JOINT) % 2  # the two joints interleaved in one batch
    x_t = torch.full((labels.shape[0], 4), MASK)
    x_t[:, 0] = labels
    x0, diag = edlm_ext.propose_and_resample(_marginal_logits(labels), x_t, MASK, energy, k, seed=seed)
    assert bool((x0[:, 0] == labels).all()), "the unmasked label changed"
    assert bool(((diag.ess >= 1 - 1e-9) & (diag.ess <= k + 1e-9)).all())
    return _empirical_tv(x0, labels)


# Sampling noise of a 27-cell TV with 12k draws is about 0.4 * sqrt(27 / 12000) ≈ 0.02.
NOISE = 0.02


@pytest.fixture(scope="module")
def baseline_tv():
    return _is_tv(1, edlm_ext.AREnergy(_ar_logits))


def test_importance_sampling_approaches_the_joint(baseline_tv):
    tv = {k: _is_tv(k, edlm_ext.AREnergy(_ar_logits)) for k in (4, 64)}
    assert baseline_tv > 0.2, "the joints are too close to their marginals' product for this test"
    assert tv[4] < 0.6 * baseline_tv
    assert tv[64] < min(tv[4], 2.5 * NOISE + 0.02), f"TV at k=64: {tv[64]:.3f} (k=4: {tv[4]:.3f})"


def test_sign_flip_fails(baseline_tv):
    ar = edlm_ext.AREnergy(_ar_logits)

    def flipped(c, x, *, log_q, mask_id):  # softmax(+E): favours the worse candidate
        return -ar(c, x, log_q=log_q, mask_id=mask_id)

    flipped.needs_log_q = True
    assert _is_tv(64, flipped) > baseline_tv


def test_probabilities_for_log_probabilities_fails():
    assert _is_tv(64, _ProbSumAREnergy(_ar_logits)) > 5 * NOISE + 0.05


def test_candidate_regrouping_mixup_fails():
    ar = edlm_ext.AREnergy(_ar_logits)
    k = 64

    def regrouped(c, x, *, log_q, mask_id):  # tiled j*B + b but regrouped as b*k + j
        e = ar(c, x, log_q=log_q, mask_id=mask_id)
        B = e.shape[0] // k
        return e.view(k, B).t().reshape(-1)

    regrouped.needs_log_q = True
    assert _is_tv(k, regrouped) > 5 * NOISE + 0.05


def test_enumeration_tables_are_consistent():
    # The AR chain rule multiplies back to the joint (guards the test's own oracle).
    for lab in (0, 1):
        for x in itertools.product(range(T), repeat=3):
            ids = torch.tensor([[lab, *x]])
            lp = torch.log_softmax(_ar_logits(ids).double(), -1)
            total = sum(lp[0, i, x[i]].item() for i in range(3))
            assert abs(total - JOINTS[lab][x].log().item()) < 1e-5
