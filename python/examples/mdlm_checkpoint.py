"""MDLM: load a local DiT checkpoint and sample it with edlm_ext (tiny random weights, CPU).

A real checkpoint directory (config.json + model.safetensors in MDLM's Hugging Face
layout, e.g. a local copy of kuleshov-group/mdlm-owt) loads the same way; here a tiny
random one is written to a temporary directory first.

    python python/examples/mdlm_checkpoint.py [CHECKPOINT_DIR]
"""
import sys
import tempfile
from pathlib import Path

import torch

try:
    import edlm_ext
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import edlm_ext
from edlm_ext.integrations import mdlm
from edlm_ext.models import TinyAR


def tiny_checkpoint(path: str) -> None:
    torch.manual_seed(0)
    cfg = mdlm.MDLMConfig(vocab_size=100, model_length=64, hidden_dim=32, cond_dim=16, n_blocks=2, n_heads=2,
                          dropout=0.0)
    mdlm.save_mdlm(mdlm.MDLMDenoiser(cfg), path)


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="mdlm_tiny_")
    if len(sys.argv) == 1:
        tiny_checkpoint(path)
    den = mdlm.load_mdlm(path)
    V, mask_id = den.config.vocab_size, den.mask_id
    print(f"loaded {path}: V = {V}, [MASK] = {mask_id}, {sum(p.numel() for p in den.parameters())} parameters")

    # 1. edlm_ext.sample: plain MDLM, then EDLM-AR (importance sampling in the first 20% of steps)
    out = edlm_ext.sample(den, batch_size=4, seq_len=32, mask_id=mask_id, steps=32, seed=0)
    print("MDLM   ", out.stats.summary())
    ar = TinyAR(V, max_len=64).eval()
    out = edlm_ext.sample(den, batch_size=4, seq_len=32, mask_id=mask_id, steps=32, seed=0,
                          energy=edlm_ext.AREnergy(ar, bos_id=mask_id), k=4, window=0.2)
    print("EDLM-AR", out.stats.summary())

    # 2. MDLM's own loop with the drop-in caching update
    x = torch.full((4, 32), mask_id)
    steps, eps = 32, 1e-5
    dt = (1 - eps) / steps
    gen = torch.Generator().manual_seed(0)
    cache, calls = None, 0
    for i in range(steps):
        calls += cache is None
        cache, x_next = mdlm.ddpm_caching_update(den, x, 1 - i * dt, dt, cache, mask_id=mask_id, generator=gen)
        if not torch.equal(x_next, x):
            cache = None
        x = x_next
    x, _ = edlm_ext.masked_sample(den(x, torch.full((4,), eps)), x, mask_id, temperature=0.0)  # final denoise
    print(f"drop-in loop: {calls} denoiser calls for {steps} steps; first sample {x[0, :12].tolist()} ...")


if __name__ == "__main__":
    main()
