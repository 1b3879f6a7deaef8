"""dream.diffusion_generate as a drop-in for Dream's model.diffusion_generate: the call of
Dream's README through patch(model), its step schedule, alg variants, filters, attention
mask and num_return_sequences token-identical to the re-implementation of Dream's loop
(stock.dream) in greedy runs (fp32, and bf16 with rank_dtype="model"), and the same
distribution for random runs ("origin", alg_temp, T > 0) with known-wrong variants rejected."""
import numpy as np
import pytest
import torch

from edlm_ext.integrations import dream, stock

from .stats import CHI2_ALPHA, homogeneity_pvalue

V, MASK = 50, 49


@pytest.fixture(scope="module")
def model():
    return stock.models.TinyDream(V, MASK, seed=0)


def _prompts(b=3, p=5, seed=1):
    return torch.randint(0, MASK, (b, p), generator=torch.Generator().manual_seed(seed))


def test_dreams_readme_call_through_patch(model):
    # Dream's README: model.diffusion_generate(input_ids, attention_mask=attention_mask, max_new_tokens=...,
    # output_history=True, return_dict_in_generate=True, steps=..., temperature=0.2, top_p=0.95,
    # alg="entropy", alg_temp=0.)
    patched = dream.patch(stock.models.TinyDream(V, MASK, seed=0))
    ids = _prompts(2)
    am = torch.ones_like(ids)
    out = patched.diffusion_generate(ids, attention_mask=am, max_new_tokens=12, output_history=True,
                                     return_dict_in_generate=True, steps=12, temperature=0.2, top_p=0.95,
                                     alg="entropy", alg_temp=0., seed=0)
    assert out.sequences.shape == (2, 17) and len(out.history) == 12 and torch.equal(out.history[-1], out.sequences)
    assert not bool((out.sequences == MASK).any()) and torch.equal(out.sequences[:, :5], ids)
    # greedy, the tensor return value, identical to Dream's loop (history included)
    kw = dict(max_new_tokens=12, steps=7, alg="maskgit_plus")
    ours = dream.diffusion_generate(model, ids, attention_mask=am, output_history=True,
                                    return_dict_in_generate=True, **kw)
    ref, history = stock.dream.diffusion_generate(model, ids, attention_mask=am, output_history=True, **kw)
    assert torch.equal(ours.sequences, ref) and all(torch.equal(a, b) for a, b in zip(ours.history, history))
    assert torch.equal(dream.diffusion_generate(model, ids, **kw), ref)


def test_greedy_token_identity_fp32(model):
    ids = _prompts()
    n = 0
    for alg in ("maskgit_plus", "topk_margin", "entropy"):
        for filters in ({}, dict(top_p=0.9), dict(top_k=3), dict(top_p=0.8, top_k=5), dict(top_k=1)):
            for steps, new in ((5, 8), (8, 8), (3, 10), (16, 12)):  # uneven splits: Dream's eps schedule decides
                kw = dict(max_new_tokens=new, steps=steps, alg=alg, **filters)
                ref = stock.dream.diffusion_generate(model, ids, **kw)
                # top_k=1 makes every maskgit_plus confidence exactly 1: the ties break by torch.topk's
                # order in Dream, which rank_dtype="model" reproduces (our default: by position)
                rank = dict(rank_dtype="model") if filters == dict(top_k=1) else {}
                assert torch.equal(dream.diffusion_generate(model, ids, **kw, **rank), ref), kw
                n += 1
    assert n == 60


def test_attention_mask_and_num_return_sequences(model):
    ids = _prompts()
    am = torch.ones_like(ids)
    am[0, :2] = 0
    am[1, :1] = 0
    kw = dict(max_new_tokens=8, steps=6, alg="topk_margin", num_return_sequences=2)
    ours = dream.diffusion_generate(model, ids, attention_mask=am, **kw)
    assert ours.shape == (6, 13) and torch.equal(ours, stock.dream.diffusion_generate(model, ids, attention_mask=am,
                                                                                        **kw))
    assert not torch.equal(ours, dream.diffusion_generate(model, ids, **kw))  # the mask reaches the model
    assert torch.equal(ours[0::2], ours[1::2])  # greedy: the returned copies agree


