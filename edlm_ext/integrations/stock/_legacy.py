"""The stock PyTorch samplers that the integrations replace, written from the published
algorithms (float64 noise, as the original code): the oracle of the integration
tests and the baseline of ``python/bench/bench_generation.py``. Not fast, on purpose.

* :func:`mdlm_sample_categorical` / :func:`mdlm_ddpm_update` — MDLM: probabilities
  divided by exponential noise, argmax; q(x_s | x_t, x0) as a (V)-way draw where the
  [MASK] entry carries the probability of staying masked.
* :func:`llada_generate` — LLaDA's block-wise semi-autoregressive loop: float64 Gumbel
  argmax, softmax confidence, per-row top-k transfer (``remasking="low_confidence"``
  or ``"random"``), or Fast-dLLM's threshold rule; ``shift_logits`` for Dream-style models.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..hf import GenerateOutput, _check_generate_args, _timed  # validation and timing only: the sampling is independent


def mdlm_sample_categorical(categorical_probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """argmax(probs / E), E ~ Exp(1) from float64 uniforms (MDLM's exponential race)."""
    u = torch.rand(categorical_probs.shape, dtype=torch.float64, generator=generator,
                   device=categorical_probs.device)
    gumbel_norm = 1e-10 - (u + 1e-10).log()
    return (categorical_probs.to(torch.float64) / gumbel_norm).argmax(dim=-1)


def mdlm_ddpm_update(denoiser, x: torch.Tensor, t: float, dt: float, mask_id: int, p_x0: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One MDLM step: p_x0 from the denoiser (or the cache), q_xs = p_x0 dt with
    q_xs[MASK] = t - dt, one draw; returns (p_x0, x_next) like MDLM's method."""
    if p_x0 is None:
        p_x0 = denoiser(x, torch.full((x.shape[0],), t, device=x.device)).to(torch.float64).exp()
    q_xs = p_x0 * dt
    q_xs[..., mask_id] = t - dt
    drawn = mdlm_sample_categorical(q_xs, generator)
    return p_x0, torch.where(x == mask_id, drawn, x)


def _gumbel_argmax64(logits: torch.Tensor, temperature: float, generator) -> torch.Tensor:
    """LLaDA's noise: exp(l) / (-log u)^T in float64 (argmax = Gumbel-max of l / T)."""
    if temperature == 0:
        return logits.argmax(-1)
    l64 = logits.to(torch.float64)
    u = torch.rand(l64.shape, dtype=torch.float64, generator=generator, device=l64.device)
    return (l64.exp() / (-torch.log(u)) ** temperature).argmax(-1)


def llada_generate(model, prompt: torch.Tensor, *, mask_id: int, gen_length: int, block_length: int,
                   steps: int | None = None, temperature: float = 0.0, remasking: str = "low_confidence",
                   threshold: float | None = None, shift_logits: bool = False,
                   generator: torch.Generator | None = None) -> GenerateOutput:
    """Stock LLaDA / Fast-dLLM generation (see :func:`edlm_ext.integrations.hf.generate`
    for the arguments; the [MASK] logit is set to -inf, as there)."""
    steps_per_block, n_blocks = _check_generate_args(prompt, mask_id, gen_length, block_length, steps, temperature,
                                                     threshold, remasking)
    B, P = prompt.shape
    x = torch.cat([prompt, torch.full((B, gen_length), mask_id, dtype=torch.long, device=prompt.device)], dim=1)
    out = GenerateOutput(tokens=x)
    for blk in range(n_blocks):
        start, end = P + blk * block_length, P + (blk + 1) * block_length
        n_masked = (x[:, start:end] == mask_id).sum(1)
        per_step = torch.stack([n_masked // steps_per_block + (i < n_masked % steps_per_block)
                                for i in range(steps_per_block)], 1)
        i = 0
        while bool((x[:, start:end] == mask_id).any()):
            with _timed(out, "time_model", x.device):
                with torch.no_grad():
                    logits = model(x).logits
                out.model_calls += 1
            with _timed(out, "time_sampling", x.device):
                if shift_logits:  # Dream: position i is predicted at i - 1 (position 0 by itself)
                    logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
                lg = logits[:, start:end].clone()
                lg[..., mask_id] = float("-inf")
                xb = x[:, start:end]
                masked = xb == mask_id
                x0 = torch.where(masked, _gumbel_argmax64(lg, temperature, generator), xb)
                if remasking == "random":
                    conf = torch.rand(xb.shape, dtype=torch.float64, generator=generator, device=x.device)
                else:
                    conf = F.softmax(lg.to(torch.float64), dim=-1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
                conf = torch.where(masked, conf, float("-inf"))
                # per-row top-n by confidence (LLaDA loops over rows with torch.topk; ranks are the same)
                rank = torch.argsort(torch.argsort(conf, dim=1, descending=True, stable=True), dim=1)
                if threshold is not None:  # the most confident always; the others above threshold
                    transfer = masked & ((rank == 0) | (conf > threshold))
                else:
                    transfer = rank < per_step[:, i:i + 1]
                x[:, start:end] = torch.where(transfer, x0, xb)
            i += 1
            out.steps += 1
    return out
