"""MDLM integration: checkpoint loading (a tiny random checkpoint in MDLM's layout),
and the drop-in sampling functions against exact probabilities (fixed seeds)."""
import json
import os

import numpy as np
import pytest
import torch

import edlm_ext
from edlm_ext.integrations import mdlm, stock

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .stats import CHI2_ALPHA, Z_CRIT, binomial_z, chisquare_pvalue, homogeneity_pvalue

CFG = dict(vocab_size=9, model_length=16, hidden_dim=16, cond_dim=8, n_blocks=2, n_heads=2, dropout=0.0,
           time_conditioning=False)
MASK = 8

# MDLM's DiT state-dict names (per block: the same under blocks.<i>.), prefix "backbone."
MDLM_KEYS = {
    "vocab_embed.embedding", "sigma_map.mlp.0.weight", "sigma_map.mlp.0.bias", "sigma_map.mlp.2.weight",
    "sigma_map.mlp.2.bias", "rotary_emb.inv_freq", "output_layer.norm_final.weight", "output_layer.linear.weight",
    "output_layer.linear.bias", "output_layer.adaLN_modulation.weight", "output_layer.adaLN_modulation.bias",
}
MDLM_BLOCK_KEYS = {"norm1.weight", "attn_qkv.weight", "attn_out.weight", "norm2.weight", "mlp.0.weight", "mlp.0.bias",
                   "mlp.2.weight", "mlp.2.bias", "adaLN_modulation.weight", "adaLN_modulation.bias"}


def _random_model(time_conditioning=False, seed=0):
    torch.manual_seed(seed)
    model = mdlm.MDLMDenoiser(mdlm.MDLMConfig(**{**CFG, "time_conditioning": time_conditioning}))
    with torch.no_grad():  # MDLM zero-initialises adaLN; random weights make every path matter
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("mdlm_ckpt")
    model = _random_model()
    mdlm.save_mdlm(model, path)
    return path, model


def test_checkpoint_layout_is_mdlms(checkpoint):
    from safetensors.torch import load_file

    path, _ = checkpoint
    keys = set(load_file(os.path.join(path, "model.safetensors")))
    expected = {"backbone." + k for k in MDLM_KEYS}
    expected |= {f"backbone.blocks.{i}.{k}" for i in range(CFG["n_blocks"]) for k in MDLM_BLOCK_KEYS}
    assert keys == expected
    assert json.load(open(os.path.join(path, "config.json")))["hidden_dim"] == 16


def test_load_gives_the_same_denoiser(checkpoint):
    path, model = checkpoint
    loaded = mdlm.load_mdlm(path)
    assert loaded.mask_id == MASK
    x = torch.randint(0, 9, (3, 7))
    out = loaded(x, torch.rand(3))
    assert torch.equal(out, model(x, torch.rand(3)))
    assert out.shape == (3, 7, 9) and bool(torch.isneginf(out[..., MASK]).all())
    assert torch.allclose(out.logsumexp(-1), torch.zeros(3, 7), atol=1e-5)
    assert not torch.allclose(out[0, 0], out[0, 1])  # positions differ (rotary attention works)


def test_time_conditioning_changes_the_output(tmp_path):
    model = _random_model(time_conditioning=True)
    mdlm.save_mdlm(model, tmp_path)
    loaded = mdlm.load_mdlm(tmp_path)
    x = torch.full((1, 5), MASK)
    assert not torch.allclose(loaded(x, torch.tensor([0.9])), loaded(x, torch.tensor([0.1])))


