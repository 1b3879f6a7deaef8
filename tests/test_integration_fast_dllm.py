"""fast_dllm.generate as a drop-in for Fast-dLLM's generate: signature and (tokens, nfe),
the >= threshold rule, the factor rule, batches (where Fast-dLLM's factor rule fails),
token identity with the re-implementation of its loop (stock.fast_dllm) and the same
distribution at T > 0 (with a known-wrong variant rejected)."""
import inspect
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edlm_ext.integrations import _remask, fast_dllm, hf, stock

from .stats import CHI2_ALPHA, homogeneity_pvalue
from .test_integration_llada import GEN, MASK, _bert, _outcomes


@pytest.fixture(scope="module")
def bert50():
    return _bert(vocab=50, mask=49)


def test_signature_and_return_value_are_fast_dllms(bert50):
    params = inspect.signature(fast_dllm.generate).parameters.values()
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["model", "prompt", "steps", "gen_length", "block_length", "temperature", "remasking",
                          "mask_id", "threshold", "factor"]
    assert [p.default for p in params if p.kind is p.POSITIONAL_OR_KEYWORD][2:] == [
        128, 128, 128, 0.0, "low_confidence", 126336, None, None]
    ids = torch.randint(0, 49, (1, 5), generator=torch.Generator().manual_seed(0))
    # Fast-dLLM's README call: generate(model, input_ids, steps=..., gen_length=..., block_length=...,
    # temperature=0., remasking='low_confidence', threshold=0.9)
    tokens, nfe = fast_dllm.generate(bert50, ids, steps=8, gen_length=8, block_length=4, temperature=0.,
                                     remasking="low_confidence", mask_id=49, threshold=0.9)
    ref, ref_nfe = stock.fast_dllm.generate(bert50, ids, 8, 8, 4, 0., "low_confidence", 49, 0.9)  # positionally
    assert isinstance(nfe, int) and nfe == ref_nfe and torch.equal(tokens, ref) and tokens.shape == (1, 13)
    rich = fast_dllm.generate(bert50, ids, 8, 8, 4, 0., "low_confidence", 49, 0.9, return_dict=True)
    assert isinstance(rich, hf.GenerateOutput) and rich.model_calls == nfe


def _certain(V=6, n_pos=8):
    """Every answer position has one token of probability 1 (in float32 and float64)."""
    def model(ids, attention_mask=None):
        logits = torch.zeros(ids.shape[0], ids.shape[1], V)
        logits[..., 0] = 200.0  # exp(-200) vanishes against 1 in float64 as well
        return SimpleNamespace(logits=logits)
    return model


def test_threshold_keeps_confidence_equal_to_it():
    # regression: the rule was confidence > threshold; Fast-dLLM keeps >= threshold. At threshold
    # 1.0 with certain predictions a block of 8 then takes 1 model call, not 8
    prompt = torch.tensor([[1, 2]])
    ours, nfe = fast_dllm.generate(_certain(), prompt, 8, 8, 8, mask_id=5, threshold=1.0)
    ref, ref_nfe = stock.fast_dllm.generate(_certain(), prompt, 8, 8, 8, mask_id=5, threshold=1.0)
    assert nfe == ref_nfe == 1 and torch.equal(ours, ref)
    assert hf.generate(_certain(), prompt, None, 8, 8, 8, mask_id=5, threshold=1.0, return_dict=True).model_calls == 1


def test_greedy_token_identity(bert50):
    prompts = torch.randint(0, 49, (1, 5), generator=torch.Generator().manual_seed(1))
    for gen, blk in ((8, 4), (8, 8), (16, 4)):
        for rule in [dict(threshold=t) for t in (0.05, 0.3, 0.6, 0.9, 1.0)] + [dict(factor=f) for f in (0.5, 1, 2)]:
            ours, nfe = fast_dllm.generate(bert50, prompts, gen, gen, blk, mask_id=49, **rule)
            ref, ref_nfe = stock.fast_dllm.generate(bert50, prompts, gen, gen, blk, mask_id=49, **rule)
            assert torch.equal(ours, ref) and nfe == ref_nfe, (gen, blk, rule)
        assert torch.equal(fast_dllm.generate(bert50, prompts, gen, gen, blk, mask_id=49)[0],
                           stock.fast_dllm.generate(bert50, prompts, gen, gen, blk, mask_id=49)[0])


def _uneven(V=6):
    """Row 0 is certain everywhere, row 1 nowhere: row 0 finishes a block in one step."""
    def model(ids, attention_mask=None):
        logits = torch.zeros(ids.shape[0], ids.shape[1], V)
        logits[0, :, 0] = 200.0
        logits[1:, :, :5] = torch.linspace(0, 1, 5)
        return SimpleNamespace(logits=logits)
    return model


