"""Where in time importance sampling runs (window=(t_lo, t_hi), is_start / is_end) and the
energy temperature is_temp, through edlm_ext.sample, propose_and_resample and hf.generate."""
import pytest
import torch

import edlm_ext
from edlm_ext.integrations import hf
from edlm_ext.models import TinyAR, TinyDenoiser
from edlm_ext.sampler import normalize_window

V, MASK, L = 50, 49, 12


def _models():
    torch.manual_seed(0)
    return TinyDenoiser(V, MASK, max_len=L).eval(), TinyAR(V, max_len=L).eval()


class Counting:
    """An AR energy that records the x_t of each call (one call per IS step here)."""

    def __init__(self, ar, scale=1.0):
        self.inner, self.scale, self.calls = edlm_ext.AREnergy(ar, bos_id=MASK), scale, []

    def __call__(self, cand, x_t, *, log_q, mask_id):
        self.calls.append((x_t == mask_id).double().mean().item())
        return self.inner(cand, x_t, log_q=log_q, mask_id=mask_id) * self.scale


def test_normalize_window():
    assert normalize_window(0.0) is None and normalize_window(1.0) == (0.0, 1.0)
    assert normalize_window(0.2) == pytest.approx((0.8, 1.0))
    assert normalize_window((0.4, 0.6)) == (0.4, 0.6)
    assert normalize_window(0.0, is_start=0.6, is_end=0.4) == (0.4, 0.6)
    assert normalize_window(0.0, is_end=0.2) == (0.2, 0.6)  # the public code's is_start = 0.6 fills in
    for bad, err in [((0.6, 0.4), "t_lo <= t_hi"), ((0.1,), "pair"), (1.5, r"\[0, 1\]"), ((0.0, 2.0), "t_hi")]:
        with pytest.raises(ValueError, match=err):
            normalize_window(bad)
    with pytest.raises(ValueError, match="not both"):
        normalize_window(0.5, is_start=0.6)
    with pytest.raises(ValueError, match="is_end must be <= is_start"):
        normalize_window(0.0, is_start=0.3, is_end=0.5)


@pytest.mark.parametrize("kw, want", [
    (dict(window=1.0), 8), (dict(window=0.25), 3), (dict(window=(0.4, 0.6)), 1),  # t_i = 1 - i (1 - eps) / 8
    (dict(is_start=0.6, is_end=0.4), 1), (dict(window=(0.0, 0.3)), 2), (dict(window=0.0), 0)])
def test_sample_imports_sample_only_inside_the_window(kw, want):
    den, ar = _models()
    e = Counting(ar)
    out = edlm_ext.sample(den, batch_size=2, seq_len=L, mask_id=MASK, steps=8, energy=e, k=3, seed=0, **kw)
    assert out.stats.energy_calls == want == len(e.calls)
    lo, hi = normalize_window(kw.get("window", 0.0), kw.get("is_start"), kw.get("is_end")) or (1, 0)
    grid = [1 - i * (1 - 1e-5) / 8 for i in range(8)]
    assert sum(lo - 1e-12 <= t <= hi + 1e-12 for t in grid) == want


def test_is_temp_divides_the_log_weights():
    den, ar = _models()
    x_t = torch.full((3, L), MASK)
    logits = den(x_t)
    e = edlm_ext.AREnergy(ar, bos_id=MASK)
    _, d1 = edlm_ext.propose_and_resample(logits, x_t, MASK, e, 4, seed=1)
    _, d2 = edlm_ext.propose_and_resample(logits, x_t, MASK, e, 4, seed=1, is_temp=2.0)
    assert torch.allclose(d2.log_w, d1.log_w / 2, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="is_temp"):
        edlm_ext.propose_and_resample(logits, x_t, MASK, e, 4, seed=1, is_temp=0.0)


@pytest.mark.parametrize("proposal", ["joint", "unmask-first"])
def test_sample_is_temp_equals_a_scaled_energy(proposal):
    den, ar = _models()
    kw = dict(batch_size=4, seq_len=L, mask_id=MASK, steps=4, k=4, window=1.0, seed=3, proposal=proposal)
    a = edlm_ext.sample(den, energy=Counting(ar), is_temp=0.5, **kw).tokens
    b = edlm_ext.sample(den, energy=Counting(ar, scale=2.0), **kw).tokens
    c = edlm_ext.sample(den, energy=Counting(ar), **kw).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_hf_generate_window_and_is_temp():
    den, ar = _models()
    model = lambda ids: den(ids)  # noqa: E731  (a bidirectional callable)
    prompt = torch.tensor([[1, 2], [3, 4]])
    kw = dict(gen_length=8, block_length=8, steps=4, temperature=1.0, mask_id=MASK, k=3, seed=0)
    e = Counting(ar)
    hf.generate(model, prompt, energy=e, window=(0.4, 0.8), **kw)
    # the fraction of the block masked before each of the 4 steps: 1, 0.75, 0.5, 0.25
    assert len(e.calls) == 2
    e = Counting(ar)
    hf.generate(model, prompt, energy=e, is_start=0.6, is_end=0.4, **kw)
    assert len(e.calls) == 1
    a = hf.generate(model, prompt, energy=Counting(ar), is_temp=0.5, **kw)
    b = hf.generate(model, prompt, energy=Counting(ar, scale=2.0), **kw)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="not both"):
        hf.generate(model, prompt, energy=Counting(ar), window=0.5, is_steps=1, **kw)
    with pytest.raises(ValueError, match="is_temp"):
        hf.generate(model, prompt, energy=Counting(ar), is_temp=-1.0, **kw)
