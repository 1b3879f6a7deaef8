"""unmask_confident (LLaDA top-n, Fast-dLLM threshold) against the sorting reference:
ties, -inf, n beyond the masked count, n = 0, per-row n, thresholds none / all pass."""
import pytest
import torch

import edlm_ext
from edlm_ext import reference

from .conftest import requires_cuda

MASK = 3
CONF_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _case(B, L, device, seed, frac_masked=0.6, levels=0, dtype=torch.float32):
    """x_t (about frac_masked of it MASK), x0, and a confidence: levels > 0 draws it from
    that many values (many ties) plus some -inf, levels = 0 from a normal."""
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randint(10, 60, (B, L), generator=g)
    x_t[torch.rand(B, L, generator=g) < frac_masked] = MASK
    x0 = torch.randint(100, 200, (B, L), generator=g)
    if levels:
        conf = torch.randint(0, levels, (B, L), generator=g).double() / levels - 0.5
        conf[torch.rand(B, L, generator=g) < 0.1] = float("-inf")
    else:
        conf = torch.randn(B, L, generator=g, dtype=torch.float64)
    return x_t.to(device), x0.to(device), conf.to(dtype).to(device)


def _check(x_t, x0, conf, **rule):
    got = edlm_ext.unmask_confident(x_t, x0, conf, MASK, **rule)
    want = reference.unmask_confident(x_t.cpu(), x0.cpu(), conf.cpu(), MASK,
                                      **{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in rule.items()})
    assert got.shape == x_t.shape and got.dtype == torch.int64 and got.is_contiguous()
    assert torch.equal(got.cpu(), want)
    keep = x_t != MASK
    assert torch.equal(got[keep], x_t[keep]), "an unmasked position changed"
    return got


def _unmasked_per_row(got, x_t):
    return ((x_t == MASK) & (got != MASK)).sum(1).tolist()


@pytest.mark.parametrize("levels", [0, 2, 5])
@pytest.mark.parametrize("n", [0, 1, 7, 40, 10_000])
def test_top_n_matches_reference(device, levels, n):
    x_t, x0, conf = _case(6, 97, device, seed=n + levels, levels=levels)
    got = _check(x_t, x0, conf, n=n)
    masked = (x_t == MASK).sum(1).tolist()
    assert _unmasked_per_row(got, x_t) == [min(n, m) for m in masked]


@pytest.mark.parametrize("dtype", CONF_DTYPES)
def test_confidence_dtypes(device, dtype):
    x_t, x0, conf = _case(4, 300, device, seed=1, levels=0, dtype=dtype)
    _check(x_t, x0, conf, n=50)
    _check(x_t, x0, conf, threshold=0.5)


def test_per_row_n(device):
    x_t, x0, conf = _case(5, 64, device, seed=4, levels=3)
    n = torch.tensor([0, 1, 5, 64, 1000], device=device)
    got = _check(x_t, x0, conf, n=n)
    masked = (x_t == MASK).sum(1).tolist()
    assert _unmasked_per_row(got, x_t) == [min(k, m) for k, m in zip(n.tolist(), masked)]
    _check(x_t, x0, conf, n=torch.arange(10, device=device)[::2])  # strided n


def test_many_random_cases(device):
    g = torch.Generator().manual_seed(0)
    for case in range(40):
        B, L = int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(1, 80, (1,), generator=g))
        x_t, x0, conf = _case(B, L, device, seed=case, frac_masked=float(torch.rand(1, generator=g)),
                              levels=int(torch.randint(0, 4, (1,), generator=g)))
        if case % 2:
            _check(x_t, x0, conf, n=torch.randint(0, L + 2, (B,), generator=g).to(device))
        else:
            _check(x_t, x0, conf, threshold=float(torch.randint(-2, 3, (1,), generator=g)) / 4)