def test_time_conditioned_checkpoint_is_never_cached(tmp_path):
    # regression: edlm_ext.sample(cache=True) reused stale logits of a time-conditioned model
    mdlm.save_mdlm(_random_model(time_conditioning=True), tmp_path)
    den = mdlm.load_mdlm(tmp_path)
    assert den.time_independent is False
    times = []

    def watched(x, t):
        times.append(float(t[0]))
        return den(x, t)

    out = edlm_ext.sample(watched, batch_size=1, seq_len=6, mask_id=MASK, steps=64, seed=0)  # cache=True default
    assert out.stats.cached_steps == 0 and len(times) == len(set(times)) == out.stats.denoiser_calls
    assert edlm_ext.sample(den, batch_size=1, seq_len=6, mask_id=MASK, steps=64, seed=0).stats.cached_steps == 0
    watched.time_independent = den.time_independent
    assert edlm_ext.sample(watched, batch_size=1, seq_len=6, mask_id=MASK, steps=64, seed=0).stats.cached_steps == 0
    # without time conditioning the loaded denoiser declares independence and is cached
    plain = mdlm.load_mdlm(_save(tmp_path / "plain", _random_model()))
    assert plain.time_independent is True
    assert edlm_ext.sample(plain, batch_size=1, seq_len=6, mask_id=MASK, steps=64, seed=0).stats.cached_steps > 0


def _save(path, model):
    mdlm.save_mdlm(model, path)
    return path


def test_pytorch_bin_with_extra_keys_and_no_rotary_buffer(checkpoint, tmp_path):
    path, model = checkpoint
    state = {"backbone." + k: v for k, v in model.backbone.state_dict().items() if k != "rotary_emb.inv_freq"}
    state["ema.shadow.0"] = torch.zeros(1)
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(CFG))
    x = torch.randint(0, 8, (2, 5))
    assert torch.equal(mdlm.load_mdlm(tmp_path)(x, torch.rand(2)), model(x, torch.rand(2)))


