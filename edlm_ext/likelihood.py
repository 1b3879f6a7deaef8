"""Test-set likelihood bounds: MDLM's and EDLM's (the likelihood side of the EDLM paper,
its Theorem 1), with EDLM's partition function estimated by importance sampling.

The T-step bound (discrete-time ELBO of the log-linear schedule on the grid
t_n = 1 - n / T, n = 0..T, the last step unmasking everything): for any denoiser μ of
the masked tokens given x_t,

    -log p(x) <= Σ_n E[ -log μ_{N_n}(x_{N_n} | x_{t_n}) ],

x_t masking each position with probability t (nested in t: position i is masked at t
iff u_i < t, one uniform u_i per position, so one draw of u gives every step's x_t),
N_n the positions masked at t_n and not at t_{n+1}, μ_N the denoiser's law of the
tokens at N. For MDLM (factorized) that is Σ_{i in N} -log p_θ(x_i | x_t). EDLM's
denoiser is the joint μ(y | x_t) = p_θ(y | x_t) exp(-E(y, x_t)) / Z(x_t); its marginal
on N is

    -log μ_N(x_N | x_t) = -log p_θ(x_N | x_t) - log E_{y ~ p_θ}[exp(-E((x_N, y_rest), x_t))]
                          + log Z(x_t),   Z(x_t) = E_{y ~ p_θ}[exp(-E(y, x_t))],

both expectations estimated with k draws from the denoiser (``sample_proposals``): the
estimate of log Z is biased low by Jensen (so that term under-states the bound) and the
other one biased high; both biases vanish as O(1/k). For EDLM-AR the exact bound is the
AR model's own NLL for every x (μ_N = p_AR(x_s's tokens) / p_AR(x_t's tokens): the sum
telescopes), whatever the denoiser: what the estimate then measures is how well k
denoiser draws estimate the AR marginals. Plugging the joint log-likelihood of all
masked tokens into MDLM's continuous-time weight, ∫ (1/t) E[-log μ(x_M | x_t)] dt, is
*not* a bound for a joint μ (tests/test_likelihood.py: below the entropy of a 2-token
joint); the marginal on the newly unmasked tokens is what makes the ELBO valid. (The
paper's exact statement of its Theorem 1 could not be checked from the sources
available here; this module derives its own bound.)

``likelihood_bounds`` returns per-sequence nats and, with ``reps`` >= 2 independent
importance-sampling replicates on the same masks, the variance the IS draws alone add
to a sequence's estimate; :func:`mdlm_continuous_nelbo` is the continuous-time MDLM
bound (the training objective, edlm_ext.train).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._rng import RandomStream
from .ops import sample_proposals


def _log_probs(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """log softmax over the non-[MASK] tokens ('subs': [MASK] is never a clean token), float32."""
    lg = logits.float().clone()
    lg[..., mask_id] = float("-inf")
    return F.log_softmax(lg, dim=-1)


def _log_mean_exp(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def _energy(energy, cand: torch.Tensor, x_t: torch.Tensor, log_q: torch.Tensor, mask_id: int,
            chunk: int | None) -> torch.Tensor:
    n = cand.shape[0]
    step = n if not chunk else max(1, int(chunk))
    out = [energy(cand[a:a + step], x_t[a:a + step], log_q=log_q[a:a + step], mask_id=mask_id).double()
           for a in range(0, n, step)]
    return torch.cat(out) if len(out) > 1 else out[0]


def _log_is(energy, logits, x_draw, x_t, extra_log_q, mask_id, k, stream, chunk) -> torch.Tensor:
    """log (1/k) Σ_j exp(-E(c_j, x_t)) [B], c_j = x_draw with its masked positions drawn from
    the logits (k draws); log_q handed to the energy = the draws' log q + extra_log_q (the
    fixed tokens' log q, so that log_q covers every position masked in x_t)."""
    B, L = x_draw.shape
    props, logp = sample_proposals(logits, x_draw, mask_id, k, check=False, _per_position=True, **stream.next())
    log_q = logp.sum(-1, dtype=torch.float64) + extra_log_q.unsqueeze(1)  # [B, k]
    x_rep = x_t.unsqueeze(1).expand(B, k, L).reshape(B * k, L)
    e = _energy(energy, props.reshape(B * k, L), x_rep, log_q.reshape(B * k), mask_id, chunk)
    return _log_mean_exp(-e.view(B, k), 1)


def _edlm_term(q_new: torch.Tensor, log_num: torch.Tensor, log_z: torch.Tensor) -> torch.Tensor:
    """-log μ_N(x_N | x_t) = -log p_θ(x_N | x_t) - log E[exp(-E((x_N, y)))] + log Z(x_t), estimated."""
    return -q_new - log_num + log_z


