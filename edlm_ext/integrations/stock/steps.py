"""Single sampling steps as the PyTorch code users run today writes them: the baselines
the benchmarks put beside edlm_ext's ops (python/bench/), re-implemented from the
published code they describe. Like the rest of ``stock``, nothing here uses edlm_ext:
each function is plain PyTorch, inexact where its original is (float32 noise), and slow
on purpose where its original is (float64 tensors of size B·L·V).

* masked_sample: :func:`mdlm_step` (MDLM's ancestral step, float64 Gumbel),
  :func:`llada_step` (LLaDA's float64 Gumbel + confidence), :func:`gumbel_max_fp32`
  (float32 Gumbel-max, what torch.compile is handed), :func:`multinomial_step` (float32
  softmax, then ``torch.multinomial``);
* sample_proposals: :func:`repeat_then_step` (the public EDLM code: tile the batch k
  times, then one MDLM step);
* importance_resample: :func:`resample` (logsumexp, multinomial, gather);
* unmask: :func:`posterior` (MDLM: ``torch.rand < p``);
* unmask_confident: :func:`top_n` (LLaDA: ``topk`` + ``scatter``), :func:`threshold_select`
  (Fast-dLLM: above the threshold, else the row's most confident).
"""
from __future__ import annotations

import torch


def mdlm_step(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int, t: float = 1.0, s: float = 0.99,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """One MDLM ancestral step from time t to s, written the way MDLM's code does it.

    Subs parameterization on float32 logits ([MASK] gets -inf, log-probs by
    logsumexp, unmasked rows become one-hot on x_t), p_x0 = exp in float64,
    q_xs = p_x0 (move_t - move_s) with q_xs[MASK] = move_s, the Gumbel draw
    argmax(q_xs / (1e-10 - log(u + 1e-10))) in float64, and copy_flag arithmetic to
    keep unmasked tokens. With the log-linear schedule move_chance(t) = t.
    """
    logits = logits.to(torch.float32, copy=True)
    logits[..., mask_id] = float("-inf")
    log_p_x0 = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    unmasked = x_t != mask_id
    log_p_x0[unmasked] = float("-inf")
    log_p_x0[unmasked, x_t[unmasked]] = 0.0
    p_x0 = log_p_x0.exp().to(torch.float64)
    q_xs = p_x0 * (t - s)
    q_xs[..., mask_id] = s
    u = torch.rand(q_xs.shape, dtype=q_xs.dtype, device=q_xs.device, generator=generator)
    gumbel_norm = 1e-10 - (u + 1e-10).log()
    x_s = (q_xs / gumbel_norm).argmax(dim=-1)
    copy_flag = unmasked.to(x_t.dtype)
    return copy_flag * x_t + (1 - copy_flag) * x_s


def llada_step(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """LLaDA's sampling step: float64 Gumbel noise, argmax, float64 softmax confidence.

    x0 = argmax(exp(logits64) / (-log u) ** T), the confidence of x0 under
    softmax(logits64), both kept at masked positions only (confidence -inf elsewhere).
    As in LLaDA, [MASK] itself is not excluded."""
    logits64 = logits.to(torch.float64)
    noise = torch.rand(logits64.shape, dtype=torch.float64, device=logits.device, generator=generator)
    gumbel_noise = (-torch.log(noise)) ** temperature
    x0 = torch.argmax(logits64.exp() / gumbel_noise, dim=-1)
    p = torch.softmax(logits64, dim=-1)
    x0_p = torch.gather(p, dim=-1, index=x0.unsqueeze(-1)).squeeze(-1)
    masked = x_t == mask_id
    return torch.where(masked, x0, x_t), torch.where(masked, x0_p, float("-inf"))


def gumbel_max_fp32(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int, temperature: float = 1.0) -> torch.Tensor:
    """Float32 Gumbel-max over every token but [MASK] (inexact: float32 uniforms cap the
    noise and under-draw rare tokens); the function the benchmarks hand to torch.compile,
    so it draws from the default generator."""
    x = logits.float() / temperature
    vocab = torch.arange(x.shape[-1], device=x.device)
    x = torch.where(vocab == mask_id, float("-inf"), x)
    gumbel = -torch.log(-torch.log(torch.rand_like(x)))
    return torch.where(x_t == mask_id, torch.argmax(x + gumbel, dim=-1), x_t)


def multinomial_step(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int, temperature: float = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """float32 softmax over every token but [MASK], then torch.multinomial per row (inexact:
    a float32 CDF)."""
    x = logits.float() / temperature
    x[..., mask_id] = float("-inf")
    probs = torch.softmax(x, dim=-1).view(-1, x.shape[-1])
    tok = torch.multinomial(probs, 1, generator=generator).view(x_t.shape)
    return torch.where(x_t == mask_id, tok, x_t)


def repeat_then_step(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int, k: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """k proposals per sequence the way the public EDLM code makes them: the batch tiled
    j·B + b, one MDLM step over B·k rows -> [B, k, L]."""
    B = logits.shape[0]
    rep = logits.repeat(k, 1, 1)
    return mdlm_step(rep, x_t.repeat(k, 1), mask_id, generator=generator).view(k, B, -1).transpose(0, 1)


def resample(log_w: torch.Tensor, proposals: torch.Tensor, generator: torch.Generator | None = None):
    """Normalize + resample + gather the way a PyTorch user writes it ->
    (weights [B, k], log_z [B], ess [B], index [B], chosen [B, L])."""
    log_z = torch.logsumexp(log_w, dim=-1)
    weights = torch.exp(log_w - log_z.unsqueeze(-1))
    ess = 1.0 / (weights**2).sum(-1)
    index = torch.multinomial(weights, 1, generator=generator).squeeze(-1)
    chosen = proposals[torch.arange(proposals.shape[0], device=proposals.device), index]
    return weights, log_z, ess, index, chosen


def posterior(x_t: torch.Tensor, x0: torch.Tensor, mask_id: int, p: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """MDLM's posterior with float32 uniforms: a masked position takes x0 when u < p."""
    u = torch.rand(x_t.shape, generator=generator, device=x_t.device)
    return torch.where((x_t == mask_id) & (u < p), x0, x_t)


def top_n(x_t: torch.Tensor, x0: torch.Tensor, confidence: torch.Tensor, mask_id: int, n: int) -> torch.Tensor:
    """LLaDA's selection (get_num_transfer_tokens / topk), batched for a common n."""
    masked = x_t == mask_id
    conf = torch.where(masked, confidence, float("-inf"))
    index = torch.topk(conf, n, dim=1).indices
    chosen = torch.zeros_like(masked).scatter_(1, index, True)
    return torch.where(chosen & masked, x0, x_t)


def threshold_select(x_t: torch.Tensor, x0: torch.Tensor, confidence: torch.Tensor, mask_id: int,
                     threshold: float) -> torch.Tensor:
    """Fast-dLLM's selection: above the threshold, else the row's most confident one."""
    masked = x_t == mask_id
    chosen = masked & (confidence > threshold)
    best = torch.where(masked, confidence, float("-inf")).argmax(dim=1, keepdim=True)
    none_passed = ~chosen.any(dim=1, keepdim=True) & masked.any(dim=1, keepdim=True)
    chosen = chosen | torch.zeros_like(chosen).scatter_(1, best, none_passed)
    return torch.where(chosen, x0, x_t)