def test_load_errors(checkpoint, tmp_path):
    path, model = checkpoint
    with pytest.raises(FileNotFoundError, match="not found"):
        mdlm.load_mdlm(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.json"):
        mdlm.load_mdlm(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 9}))
    with pytest.raises(ValueError, match="missing"):
        mdlm.load_mdlm(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**CFG, "hidden_dim": 32}))
    with pytest.raises(FileNotFoundError, match="no weights"):
        mdlm.load_mdlm(tmp_path)
    torch.save({"backbone." + k: v for k, v in model.backbone.state_dict().items()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="shape"):
        mdlm.load_mdlm(tmp_path)


def test_loaded_checkpoint_drives_edlm_sample(checkpoint):
    den = mdlm.load_mdlm(checkpoint[0])
    out = edlm_ext.sample(den, batch_size=3, seq_len=10, mask_id=den.mask_id, steps=8, seed=0)
    assert out.tokens.shape == (3, 10) and not bool((out.tokens == MASK).any())
    assert int(out.tokens.max()) < 9 and out.stats.denoiser_calls >= 1


def test_sample_categorical_is_exact():
    probs = torch.tensor([3.0, 0.0, 1e-3, 1.0, 0.5, 0.0, 2.0], dtype=torch.float64)  # unnormalized, zeros
    n = 400_000
    draws = mdlm.sample_categorical(probs.expand(n // 100, 100, 7), seed=0)
    assert draws.shape == (n // 100, 100)
    counts = np.bincount(draws.flatten().numpy(), minlength=7)
    assert counts[1] == 0 and counts[5] == 0
    assert chisquare_pvalue(counts, (probs / probs.sum()).numpy()) > CHI2_ALPHA


def _block_weights(V=2500):
    """Weights over three blocks of 1024 (the last one partial) with zeros, ties and a
    0.3-per-mille tail: every path of the blocked inverse CDF is taken."""
    w = torch.zeros(V, dtype=torch.float64)
    w[[0, 5, 1023]] = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)  # block 0, its last entry included
    w[1024:1030] = 0.25  # block 1: equal weights
    w[2048 + torch.arange(0, 452, 50)] = 0.1  # block 2 (452 entries)
    w[2499] = 3e-4  # the last token of the vocabulary
    return w


def test_sample_categorical_across_blocks_and_its_power():
    w = _block_weights()
    n = 30_000
    for dtype in (torch.float32, torch.float64):
        draws = mdlm.sample_categorical(w.to(dtype).expand(n, -1), seed=1).numpy()
        counts = np.bincount(draws, minlength=w.numel())
        assert counts[(w == 0).numpy()].sum() == 0
        assert chisquare_pvalue(counts, (w / w.sum()).numpy()) > CHI2_ALPHA
    # power: the same counts against a distribution whose last block is 10% heavier are rejected
    wrong = w.clone()
    wrong[2048:] *= 1.1
    assert chisquare_pvalue(counts, (wrong / wrong.sum()).numpy()) < CHI2_ALPHA
    # bf16 input draws from the bf16 weights
    bw = w.to(torch.bfloat16)
    counts = np.bincount(mdlm.sample_categorical(bw.expand(n, -1), seed=2).numpy(), minlength=w.numel())
    assert chisquare_pvalue(counts, (bw.double() / bw.double().sum()).numpy()) > CHI2_ALPHA


def test_sample_categorical_edge_rows():
    # MDLM's rule: a negative weight (its t - dt rounding below 0) is never drawn
    w = torch.tensor([[-1e-9, 0.0, 2.0, 1.0]]).expand(30_000, -1)
    counts = np.bincount(mdlm.sample_categorical(w, seed=0).numpy(), minlength=4)
    assert counts[0] == counts[1] == 0 and chisquare_pvalue(counts, [0, 0, 2 / 3, 1 / 3]) > CHI2_ALPHA
    assert torch.equal(mdlm.sample_categorical(torch.ones(5, 1), seed=0), torch.zeros(5, dtype=torch.int64))
    assert mdlm.sample_categorical(torch.ones(0, 3)).shape == (0,)
    probs = torch.rand(3, 4, 1500, generator=torch.Generator().manual_seed(0))
    a = mdlm.sample_categorical(probs, seed=7)
    assert a.shape == (3, 4) and torch.equal(a, mdlm.sample_categorical(probs, seed=7))  # a seed reproduces
    strided = mdlm.sample_categorical(probs[..., ::2], seed=7)  # a non-contiguous last dimension
    assert strided.shape == (3, 4) and bool((probs[..., ::2].gather(-1, strided[..., None]) > 0).all())
    for bad, what in ((torch.zeros(2, 3), "no positive weight"), (torch.tensor([[1.0, float("nan")]]), "NaN"),
                      (torch.tensor([[1.0, float("inf")]]), "inf")):
        with pytest.raises(ValueError, match=what):
            mdlm.sample_categorical(bad)
    with pytest.raises(TypeError):
        mdlm.sample_categorical(torch.ones(2, 3, dtype=torch.int64))


class _Allocations(TorchDispatchMode):
    """Records (op, numel) of every tensor an op returns in new storage (views excluded)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.seen.append((str(func), t.numel()))
        return out


def test_sample_categorical_makes_no_full_size_copy():
    # regression: it built a log-prob copy one column wider than the input (most of its time)
    probs = torch.rand(64, 3000)
    with _Allocations() as mode:
        mdlm.sample_categorical(probs, seed=0)
    assert max(n for _, n in mode.seen) < probs.numel() // 2, sorted(mode.seen, key=lambda s: -s[1])[:3]


def test_cached_caching_update_reads_the_vocabulary_once(checkpoint):
    # regression: the cached step recomputed p_x0.log() at every call
    den = mdlm.load_mdlm(checkpoint[0])
    x = torch.full((8, 12), MASK)
    p_x0, _ = mdlm.ddpm_caching_update(den, x, 0.9, 0.01, mask_id=MASK, seed=0)
    with _Allocations() as mode:
        mdlm.ddpm_caching_update(den, x, 0.89, 0.01, p_x0, mask_id=MASK, seed=1)
    assert max(n for _, n in mode.seen) < p_x0.numel() // 2, sorted(mode.seen, key=lambda s: -s[1])[:3]
    # a cache the caller changed in place is not trusted: its log is recomputed
    p_x0[..., 0] = 0.0
    x1 = mdlm.ddpm_caching_update(den, x, 0.5, 0.5, p_x0, mask_id=MASK, seed=2)[1]
    assert not bool((x1 == 0).any())


def _posterior_probs(den, x, t, dt, pos):
    p = den(x[:1], torch.tensor([t])).double().exp()[0, pos]
    probs = p * dt / t
    probs[MASK] = (t - dt) / t
    return probs.numpy()


def test_ddpm_caching_update_matches_the_posterior(checkpoint):
    den = mdlm.load_mdlm(checkpoint[0])
    n, t, dt = 60_000, 0.6, 0.2
    x = torch.tensor([[MASK, 3, MASK, MASK, 0]]).repeat(n, 1)
    calls = []

    def counted(x_, t_):
        calls.append(1)
        return den(x_, t_)

    p_x0, x_next = mdlm.ddpm_caching_update(counted, x, torch.full((n, 1), t), dt, mask_id=MASK, seed=1)
    assert len(calls) == 1 and p_x0.shape == (n, 5, 9)
    assert torch.equal(x_next[:, 1], x[:, 1]) and torch.equal(x_next[:, 4], x[:, 4])
    for pos in (0, 2):
        counts = np.bincount(x_next[:, pos].numpy(), minlength=9)
        assert chisquare_pvalue(counts, _posterior_probs(den, x, t, dt, pos)) > CHI2_ALPHA
    # with the cache: no denoiser call, the same distribution
    _, x_cached = mdlm.ddpm_caching_update(counted, x, t, dt, p_x0=p_x0, mask_id=MASK, seed=2)
    assert len(calls) == 1
    counts = np.bincount(x_cached[:, 3].numpy(), minlength=9)
    assert chisquare_pvalue(counts, _posterior_probs(den, x, t, dt, 3)) > CHI2_ALPHA
    # and the same distribution as MDLM's own step, while a wrong dt does not
    upstream = stock.mdlm.Diffusion(den.backbone, MASK)
    torch.manual_seed(3)
    _, ref = upstream._ddpm_caching_update(x, torch.full((n, 1), t), dt)
    assert homogeneity_pvalue(np.bincount(x_next[:, 0].numpy(), minlength=9),
                              np.bincount(ref[:, 0].numpy(), minlength=9)) > CHI2_ALPHA
    _, wrong = upstream._ddpm_caching_update(x, torch.full((n, 1), t), 0.1)
    assert homogeneity_pvalue(np.bincount(x_next[:, 0].numpy(), minlength=9),
                              np.bincount(wrong[:, 0].numpy(), minlength=9)) < CHI2_ALPHA


def test_caching_update_accepts_mdlms_own_float32_grid(checkpoint):
    # regression: with eps = 0, MDLM's float32 linspace puts the last t a rounding error below
    # dt = 1 / steps (962 of the step counts 1..2048), and the update raised inside MDLM's loop
    steps = [n for n in range(2, 60) if float(torch.linspace(1, 0, n + 1)[n - 1]) < 1 / n][:3]
    assert len(steps) == 3
    den = mdlm.load_mdlm(checkpoint[0])
    for sampler in ("ddpm_cache", "ddpm"):
        upstream = mdlm.patch(stock.mdlm.Diffusion(den.backbone, MASK, sampler=sampler, noise_removal=False), seed=0)
        for n in steps:
            x = upstream._sample(num_steps=n, eps=0.0)  # MDLM's own loop, our updates
            assert not bool((x == MASK).any())  # its last step unmasks everything (dt / t clamped to 1)
    x = torch.full((2, 3), MASK)
    with pytest.raises(ValueError, match="dt <= t"):
        mdlm.ddpm_caching_update(den, x, 0.2, 0.2 + 1e-5, mask_id=MASK)


def test_ddpm_caching_update_bad_times(checkpoint):
    den = mdlm.load_mdlm(checkpoint[0])
    x = torch.full((2, 3), MASK)
    with pytest.raises(ValueError, match="dt <= t"):
        mdlm.ddpm_caching_update(den, x, 0.2, 0.3, mask_id=MASK)
    with pytest.raises(ValueError, match="B = 2"):
        mdlm.ddpm_caching_update(den, x, torch.ones(3), 0.1, mask_id=MASK)


def test_load_in_bfloat16(checkpoint):
    path, model = checkpoint
    den = mdlm.load_mdlm(path, dtype=torch.bfloat16)
    assert den.backbone.vocab_embed.embedding.dtype == torch.bfloat16
    x = torch.randint(0, 8, (2, 6))
    got, want = den(x, torch.zeros(2)), model(x, torch.zeros(2))
    assert got.dtype == torch.float32 and bool(torch.isneginf(got[..., MASK]).all())
    # bf16 weights: log-probs agree to bf16 accuracy (8 bits of mantissa through 2 blocks)
    assert torch.allclose(got[..., :MASK], want[..., :MASK], atol=0.5, rtol=0.05)


def _outcomes(tokens: torch.Tensor) -> np.ndarray:
    assert not bool((tokens == MASK).any())
    return np.bincount((tokens[:, 0] * MASK + tokens[:, 1]).numpy(), minlength=MASK * MASK)


@pytest.mark.parametrize("sampler, dtype", [("ddpm_cache", torch.float32), ("ddpm", torch.bfloat16)])
def test_patched_mdlm_loop_matches_mdlms_own(sampler, dtype):
    # MDLM's own _sample loop, as written, unpatched vs patched with edlm_ext: the same
    # distribution over whole sequences (64 outcomes, 50 seen); a tempered model is told apart
    net = _random_model(seed=5).backbone.to(dtype)

    def backbone(ids, sigma):  # flatter than the raw random weights
        return net(ids, sigma) * 0.2

    n = 4000

    def run(net, patched: bool, seed: int) -> np.ndarray:
        model = stock.mdlm.Diffusion(net, MASK, sampler=sampler, length=2, batch_size=n)
        if patched:
            mdlm.patch(model, seed=seed)
        torch.manual_seed(seed)
        return _outcomes(model._sample(num_steps=4))

    ours, theirs = run(backbone, True, 0), run(backbone, False, 1)
    assert homogeneity_pvalue(ours, theirs) > CHI2_ALPHA
    tempered = run(lambda ids, sigma: backbone(ids, sigma) * 0.8, False, 2)
    assert homogeneity_pvalue(ours, tempered) < CHI2_ALPHA


def test_log_prob_cache_skips_the_exp(checkpoint):
    # probs=False (what patch uses): the cache is the denoiser's log-probs, no exp pass, same draws
    den = mdlm.load_mdlm(checkpoint[0])
    x = torch.full((4, 6), MASK)
    with _Allocations() as mode:
        cache, a = mdlm.ddpm_caching_update(den, x, 0.5, 0.25, mask_id=MASK, seed=3, probs=False)
    assert not [n for op, n in mode.seen if op == "aten.exp.default" and n == cache.numel()]
    p_x0, b = mdlm.ddpm_caching_update(den, x, 0.5, 0.25, mask_id=MASK, seed=3)
    assert torch.equal(a, b) and torch.allclose(cache.exp(), p_x0)
    again = mdlm.ddpm_caching_update(den, x, 0.5, 0.25, cache, mask_id=MASK, seed=4)[1]
    assert torch.equal(again, mdlm.ddpm_caching_update(den, x, 0.5, 0.25, p_x0, mask_id=MASK, seed=4)[1])


def test_ddpm_update_unmasks_at_the_schedules_rate(checkpoint):
    # _ddpm_update's posterior for any noise: unmask with probability (m_t - m_s) / m_t,
    # m = 1 - exp(-sigma); a geometric sigma given as MDLM's (sigma, dsigma) tuple
    den = mdlm.load_mdlm(checkpoint[0])
    n, t, dt = 20_000, 0.7, 0.3

    def geometric(tt):
        sigma = 1e-4 ** (1 - tt) * 20.0 ** tt
        return sigma, sigma * np.log(20.0 / 1e-4)

    m = lambda tt: 1 - np.exp(-geometric(tt)[0])  # noqa: E731
    x = torch.full((n, 2), MASK)
    x_next = mdlm.ddpm_update(den, x, t, dt, mask_id=MASK, noise=geometric, seed=0)
    p = (m(t) - m(t - dt)) / m(t)
    assert abs(binomial_z(int((x_next[:, 0] != MASK).sum()), n, p)) < Z_CRIT
    loglinear = mdlm.ddpm_update(den, x, t, dt, mask_id=MASK, seed=1)  # default: dt / t
    assert abs(binomial_z(int((loglinear[:, 1] != MASK).sum()), n, dt / t)) < Z_CRIT
    assert abs(p - dt / t) > 0.1  # the two schedules are told apart
    assert bool(((x_next >= 0) & (x_next <= MASK)).all())
