"""unmask / unmask_confident at the edges: clear errors for bad input, the raw ops'
own checks, torch.compile(fullgraph=True)."""
import pytest
import torch

import edlm_ext

from .helpers import UNMASK_ID as MASK
from .helpers import unmask_case


def _tokens(B=2, L=5, device="cpu"):
    return unmask_case(B, L, device)[:2]


def _conf(B=2, L=5, device="cpu"):
    return unmask_case(B, L, device)[2]


TOKEN_ERRORS = [
    (lambda x, z: (x.int(), z), TypeError, "x_t must be int64"),
    (lambda x, z: (x, z.float()), TypeError, "x0 must be int64"),
    (lambda x, z: (x.tolist(), z), TypeError, "x_t must be a torch.Tensor"),
    (lambda x, z: (x[0], z[0]), ValueError, r"x_t must be \[B, L\]"),
    (lambda x, z: (x, z[:, :3]), ValueError, "x0 must have the shape"),
]


@pytest.mark.parametrize("mutate,exc,match", TOKEN_ERRORS)
def test_bad_tokens(mutate, exc, match):
    x_t, x0 = mutate(*_tokens())
    with pytest.raises(exc, match=match):
        edlm_ext.unmask(x_t, x0, MASK, 0.5)
    with pytest.raises(exc, match=match):
        edlm_ext.unmask_confident(x_t, x0, _conf(), MASK, n=1)


@pytest.mark.parametrize("mask_id,exc", [(-1, ValueError), (1.0, TypeError), (True, TypeError)])
def test_bad_mask_id(mask_id, exc):
    with pytest.raises(exc, match="mask_id"):
        edlm_ext.unmask(*_tokens(), mask_id, 0.5)
    with pytest.raises(exc, match="mask_id"):
        edlm_ext.unmask_confident(*_tokens(), _conf(), mask_id, n=1)


@pytest.mark.parametrize(
    "p,exc,match",
    [
        (-0.1, ValueError, r"p must lie in \[0, 1\]"),
        (1.5, ValueError, r"p must lie in \[0, 1\]"),
        (float("nan"), ValueError, r"p must lie in \[0, 1\]"),
        (torch.tensor([0.5, 1.01]), ValueError, r"p\[1\] = 1.01"),
        (torch.tensor([float("nan"), 0.5]), ValueError, r"p\[0\] = nan"),
        (torch.tensor([0.5]), ValueError, r"p must have shape \[B\] = \[2\]"),
        (torch.tensor(0.5), ValueError, r"p must have shape \[B\]"),
        (torch.tensor([0.5, 0.5], dtype=torch.float16), TypeError, "p must be float32 or float64"),
        (torch.tensor([1, 0]), TypeError, "p must be float32 or float64"),
        ("0.5", TypeError, "p must be a float or a tensor"),
        (True, TypeError, "p must be a float or a tensor"),
    ],
)
def test_bad_p(p, exc, match):
    with pytest.raises(exc, match=match):
        edlm_ext.unmask(*_tokens(), MASK, p)


def test_p_as_int_is_accepted():
    x_t, x0 = _tokens()
    assert torch.equal(edlm_ext.unmask(x_t, x0, MASK, 1, seed=0), torch.where(x_t == MASK, x0, x_t))


def test_bad_seed_and_generator():
    with pytest.raises(ValueError, match="not both"):
        edlm_ext.unmask(*_tokens(), MASK, 0.5, seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="seed"):
        edlm_ext.unmask(*_tokens(), MASK, 0.5, seed=1.5)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(), ValueError, "exactly one of n= and threshold="),
        (dict(n=1, threshold=0.5), ValueError, "exactly one of n= and threshold="),
        (dict(n=-1), ValueError, "n must be >= 0"),
        (dict(n=torch.tensor([1, -2])), ValueError, r"n\[1\] = -2"),
        (dict(n=1.0), TypeError, "n must be an int"),
        (dict(n=True), TypeError, "n must be an int"),
        (dict(n=torch.tensor([1, 2], dtype=torch.int32)), TypeError, "n must be int64"),
        (dict(n=torch.tensor([1, 2, 3])), ValueError, r"n must have shape \[B\] = \[2\]"),
        (dict(threshold=float("nan")), ValueError, "threshold is NaN"),
        (dict(threshold="high"), TypeError, "threshold must be a float"),
    ],
)
def test_bad_rule(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        edlm_ext.unmask_confident(*_tokens(), _conf(), MASK, **kwargs)


@pytest.mark.parametrize(
    "conf,exc,match",
    [
        (_conf().long(), TypeError, "confidence must be float32, float64, bfloat16 or float16"),
        (_conf().numpy(), TypeError, "confidence must be a torch.Tensor"),
        (_conf()[:, :4], ValueError, "confidence must have the shape of x_t"),
    ],
)
def test_bad_confidence(conf, exc, match):
    with pytest.raises(exc, match=match):
        edlm_ext.unmask_confident(*_tokens(), conf, MASK, n=1)


def test_nan_confidence_at_a_masked_position(device):
    x_t, x0 = _tokens(device=device)
    conf = _conf(device=device)
    conf[1, 2] = float("nan")  # x_t[1, 2] == MASK
    for rule in (dict(n=1), dict(threshold=0.5)):
        with pytest.raises(ValueError, match=r"confidence\[1, 2\] is NaN at a masked position"):
            edlm_ext.unmask_confident(x_t, x0, conf, MASK, **rule)


def test_device_mismatch():
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    x_t, x0 = _tokens()
    with pytest.raises(ValueError, match="x0 is on"):
        edlm_ext.unmask(x_t, x0.cuda(), MASK, 0.5)
    with pytest.raises(ValueError, match="p is on"):
        edlm_ext.unmask(x_t, x0, MASK, torch.tensor([0.5, 0.5], device="cuda"))
    with pytest.raises(ValueError, match="confidence is on"):
        edlm_ext.unmask_confident(x_t, x0, _conf().cuda(), MASK, n=1)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda x, z, c: torch.ops.edlm_ext.unmask(x, z, -1, torch.ones(2), torch.zeros(2, dtype=torch.long)),
         ValueError, "mask_id must be >= 0"),
        (lambda x, z, c: torch.ops.edlm_ext.unmask(x, z, 0, torch.ones(3), torch.zeros(2, dtype=torch.long)),
         ValueError, r"p must have shape \[B\] = \[2\]"),
        (lambda x, z, c: torch.ops.edlm_ext.unmask(x, z, 0, torch.ones(2), torch.zeros(3, dtype=torch.long)),
         ValueError, "rng must be"),
        (lambda x, z, c: torch.ops.edlm_ext.unmask(x, z.int(), 0, torch.ones(2), torch.zeros(2, dtype=torch.long)),
         TypeError, "x0 must be int64"),
        (lambda x, z, c: torch.ops.edlm_ext.unmask_confident(x, z, c, 0, None, None), ValueError,
         "exactly one of n= and threshold="),
        (lambda x, z, c: torch.ops.edlm_ext.unmask_confident(x, z, c.long(), 0, None, 0.5),
         TypeError, "confidence must be float32"),
        (lambda x, z, c: torch.ops.edlm_ext.unmask_confident(x, z, c, 0, torch.ones(2), None), TypeError,
         "n must be int64"),
        (lambda x, z, c: torch.ops.edlm_ext.unmask_confident(x, z, c, 0, None, float("nan")), ValueError,
         "threshold is NaN"),
    ],
)
def test_raw_op_checks(call, exc, match):
    # Direct torch.ops callers get the op's contract (csrc/checks.h): the wrappers' errors.
    with pytest.raises(exc, match=match):
        call(*_tokens(), _conf())


