"""The ops at the edges of their domain (issue 11, item 5): the valid temperature
range, rng tensors of any layout, the top-p vocabulary limit, arguments beyond
int64, meta tensors, non-differentiable outputs, and the sampler's argument checks.
Each case failed (wrong result, misleading error or crash) before it was fixed."""
import math

import pytest
import torch

import edlm_ext
from edlm_ext import reference
from edlm_ext.ops import MAX_TOP_P_VOCAB, TEMPERATURE_RANGE

OPS = torch.ops.edlm_ext
T_MIN, T_MAX = TEMPERATURE_RANGE


def _case(B=2, L=4, V=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, V, generator=g) * 3
    x_t = torch.full((B, L), V - 1, dtype=torch.long)
    x_t[0, 0] = 5  # one copied position
    return logits, x_t, V - 1


def _raw_sample(logits, x_t, mask_id, temperature, rng, top_p=1.0):
    return OPS.masked_sample(logits, x_t, mask_id, temperature, 0, top_p, 0.0, True, rng)


# --- temperature --------------------------------------------------------------------------

# beyond the range: the float32 scale log2(e)/T underflows to 0 (T >= ~2e45: NaN terms,
# id 303 of V = 300) or overflows (T <= ~4.8e-39: silently greedy with T = 1 statistics)
OUTSIDE = [2e45, 1e300, math.nextafter(T_MAX, math.inf), 4e-39, 1e-45, math.nextafter(T_MIN, 0.0), -1.0,
           float("nan"), float("inf")]


@pytest.mark.parametrize("temperature", OUTSIDE)
def test_temperature_outside_the_range_is_rejected_by_wrapper_and_raw_op(temperature):
    logits, x_t, mask_id = _case()
    for fn in (lambda: edlm_ext.masked_sample(logits, x_t, mask_id, temperature=temperature, seed=0),
               lambda: edlm_ext.masked_sample(logits, x_t, mask_id, temperature=temperature, seed=0, check=False),
               lambda: edlm_ext.sample_proposals(logits, x_t, mask_id, 2, temperature=temperature, seed=0)):
        with pytest.raises(ValueError, match=r"temperature must be 0 \(greedy\) or in \[1e-30, 1e\+30\]"):
            fn()
    with pytest.raises(ValueError, match=r"temperature must be 0 \(greedy\) or in"):  # the raw op: the same contract
        _raw_sample(logits, x_t, mask_id, temperature, torch.tensor([0, 0]))


def test_temperature_overflowing_python_float_is_a_named_error():
    logits, x_t, mask_id = _case()
    with pytest.raises(ValueError, match=r"temperature = 1000+\.\.\.\(401 digits\) is too large for a float"):
        edlm_ext.masked_sample(logits, x_t, mask_id, temperature=10**400, seed=0)


@pytest.mark.parametrize("temperature", [T_MIN, 1e-12, 1e-3, 1e3, 1e12, T_MAX])
def test_inside_the_range_draws_logp_and_entropy_are_under_that_temperature(temperature):
    """The raw op accepts both ends (the C++ range is the Python one) and every output
    matches the float64 reference at T, not at T = 1 or greedy."""
    logits, x_t, mask_id = _case()
    seed = 11
    x0, logp, ent = _raw_sample(logits, x_t, mask_id, temperature, torch.tensor([seed, 0]))
    B, L, V = logits.shape
    u = reference.row_uniforms((seed, 0), B * L)
    rx, rlp = reference.masked_sample(logits, x_t, mask_id, temperature, uniforms=u)
    rent = reference.entropy(logits, mask_id, temperature)
    masked = x_t == mask_id
    assert torch.equal(x0, rx)
    assert torch.allclose(logp.double()[masked], rlp[masked], atol=2e-5)
    assert torch.allclose(ent.double()[masked], rent[masked], atol=2e-5)
    if temperature == T_MIN:  # a point mass on the (unique) argmax
        assert bool((logp[masked] == 0).all()) and bool((ent[masked].abs() < 1e-6).all())
    if temperature == T_MAX:  # uniform over the V - 1 non-[MASK] tokens
        assert torch.allclose(ent[masked].double(), torch.full_like(rent[masked], math.log(V - 1)), atol=1e-5)


