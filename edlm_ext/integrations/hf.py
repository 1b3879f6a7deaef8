"""LLaDA's ``generate`` for Hugging Face masked diffusion LMs, on edlm_ext's kernels.

A drop-in for ``generate`` of ML-GSAI/LLaDA's ``generate.py``: the same signature
(positional order, defaults), the same return value (the token tensor; the rich
:class:`GenerateOutput` with ``return_dict=True``) and the same block-wise
semi-autoregressive schedule. The answer is split into blocks decoded left to right;
each block runs ``steps / n_blocks`` steps; at each step the model sees the whole
sequence, x0 is drawn at every masked position up to the block's end (one exact draw
per position, :func:`edlm_ext.masked_sample`), and the ``n`` most confident of them are
committed, ``n`` spreading the block's masked count evenly over its steps
(``remasking="low_confidence"``; ``"random"`` ranks by uniform noise). Confidence is
the drawn token's probability under softmax(logits) (temperature 1, as LLaDA).

LLaDA's options behave as there: ``attention_mask`` (left padding; extended with ones
over the answer), ``cfg_scale`` (unsupervised classifier-free guidance: the prompt
masked out in a second batch half, logits = un + (cfg + 1)(cond - un)),
``logits_eos_inf`` (the EOS logit set to -inf before the draw) and
``confidence_eos_eot_inf`` (as LLaDA's code does it: the EoT logit is removed from the
confidence softmax). Prompts may be any integer dtype and may hold [MASK]: masked
prompt positions compete for the steps of each block up to its end, as in LLaDA.

Extensions: Fast-dLLM's parallel decoding (``threshold=`` with its >= rule, or
``factor=``; see :mod:`edlm_ext.integrations.fast_dllm` for Fast-dLLM's own surface),
Dream-style shifted logits (``shift_logits=True``) and EDLM importance sampling
(``energy=``, ``k=``).

Differences from LLaDA's code: [MASK] is never drawn as x0; a step at which no row
commits anything does not call the model; confidences are ranked in float32 by
default, ties to the lower position (``rank_dtype="model"`` ranks them as LLaDA does,
softmax in the model's dtype and ``torch.topk``, which reproduces its tokens for bf16
models, whose bf16 confidences tie often and break ties by topk's internal order;
float32 keeps the model's probabilities apart, so it stays the default); with
``cfg_scale > 0`` and no ``attention_mask``, LLaDA's code hits an unbound variable, ours runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .._rng import RandomStream
from ..ops import masked_sample
from ..sampler import _propose_and_resample, check_is_temp, normalize_window
from ..timing import Timer
from . import _remask

REMASKING = ("low_confidence", "random")
LLADA_MASK_ID, LLADA_EOS_ID, LLADA_EOT_ID = 126336, 126081, 126348


@dataclass
class GenerateOutput:
    """Tokens [B, P + gen_length] (prompt first) and counters; the timings (seconds) only
    with ``timing=True`` (0 otherwise)."""

    tokens: torch.Tensor
    steps: int = 0
    model_calls: int = 0
    time_model: float = 0.0
    time_sampling: float = 0.0


def model_logits(model, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``model(x, attention_mask=...).logits`` for Hugging Face models, ``model(x)`` for
    plain callables (attention_mask passed only when given)."""
    with torch.no_grad():
        out = model(x) if attention_mask is None else model(x, attention_mask=attention_mask)
    logits = getattr(out, "logits", out)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(x.shape):
        raise ValueError(f"model must return logits [B, L, V] for input {tuple(x.shape)}, "
                         f"got {getattr(logits, 'shape', type(logits).__name__)}")
    return logits


def region_logits(logits: torch.Tensor, lo: int, end: int, shift: bool) -> torch.Tensor:
    """The logits that predict positions [lo, end): a view, or for Dream-style models the
    rows one position earlier (position 0 predicts itself)."""
    if not shift:
        return logits[:, lo:end]
    if lo >= 1:
        return logits[:, lo - 1:end - 1]
    return torch.cat([logits[:, :1], logits[:, : end - 1]], dim=1)


