"""The upstream samplers our integrations replace, re-implemented from their published
algorithms (not sharing edlm_ext's code): the oracle of the integration tests and the
baseline of ``python/bench/bench_generation.py``. Not fast, on purpose.

* :mod:`.mdlm` — kuleshov-group/mdlm: ``_sample_categorical``, ``Diffusion`` with
  ``_ddpm_caching_update``, ``_ddpm_update`` and its ``_sample`` loop.
* :mod:`.llada` — ML-GSAI/LLaDA's ``generate``.
* :mod:`.fast_dllm` — NVlabs/Fast-dLLM's ``generate`` (threshold and factor rules).
* :mod:`.dream` — HKUNLP/Dream's ``diffusion_generate``.
* :mod:`.models` — tiny stand-in models with the upstream calling conventions.
"""
from . import dream, fast_dllm, llada, mdlm, models  # noqa: F401