def test_greedy_zero_keeps_its_documented_statistics():
    """T = 0 stays greedy with logp under softmax(logits) (LLaDA's confidence) — the
    only temperature whose statistics are not under T."""
    logits, x_t, mask_id = _case()
    x0, logp, _ = _raw_sample(logits, x_t, mask_id, 0.0, torch.tensor([0, 0]))
    rx, rlp = reference.masked_sample(logits, x_t, mask_id, 0.0)
    assert torch.equal(x0, rx) and torch.allclose(logp.double(), rlp, atol=2e-5)
    assert bool((logp[x_t == mask_id] < 0).all())  # T = 1 statistics, not a point mass


def test_top_p_at_the_largest_temperature_keeps_the_smallest_top_set():
    """The top-p mass counter at T_MAX (every term ~1: just above the range the terms
    were NaN, the UBSan report in filter_row): the distribution is uniform to 1e-30,
    so the smallest top set holding half the mass is the ceil(0.5 (V - 1)) largest
    logits (float64 softmax cannot tell those probabilities apart; exact math can)."""
    logits, x_t, mask_id = _case(B=1, L=64)
    V = logits.shape[-1]
    x0, logp, _ = OPS.masked_sample(logits, x_t, mask_id, T_MAX, 0, 0.5, 0.0, False, torch.tensor([3, 0]))
    n = math.ceil(0.5 * (V - 1))
    row = logits.clone()
    row[..., mask_id] = float("-inf")
    top = row.topk(n, dim=-1).indices
    masked = x_t == mask_id
    drawn_in_top = (top == x0.unsqueeze(-1)).any(-1)
    assert bool(drawn_in_top[masked].all())
    assert torch.allclose(logp[masked].double(), torch.full_like(logp[masked].double(), -math.log(n)), atol=1e-6)
    assert len(set(x0[masked].tolist())) > 20  # power: draws spread over the kept set


# --- rng layout ---------------------------------------------------------------------------

def _rng_views():
    """(view, the contiguous key it holds): a strided view, an expanded 1-element tensor."""
    base = torch.tensor([123456789, -5, 42, 7])
    return [(base[::2], torch.tensor([123456789, 42])),
            (torch.tensor([987654321]).expand(2), torch.tensor([987654321, 987654321]))]


def _raw_ops(rng):
    logits, x_t, mask_id = _case()
    g = torch.Generator().manual_seed(0)
    log_w = torch.randn(3, 5, dtype=torch.float64, generator=g)
    props = torch.randint(0, 9, (3, 5, 6), generator=g)
    x = torch.randint(0, 4, (3, 50), generator=g)
    return [OPS.masked_sample(logits, x_t, mask_id, 1.0, 0, 1.0, 0.0, False, rng)[0],
            OPS.sample_proposals(logits, x_t, mask_id, 3, 1.0, 0, 0.9, 0.0, rng)[0],
            OPS.importance_resample(log_w, props, rng)[3],
            OPS.unmask(x, x + 10, 0, torch.full((3,), 0.5), rng),
            torch.ops.edlm_ext_testing.row_uniforms(rng, 8, 0)]


@pytest.mark.parametrize("view_and_key", _rng_views(), ids=["strided", "expanded"])
def test_raw_ops_read_the_key_of_any_rng_layout(view_and_key):
    view, key = view_and_key
    assert not view.is_contiguous()
    for got, want in zip(_raw_ops(view), _raw_ops(key)):
        assert torch.equal(got, want)
    assert not torch.equal(_raw_ops(key)[0], _raw_ops(key + 1)[0])  # power: the key matters