def test_bf16_with_the_models_dtype_ranking():
    model = stock.models.TinyDream(V, MASK, seed=2).to(torch.bfloat16)
    ids = _prompts(4, 5, seed=3)
    default_same, runs = 0, 0
    for alg in ("maskgit_plus", "topk_margin", "entropy"):
        for steps, new in ((6, 16), (16, 16), (5, 24)):
            kw = dict(max_new_tokens=new, steps=steps, alg=alg)
            ref = stock.dream.diffusion_generate(model, ids, **kw)
            assert torch.equal(dream.diffusion_generate(model, ids, rank_dtype="model", **kw), ref), kw
            default_same += torch.equal(dream.diffusion_generate(model, ids, **kw), ref)
            runs += 1
    assert default_same < runs  # bf16 ties: the option matters here


def _small():
    return stock.models.TinyDream(6, 5, seed=4, logit_scale=0.7)


def _outcomes(tokens: torch.Tensor, p=2, gen=3) -> np.ndarray:
    ans = tokens[:, p:].numpy()
    assert ans.min() >= 0 and ans.max() < 5, "a [MASK] or out-of-range token was generated"
    return np.bincount((ans * (5 ** np.arange(gen)[::-1])).sum(1), minlength=5 ** gen)


def _pair(seed, n=6000, stock_kwargs=None, dtype=torch.float32, **kw):
    model = _small().to(dtype)
    ids = torch.tensor([[1, 3]]).repeat(n, 1)
    ours = dream.diffusion_generate(model, ids, max_new_tokens=3, seed=seed, **kw)
    torch.manual_seed(seed + 1000)
    ref = stock.dream.diffusion_generate(model, ids, max_new_tokens=3, **{**kw, **(stock_kwargs or {})})
    return _outcomes(ours), _outcomes(ref)


@pytest.mark.parametrize("kw", [
    dict(steps=3, alg="origin"),  # Dream's default
    dict(steps=3, alg="origin", temperature=1.0, top_p=0.9),
    dict(steps=2, alg="maskgit_plus", temperature=0.8, top_k=3),
    dict(steps=3, alg="entropy", temperature=1.0, alg_temp=0.5),
    dict(steps=2, alg="topk_margin", temperature=1.0, top_p=0.8, top_k=4),
    dict(steps=3, alg="entropy", temperature=1.0, top_p=0.9, dtype=torch.bfloat16),
])
def test_random_runs_match_dreams_distribution(kw):
    a, b = _pair(0, **kw)
    assert homogeneity_pvalue(a, b) > CHI2_ALPHA


def test_known_wrong_variants_are_rejected():
    a, b = _pair(1, n=3000, stock_kwargs=dict(temperature=0.5), steps=3, alg="origin", temperature=1.0)
    assert homogeneity_pvalue(a, b) < CHI2_ALPHA
    a, b = _pair(2, n=3000, stock_kwargs=dict(alg_temp=None), steps=3, alg="entropy", temperature=1.0, alg_temp=2.0)
    assert homogeneity_pvalue(a, b) < CHI2_ALPHA


def test_config_rules_hooks_and_errors(model):
    ids = _prompts(1)
    # Dream's max-length rule: the default max_length 20 counts new tokens, capped by max_position_embeddings
    assert dream.diffusion_generate(model, ids, steps=2).shape == (1, 25)
    assert dream.diffusion_generate(model, ids, steps=2, max_length=9).shape == (1, 9)
    with pytest.raises(ValueError, match="max_length"):
        dream.diffusion_generate(model, ids, steps=2, max_length=5)
    # the mask id comes from the model's config, a generation_config, or the call
    seen = []
    out = dream.diffusion_generate(model, ids, generation_config={"steps": 3, "max_new_tokens": 4},
                                   generation_tokens_hook_func=lambda step, x, logits: seen.append(step) or x,
                                   generation_logits_hook_func=lambda step, x, logits: logits)
    assert out.shape == (1, 9) and seen == [None, 0, 1, 2]
    bare = stock.models.TinyDream(V, MASK)
    bare.config.mask_token_id = None
    with pytest.raises(ValueError, match="mask_token_id"):
        dream.diffusion_generate(bare, ids, steps=2)
    assert dream.diffusion_generate(bare, ids, steps=2, mask_token_id=MASK, max_new_tokens=2).shape == (1, 7)
    with pytest.raises(TypeError, match="unknown"):
        dream.diffusion_generate(model, ids, stepz=3)
    with pytest.raises(ValueError, match="alg"):
        dream.diffusion_generate(model, ids, alg="maskgit")
    with pytest.raises(ValueError, match="top_k"):
        dream.diffusion_generate(model, ids, top_k=0)
    model.config.pad_token_id = int(ids[0, 0])
    with pytest.warns(UserWarning, match="attention mask"):
        dream.diffusion_generate(model, ids, steps=1, max_new_tokens=1)
    model.config.pad_token_id = None
