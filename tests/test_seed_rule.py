"""One seed rule everywhere (edlm_ext._rng): under ``seed=`` every op call of a loop —
sample, propose_and_resample, the MDLM updates, LLaDA's and Dream's generate — draws
its key from a seed (the device-independent path: a CPU and a CUDA op with the same
seed draw the same tokens, tests/test_cuda.py), never from a device generator; the
other draws come from CPU generators. ``generator=`` and ``seed=`` together are an
error everywhere. (The CPU/CUDA comparison itself: test_cuda.py, with a GPU.)"""
import pytest
import torch

import edlm_ext
from edlm_ext import _rng, ops
from edlm_ext.integrations import dream, hf, mdlm

from .test_sampler_syncs import AR, MASK, V, _Table

L = 12


def _den(x, t=None):
    return _Table(0)(x)


def _llada(x, attention_mask=None):
    return _Table(0)(x)


def _dream(x, attention_mask=None, tok_idx=None):
    return _Table(0)(x)


def _calls():
    x = torch.full((2, L), MASK)
    probs = torch.rand(3, V, generator=torch.Generator().manual_seed(0))
    return {
        "sample": lambda **kw: edlm_ext.sample(_den, batch_size=2, seq_len=L, mask_id=MASK, steps=4, **kw).tokens,
        "sample_edlm_first_hitting": lambda **kw: edlm_ext.sample(
            _den, batch_size=2, seq_len=L, mask_id=MASK, steps=4, first_hitting=True, k=3, window=1.0,
            energy=edlm_ext.AREnergy(AR, bos_id=MASK), **kw).tokens,
        "propose_and_resample": lambda **kw: edlm_ext.propose_and_resample(
            _den(x), x, MASK, edlm_ext.AREnergy(AR, bos_id=MASK), 4, **kw)[0],
        "ddpm_caching_update": lambda **kw: mdlm.ddpm_caching_update(_den, x, 0.5, 0.25, mask_id=MASK, **kw)[1],
        "ddpm_update": lambda **kw: mdlm.ddpm_update(_den, x, 0.5, 0.25, mask_id=MASK, **kw),
        "sample_categorical": lambda **kw: mdlm.sample_categorical(probs, **kw),
        "hf_generate": lambda **kw: hf.generate(_llada, torch.tensor([[1, 2], [3, 4]]), steps=4, gen_length=8,
                                                block_length=4, temperature=1.0, mask_id=MASK, remasking="random",
                                                **kw),
        "dream": lambda **kw: dream.diffusion_generate(_dream, torch.tensor([[1, 2]]), max_new_tokens=6, steps=3,
                                                       mask_token_id=MASK, temperature=1.0, alg="origin", **kw),
    }


CALLS = _calls()


def _record(monkeypatch) -> list:
    seen = []
    rng_tensor, rand = ops.rng_tensor, torch.rand

    def spy_key(device, generator, seed):
        seen.append(("op", generator, seed))
        return rng_tensor(device, generator, seed)

    def spy_rand(*args, generator=None, **kwargs):
        seen.append(("rand", generator, None))
        return rand(*args, generator=generator, **kwargs)

    monkeypatch.setattr(ops, "rng_tensor", spy_key)
    monkeypatch.setattr(torch, "rand", spy_rand)
    return seen


@pytest.mark.parametrize("name", sorted(CALLS))
def test_seed_draws_every_key_from_a_seed(name, monkeypatch):
    seen = _record(monkeypatch)
    a = CALLS[name](seed=5)
    draws = [s for s in seen if s[0] == "op" or s[1] is not None]
    assert draws, "nothing was drawn"
    for kind, generator, seed in draws:
        if kind == "op":
            assert generator is None and isinstance(seed, int), (kind, generator, seed)
        else:  # torch-side uniforms of the loop: a CPU generator seeded by the rule
            assert generator.device.type == "cpu"
    monkeypatch.undo()
    assert torch.equal(a, CALLS[name](seed=5))  # the seed reproduces the run
    assert not torch.equal(a, CALLS[name](seed=6))  # power: and it matters


@pytest.mark.parametrize("name", sorted(CALLS))
def test_generator_draws_from_the_generator_and_never_with_a_seed(name, monkeypatch):
    seen = _record(monkeypatch)
    g = torch.Generator().manual_seed(3)
    CALLS[name](generator=g)
    assert [s for s in seen if s[0] == "op"] == [("op", g, None)] * len([s for s in seen if s[0] == "op"])
    assert all(s[1] is g for s in seen if s[0] == "rand" and s[1] is not None)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_generator_and_seed_together_are_an_error(name):
    with pytest.raises(ValueError, match="not both"):
        CALLS[name](generator=torch.Generator(), seed=1)


def test_derived_seeds_are_distinct_and_fit_the_ops():
    seeds = {_rng.derive_seed(7, n) for n in range(10_000)} | {_rng.derive_seed(8, n) for n in range(10_000)}
    assert len(seeds) == 20_000 and all(0 <= s < 2**64 for s in seeds)
    stream = _rng.RandomStream("cpu", seed=2**64 - 1)
    assert [stream.next()["seed"] for _ in range(2)] == [_rng.derive_seed(2**64 - 1, 0), _rng.derive_seed(2**64 - 1, 1)]