def transfer_counts(n_masked: torch.Tensor, steps: int) -> torch.Tensor:
    """LLaDA's schedule [B, steps]: n_masked // steps per step, the remainder to the first steps."""
    base, rem = n_masked // steps, n_masked % steps
    return base[:, None] + (torch.arange(steps, device=n_masked.device)[None] < rem[:, None]).long()


def check_prompt(prompt, attention_mask=None) -> torch.Tensor:
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2:
        got = getattr(prompt, "shape", type(prompt).__name__)
        raise TypeError(f"prompt must be an integer tensor [B, P], got {got}")
    if prompt.is_floating_point() or prompt.is_complex() or prompt.dtype == torch.bool:
        raise TypeError(f"prompt must hold integer token ids, got {prompt.dtype}")
    if bool((prompt < 0).any()):
        raise ValueError("prompt holds a negative token id")
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != prompt.shape:
            raise ValueError(f"attention_mask must be a tensor of the prompt's shape {tuple(prompt.shape)}, "
                             f"got {getattr(attention_mask, 'shape', type(attention_mask).__name__)}")
        if attention_mask.device != prompt.device:
            raise ValueError(f"attention_mask is on {attention_mask.device} but prompt is on {prompt.device}")
    return prompt.to(torch.int64)


def _check_args(gen_length, block_length, steps, temperature, cfg_scale, remasking, threshold, factor, rank_dtype):
    for name, v in (("gen_length", gen_length), ("block_length", block_length), ("steps", steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if gen_length % block_length:
        raise ValueError(f"gen_length = {gen_length} must be a multiple of block_length = {block_length}")
    n_blocks = gen_length // block_length
    if steps % n_blocks:
        raise ValueError(f"steps = {steps} must be a multiple of the number of blocks ({n_blocks})")
    if not temperature >= 0 or temperature == float("inf"):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    if not cfg_scale >= 0 or cfg_scale == float("inf"):
        raise ValueError(f"cfg_scale must be finite and >= 0, got {cfg_scale}")
    if remasking not in REMASKING:
        raise ValueError(f"remasking must be one of {REMASKING}, got {remasking!r}")
    if threshold is not None and factor is not None:
        raise ValueError("pass threshold= or factor=, not both")
    if threshold is not None and not threshold == threshold:
        raise ValueError("threshold must be a number, not NaN")
    if factor is not None and not factor == factor:
        raise ValueError("factor must be a number, not NaN")
    _remask.check_rank_dtype(rank_dtype)
    return n_blocks, steps // n_blocks


class _PrefixEnergy:
    """Scores region candidates as whole sequences: prefix (everything before the region) + region."""

    def __init__(self, energy, prefix: torch.Tensor, k: int):
        self.energy, self.prefix = energy, prefix.repeat_interleave(k, dim=0)

    def __call__(self, candidates, x_t, *, log_q, mask_id):  # (all B * k candidates at once)
        return self.energy(torch.cat([self.prefix, candidates], 1), torch.cat([self.prefix, x_t], 1), log_q=log_q,
                           mask_id=mask_id)


def generate(model, prompt: torch.Tensor, attention_mask: torch.Tensor | None = None, steps: int = 128,
             gen_length: int = 128, block_length: int = 128, temperature: float = 0.0, cfg_scale: float = 0.0,
             remasking: str = "low_confidence", mask_id: int = LLADA_MASK_ID, logits_eos_inf: bool = False,
             confidence_eos_eot_inf: bool = False, *, threshold: float | None = None, factor: float | None = None,
             shift_logits: bool = False, energy=None, k: int = 1, is_steps: int | None = None,
             window=None, is_start: float | None = None, is_end: float | None = None, is_temp: float = 1.0,
             rank_dtype: str = "float32", eos_id: int = LLADA_EOS_ID, eot_id: int = LLADA_EOT_ID,
             generator: torch.Generator | None = None, seed: int | None = None, return_dict: bool = False,
             timing: bool = False):
    """LLaDA's block-wise semi-autoregressive generation (see the module docstring).

    Args:
        model: a Hugging Face model (``model(ids, attention_mask=...).logits``) or a
            callable ``ids [B, L] -> logits [B, L, V]``; bidirectional over the sequence.
        prompt: [B, P] token ids, any integer dtype; may contain ``mask_id``.
        attention_mask: [B, P] (1 = token, 0 = left padding), or None.
        steps, gen_length, block_length: LLaDA's (steps a multiple of the number of
            blocks, gen_length a multiple of block_length).
        temperature: of the draws (0 = greedy). cfg_scale: classifier-free guidance.
        remasking: "low_confidence" or "random". mask_id: the [MASK] id (LLaDA: 126336).
        logits_eos_inf, confidence_eos_eot_inf: LLaDA's EOS / EoT options, with the ids
            ``eos_id`` / ``eot_id`` (LLaDA's 126081 / 126348).
        threshold: Fast-dLLM's parallel decoding: commit the most confident masked
            position and every other with confidence >= threshold; each block then runs
            until it is done. factor: Fast-dLLM's dynamic rule (see
            :func:`edlm_ext.integrations._remask.factor_counts`).
        shift_logits: Dream-style models (position i predicted by the logits at i - 1).
        energy, k, is_steps: EDLM importance sampling: k proposals per row, scored by
            the energy (as in :func:`edlm_ext.propose_and_resample`) on the sequence
            up to the block's end, at the first ``is_steps`` steps of each block (None:
            every step). Needs temperature > 0.
        window, is_start, is_end: instead of ``is_steps``, where in time to
            importance-sample, as in :func:`edlm_ext.sample` (a number w: t >= 1 - w; a
            pair (t_lo, t_hi); or the public EDLM code's is_start / is_end). A step's t
            is the fraction of the block still masked before it (mean over rows), so
            t runs from 1 toward 0 within each block.
        is_temp: the energy temperature, log w = -E / is_temp (as in :func:`edlm_ext.sample`).
        rank_dtype: "float32" (default), "model" (LLaDA's ranking: softmax in the
            logits' dtype, ``torch.topk``) or "float64" (Fast-dLLM's: softmax in float64).
        generator / seed: the random stream (edlm_ext._rng: ``seed`` draws the same on CPU
            and CUDA; neither: a fresh seed); not both.
        return_dict: return a :class:`GenerateOutput` instead of the tokens.
        timing: measure ``time_model`` / ``time_sampling`` (on CUDA this synchronizes
            around each part; off by default).

    Returns:
        tokens [B, P + gen_length] int64 (LLaDA's return value), or a
        :class:`GenerateOutput` with ``return_dict=True``. Positions that LLaDA leaves
        masked stay masked (only possible with [MASK] in the prompt).
    """
    out = run_blockwise(model, prompt, attention_mask, steps=steps, gen_length=gen_length,
                        block_length=block_length, temperature=temperature, cfg_scale=cfg_scale,
                        remasking=remasking, mask_id=mask_id, logits_eos_inf=logits_eos_inf,
                        confidence_eos_eot_inf=confidence_eos_eot_inf, threshold=threshold, factor=factor,
                        shift_logits=shift_logits, energy=energy, k=k, is_steps=is_steps, window=window,
                        is_start=is_start, is_end=is_end, is_temp=is_temp, rank_dtype=rank_dtype,
                        eos_id=eos_id, eot_id=eot_id, generator=generator, seed=seed, timing=timing)
    return out if return_dict else out.tokens


def run_blockwise(model, prompt, attention_mask=None, *, steps, gen_length, block_length, temperature=0.0,
                  cfg_scale=0.0, remasking="low_confidence", mask_id=LLADA_MASK_ID, logits_eos_inf=False,
                  confidence_eos_eot_inf=False, threshold=None, factor=None, shift_logits=False, energy=None, k=1,
                  is_steps=None, window=None, is_start=None, is_end=None, is_temp=1.0, rank_dtype="float32",
                  eos_id=LLADA_EOS_ID, eot_id=LLADA_EOT_ID, generator=None, seed=None,
                  timing=False) -> GenerateOutput:
    """The loop behind :func:`generate` and :func:`edlm_ext.integrations.fast_dllm.generate`."""
    prompt = check_prompt(prompt, attention_mask)
    n_blocks, steps_per_block = _check_args(gen_length, block_length, steps, temperature, cfg_scale, remasking,
                                            threshold, factor, rank_dtype)
    is_temp = check_is_temp(is_temp, "generate")
    win = None
    if window is not None or is_start is not None or is_end is not None:
        if is_steps is not None:
            raise ValueError("pass is_steps= or window= / is_start= / is_end=, not both")
        win = normalize_window(0.0 if window is None else window, is_start, is_end)
    if isinstance(mask_id, bool) or not isinstance(mask_id, int) or mask_id < 0:
        raise ValueError(f"mask_id must be an int >= 0, got {mask_id!r}")
    use_is = energy is not None and k > 1
    if use_is and temperature == 0:
        raise ValueError("importance sampling (energy with k > 1) needs temperature > 0")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if isinstance(vocab, int) and prompt.numel() and int(prompt.max()) >= vocab:
        raise ValueError(f"prompt holds token id {int(prompt.max())}, outside the model's vocabulary [0, {vocab})")
    device = prompt.device
    stream = RandomStream(device, generator, seed)
    timer = Timer(device, enabled=timing)
    B, P = prompt.shape
    L = P + gen_length
    x = torch.cat([prompt, torch.full((B, gen_length), mask_id, dtype=torch.long, device=device)], dim=1)
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask, torch.ones((B, gen_length), dtype=attention_mask.dtype,
                                                               device=device)], dim=-1)
    prompt_index = x != mask_id
    parallel = threshold is not None or factor is not None
    out = GenerateOutput(tokens=x)
    step = _Step(mask_id, temperature, remasking, logits_eos_inf, confidence_eos_eot_inf, eos_id, eot_id,
                 rank_dtype, stream, L)
    for blk in range(n_blocks):
        start, end = P + blk * block_length, P + (blk + 1) * block_length
        counts = None if parallel else transfer_counts((x[:, start:end] == mask_id).sum(1), steps_per_block)
        i = 0
        while True:
            if parallel:
                if not bool((x[:, start:end] == mask_id).any()):
                    break
                n = None
            else:
                if i >= steps_per_block:
                    break
                n = counts[:, i]
                if not bool(n.any()):  # nothing to commit at this step: no model call
                    i += 1
                    continue
            lo = 0 if bool((x[:, :start] == mask_id).any()) else start  # [MASK] in the prompt competes too
            with timer.section("model"):
                logits = _guided_logits(model, x, attention_mask, prompt_index, cfg_scale, mask_id)
                out.model_calls += 1
            with timer.section("sampling"):
                lg = region_logits(logits, lo, end, shift_logits)
                in_window = is_steps is None or i < is_steps
                if use_is and win is not None:
                    t = float((x[:, start:end] == mask_id).double().mean())
                    in_window = win[0] - 1e-12 <= t <= win[1] + 1e-12
                prefix_energy = _PrefixEnergy(energy, x[:, :lo], k) if use_is and in_window else None
                x[:, lo:end] = step(lg, x[:, lo:end], lo, n=n, threshold=threshold, factor=factor,
                                    prefix_energy=prefix_energy, k=k, is_temp=is_temp)
            i += 1
            out.steps += 1
    out.time_model, out.time_sampling = timer.seconds["model"], timer.seconds["sampling"]
    return out


