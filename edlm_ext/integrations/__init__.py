"""Integrations with third-party masked diffusion LMs.

* :mod:`edlm_ext.integrations.mdlm` — kuleshov-group/mdlm: drop-in ``sample_categorical`` and
  ``ddpm_caching_update``, and ``load_mdlm`` for local DiT checkpoints.
* :mod:`edlm_ext.integrations.hf` — Hugging Face LLaDA-style / Dream-style models: a
  block-wise semi-autoregressive ``generate`` (low-confidence remasking, Fast-dLLM
  threshold, optional EDLM importance sampling).
* :mod:`edlm_ext.integrations.stock` — the stock PyTorch samplers these replace (float64
  noise), the baseline of tests and benchmarks.
"""
