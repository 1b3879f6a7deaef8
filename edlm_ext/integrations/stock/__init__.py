"""The upstream samplers our integrations replace, re-implemented from their published
algorithms (not sharing edlm_ext's code): the oracle of the integration tests and the
baseline of ``python/bench/bench_generation.py``. Not fast, on purpose.

* :mod:`.mdlm` — kuleshov-group/mdlm: ``_sample_categorical``, ``Diffusion`` with
  ``_ddpm_caching_update``, ``_ddpm_update`` and its ``_sample`` loop.
"""
from . import mdlm  # noqa: F401
from ._legacy import llada_generate  # noqa: F401  (until the LLaDA re-implementation replaces it)
