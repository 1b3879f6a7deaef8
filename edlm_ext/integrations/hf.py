"""Hugging Face masked diffusion LMs (LLaDA-style and Dream-style) with edlm_ext's kernels.

:func:`generate` runs LLaDA's block-wise semi-autoregressive schedule: the answer is
split into blocks decoded left to right; inside a block every step calls the model on
the whole sequence, draws x0 at the block's masked positions (one exact draw per row,
:func:`edlm_ext.masked_sample`) and commits

* ``remasking="low_confidence"`` (LLaDA): the n most confident positions, n spreading the
  block's masked count evenly over its steps (:func:`edlm_ext.unmask_confident`);
* ``remasking="random"``: n random positions (LLaDA's other option);
* ``threshold=`` (Fast-dLLM): every position whose confidence exceeds the threshold, at
  least the most confident one, until the block is done.

Confidence is the drawn token's probability under softmax(logits) (temperature 1, as
LLaDA). The [MASK] token is never drawn (its logit counts as -inf, the 'subs' rule).
Dream-style models predict position i from the logits at i - 1 (``shift_logits=True``).
With ``energy=`` and ``k > 1`` the draws of the first ``is_steps`` steps of each block are
EDLM importance-sampling steps: k proposals for the block, scored by the energy on the
sequence up to the block's end, one resampled.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch

from .._rng import resolve_generator
from ..ops import masked_sample, unmask_confident
from ..sampler import propose_and_resample

REMASKING = ("low_confidence", "random")


@dataclass
class GenerateOutput:
    """Tokens [B, P + gen_length] (prompt first) and counters / timings (seconds)."""

    tokens: torch.Tensor
    steps: int = 0
    model_calls: int = 0
    time_model: float = 0.0
    time_sampling: float = 0.0


@contextlib.contextmanager
def _timed(out: GenerateOutput, name: str, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize()
    setattr(out, name, getattr(out, name) + time.perf_counter() - t0)


def _model_logits(model, x: torch.Tensor) -> torch.Tensor:
    """``model(x).logits`` for Hugging Face models, ``model(x)`` for plain callables."""
    with torch.no_grad():
        out = model(x)
    logits = getattr(out, "logits", out)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(x.shape):
        raise ValueError(f"model must return logits [B, L, V] for input {tuple(x.shape)}, "
                         f"got {getattr(logits, 'shape', type(logits).__name__)}")
    return logits


def _block_logits(logits: torch.Tensor, start: int, end: int, shift: bool) -> torch.Tensor:
    """The logits that predict positions [start, end): a view, or for Dream-style
    models the view one position earlier (position 0 predicts itself)."""
    if not shift:
        return logits[:, start:end]
    if start >= 1:
        return logits[:, start - 1:end - 1]
    return torch.cat([logits[:, :1], logits[:, : end - 1]], dim=1)


def _check_generate_args(prompt, mask_id, gen_length, block_length, steps, temperature, threshold, remasking):
    """Validates generate()'s arguments; returns (steps per block, number of blocks)."""
    if not isinstance(prompt, torch.Tensor) or prompt.dtype != torch.int64 or prompt.dim() != 2:
        raise TypeError("prompt must be an int64 tensor [B, P]")
    if bool((prompt == mask_id).any()):
        raise ValueError("prompt must not contain mask_id")
    for name, v in (("gen_length", gen_length), ("block_length", block_length)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if gen_length % block_length:
        raise ValueError(f"gen_length = {gen_length} must be a multiple of block_length = {block_length}")
    n_blocks = gen_length // block_length
    steps = gen_length if steps is None else steps
    if not isinstance(steps, int) or steps < n_blocks or steps % n_blocks:
        raise ValueError(f"steps must be a positive multiple of the number of blocks ({n_blocks}), got {steps!r}")
    if not temperature >= 0 or temperature == float("inf"):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    if remasking not in REMASKING:
        raise ValueError(f"remasking must be one of {REMASKING}, got {remasking!r}")
    if threshold is not None and (remasking != "low_confidence" or not threshold == threshold):
        raise ValueError("threshold= needs remasking='low_confidence' and a number (not NaN)")
    return steps // n_blocks, n_blocks


class _PrefixEnergy:
    """Scores block candidates as whole sequences: prefix (prompt + finished blocks) + block."""

    def __init__(self, energy, prefix: torch.Tensor, k: int):
        self.energy, self.prefix = energy, prefix.repeat_interleave(k, dim=0)
        self.needs_log_q = getattr(energy, "needs_log_q", False)

    def __call__(self, candidates, x_t, **kwargs):
        return self.energy(torch.cat([self.prefix, candidates], 1), torch.cat([self.prefix, x_t], 1), **kwargs)


def _confidence(lg: torch.Tensor, x0: torch.Tensor, logp: torch.Tensor, mask_id: int, temperature: float):
    """P(x0) under softmax(logits) without [MASK]: the kernel's logp at temperature 0 or
    1, else recomputed from the logits (the kernel's logp is tempered there)."""
    if temperature in (0.0, 1.0):
        return logp.exp()
    lf = lg.float().clone()
    lf[..., mask_id] = float("-inf")
    return (lf.gather(-1, x0.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(lf, dim=-1)).exp()


def generate(model, prompt: torch.Tensor, *, mask_id: int, gen_length: int = 128, block_length: int = 32,
             steps: int | None = None, temperature: float = 0.0, remasking: str = "low_confidence",
             threshold: float | None = None, shift_logits: bool = False, energy=None, k: int = 1,
             is_steps: int | None = None, generator: torch.Generator | None = None,
             seed: int | None = None) -> GenerateOutput:
    """Block-wise semi-autoregressive generation for LLaDA / Dream-style models.

    Args:
        model: a Hugging Face model (``model(input_ids).logits``) or a callable
            ``ids [B, L] -> logits [B, L, V]``; bidirectional over the whole sequence.
        prompt: [B, P] int64 prompt ids (no [MASK]); all rows share P.
        mask_id: the [MASK] id (LLaDA: 126336).
        gen_length, block_length: answer length and block size (a divisor of gen_length).
        steps: model calls for the whole answer with ``low_confidence`` / ``random``
            remasking (default gen_length), a multiple of the number of blocks.
            With ``threshold`` each block runs until it is done instead.
        temperature: of the draws (0 = greedy).
        remasking: "low_confidence" or "random" (see the module docstring).
        threshold: Fast-dLLM's parallel-decoding threshold on the confidence.
        shift_logits: Dream-style models (position i predicted by logits at i - 1).
        energy, k, is_steps: EDLM importance sampling (k proposals per row, energy as
            in :func:`edlm_ext.propose_and_resample`, scoring prefix + block) at the
            first ``is_steps`` steps of each block (None: every step). Needs temperature > 0.
        generator / seed: the random stream (seed: a fresh generator on the prompt's device).

    Returns:
        :class:`GenerateOutput`: tokens [B, P + gen_length] with no [MASK] left, steps,
        model calls, and the time spent in the model and in sampling.
    """
    steps_per_block, n_blocks = _check_generate_args(prompt, mask_id, gen_length, block_length, steps, temperature,
                                                     threshold, remasking)
    use_is = energy is not None and k > 1
    if use_is and temperature == 0:
        raise ValueError("importance sampling (energy with k > 1) needs temperature > 0")
    generator = resolve_generator(prompt.device, generator, seed)
    B, P = prompt.shape
    device = prompt.device
    x = torch.cat([prompt, torch.full((B, gen_length), mask_id, dtype=torch.long, device=device)], dim=1)
    out = GenerateOutput(tokens=x)
    for blk in range(n_blocks):
        start, end = P + blk * block_length, P + (blk + 1) * block_length
        n_masked = (x[:, start:end] == mask_id).sum(1)
        i = 0
        while bool((x[:, start:end] == mask_id).any()):
            with _timed(out, "time_model", device):
                logits = _model_logits(model, x)
                out.model_calls += 1
            with _timed(out, "time_sampling", device):
                lg, xb = _block_logits(logits, start, end, shift_logits), x[:, start:end]
                if use_is and (is_steps is None or i < is_steps):
                    x0, diag = propose_and_resample(lg, xb, mask_id, _PrefixEnergy(energy, x[:, :start], k), k,
                                                    temperature=temperature, generator=generator)
                    logp = diag.logp
                else:
                    x0, logp = masked_sample(lg, xb, mask_id, temperature=temperature, generator=generator)
                if remasking == "random":
                    conf = torch.rand(xb.shape, generator=generator, device=device)
                else:
                    conf = _confidence(lg, x0, logp, mask_id, temperature)
                if threshold is not None:
                    x[:, start:end] = unmask_confident(xb, x0, conf, mask_id, threshold=float(threshold))
                else:
                    left = steps_per_block - i
                    n = n_masked // steps_per_block + (i < n_masked % steps_per_block).long() if left > 0 else \
                        (xb == mask_id).sum(1)
                    x[:, start:end] = unmask_confident(xb, x0, conf, mask_id, n=n)
            i += 1
            out.steps += 1
    return out
