"""Writes tests/data/mdlm_lightning_tiny.ckpt: a Lightning checkpoint laid out as MDLM's
training writes it (state_dict with backbone.*, ema.shadow_params, OmegaConf config and a
tokenizer object as hyper-parameters), with a tiny random DiT; and beside it the expected
log-probs of its EMA and of its trained weights (mdlm_lightning_tiny_expected.pt).

The config must be a real OmegaConf DictConfig, so this needs omegaconf (not a dependency
of edlm_ext; the loader reads the pickle without it):
    pip install --target /tmp/omega omegaconf
    PYTHONPATH=/tmp/omega:. python tests/data/make_mdlm_lightning_ckpt.py
"""
from pathlib import Path

import torch
from omegaconf import OmegaConf

from edlm_ext.integrations.mdlm_dit import MDLMConfig, MDLMDenoiser

HERE = Path(__file__).resolve().parent


class Tokenizer:  # stands for the pickled GPT-2 tokenizer: a class the loader must not import
    def __init__(self):
        self.vocab_size, self.name = 8, "tiny"


def main() -> None:
    torch.manual_seed(0)
    cfg = MDLMConfig(vocab_size=9, model_length=16, hidden_dim=16, cond_dim=8, n_blocks=2, n_heads=2, dropout=0.0)
    trained = MDLMDenoiser(cfg)
    with torch.no_grad():
        for p in trained.parameters():
            p.normal_(0.0, 0.5)
    ema = [p.detach() + 0.3 * torch.randn_like(p) for p in trained.backbone.parameters()]
    hydra = OmegaConf.create({
        "backbone": "dit", "parameterization": "subs", "time_conditioning": False, "T": 0,
        "model": {"name": "tiny", "type": "ddit", "hidden_size": 16, "cond_dim": 8, "length": 16, "n_blocks": 2,
                  "n_heads": 2, "scale_by_sigma": True, "dropout": 0.0},
        "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
        "training": {"ema": 0.9999, "sampling_eps": 1e-3},
        "sampling": {"predictor": "ddpm_cache", "steps": 128, "length": "${model.length}"},
    })
    ckpt = {
        "epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.1.0",
        "state_dict": {"backbone." + k: v for k, v in trained.backbone.state_dict().items()},
        "ema": {"decay": 0.9999, "num_updates": 100, "shadow_params": ema},
        "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 3e-4, "params": [0, 1]}]}],
        "lr_schedulers": [{"last_epoch": 100, "_step_count": 101}],
        "hyper_parameters": {"config": hydra, "tokenizer": Tokenizer()},
        "sampler": {"random_state": None},
    }
    torch.save(ckpt, HERE / "mdlm_lightning_tiny.ckpt")
    x = torch.tensor([[8, 8, 3, 8, 1, 8, 8, 0], [2, 8, 8, 8, 8, 5, 8, 8]])
    t = torch.tensor([0.7, 0.3])
    raw_logp = trained(x, t)
    with torch.no_grad():
        for p, e in zip(trained.backbone.parameters(), ema):
            p.copy_(e)
    torch.save({"x": x, "t": t, "ema": trained(x, t), "trained": raw_logp}, HERE / "mdlm_lightning_tiny_expected.pt")


if __name__ == "__main__":
    main()