@pytest.mark.parametrize("bad", [torch.tensor([1, 2, 3]), torch.tensor([[1, 2]]), torch.tensor([1.0, 2.0]),
                                 torch.tensor([1], dtype=torch.int64)])
def test_raw_ops_reject_a_malformed_rng(bad):
    logits, x_t, mask_id = _case()
    wrong = TypeError if bad.dtype != torch.int64 else ValueError
    with pytest.raises(wrong, match=r"masked_sample: rng must be a 1-D int64 tensor \[seed, offset\]"):
        OPS.masked_sample(logits, x_t, mask_id, 1.0, 0, 1.0, 0.0, False, bad)
    with pytest.raises(wrong, match=r"importance_resample: rng must be"):
        OPS.importance_resample(torch.zeros(1, 2), torch.zeros(1, 2, 3, dtype=torch.long), bad)


# --- top-p vocabulary limit ---------------------------------------------------------------

def test_top_p_beyond_the_mass_counter_is_rejected():
    """V = 2^24 + 1 near-uniform logits overflowed the 2^-40 fixed-point total (uint64)
    and kept the wrong set; now V <= 2^24 - 1 is enforced for top_p < 1."""
    V = MAX_TOP_P_VOCAB + 2
    logits = torch.zeros(1, 1, V)
    x_t = torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ValueError, match=r"top_p < 1 needs a vocabulary of at most 16777215 tokens.*V = 16777217"):
        edlm_ext.masked_sample(logits, x_t, 0, top_p=0.5, seed=0)
    with pytest.raises(ValueError, match=r"top_p < 1 needs a vocabulary of at most 16777215"):
        OPS.masked_sample(logits, x_t, 0, 1.0, 0, 0.5, 0.0, False, torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"sample_proposals: top_p < 1 needs"):
        OPS.sample_proposals(logits, x_t, 0, 2, 1.0, 0, 0.5, 0.0, torch.tensor([0, 0]))
    x0, _ = edlm_ext.masked_sample(logits, x_t, 0, seed=0)  # without top_p the row is fine
    assert 0 < int(x0) < V


# --- ints beyond int64, meta tensors, autograd ----------------------------------------------

@pytest.mark.parametrize("call,name", [
    (lambda lg, x, m: edlm_ext.masked_sample(lg, x, m, top_k=2**63, seed=0), "top_k"),
    (lambda lg, x, m: edlm_ext.sample_proposals(lg, x, m, 2**63, seed=0), "k"),
    (lambda lg, x, m: edlm_ext.sample_proposals(lg, x, m, 2, top_k=2**64 + 5, seed=0), "top_k"),
    (lambda lg, x, m: edlm_ext.unmask_confident(x, x, torch.rand(x.shape), m, n=2**63), "n"),
    (lambda lg, x, m: edlm_ext.unmask(x, x, 2**63, 0.5, seed=0), "mask_id"),
])
def test_ints_beyond_int64_are_named(call, name):
    logits, x_t, mask_id = _case()
    with pytest.raises(ValueError, match=rf"{name} = \d+ does not fit in int64"):
        call(logits, x_t, mask_id)


def test_ops_on_meta_tensors_with_check():
    B, L, V, k = 2, 5, 30, 3
    logits = torch.empty(B, L, V, device="meta")
    x_t = torch.empty(B, L, dtype=torch.long, device="meta")
    x0, logp, ent = edlm_ext.masked_sample(logits, x_t, 1, return_entropy=True, top_p=0.9)
    assert x0.shape == (B, L) and logp.dtype == torch.float32 and ent.shape == (B, L) and x0.is_meta
    props, log_q = edlm_ext.sample_proposals(logits, x_t, 1, k, seed=3)
    assert props.shape == (B, k, L) and log_q.shape == (B, k)
    res = edlm_ext.importance_resample(torch.empty(B, k, device="meta"), props)
    assert res.chosen.shape == (B, L) and res.index.dtype == torch.int64
    assert edlm_ext.unmask(x_t, x_t, 1, torch.empty(B, device="meta")).shape == (B, L)
    assert edlm_ext.unmask_confident(x_t, x_t, torch.empty(B, L, device="meta"), 1, n=2).shape == (B, L)
    with pytest.raises(ValueError, match="mask_id"):  # shape/range checks still run
        edlm_ext.masked_sample(logits, x_t, V)