def _guided_logits(model, x, attention_mask, prompt_index, cfg_scale, mask_id):
    if cfg_scale <= 0:
        return model_logits(model, x, attention_mask)
    un_x = x.clone()
    un_x[prompt_index] = mask_id
    am = None if attention_mask is None else torch.cat([attention_mask, attention_mask], dim=0)
    both = model_logits(model, torch.cat([x, un_x], dim=0), am)
    cond, un = torch.chunk(both, 2, dim=0)
    return un + (cfg_scale + 1) * (cond - un)


class _Step:
    """One step on a region: draw x0 at its masked positions, rank, commit."""

    def __init__(self, mask_id, temperature, remasking, eos_inf, eot_inf, eos_id, eot_id, rank_dtype,
                 stream: RandomStream, length):
        self.mask_id, self.temperature, self.remasking = mask_id, temperature, remasking
        self.eos_inf, self.eot_inf, self.eos_id, self.eot_id = eos_inf, eot_inf, eos_id, eot_id
        self.rank_dtype, self.stream, self.length = rank_dtype, stream, length
        self.upstream = rank_dtype != "float32"

    def __call__(self, lg, xr, lo, *, n, threshold, factor, prefix_energy, k, is_temp=1.0):
        V = lg.shape[-1]
        for name, tok, on in (("eos_id", self.eos_id, self.eos_inf), ("eot_id", self.eot_id, self.eot_inf)):
            if on and not 0 <= tok < V:
                raise ValueError(f"{name} = {tok} is outside the vocabulary [0, {V})")
        if not self.mask_id < V:
            raise ValueError(f"mask_id = {self.mask_id} is outside the vocabulary [0, {V})")
        if int(xr.max()) >= V:
            raise ValueError(f"a token id of the sequence is >= the vocabulary size {V}")
        if self.eos_inf:
            lg = lg.clone()
            lg[..., self.eos_id] = float("-inf")
        draw_lg = lg if lg.dtype in (torch.float32, torch.bfloat16, torch.float16) else lg.float()
        if prefix_energy is not None:
            x0, diag = _propose_and_resample(draw_lg, xr, self.mask_id, prefix_energy, k, self.temperature,
                                             self.stream, energy_chunk=None, check=True, is_temp=is_temp)
            logp = diag.logp
        else:
            x0, logp = masked_sample(draw_lg, xr, self.mask_id, temperature=self.temperature, **self.stream.next())
        cand = xr == self.mask_id
        conf = self._confidence(lg, x0, logp, cand)
        up = dict(upstream=self.upstream, lo=lo, length=self.length)
        if threshold is not None:
            if not self.upstream and self.remasking == "low_confidence":
                conf = _remask.float64_confidence(lg, x0, self.mask_id,
                                                  _remask.near_threshold(conf, cand, threshold), conf)
            return _remask.select_threshold(xr, x0, conf, cand, self.mask_id, threshold, **up)
        if factor is not None:
            n = _remask.factor_counts(conf, cand, factor)
        return _remask.select_count(xr, x0, conf, cand, self.mask_id, n, **up)

    def _confidence(self, lg, x0, logp, cand):
        if self.remasking == "random":
            return self.stream.rand(x0.shape)
        drop = self.eot_id if self.eot_inf else None
        if self.upstream:
            dtype = torch.float64 if self.rank_dtype == "float64" else lg.dtype
            return _remask.upstream_softmax_confidence(lg, x0, dtype, drop)
        if self.temperature not in (0.0, 1.0):  # the kernel's logp is tempered: recompute P(x0) at T = 1
            lf = lg.float().clone()
            lf[..., self.mask_id] = float("-inf")
            if drop is not None:
                lf[..., drop] = float("-inf")
            return (lf.gather(-1, x0.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(lf, dim=-1)).exp()
        conf = logp.exp()
        if drop is not None:  # LLaDA drops EoT from the confidence softmax: p / (1 - p_EoT), 0 for EoT
            l_x0 = lg.gather(-1, x0.unsqueeze(-1)).squeeze(-1).float()
            p_eot = (lg[..., drop].float() - l_x0 + logp).exp()
            conf = torch.where(x0 == drop, torch.zeros_like(conf), conf / (1 - p_eot).clamp_min(1e-30))
        return torch.where(cand, conf, torch.zeros_like(conf))
