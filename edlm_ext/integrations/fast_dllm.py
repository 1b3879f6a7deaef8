"""Fast-dLLM's ``generate`` (NVlabs/Fast-dLLM, ``llada/generate.py``, the no-cache loop) on
edlm_ext's kernels: the same signature and positional order, the same ``(tokens, nfe)``
return value, the same rules.

* ``threshold=`` (parallel decoding): at each step every masked position up to the
  block's end whose confidence is >= threshold is committed, and always the most
  confident one; the block runs until it is done.
* ``factor=`` (dynamic): Fast-dLLM's count rule, see
  :func:`edlm_ext.integrations._remask.factor_counts`.
* neither: LLaDA's low-confidence schedule (``steps`` spread over the blocks).

Batches of any size work: rows that finish a block early simply wait. (Fast-dLLM's code
loops over rows; its ``factor`` rule raises IndexError as soon as one row of a batch has
no masked position left while another still has.) Confidences are ranked in float32 by
default; a float32 confidence within a few ulps of the threshold is recomputed in
float64 first, so the threshold decision is Fast-dLLM's (which ranks in float64:
``rank_dtype="float64"`` ranks exactly as there). [MASK] is never drawn; a step that
would commit nothing is skipped, so ``nfe`` counts the model calls actually made.
Fast-dLLM's KV-cache loops (``generate_with_prefix_cache``, ``generate_with_dual_cache``)
change how the model is called, not how tokens are drawn, and are not replaced here.
"""
from __future__ import annotations

import torch

from .hf import LLADA_MASK_ID, run_blockwise


def generate(model, prompt: torch.Tensor, steps: int = 128, gen_length: int = 128, block_length: int = 128,
             temperature: float = 0.0, remasking: str = "low_confidence", mask_id: int = LLADA_MASK_ID,
             threshold: float | None = None, factor: float | None = None, *,
             attention_mask: torch.Tensor | None = None, rank_dtype: str = "float32",
             generator: torch.Generator | None = None, seed: int | None = None, return_dict: bool = False,
             timing: bool = False):
    """Drop-in for Fast-dLLM's ``generate(model, prompt, steps, gen_length, block_length,
    temperature, remasking, mask_id, threshold, factor)``.

    Args:
        model, prompt, steps, gen_length, block_length, temperature, remasking, mask_id:
            as in :func:`edlm_ext.integrations.hf.generate`.
        threshold, factor: Fast-dLLM's parallel-decoding rules (see the module docstring).
        attention_mask: [B, P] left-padding mask, passed to the model (an extension).
        rank_dtype: "float32" (default), "float64" (Fast-dLLM's ranking) or "model".
        generator / seed: the random stream (``seed`` draws the same on CPU and CUDA).
        return_dict: return a :class:`~edlm_ext.integrations.hf.GenerateOutput`.
        timing: measure its model and sampling times (synchronizes CUDA; off by default).

    Returns:
        ``(tokens [B, P + gen_length] int64, nfe)`` as Fast-dLLM, nfe the number of model calls.
    """
    out = run_blockwise(model, prompt, attention_mask, steps=steps, gen_length=gen_length,
                        block_length=block_length, temperature=temperature, remasking=remasking, mask_id=mask_id,
                        threshold=threshold, factor=factor, rank_dtype=rank_dtype, generator=generator, seed=seed,
                        timing=timing)
    return out if return_dict else (out.tokens, out.model_calls)