@torch.no_grad()
def likelihood_bounds(denoiser, x0: torch.Tensor, mask_id: int, *, steps: int, energy=None, k: int = 8,
                      reps: int = 2, seed: int = 0, energy_chunk: int | None = None) -> dict:
    """T-step bounds on -log p(x0) (nats per sequence) for MDLM and, with an energy, EDLM.

    Args:
        denoiser: ``(x_t [B, L], t [B]) -> logits [B, L, V]`` ('subs').
        x0: [B, L] int64 test sequences (no [MASK]).
        steps: T, the grid's steps (the bound of a T-step sampler).
        energy: an EDLM energy (the protocol of edlm_ext.energy.Energy) or None.
        k: importance-sampling draws per expectation (two expectations per step).
        reps: independent IS replicates per step on the same masks (>= 2 reports the
            variance of the IS draws alone).
        seed: the masks' uniforms and the draws (edlm_ext._rng).

    Returns:
        ``mdlm`` [B] float64; with an energy also ``edlm`` [B] (the mean over the
        replicates), ``edlm_reps`` [reps, B] and ``edlm_is_var`` [B] (the IS variance of
        one replicate's per-sequence estimate, from the spread of the replicates; NaN
        for reps = 1).
    """
    if x0.dim() != 2 or x0.dtype != torch.long:
        raise ValueError(f"x0 must be [B, L] int64, got {tuple(x0.shape)} {x0.dtype}")
    if bool((x0 == mask_id).any()):
        raise ValueError("x0 must not contain mask_id")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if energy is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be an int >= 1, got {reps!r}")
    B, L = x0.shape
    dev = x0.device
    stream = RandomStream(dev, None, seed)
    u = stream.rand((B, L), dtype=torch.float64).to(dev)  # position i masked at time t iff u_i < t
    mdlm = torch.zeros(B, dtype=torch.float64, device=dev)
    edlm = torch.zeros(reps, B, dtype=torch.float64, device=dev)
    for n in range(steps):
        t, s = 1.0 - n / steps, 1.0 - (n + 1) / steps
        masked = u < t
        new = masked & (u >= s)
        if not bool(new.any()):
            continue
        x_t = torch.where(masked, mask_id, x0)
        logits = denoiser(x_t, torch.full((B,), t, device=dev))
        lp = _log_probs(logits, mask_id).gather(-1, x0.unsqueeze(-1)).squeeze(-1).double()  # [B, L]
        q_new = (lp * new).sum(-1)
        mdlm -= q_new
        if energy is None:
            continue
        x_s = torch.where(new, x0, x_t)
        draw_lg = logits if logits.dtype in (torch.float32, torch.bfloat16, torch.float16) else logits.float()
        for r in range(reps):
            log_num = _log_is(energy, draw_lg, x_s, x_t, q_new, mask_id, k, stream, energy_chunk)
            log_z = _log_is(energy, draw_lg, x_t, x_t, torch.zeros_like(q_new), mask_id, k, stream, energy_chunk)
            term = _edlm_term(q_new, log_num, log_z)
            edlm[r] += torch.where(new.any(-1), term, torch.zeros_like(term))
    out = {"mdlm": mdlm}
    if energy is not None:
        out["edlm"] = edlm.mean(0)
        out["edlm_reps"] = edlm
        out["edlm_is_var"] = edlm.var(0, unbiased=True) if reps > 1 else torch.full_like(mdlm, float("nan"))
    return out


@torch.no_grad()
def mdlm_continuous_nelbo(denoiser, x0: torch.Tensor, mask_id: int, *, n_t: int = 8, seed: int = 0) -> torch.Tensor:
    """MDLM's continuous-time bound ∫_0^1 (1/t) E[Σ_{masked} -log p_θ(x_i | x_t)] dt per
    sequence (nats), with n_t stratified times per sequence (t_j ∈ ((j + v) / n_t), one v
    per sequence)."""
    B, L = x0.shape
    stream = RandomStream(x0.device, None, seed)
    v = stream.rand((B,), dtype=torch.float64).to(x0.device)
    total = torch.zeros(B, dtype=torch.float64, device=x0.device)
    for j in range(n_t):
        t = ((j + v) / n_t).clamp_min(1e-6)
        masked = stream.rand((B, L), dtype=torch.float64).to(x0.device) < t.unsqueeze(1)
        x_t = torch.where(masked, mask_id, x0)
        lp = _log_probs(denoiser(x_t, t.float()), mask_id).gather(-1, x0.unsqueeze(-1)).squeeze(-1).double()
        total += (-(lp * masked).sum(-1) / t) / n_t
    return total
