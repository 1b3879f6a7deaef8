"""LLaDA / Dream-style generation with our kernels vs the stock float64 PyTorch sampler
(edlm_ext.integrations.stock): same distribution over whole generated sequences
(chi-square homogeneity at fixed seeds), and a known-wrong variant is rejected."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers

import edlm_ext
from edlm_ext.integrations import hf, stock

from .stats import CHI2_ALPHA, Z_CRIT, binomial_z, homogeneity_pvalue

V, MASK, P, GEN, BLOCK = 6, 5, 2, 4, 2  # 5 drawable tokens, 4 answer tokens: 625 outcomes
N = 6000


def _bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16)
    return transformers.BertForMaskedLM(cfg).eval()


def _qwen():
    torch.manual_seed(1)
    cfg = transformers.Qwen2Config(vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   num_key_value_heads=1, intermediate_size=32, max_position_embeddings=16)
    return transformers.Qwen2ForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def bert():
    return _bert()


def _outcomes(tokens: torch.Tensor) -> np.ndarray:
    ans = tokens[:, P:].numpy()
    assert ans.min() >= 0 and ans.max() < MASK, "a [MASK] or out-of-range token was generated"
    return np.bincount((ans * (MASK ** np.arange(GEN)[::-1])).sum(1), minlength=MASK ** GEN)


def _prompt(n=N):
    return torch.tensor([[1, 3]]).repeat(n, 1)


def _pair(model, seed, stock_kwargs=None, n=N, **kw):
    ours = hf.generate(model, _prompt(n), mask_id=MASK, gen_length=GEN, block_length=BLOCK, seed=seed, **kw)
    ref = stock.llada_generate(model, _prompt(n), mask_id=MASK, gen_length=GEN, block_length=BLOCK,
                               generator=torch.Generator().manual_seed(seed + 1000), **{**kw, **(stock_kwargs or {})})
    return _outcomes(ours.tokens), _outcomes(ref.tokens)


def test_llada_low_confidence_matches_stock(bert):
    a, b = _pair(bert, 0, steps=4, temperature=1.0)
    assert homogeneity_pvalue(a, b) > CHI2_ALPHA


def test_llada_tempered_confidence_matches_stock(bert):
    # temperature 0.7: the confidence stays softmax(logits), not the tempered draw's probability
    a, b = _pair(bert, 1, steps=4, temperature=0.7)
    assert homogeneity_pvalue(a, b) > CHI2_ALPHA


def test_fast_dllm_threshold_matches_stock(bert):
    a, b = _pair(bert, 2, temperature=1.0, threshold=0.3)
    assert homogeneity_pvalue(a, b) > CHI2_ALPHA


def test_dream_shifted_logits_match_stock():
    a, b = _pair(_qwen(), 3, steps=4, temperature=1.0, shift_logits=True)
    assert homogeneity_pvalue(a, b) > CHI2_ALPHA


def test_known_wrong_variants_are_rejected(bert):
    # random remasking (a different unmasking order) and a Dream model read without the shift;
    # both are far off (p < 1e-100 with 6000 draws), so 2000 draws suffice
    a, b = _pair(bert, 4, stock_kwargs={"remasking": "random"}, n=2000, steps=4, temperature=1.0)
    p_random = homogeneity_pvalue(a, b)
    a, b = _pair(_qwen(), 5, stock_kwargs={"shift_logits": False}, n=2000, steps=4, temperature=1.0,
                 shift_logits=True)
    p_unshifted = homogeneity_pvalue(a, b)
    assert p_random < CHI2_ALPHA and p_unshifted < CHI2_ALPHA


def test_greedy_is_deterministic_and_matches_stock(bert):
    prompt = torch.tensor([[1, 3], [2, 0], [4, 4]])
    ours = hf.generate(bert, prompt, mask_id=MASK, gen_length=GEN, block_length=BLOCK, steps=4, temperature=0.0)
    ref = stock.llada_generate(bert, prompt, mask_id=MASK, gen_length=GEN, block_length=BLOCK, steps=4)
    assert torch.equal(ours.tokens, ref.tokens)
    assert ours.model_calls == 4 and torch.equal(ours.tokens[:, :P], prompt)


def test_edlm_importance_sampling_option(bert):
    ar = _qwen()
    energy = edlm_ext.AREnergy(lambda ids: ar(ids).logits)
    prompt = torch.tensor([[1, 3], [2, 0]])
    out = hf.generate(bert, prompt, mask_id=MASK, gen_length=GEN, block_length=BLOCK, steps=4, temperature=1.0,
                      energy=energy, k=4, seed=0)
    assert out.tokens.shape == (2, P + GEN) and not bool((out.tokens == MASK).any())
    assert torch.equal(out.tokens[:, :P], prompt)
    # same seed, same tokens; a flat energy leaves the draw distribution to the model
    again = hf.generate(bert, prompt, mask_id=MASK, gen_length=GEN, block_length=BLOCK, steps=4, temperature=1.0,
                        energy=energy, k=4, seed=0)
    assert torch.equal(out.tokens, again.tokens)


def test_edlm_flat_energy_matches_stock(bert):
    flat = lambda cand, x_t: torch.zeros(cand.shape[0])  # noqa: E731  (uniform weights: a plain draw)
    ours = hf.generate(bert, _prompt(), mask_id=MASK, gen_length=GEN, block_length=BLOCK, steps=4, temperature=1.0,
                       energy=flat, k=2, seed=6)
    ref = stock.llada_generate(bert, _prompt(), mask_id=MASK, gen_length=GEN, block_length=BLOCK, steps=4,
                               temperature=1.0, generator=torch.Generator().manual_seed(7))
    assert homogeneity_pvalue(_outcomes(ours.tokens), _outcomes(ref.tokens)) > CHI2_ALPHA


@pytest.mark.parametrize("kwargs, err", [
    (dict(gen_length=5, block_length=2), "multiple of block_length"),
    (dict(steps=3), "multiple of the number of blocks"),
    (dict(remasking="entropy"), "remasking"),
    (dict(temperature=-1.0), "temperature"),
    (dict(energy=lambda c, x: torch.zeros(c.shape[0]), k=2, temperature=0.0), "temperature > 0"),
])
def test_bad_arguments(bert, kwargs, err):
    args = {**dict(mask_id=MASK, gen_length=GEN, block_length=BLOCK), **kwargs}
    with pytest.raises(ValueError, match=err):
        hf.generate(bert, torch.tensor([[1, 3]]), **args)


def test_prompt_with_mask_is_rejected(bert):
    with pytest.raises(ValueError, match="mask_id"):
        hf.generate(bert, torch.tensor([[1, MASK]]), mask_id=MASK, gen_length=GEN, block_length=BLOCK)


def test_energy_scores_prefix_plus_block_per_row(bert):
    seen = []

    def energy(cand, x_t):
        seen.append((cand.clone(), x_t.clone()))
        return (cand[:, P:] == 0).sum(1).float() * 50.0  # token 0 in the answer: weight ~e^-50

    prompt = torch.tensor([[1, 3], [2, 4]])
    k = 8
    out = hf.generate(bert, prompt, mask_id=MASK, gen_length=GEN, block_length=BLOCK, steps=2, temperature=1.0,
                      energy=energy, k=k, seed=0)
    assert len(seen) == 2  # one IS step per block (one step each)
    for blk, (cand, x_t) in enumerate(seen):
        end = P + (blk + 1) * BLOCK
        assert cand.shape == (2 * k, end) and x_t.shape == (2 * k, end)
        # rows b*k .. b*k+k-1 are row b's candidates: its prompt and finished blocks, then the block
        assert torch.equal(cand[:, :P], prompt.repeat_interleave(k, 0))
        assert torch.equal(cand[:, :end - BLOCK], x_t[:, :end - BLOCK])
        assert bool((x_t[:, end - BLOCK:] == MASK).all()) and not bool((cand == MASK).any())
    # the energy steers the draws away from token 0 (each block: all 16 candidates of a row hold a 0 with
    # probability ~0.36^16); without it, 64 answer tokens hold a 0 unless p(0) is tiny (checked as a control)
    rows = torch.tensor([[1, 3]]).repeat(16, 1)
    kw = dict(mask_id=MASK, gen_length=GEN, block_length=BLOCK, steps=2, temperature=1.0, seed=1)
    steered = hf.generate(bert, rows, energy=energy, k=16, **kw)
    plain = hf.generate(bert, rows, **kw)
    assert not bool((steered.tokens[:, P:] == 0).any()) and bool((plain.tokens[:, P:] == 0).any())


class _FixedLogits:
    """A model with fixed logits at the two answer positions; records every input."""

    def __init__(self, probs_a, probs_b):
        self.rows = torch.log(torch.tensor([probs_a + [0.0], probs_b + [0.0]]).clamp_min(1e-30))  # [MASK] last
        self.inputs = []

    def __call__(self, ids):
        self.inputs.append(ids.clone())
        logits = torch.zeros(ids.shape[0], ids.shape[1], V)
        logits[:, P:P + 2] = self.rows
        return SimpleNamespace(logits=logits)


def _p_first(probs_a, probs_b, temperature, tempered_confidence):
    """Exact P(position A is unmasked first): A's drawn token more confident than B's
    (ties go to A, the lower position); draws from the tempered distributions."""
    pa, pb = torch.tensor(probs_a, dtype=torch.float64), torch.tensor(probs_b, dtype=torch.float64)
    da, db = pa ** (1 / temperature), pb ** (1 / temperature)
    da, db = da / da.sum(), db / db.sum()
    ca, cb = (da, db) if tempered_confidence else (pa, pb)
    return float((da[:, None] * db[None, :] * (ca[:, None] >= cb[None, :])).sum())


@pytest.mark.parametrize("sampler", ["ours", "stock"])
def test_confidence_is_untempered_softmax(sampler):
    # A: two-way 0.55 / 0.45; B: 0.5 and four of 0.125. At T = 0.5 the order by softmax(logits)
    # and the order by the tempered probabilities differ in most draws.
    probs_a, probs_b, temp, n = [0.55, 0.45, 0.0, 0.0, 0.0], [0.5, 0.125, 0.125, 0.125, 0.125], 0.5, 4000
    p_right = _p_first(probs_a, probs_b, temp, tempered_confidence=False)
    p_wrong = _p_first(probs_a, probs_b, temp, tempered_confidence=True)
    sd = (p_right * (1 - p_right) / n) ** 0.5
    assert abs(p_right - p_wrong) > 2 * Z_CRIT * sd  # the check below separates the two rules
    model = _FixedLogits(probs_a, probs_b)
    prompt = torch.tensor([[1, 3]]).repeat(n, 1)
    kw = dict(mask_id=MASK, gen_length=2, block_length=2, steps=2, temperature=temp)
    if sampler == "ours":
        hf.generate(model, prompt, seed=0, **kw)
    else:
        stock.llada_generate(model, prompt, generator=torch.Generator().manual_seed(0), **kw)
    second = model.inputs[1][:, P:P + 2]
    assert bool(((second == MASK).sum(1) == 1).all())  # exactly one position per step
    a_first = int((second[:, 0] != MASK).sum())
    assert abs(binomial_z(a_first, n, p_right)) < Z_CRIT