@pytest.mark.parametrize("L", [255, 256, 257, 5000, 70_000])
def test_long_rows(device, L):
    # Rows longer than one CUDA block's chunk, with ties at the selection boundary.
    x_t, x0, conf = _case(2, L, device, seed=L, levels=7)
    _check(x_t, x0, conf, n=L // 3)
    _check(x_t, x0, conf, threshold=0.2)


def test_ties_take_the_lowest_positions(device):
    x_t = torch.full((1, 8), MASK, device=device)
    x_t[0, 2] = 50  # not masked: never counted, never changed
    x0 = torch.arange(100, 108, device=device).unsqueeze(0)
    conf = torch.tensor([[0.5, 0.9, 0.9, 0.5, 0.9, -0.0, 0.0, float("-inf")]], device=device)
    got = _check(x_t, x0, conf, n=3)
    assert got.tolist() == [[100, 101, 50, MASK, 104, MASK, MASK, MASK]]  # 0.9 (1, 4), then 0.5 at 0
    got = _check(x_t, x0, conf, n=5)  # -0.0 and 0.0 tie: position 5 first
    assert got.tolist() == [[100, 101, 50, 103, 104, 105, MASK, MASK]]
    got = _check(x_t, x0, conf, n=7)  # -inf ranks last but is still taken
    assert got.tolist() == [[100, 101, 50, 103, 104, 105, 106, 107]]


def test_values_order_like_floats(device):
    # Subnormals, huge values, signs and infinities: the kernel's 64-bit key keeps float order.
    vals = [float("-inf"), -1e300, -1.0, -1e-310, 0.0, 1e-310, 1e-5, 1.0, 1e300, float("inf")]
    perm = torch.randperm(len(vals), generator=torch.Generator().manual_seed(1))
    conf = torch.tensor(vals, dtype=torch.float64)[perm].unsqueeze(0).to(device)
    x_t = torch.full((1, len(vals)), MASK, device=device)
    x0 = torch.arange(len(vals), device=device).unsqueeze(0) + 100
    for n in range(len(vals) + 1):
        got = _check(x_t, x0, conf, n=n)
        taken = conf[got != MASK]
        assert taken.numel() == n and (n == 0 or float(taken.min()) == sorted(vals)[-n])


def test_threshold_none_pass_unmasks_exactly_one_per_row(device):
    x_t, x0, conf = _case(5, 200, device, seed=3, levels=4)  # confidences < 0.5
    x_t[4] = 11  # a row with no masked position stays as it is
    got = _check(x_t, x0, conf, threshold=0.9)
    assert _unmasked_per_row(got, x_t) == [1, 1, 1, 1, 0]
    for b in range(4):
        masked = (x_t[b] == MASK).nonzero().squeeze(1)
        best = masked[conf[b, masked].argmax()]  # argmax: the first maximal one
        assert got[b, best] == x0[b, best]
    got = _check(x_t, x0, conf, threshold=float("inf"))
    assert _unmasked_per_row(got, x_t) == [1, 1, 1, 1, 0]


def test_threshold_all_pass(device):
    x_t, x0, conf = _case(3, 150, device, seed=5, levels=4)
    conf = conf.clamp(min=-0.9)  # drop the -inf entries
    got = _check(x_t, x0, conf, threshold=-1.0)
    assert torch.equal(got, torch.where(x_t == MASK, x0, x_t))
    got = _check(x_t, x0, conf, threshold=float("-inf"))
    assert torch.equal(got, torch.where(x_t == MASK, x0, x_t))


def test_threshold_is_strict(device):
    x_t = torch.full((1, 4), MASK, device=device)
    x0 = torch.arange(4, device=device).unsqueeze(0) + 10
    conf = torch.tensor([[0.5, 0.7, 0.5, 0.2]], device=device)
    assert _check(x_t, x0, conf, threshold=0.5).tolist() == [[MASK, 11, MASK, MASK]]
    assert _check(x_t, x0, conf, threshold=0.49).tolist() == [[10, 11, 12, MASK]]


def test_confidence_at_unmasked_positions_is_ignored(device):
    x_t, x0, conf = _case(3, 100, device, seed=6)
    poisoned = conf.clone()
    poisoned[x_t != MASK] = float("nan")
    for rule in (dict(n=20), dict(threshold=0.3)):
        assert torch.equal(edlm_ext.unmask_confident(x_t, x0, poisoned, MASK, **rule),
                           edlm_ext.unmask_confident(x_t, x0, conf, MASK, **rule))


def test_non_contiguous_inputs(device):
    x_t, x0, conf = _case(30, 8, device, seed=7, levels=3)
    x_t, x0, conf = x_t.t(), x0.t(), conf.t()
    _check(x_t, x0, conf, n=3)
    _check(x_t, x0, conf, threshold=0.0)


def test_empty(device):
    for shape in ((0, 4), (3, 0)):
        x = torch.zeros(shape, dtype=torch.long, device=device)
        c = torch.zeros(shape, device=device)
        assert edlm_ext.unmask_confident(x, x, c, 0, n=2).shape == shape
        assert edlm_ext.unmask_confident(x, x, c, 0, threshold=0.5).shape == shape


@requires_cuda
@pytest.mark.parametrize("dtype", CONF_DTYPES)
def test_cpu_and_cuda_agree(dtype):
    x_t, x0, conf = _case(64, 1500, "cpu", seed=8, levels=9, dtype=dtype)
    n = torch.randint(0, 1500, (64,), generator=torch.Generator().manual_seed(1))
    for rule in (dict(n=n), dict(n=100), dict(threshold=0.1), dict(threshold=2.0)):
        cpu = edlm_ext.unmask_confident(x_t, x0, conf, MASK, **rule)
        gpu_rule = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in rule.items()}
        gpu = edlm_ext.unmask_confident(x_t.cuda(), x0.cuda(), conf.cuda(), MASK, **gpu_rule)
        assert torch.equal(cpu, gpu.cpu())
