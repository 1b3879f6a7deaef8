"""EDLM-AR end to end with tiny randomly initialised transformers (CPU, seconds).

    python python/examples/edlm_tiny.py [--steps 16] [--k 8] [--window 0.5] [--batch 8] [--len 64]

A bidirectional 'subs' denoiser proposes, a causal AR model scores (EDLM-AR: the AR
log-likelihood of the whole candidate; the untrained AR reads [MASK] as its BOS), and
the sampler prints the tokens' shape and its statistics. The models are untrained:
this shows the machinery and its cost, not text quality.
"""
import argparse
import sys
from pathlib import Path

import torch

try:
    import edlm_ext
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import edlm_ext
from edlm_ext.models import TinyAR, TinyDenoiser


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--window", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--len", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    mask_id = args.vocab - 1
    denoiser = TinyDenoiser(args.vocab, mask_id, max_len=args.len).eval()
    ar = TinyAR(args.vocab, max_len=args.len).eval()
    with torch.no_grad():
        for name, energy in (("MDLM", None), ("EDLM-AR", edlm_ext.AREnergy(ar, bos_id=mask_id))):
            out = edlm_ext.sample(denoiser, batch_size=args.batch, seq_len=args.len, mask_id=mask_id,
                                  steps=args.steps, energy=energy, k=args.k, window=args.window, seed=args.seed,
                                  progress=True)
            print(f"{name}: tokens {tuple(out.tokens.shape)}, first row {out.tokens[0, :12].tolist()} ...")
            print(f"  {out.stats.summary()}")


if __name__ == "__main__":
    main()