def test_batches_work_where_fast_dllms_factor_rule_fails(bert50):
    prompt = torch.tensor([[1, 2], [3, 4]])
    with pytest.raises(IndexError):  # Fast-dLLM's dynamic rule, once row 0 has nothing left to unmask
        stock.fast_dllm.generate(_uneven(), prompt, 8, 8, 8, mask_id=5, factor=1.0)
    tokens, nfe = fast_dllm.generate(_uneven(), prompt, 8, 8, 8, mask_id=5, factor=1.0)
    assert not bool((tokens == 5).any()) and bool((tokens[0, 2:] == 0).all()) and nfe > 1
    # batch rows equal the rows run alone (greedy): threshold and factor rules, a real model
    prompts = torch.randint(0, 49, (3, 5), generator=torch.Generator().manual_seed(2))
    for rule in (dict(threshold=0.4), dict(factor=1.0)):
        batch = fast_dllm.generate(bert50, prompts, 8, 8, 4, mask_id=49, **rule)[0]
        for r in range(3):
            alone = stock.fast_dllm.generate(bert50, prompts[r:r + 1], 8, 8, 4, mask_id=49, **rule)[0]
            assert torch.equal(batch[r:r + 1], alone), (rule, r)


def test_threshold_run_matches_fast_dllms_distribution():
    model, n = _bert(), 6000
    prompt = torch.tensor([[1, 3]]).repeat(n, 1)
    ours, _ = fast_dllm.generate(model, prompt, 4, GEN, 2, 1.0, mask_id=MASK, threshold=0.3, seed=0)
    torch.manual_seed(1)
    ref, _ = stock.fast_dllm.generate(model, prompt, 4, GEN, 2, 1.0, mask_id=MASK, threshold=0.3)
    assert homogeneity_pvalue(_outcomes(ours), _outcomes(ref)) > CHI2_ALPHA
    # a different threshold is a different distribution, and the check sees it
    torch.manual_seed(2)
    wrong, _ = stock.fast_dllm.generate(model, prompt[:3000], 4, GEN, 2, 1.0, mask_id=MASK, threshold=0.9)
    assert homogeneity_pvalue(_outcomes(ours), _outcomes(wrong)) < CHI2_ALPHA


def test_bf16_greedy_identity_and_random_distribution():
    # Fast-dLLM ranks in float64 whatever the model's dtype: rank_dtype="float64" is its ranking
    model = _bert(vocab=50, mask=49, dtype=torch.bfloat16)
    prompts = torch.randint(0, 49, (1, 5), generator=torch.Generator().manual_seed(3))
    for rule in (dict(threshold=0.3), dict(threshold=0.9), dict(factor=1.0), {}):
        ours, nfe = fast_dllm.generate(model, prompts, 16, 16, 8, mask_id=49, rank_dtype="float64", **rule)
        ref, ref_nfe = stock.fast_dllm.generate(model, prompts, 16, 16, 8, mask_id=49, **rule)
        assert torch.equal(ours, ref) and nfe == ref_nfe, rule
    small, n = _bert(dtype=torch.bfloat16), 6000
    prompt = torch.tensor([[1, 3]]).repeat(n, 1)
    ours, _ = fast_dllm.generate(small, prompt, 4, GEN, 2, 1.0, mask_id=MASK, threshold=0.3, seed=3)
    torch.manual_seed(4)
    ref, _ = stock.fast_dllm.generate(small, prompt, 4, GEN, 2, 1.0, mask_id=MASK, threshold=0.3)
    assert homogeneity_pvalue(_outcomes(ours), _outcomes(ref)) > CHI2_ALPHA


def test_threshold_is_decided_in_float64_near_it(monkeypatch):
    # Position B's probability sits within a few float32 ulps of the threshold 0.75: for the
    # logit gaps fl32(ln 3) +- j ulps (j <= 4), P(B) is 0.75 + 2.2e-8 j (+3.7e-9) in float64, so
    # Fast-dLLM commits B in one call for j >= 0 and takes a second for j < 0. A float32
    # confidence exp(logp) is rounded twice and gets some of them wrong (which ones depends
    # on how the kernel's float32 logp rounds); the float64 decision near the threshold gets
    # every one right.
    gaps = [np.float32(np.log(3.0))]
    for _ in range(4):
        gaps = [np.nextafter(gaps[0], np.float32(0))] + gaps + [np.nextafter(gaps[-1], np.float32(2))]

    def model_for(gap):
        def model(ids, attention_mask=None):
            logits = torch.full((ids.shape[0], ids.shape[1], 3), -1e4)
            logits[..., 1] = 0.0
            logits[:, 2, 0], logits[:, 3, 0] = 5.0, float(gap)  # answer positions A (p 0.993) and B
            return SimpleNamespace(logits=logits)
        return model

    prompt = torch.tensor([[0, 1]])
    ref_nfes = []
    for j, gap in enumerate(gaps, start=-4):
        ref, ref_nfe = stock.fast_dllm.generate(model_for(gap), prompt, 2, 2, 2, mask_id=2, threshold=0.75)
        ours, nfe = fast_dllm.generate(model_for(gap), prompt, 2, 2, 2, mask_id=2, threshold=0.75)
        assert ref_nfe == nfe == (1 if j >= 0 else 2) and torch.equal(ours, ref), j
        ref_nfes.append(ref_nfe)
    monkeypatch.setattr(_remask, "near_threshold", lambda conf, cand, thr: torch.zeros_like(cand))
    f32_nfes = [fast_dllm.generate(model_for(g), prompt, 2, 2, 2, mask_id=2, threshold=0.75)[1] for g in gaps]
    assert f32_nfes != ref_nfes  # the power check: a float32-only rule errs on some of them
