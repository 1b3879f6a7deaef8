"""load_mdlm on MDLM's own Lightning .ckpt files: the weights under state_dict (backbone.*),
the EMA chosen when present, the config from the checkpoint's OmegaConf hyper-parameters
(read without omegaconf and without running pickled code) or a Hydra config.yaml beside it."""
import os
from pathlib import Path

import pytest
import torch
import yaml

import edlm_ext
from edlm_ext.integrations import mdlm

from .test_integration_mdlm import MASK, _random_model

DATA = Path(__file__).resolve().parent / "data"
HYDRA = {"backbone": "dit", "parameterization": "subs", "time_conditioning": False,
         "model": {"hidden_size": 16, "cond_dim": 8, "length": "${sampling.length}", "n_blocks": 2, "n_heads": 2,
                   "dropout": 0.0},
         "noise": {"type": "loglinear"}, "sampling": {"length": 16}}


def test_mdlms_checkpoint_with_omegaconf_hyper_parameters_and_ema():
    # written by tests/data/make_mdlm_lightning_ckpt.py with a real OmegaConf config
    want = torch.load(DATA / "mdlm_lightning_tiny_expected.pt", weights_only=True)
    den = mdlm.load_mdlm(DATA / "mdlm_lightning_tiny.ckpt")
    assert den.mask_id == MASK and den.time_independent and den.config.model_length == 16
    assert torch.allclose(den(want["x"], want["t"]), want["ema"], atol=1e-5)  # EMA by default, as MDLM samples
    raw = mdlm.load_mdlm(DATA / "mdlm_lightning_tiny.ckpt", ema=False)
    assert torch.allclose(raw(want["x"], want["t"]), want["trained"], atol=1e-5)
    assert not torch.allclose(want["ema"], want["trained"], atol=1e-2)  # the two choices are told apart


def _lightning(path, model, *, ema=None, hyper_parameters=None, extra=None):
    ckpt = {"state_dict": {"backbone." + k: v for k, v in model.backbone.state_dict().items()},
            "epoch": 1, **(extra or {})}
    if ema is not None:
        ckpt["ema"] = {"decay": 0.999, "num_updates": 5, "shadow_params": ema}
    if hyper_parameters is not None:
        ckpt["hyper_parameters"] = hyper_parameters
    torch.save(ckpt, path)
    return path


def test_hydra_config_beside_the_checkpoint(tmp_path):
    model = _random_model(seed=3)
    run = tmp_path / "outputs" / "owt" / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({**HYDRA, "time_conditioning": True}))
    ckpt = _lightning(run / "checkpoints" / "last.ckpt", model)
    den = mdlm.load_mdlm(ckpt)  # MDLM's run layout: checkpoints/ beside .hydra/
    assert den.time_independent is False and den.config.model_length == 16
    x, t = torch.randint(0, 8, (2, 7)), torch.tensor([0.9, 0.2])
    model.config.time_conditioning = True
    assert torch.allclose(den(x, t), model(x, t), atol=1e-6)
    # an explicit config wins (a dict or a YAML path), and mask_index can be set
    explicit = mdlm.load_mdlm(ckpt, config={**HYDRA, "time_conditioning": False}, mask_index=0)
    assert explicit.time_independent and explicit.mask_id == 0
    assert mdlm.load_mdlm(ckpt, config=run / ".hydra" / "config.yaml").time_independent is False


def test_plain_hyper_parameters_and_the_ema_choice(tmp_path):
    model = _random_model(seed=4)
    shadow = [p.detach() * 0.5 for p in model.backbone.parameters()] + [torch.zeros(1)]  # + a noise parameter
    ckpt = _lightning(tmp_path / "a.ckpt", model, ema=shadow, hyper_parameters={"config": HYDRA})
    x, t = torch.randint(0, 8, (2, 7)), torch.rand(2)
    assert torch.allclose(mdlm.load_mdlm(ckpt, ema=False)(x, t), model(x, t), atol=1e-6)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.mul_(0.5)
    assert torch.allclose(mdlm.load_mdlm(ckpt)(x, t), model(x, t), atol=1e-6)
    assert torch.allclose(mdlm.load_mdlm(ckpt, ema=True)(x, t), model(x, t), atol=1e-6)
    no_ema = _lightning(tmp_path / "b.ckpt", model, hyper_parameters={"config": HYDRA})
    with pytest.raises(ValueError, match="no EMA"):
        mdlm.load_mdlm(no_ema, ema=True)
    short = _lightning(tmp_path / "c.ckpt", model, ema=shadow[:3], hyper_parameters={"config": HYDRA})
    with pytest.raises(ValueError, match="EMA holds 3"):
        mdlm.load_mdlm(short)


def test_lightning_checkpoint_drives_edlm_sample(tmp_path):
    ckpt = _lightning(tmp_path / "a.ckpt", _random_model(), hyper_parameters={"config": HYDRA})
    den = mdlm.load_mdlm(ckpt)
    out = edlm_ext.sample(den, batch_size=2, seq_len=8, mask_id=den.mask_id, steps=8, seed=0)
    assert not bool((out.tokens == MASK).any()) and out.stats.cached_steps > 0


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    _Exploit.marker = marker
    ckpt = _lightning(tmp_path / "a.ckpt", _random_model(),
                      hyper_parameters={"config": HYDRA, "tokenizer": _Exploit()})
    den = mdlm.load_mdlm(ckpt)
    assert not marker.exists() and den.mask_id == MASK


def test_lightning_errors(tmp_path):
    model = _random_model()
    with pytest.raises(FileNotFoundError, match="no config"):
        mdlm.load_mdlm(_lightning(tmp_path / "a.ckpt", model))
    with pytest.raises(ValueError, match="hidden_size"):
        mdlm.load_mdlm(tmp_path / "a.ckpt", config={"model": {"cond_dim": 8}})
    with pytest.raises(ValueError, match="shape"):
        mdlm.load_mdlm(tmp_path / "a.ckpt", config={**HYDRA, "model": {**HYDRA["model"], "cond_dim": 4}})
    with pytest.raises(ValueError, match="backbone"):
        mdlm.load_mdlm(tmp_path / "a.ckpt", config={**HYDRA, "backbone": "dimamba"})
    with pytest.raises(ValueError, match="parameterization"):
        mdlm.load_mdlm(tmp_path / "a.ckpt", config={**HYDRA, "parameterization": "sedd"})
    torch.save({"weights": torch.zeros(2)}, tmp_path / "b.ckpt")
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        mdlm.load_mdlm(tmp_path / "b.ckpt")
    with pytest.raises(FileNotFoundError, match="not found"):
        mdlm.load_mdlm(tmp_path / "missing.ckpt")
