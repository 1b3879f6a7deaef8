"""MDLM integration: checkpoint loading (a tiny random checkpoint in MDLM's layout),
and the drop-in sampling functions against exact probabilities (fixed seeds)."""
import json
import os

import numpy as np
import pytest
import torch

import edlm_ext
from edlm_ext.integrations import mdlm, stock

from .stats import CHI2_ALPHA, chisquare_pvalue, homogeneity_pvalue

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
    with pytest.raises(ValueError, match="positive weight"):
        mdlm.sample_categorical(torch.zeros(2, 3))
    with pytest.raises(TypeError):
        mdlm.sample_categorical(torch.ones(2, 3, dtype=torch.int64))


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
    # and the same distribution as MDLM's own float64 step, while a wrong dt does not
    _, ref = stock.mdlm_ddpm_update(den, x, t, dt, MASK, generator=torch.Generator().manual_seed(3))
    assert homogeneity_pvalue(np.bincount(x_next[:, 0].numpy(), minlength=9),
                              np.bincount(ref[:, 0].numpy(), minlength=9)) > CHI2_ALPHA
    _, wrong = stock.mdlm_ddpm_update(den, x, t, 0.1, MASK, generator=torch.Generator().manual_seed(4))
    assert homogeneity_pvalue(np.bincount(x_next[:, 0].numpy(), minlength=9),
                              np.bincount(wrong[:, 0].numpy(), minlength=9)) < CHI2_ALPHA


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
