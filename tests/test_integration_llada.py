"""hf.generate as a drop-in for LLaDA's generate: its surface (signature, positional calls,
defaults, return value), token identity with the re-implementation of LLaDA's loop
(stock.llada) in greedy runs, fp32 and bf16, and the same distribution at T > 0
(chi-square homogeneity at fixed seeds, each with a known-wrong variant rejected)."""
import inspect
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers

import edlm_ext
from edlm_ext.integrations import hf, stock

from .stats import CHI2_ALPHA, Z_CRIT, binomial_z, homogeneity_pvalue

V, MASK = 6, 5  # 5 drawable tokens
P, GEN, BLOCK = 2, 4, 2  # 4 answer tokens: 625 outcomes
N = 6000


def _bert(vocab=V, mask=MASK, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=96, initializer_range=0.5)
    return stock.models.NoMaskPrediction(transformers.BertForMaskedLM(cfg).eval().to(dtype), mask)


@pytest.fixture(scope="module")
def bert():
    return _bert()


@pytest.fixture(scope="module")
def bert50():
    return _bert(vocab=50, mask=49)


def _outcomes(tokens: torch.Tensor) -> np.ndarray:
    ans = tokens[:, P:].numpy()
    assert ans.min() >= 0 and ans.max() < MASK, "a [MASK] or out-of-range token was generated"
    return np.bincount((ans * (MASK ** np.arange(GEN)[::-1])).sum(1), minlength=MASK ** GEN)


def _pair(model, seed, n=N, stock_kwargs=None, **kw):
    prompt = torch.tensor([[1, 3]]).repeat(n, 1)
    ours = hf.generate(model, prompt, gen_length=GEN, block_length=BLOCK, mask_id=MASK, seed=seed, **kw)
    torch.manual_seed(seed + 1000)
    ref = stock.llada.generate(model, prompt, gen_length=GEN, block_length=BLOCK, mask_id=MASK,
                               **{**kw, **(stock_kwargs or {})})
    return _outcomes(ours), _outcomes(ref)


# --------------------------------------------------------------------------- the surface


def test_signature_and_defaults_are_lladas():
    params = list(inspect.signature(hf.generate).parameters.values())
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["model", "prompt", "attention_mask", "steps", "gen_length", "block_length", "temperature",
                          "cfg_scale", "remasking", "mask_id", "logits_eos_inf", "confidence_eos_eot_inf"]
    defaults = {p.name: p.default for p in params}
    assert {k: defaults[k] for k in positional[2:]} == dict(
        attention_mask=None, steps=128, gen_length=128, block_length=128, temperature=0.0, cfg_scale=0.0,
        remasking="low_confidence", mask_id=126336, logits_eos_inf=False, confidence_eos_eot_inf=False)
    assert all(p.kind is p.KEYWORD_ONLY for p in params[len(positional):])  # our options never shift LLaDA's


def test_lladas_own_call_works_unchanged(bert50):
    # LLaDA's main(): generate(model, input_ids, attention_mask, steps=..., gen_length=..., block_length=...,
    # temperature=0., cfg_scale=0., remasking='low_confidence') with left-padded prompts
    ids = torch.tensor([[0, 0, 7, 8, 9], [0, 11, 12, 13, 14], [21, 22, 23, 24, 25]])
    am = (torch.arange(5) >= torch.tensor([[2], [1], [0]])).long()
    kw = dict(steps=8, gen_length=8, block_length=4, temperature=0., cfg_scale=0., remasking="low_confidence",
              mask_id=49)
    out = hf.generate(bert50, ids, am, **kw)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int64 and out.shape == (3, 13)
    assert torch.equal(out, stock.llada.generate(bert50, ids, am, **kw))
    assert torch.equal(out[:, :5], ids) and not bool((out == 49).any())
    assert not torch.equal(out, hf.generate(bert50, ids, None, **kw))  # the mask reaches the model
    # positionally, in LLaDA's order
    pos = hf.generate(bert50, ids, am, 8, 8, 4, 0.0, 0.0, "low_confidence", 49, False, False)
    assert torch.equal(pos, out)
    rich = hf.generate(bert50, ids, am, return_dict=True, **kw)
    assert isinstance(rich, hf.GenerateOutput) and torch.equal(rich.tokens, out) and rich.model_calls == 8


def _grid():
    for steps, gen, blk in [(8, 8, 4), (8, 8, 2), (4, 8, 8), (16, 8, 4), (16, 16, 16), (12, 12, 4), (32, 32, 8)]:
        yield steps, gen, blk


