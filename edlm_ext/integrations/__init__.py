"""Drop-ins for the sampling code of third-party masked diffusion LMs (imported on demand).

* :mod:`edlm_ext.integrations.mdlm` — kuleshov-group/mdlm: ``sample_categorical``,
  ``ddpm_caching_update``, ``ddpm_update``, ``patch(diffusion)``, and ``load_mdlm`` for
  Hugging Face directories and Lightning ``.ckpt`` files (EMA weights).
* :mod:`edlm_ext.integrations.hf` — ML-GSAI/LLaDA's ``generate`` (same signature and
  return value), with Fast-dLLM's rules, Dream-style shifted logits and EDLM importance
  sampling as options.
* :mod:`edlm_ext.integrations.fast_dllm` — NVlabs/Fast-dLLM's ``generate`` -> (tokens, nfe).
* :mod:`edlm_ext.integrations.dream` — HKUNLP/Dream's ``diffusion_generate`` (``patch(model)``).
* :mod:`edlm_ext.integrations.stock` — re-implementations of the upstream loops from their
  published algorithms: the oracle of the tests and the baseline of the benchmarks.
"""