def test_outputs_are_not_differentiable():
    logits, x_t, mask_id = _case()
    logits.requires_grad_(True)
    x0, logp, ent = edlm_ext.masked_sample(logits, x_t, mask_id, seed=0, return_entropy=True)
    _, log_q = edlm_ext.sample_proposals(logits, x_t, mask_id, 3, seed=0)
    log_w = torch.randn(2, 3, requires_grad=True)
    res = edlm_ext.importance_resample(log_w, torch.zeros(2, 3, 4, dtype=torch.long), seed=0)
    for out in (logp, ent, log_q, res.weights, res.log_z, res.ess):
        assert out.grad_fn is None and not out.requires_grad
    assert edlm_ext.masked_sample.__doc__.count("not differentiable") == 1


# --- the sampler --------------------------------------------------------------------------

def _denoiser(V=12):
    def f(x_t, t):
        g = torch.Generator().manual_seed(int(x_t.sum()))
        out = torch.randn(x_t.shape[0], x_t.shape[1], V, generator=g)
        out[..., V - 1] = float("-inf")
        return out
    return f


class _CountingEnergy:
    def __init__(self):
        self.calls = 0

    def __call__(self, candidates, x_t, *, log_q, mask_id):
        self.calls += 1
        return torch.zeros(candidates.shape[0])


def test_window_zero_never_calls_the_energy():
    energy = _CountingEnergy()
    out = edlm_ext.sample(_denoiser(), batch_size=2, seq_len=6, mask_id=11, steps=5, energy=energy, k=3,
                          window=0.0, seed=0)
    assert energy.calls == 0 and out.stats.energy_calls == 0
    plain = edlm_ext.sample(_denoiser(), batch_size=2, seq_len=6, mask_id=11, steps=5, seed=0)
    assert torch.equal(out.tokens, plain.tokens)  # exactly MDLM sampling
    edlm_ext.sample(_denoiser(), batch_size=2, seq_len=6, mask_id=11, steps=5, energy=energy, k=3, window=0.01,
                    seed=0)
    assert energy.calls == 1  # power: the smallest window > 0 runs the first step's IS


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"seed": 1.5}, TypeError, "seed must be an int, got float"),
    ({"seed": "3"}, TypeError, "seed must be an int, got str"),
    ({"seed": 2**64}, ValueError, "seed must fit in 64 bits"),
    ({"batch_size": -1}, ValueError, "batch_size must be an int >= 0, got -1"),
    ({"seq_len": -2}, ValueError, "seq_len must be an int >= 0, got -2"),
    ({"batch_size": 2.0}, TypeError, "batch_size must be an int"),
    ({"steps": True}, TypeError, "steps must be an int"),
    ({"window": float("nan")}, ValueError, "window must be a number in"),
    ({"temperature": 1e-40}, ValueError, "temperature must be 0"),
])
def test_sample_rejects_bad_arguments_by_name(kwargs, exc, match):
    args = {"batch_size": 2, "seq_len": 4, "mask_id": 11, "steps": 2, "seed": 0, **kwargs}
    with pytest.raises(exc, match=match):
        edlm_ext.sample(_denoiser(), **args)


@pytest.mark.parametrize("returned", [[1, 2], None, (torch.zeros(2, 4, 12),)])
def test_sample_names_a_denoiser_that_returns_no_tensor(returned):
    with pytest.raises(TypeError, match="denoiser must return a torch.Tensor of logits"):
        edlm_ext.sample(lambda x, t: returned, batch_size=2, seq_len=4, mask_id=11, steps=2, seed=0)