def test_greedy_token_identity_fp32(bert50):
    prompts = torch.randint(0, 49, (3, 5), generator=torch.Generator().manual_seed(1))
    for steps, gen, blk in _grid():
        kw = dict(steps=steps, gen_length=gen, block_length=blk, mask_id=49)
        for extra in ({}, dict(logits_eos_inf=True, eos_id=3)):
            assert torch.equal(hf.generate(bert50, prompts, **kw, **extra),
                               stock.llada.generate(bert50, prompts, **kw, **extra)), (kw, extra)
        # confidence_eos_eot_inf gives every EoT draw confidence 0: those tie, and LLaDA orders
        # them by torch.topk, which rank_dtype="model" reproduces (our default: by position)
        for extra in (dict(confidence_eos_eot_inf=True, eos_id=3, eot_id=6),
                      dict(logits_eos_inf=True, confidence_eos_eot_inf=True, eos_id=3, eot_id=6)):
            assert torch.equal(hf.generate(bert50, prompts, rank_dtype="model", **kw, **extra),
                               stock.llada.generate(bert50, prompts, **kw, **extra)), (kw, extra)


def test_eot_confidence_is_lladas_renormalized_softmax(bert50):
    # the float32 path computes LLaDA's confidence without the EoT logit as p / (1 - p_EoT)
    x = torch.cat([torch.randint(0, 49, (2, 5), generator=torch.Generator().manual_seed(4)),
                   torch.full((2, 8), 49)], 1)
    with torch.no_grad():
        lg = bert50(x).logits[:, 5:]
    step = hf._Step(49, 0.0, "low_confidence", False, True, 3, 6, "float32", torch.Generator(), 13)
    x0, logp = edlm_ext.masked_sample(lg, x[:, 5:], 49, temperature=0.0)
    x0[0, 0] = 6  # one EoT draw: confidence 0
    logp[0, 0] = (lg[0, 0, 6] - torch.logsumexp(lg[0, 0, :49], -1))
    ours = step._confidence(lg, x0, logp, x[:, 5:] == 49)
    llada = torch.softmax(lg.masked_fill(torch.arange(50) == 6, float("-inf")), -1)  # LLaDA's, [MASK] at min
    want = llada.gather(-1, x0[..., None])[..., 0]
    assert ours[0, 0] == 0 and torch.allclose(ours, want, rtol=1e-5, atol=1e-7)


def test_bf16_ranking_in_the_models_dtype_is_lladas():
    # bf16 confidences tie often; LLaDA breaks ties by torch.topk's order. rank_dtype="model"
    # reproduces that; the float32 default ranks the true probabilities and can differ
    model = _bert(vocab=50, mask=49, dtype=torch.bfloat16)
    same_default, runs = 0, 0
    for seed in range(3):
        prompt = torch.randint(0, 49, (2, 5), generator=torch.Generator().manual_seed(seed))
        for steps, gen, blk in [(32, 32, 8), (64, 64, 16), (16, 32, 32), (32, 32, 32)]:
            kw = dict(steps=steps, gen_length=gen, block_length=blk, mask_id=49)
            ref = stock.llada.generate(model, prompt, **kw)
            assert torch.equal(hf.generate(model, prompt, rank_dtype="model", **kw), ref), (seed, kw)
            same_default += torch.equal(hf.generate(model, prompt, **kw), ref)
            runs += 1
    assert same_default < runs  # the option matters here (1 of 12 differs with float32 ranking)


def test_int32_prompt_and_mask_inside_the_prompt(bert50):
    prompt = torch.randint(0, 49, (3, 6), generator=torch.Generator().manual_seed(2))
    kw = dict(steps=8, gen_length=8, block_length=4, mask_id=49)
    assert torch.equal(hf.generate(bert50, prompt.int(), **kw), stock.llada.generate(bert50, prompt.int(), **kw))
    prompt[0, 1] = prompt[2, 4] = prompt[2, 0] = 49  # [MASK] in the prompt competes for each block's steps
    ours, ref = hf.generate(bert50, prompt, **kw), stock.llada.generate(bert50, prompt, **kw)
    assert torch.equal(ours, ref) and bool((ours == 49).any())  # as in LLaDA, some positions stay masked


