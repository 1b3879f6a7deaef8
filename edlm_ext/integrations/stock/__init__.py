"""Every PyTorch baseline in one place: the upstream samplers our integrations replace and
the single sampling steps today's code writes, re-implemented from their published
algorithms. Nothing here imports edlm_ext (tests/test_imports.py checks it), so these stay
independent oracles: of the integration tests, and the baselines of the benchmarks in
``python/bench/``. Not fast, on purpose.

* :mod:`.steps` — one step per op as PyTorch code writes it (MDLM's, LLaDA's, float32
  Gumbel-max, the public EDLM code's repeated batch, multinomial resampling, the
  unmasking selections).
* :mod:`.mdlm` — kuleshov-group/mdlm: ``_sample_categorical``, ``Diffusion`` with
  ``_ddpm_caching_update``, ``_ddpm_update`` and its ``_sample`` loop.
* :mod:`.llada` — ML-GSAI/LLaDA's ``generate``.
* :mod:`.fast_dllm` — NVlabs/Fast-dLLM's ``generate`` (threshold and factor rules).
* :mod:`.dream` — HKUNLP/Dream's ``diffusion_generate``.
* :mod:`.models` — tiny stand-in models with the upstream calling conventions.
"""
from . import dream, fast_dllm, llada, mdlm, models, steps  # noqa: F401