def test_raw_ops_without_wrapper_checks(device):
    # What torch.compile callers get (the value checks are skipped): negative n counts
    # as 0, p outside [0, 1] clamps, NaN confidence ranks below -inf. Never out of range.
    x_t, x0 = _tokens(device=device)
    conf = _conf(device=device)
    rng = torch.tensor([1, 0], device=device)
    ops = torch.ops.edlm_ext
    p = torch.tensor([-0.5, float("nan")], device=device)
    assert torch.equal(ops.unmask(x_t, x0, MASK, p, rng), x_t)
    assert torch.equal(ops.unmask(x_t, x0, MASK, torch.full((2,), 7.0, device=device), rng),
                       torch.where(x_t == MASK, x0, x_t))
    assert torch.equal(ops.unmask_confident(x_t, x0, conf, MASK, torch.tensor([-3, -1], device=device), None), x_t)
    conf[0, 0] = float("nan")
    conf[0, 2] = float("-inf")
    got = ops.unmask_confident(x_t, x0, conf, MASK, torch.tensor([2, 0], device=device), None)
    assert got[0].tolist() == [MASK, 4, 9, 4, 9] and torch.equal(got[1], x_t[1])


def test_check_false_skips_the_value_checks(device):
    x_t, x0 = _tokens(device=device)
    conf = _conf(device=device)
    conf[0, 0] = float("nan")
    n = torch.tensor([-1, 1], device=device)
    got = edlm_ext.unmask_confident(x_t, x0, conf, MASK, n=n, check=False)
    assert torch.equal(got, torch.ops.edlm_ext.unmask_confident(x_t, x0, conf, MASK, n, None))
    p = torch.tensor([2.0, -1.0], device=device)  # row 0: everything unmasks, row 1: nothing
    got = edlm_ext.unmask(x_t, x0, MASK, p, seed=0, check=False)
    assert torch.equal(got[0], torch.where(x_t[0] == MASK, x0[0], x_t[0])) and torch.equal(got[1], x_t[1])


def test_raw_unmask_reads_a_strided_rng(device):
    x_t, x0 = _tokens(4, 300, device=device)
    p = torch.full((4,), 0.5, device=device)
    strided = torch.tensor([5, -1, 3, -1], device=device)[::2]
    assert torch.equal(torch.ops.edlm_ext.unmask(x_t, x0, MASK, p, strided),
                       torch.ops.edlm_ext.unmask(x_t, x0, MASK, p, torch.tensor([5, 3], device=device)))


def test_compile_fullgraph(device):
    def step(x_t, x0, conf, p):
        a = edlm_ext.unmask(x_t, x0, MASK, p, seed=3)
        b = edlm_ext.unmask(x_t, x0, MASK, 0.5, seed=4)
        c = edlm_ext.unmask_confident(x_t, x0, conf, MASK, n=2)
        d = edlm_ext.unmask_confident(x_t, x0, conf, MASK, threshold=0.5)
        return a + b, c * 2 + d

    x_t, x0 = _tokens(4, 9, device=device)
    conf = _conf(4, 9, device=device)
    p = torch.tensor([0.1, 0.4, 0.6, 0.9], device=device)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(x_t, x0, conf, p), step(x_t, x0, conf, p)):
        assert torch.equal(got, want)