def test_classifier_free_guidance(bert50):
    ids = torch.randint(0, 49, (2, 5), generator=torch.Generator().manual_seed(3))
    am = torch.ones(2, 5, dtype=torch.long)
    am[0, :2] = 0
    for cfg in (0.5, 2.0):
        ours = hf.generate(bert50, ids, am, 8, 8, 4, 0.0, cfg, mask_id=49)
        assert torch.equal(ours, stock.llada.generate(bert50, ids, am, 8, 8, 4, 0.0, cfg, mask_id=49))
    assert not torch.equal(ours, hf.generate(bert50, ids, am, 8, 8, 4, 0.0, 0.0, mask_id=49))
    # LLaDA's code cannot run cfg without an attention mask (an unbound variable); ours can
    with pytest.raises(UnboundLocalError):
        stock.llada.generate(bert50, ids, None, 8, 8, 4, 0.0, 1.0, mask_id=49)
    assert hf.generate(bert50, ids, None, 8, 8, 4, 0.0, 1.0, mask_id=49).shape == (2, 13)


# --------------------------------------------------------------------------- distributions


def test_low_confidence_matches_lladas_distribution(bert):
    a, b = _pair(bert, 0, steps=4, temperature=1.0)
    assert homogeneity_pvalue(a, b) > CHI2_ALPHA


def test_tempered_run_matches_lladas_distribution(bert):
    # temperature 0.7: the confidence stays softmax(logits), not the tempered draw's probability
    a, b = _pair(bert, 1, steps=4, temperature=0.7)
    assert homogeneity_pvalue(a, b) > CHI2_ALPHA


def test_random_remasking_and_bf16_match_lladas_distribution():
    a, b = _pair(_bert(), 2, steps=4, temperature=1.0, remasking="random")
    assert homogeneity_pvalue(a, b) > CHI2_ALPHA
    a, b = _pair(_bert(dtype=torch.bfloat16), 3, steps=4, temperature=1.0)
    assert homogeneity_pvalue(a, b) > CHI2_ALPHA


def test_known_wrong_variants_are_rejected(bert):
    # the homogeneity check sees a different unmasking order and a different temperature
    # (both far off: p < 1e-30 with 2000 draws)
    a, b = _pair(bert, 4, n=2000, stock_kwargs={"remasking": "random"}, steps=4, temperature=1.0)
    assert homogeneity_pvalue(a, b) < CHI2_ALPHA
    a, b = _pair(bert, 5, n=2000, stock_kwargs={"temperature": 0.5}, steps=4, temperature=1.0)
    assert homogeneity_pvalue(a, b) < CHI2_ALPHA


class _FixedLogits:
    """A model with fixed logits at the two answer positions; records every input."""

    def __init__(self, probs_a, probs_b):
        self.rows = torch.log(torch.tensor([probs_a + [0.0], probs_b + [0.0]]).clamp_min(1e-30))  # [MASK] last
        self.inputs = []

    def __call__(self, ids, attention_mask=None):
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
        torch.manual_seed(0)
        stock.llada.generate(model, prompt, **kw)
    second = model.inputs[1][:, P:P + 2]
    assert bool(((second == MASK).sum(1) == 1).all())  # exactly one position per step
    a_first = int((second[:, 0] != MASK).sum())
    assert abs(binomial_z(a_first, n, p_right)) < Z_CRIT


# --------------------------------------------------------------------------- our extensions


def test_dream_style_shifted_logits():
    torch.manual_seed(1)
    qwen = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=32, max_position_embeddings=16)).eval()
    model = stock.models.NoMaskPrediction(qwen, MASK)
    prompt = torch.tensor([[1, 3]]).repeat(3000, 1)
    kw = dict(steps=4, gen_length=GEN, block_length=BLOCK, mask_id=MASK, temperature=1.0)
    shifted = _outcomes(hf.generate(model, prompt, shift_logits=True, seed=0, **kw))

    class Shifted:  # the same model, its logits moved one position right (Dream's convention)
        def __call__(self, ids, attention_mask=None):
            lg = model(ids).logits
            return SimpleNamespace(logits=torch.cat([lg[:, :1], lg[:, :-1]], dim=1))

    torch.manual_seed(1)
    assert homogeneity_pvalue(shifted, _outcomes(stock.llada.generate(Shifted(), prompt, **kw))) > CHI2_ALPHA
    torch.manual_seed(2)
    assert homogeneity_pvalue(shifted, _outcomes(stock.llada.generate(model, prompt, **kw))) < CHI2_ALPHA


def test_edlm_importance_sampling_option(bert):
    torch.manual_seed(1)
    ar = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=32, max_position_embeddings=16)).eval()
    energy = edlm_ext.AREnergy(lambda ids: ar(ids).logits)
    prompt = torch.tensor([[1, 3], [2, 0]])
    kw = dict(mask_id=MASK, gen_length=GEN, block_length=BLOCK, steps=4, temperature=1.0, energy=energy, k=4, seed=0)
    out = hf.generate(bert, prompt, **kw)
    assert out.shape == (2, P + GEN) and not bool((out == MASK).any()) and torch.equal(out[:, :P], prompt)
    assert torch.equal(out, hf.generate(bert, prompt, **kw))  # same seed, same tokens


def test_edlm_flat_energy_keeps_lladas_distribution(bert):
    flat = lambda cand, x_t, **_: torch.zeros(cand.shape[0])  # noqa: E731  (uniform weights: a plain draw)
    prompt = torch.tensor([[1, 3]]).repeat(N, 1)
    ours = hf.generate(bert, prompt, None, 4, GEN, BLOCK, 1.0, mask_id=MASK, energy=flat, k=2, seed=6)
    torch.manual_seed(7)
    ref = stock.llada.generate(bert, prompt, None, 4, GEN, BLOCK, 1.0, mask_id=MASK)
    assert homogeneity_pvalue(_outcomes(ours), _outcomes(ref)) > CHI2_ALPHA


def test_energy_scores_prefix_plus_block_per_row(bert):
    seen = []

    def energy(cand, x_t, **_):
        seen.append((cand.clone(), x_t.clone()))
        return (cand[:, P:] == 0).sum(1).float() * 50.0  # token 0 in the answer: weight ~e^-50

    prompt = torch.tensor([[1, 3], [2, 4]])
    k = 8
    hf.generate(bert, prompt, steps=2, gen_length=GEN, block_length=BLOCK, temperature=1.0, mask_id=MASK,
                energy=energy, k=k, seed=0)
    assert len(seen) == 2  # one IS step per block (one step each)
    for blk, (cand, x_t) in enumerate(seen):
        end = P + (blk + 1) * BLOCK
        assert cand.shape == (2 * k, end) and x_t.shape == (2 * k, end)
        # rows b*k .. b*k+k-1 are row b's candidates: its prompt and finished blocks, then the block
        assert torch.equal(cand[:, :P], prompt.repeat_interleave(k, 0))
        assert torch.equal(cand[:, :end - BLOCK], x_t[:, :end - BLOCK])
        assert bool((x_t[:, end - BLOCK:] == MASK).all()) and not bool((cand == MASK).any())
    # the energy steers the draws away from token 0; without it 64 answer tokens hold a 0 (a control)
    rows = torch.tensor([[1, 3]]).repeat(16, 1)
    kw = dict(mask_id=MASK, gen_length=GEN, block_length=BLOCK, steps=2, temperature=1.0, seed=1)
    steered = hf.generate(bert, rows, energy=energy, k=16, **kw)
    plain = hf.generate(bert, rows, **kw)
    assert not bool((steered[:, P:] == 0).any()) and bool((plain[:, P:] == 0).any())


@pytest.mark.parametrize("kwargs, err", [
    (dict(gen_length=5, block_length=2), "multiple of block_length"),
    (dict(steps=3), "multiple of the number of blocks"),
    (dict(remasking="entropy"), "remasking"),
    (dict(temperature=-1.0), "temperature"),
    (dict(cfg_scale=float("nan")), "cfg_scale"),
    (dict(rank_dtype="bf16"), "rank_dtype"),
    (dict(threshold=0.5, factor=1.0), "not both"),
    (dict(energy=lambda c, x, **_: torch.zeros(c.shape[0]), k=2, temperature=0.0), "temperature > 0"),
    (dict(logits_eos_inf=True), "eos_id"),  # LLaDA's id 126081 is outside this vocabulary
])
def test_bad_arguments(bert, kwargs, err):
    args = {**dict(mask_id=MASK, gen_length=GEN, block_length=BLOCK, steps=4), **kwargs}
    with pytest.raises(ValueError, match=err):
        hf.generate(bert, torch.tensor([[1, 3]]), **args)


def test_bad_prompts(bert):
    kw = dict(mask_id=MASK, gen_length=GEN, block_length=BLOCK, steps=4)
    with pytest.raises(TypeError, match="integer"):
        hf.generate(bert, torch.tensor([[1.0, 3.0]]), **kw)
    with pytest.raises(TypeError, match=r"\[B, P\]"):
        hf.generate(bert, torch.tensor([1, 3]), **kw)
    with pytest.raises(ValueError, match="attention_mask"):
        hf.generate(bert, torch.tensor([[1, 3]]), torch.ones(1, 3), **kw)
    with pytest.raises(ValueError, match="vocabulary"):
        hf.generate(bert, torch.tensor([[1, 9]]), **kw)
