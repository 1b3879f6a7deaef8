"""MDLM (kuleshov-group/mdlm) integration: exact drop-ins for its sampling functions, a
one-line patch of its ``Diffusion`` module, and a loader for its checkpoints.

* :func:`sample_categorical` replaces ``diffusion._sample_categorical(categorical_probs)``
  (a float32 "probs / exponential noise" argmax): one exact draw per row by a blocked
  inverse CDF (block sums of 1024 weights, then one block), without a full-size noise
  tensor, a log-prob copy or any per-element random number.
* :func:`ddpm_caching_update` replaces the method ``_ddpm_caching_update(x, t, dt,
  p_x0=None)`` and :func:`ddpm_update` the method ``_ddpm_update(x, t, dt)``, as
  functions that take the denoiser and the mask id explicitly. They draw x0 ~ p_x0 at
  masked positions (our kernel, reading only masked rows) and unmask each with
  probability (m_t - m_s) / m_t, m the masking probability (dt / t for the log-linear
  schedule) — MDLM's draw over V + 1 outcomes, in distribution.
* :func:`patch` installs both on an MDLM ``Diffusion`` object (and our
  ``_sample_categorical`` in its module), so ``model._sample()`` runs on edlm_ext.
* :func:`load_mdlm` turns a checkpoint — a Hugging Face directory (``config.json`` +
  ``model.safetensors`` / ``pytorch_model.bin``) or a Lightning ``.ckpt`` of MDLM's
  training runs (EMA weights chosen when present) — into an :class:`MDLMDenoiser`, a
  ``denoiser(x_t, t) -> log-probs`` for :func:`edlm_ext.sample`.

Differences from MDLM's float32 code, all in its favour of exactness: every token is
drawn at its true rate (MDLM's float32 Gumbel under-samples rare tokens, by up to 4x at
its step sizes), and [MASK] is never drawn as x0.
"""
from __future__ import annotations

import functools
import os
import sys

import torch

from .._rng import RandomStream
from ..ops import masked_sample, unmask
from . import mdlm_checkpoint as _ckpt
from .mdlm_dit import DiT, MDLMConfig, MDLMDenoiser

__all__ = ["sample_categorical", "ddpm_caching_update", "ddpm_update", "patch", "load_mdlm", "save_mdlm",
           "MDLMConfig", "MDLMDenoiser", "DiT", "loglinear_sigma"]

_BLOCK = 1024  # weights summed per block by sample_categorical
# MDLM's loop reads t from a float32 linspace and dt = (1 - eps) / steps as a float; with eps = 0
# the last t lies up to ~1e-9 below dt. A dt above t by less than this counts as dt = t.
_DT_SLACK = 1e-6


# --------------------------------------------------------------------------- sample_categorical


def sample_categorical(categorical_probs: torch.Tensor, *, generator: torch.Generator | None = None,
                       seed: int | None = None) -> torch.Tensor:
    """Drop-in for MDLM's ``_sample_categorical``: one exact draw per row.

    Inverse CDF in token order: block sums of 1024 weights (float32 for float32
    input, float64 for float64), a float64 uniform picks the block, float64 prefix
    sums inside it pick the token. Each token is drawn with its probability to the
    input's relative precision, however small it is; zero weights are never drawn.
    The cost is one read of the weights plus one 1024-weight block per row.

    Args:
        categorical_probs: [..., V] non-negative, possibly unnormalized weights
            (float32, float64, bfloat16 or float16). As in MDLM, a negative weight
            (e.g. a rounding error of ``t - dt``) counts as zero. A row needs a
            positive weight; NaN or inf is an error.
        generator / seed: the random stream (one float64 uniform per row, ``torch.rand``
            of the generator; ``seed``: the same draws on CPU and CUDA, edlm_ext._rng).

    Returns:
        int64 indices [...] with P(index = v) = w_v / sum(w) for every v.
    """
    device = categorical_probs.device if isinstance(categorical_probs, torch.Tensor) else "cpu"
    return _sample_categorical(categorical_probs, RandomStream(device, generator, seed))


def _sample_categorical(categorical_probs: torch.Tensor, stream: RandomStream) -> torch.Tensor:
    """sample_categorical on a stream."""
    if not isinstance(categorical_probs, torch.Tensor):
        raise TypeError(f"categorical_probs must be a torch.Tensor, got {type(categorical_probs).__name__}")
    if not categorical_probs.is_floating_point():
        raise TypeError(f"categorical_probs must be floating point, got {categorical_probs.dtype}")
    if categorical_probs.dim() < 1 or categorical_probs.shape[-1] == 0:
        raise ValueError(f"categorical_probs must be [..., V] with V >= 1, got {tuple(categorical_probs.shape)}")
    lead, V = categorical_probs.shape[:-1], categorical_probs.shape[-1]
    rows = categorical_probs.reshape(-1, V)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    N, device = rows.shape[0], rows.device
    if N == 0:
        return torch.empty(lead, dtype=torch.int64, device=device)
    if bool((rows.amin(dim=-1) < 0).any()):
        rows = rows.clamp(min=0)
    acc = torch.float64 if rows.dtype == torch.float64 else torch.float32
    n_full = V // _BLOCK
    parts = [rows[:, : n_full * _BLOCK].view(N, n_full, _BLOCK).sum(-1, dtype=acc)] if n_full else []
    if V % _BLOCK:
        parts.append(rows[:, n_full * _BLOCK:].sum(-1, keepdim=True, dtype=acc))
    mass = torch.cat(parts, dim=1).to(torch.float64) if len(parts) > 1 else parts[0].to(torch.float64)
    cum = mass.cumsum(-1)
    total = cum[:, -1]
    good = torch.isfinite(total) & (total > 0)
    if not bool(good.all()):
        r = int((~good).nonzero()[0, 0])
        what = ("contains NaN" if bool(torch.isnan(rows[r]).any()) else
                "contains inf or sums to inf" if not bool(torch.isfinite(total[r])) else "has no positive weight")
        raise ValueError(f"sample_categorical: row {r} of categorical_probs {what}")
    u = stream.rand(N, torch.float64)
    target = u * total
    blk = _first_above(cum, target, mass)
    mass_b = mass.gather(1, blk[:, None]).squeeze(1)
    before = cum.gather(1, blk[:, None]).squeeze(1) - mass_b
    start = blk * _BLOCK
    cols = start[:, None] + torch.arange(min(_BLOCK, V), device=device)
    w = rows.gather(1, cols.clamp(max=V - 1)).to(torch.float64) * (cols < V)
    inner = w.cumsum(-1)
    frac = ((target - before) / mass_b).clamp(0.0, 1.0)
    j = _first_above(inner, frac * inner[:, -1], w)
    return (start + j).reshape(lead)


def _first_above(cdf: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per row, the first index whose cumulative weight exceeds target, moved to the
    last positive-weight index when rounding lands past the end or on a zero weight."""
    n = cdf.shape[1]
    idx = torch.searchsorted(cdf, target[:, None], right=True).squeeze(1).clamp(max=n - 1)
    positive = weight > 0
    last = n - 1 - torch.argmax(positive.flip(-1).to(torch.int8), dim=-1)
    return torch.where(positive.gather(1, idx[:, None]).squeeze(1), idx, last)


# --------------------------------------------------------------------------- the DDPM updates


def _as_row_times(x: torch.Tensor, value, name: str) -> torch.Tensor:
    """t or dt as a float64 tensor [B] (MDLM passes [B, 1] tensors or floats)."""
    v = torch.as_tensor(value, dtype=torch.float64, device=x.device)
    if v.dim() == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.dim() == 0:
        v = v.expand(x.shape[0])
    if v.shape != (x.shape[0],):
        raise ValueError(f"{name} must be a float, [B] or [B, 1] with B = {x.shape[0]}, got {tuple(v.shape)}")
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} must be finite")
    return v


def _check_times(x: torch.Tensor, t, dt) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.int64 or x.dim() != 2:
        raise TypeError("x must be an int64 tensor [B, L]")
    t, dt = _as_row_times(x, t, "t"), _as_row_times(x, dt, "dt")
    if bool(((t <= 0) | (t > 1) | (dt < 0) | (dt > t + _DT_SLACK)).any()):
        raise ValueError("need 0 < t <= 1 and 0 <= dt <= t (dt may exceed t by a float32 rounding error)")
    return t, dt


def _log_probs_of(p_x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p_x0, computed once per cache tensor: it rides on the tensor (with the tensor's
    version counter, so an in-place change of p_x0 is noticed) for the next cached call."""
    if p_x0.dim() != 3 or p_x0.shape[:2] != x.shape:
        raise ValueError(f"p_x0 must be [B, L, V] with [B, L] = {tuple(x.shape)}, got {tuple(p_x0.shape)}")
    if getattr(p_x0, "_edlm_is_log", False):  # a cache made with probs=False holds log-probs
        return p_x0
    memo = getattr(p_x0, "_edlm_log_p", None)
    if memo is not None and memo[1] == p_x0._version:
        return memo[0]
    log_p = p_x0.float().log()
    p_x0._edlm_log_p = (log_p, p_x0._version)
    return log_p


def ddpm_caching_update(denoiser, x: torch.Tensor, t, dt, p_x0: torch.Tensor | None = None, *, mask_id: int,
                        generator: torch.Generator | None = None, seed: int | None = None, probs: bool = True):
    """Drop-in for MDLM's ``_ddpm_caching_update(x, t, dt, p_x0=None)`` (log-linear schedule).

    Args:
        denoiser: ``denoiser(x [B, L], t [B]) -> log-probs [B, L, V]`` (an
            :class:`MDLMDenoiser` or any 'subs' denoiser); called only when ``p_x0`` is None.
        x: [B, L] int64, ``mask_id`` at masked positions.
        t, dt: current time and step (floats, [B] or [B, 1]); the masking probability
            is t, so a masked position unmasks with probability dt / t. As in MDLM's
            loop, dt may exceed t by a float32 rounding error (its last step with
            eps = 0): then every masked position unmasks.
        p_x0: the cache returned by the previous call, or None.
        mask_id: the [MASK] id (MDLM's ``mask_index``).
        generator / seed: the random stream (``seed`` draws the same on CPU and CUDA).
        probs: True: the cache is ``exp`` of the denoiser's output, MDLM's p_x0. False:
            the cache is the denoiser's output itself (log-probs), which saves a pass over
            the vocabulary; MDLM's loop only passes the cache back, so :func:`patch` uses this.

    Returns:
        (p_x0, x_next): the cache to pass back while x does not change, as MDLM's loop
        does (with ``probs``, its log is kept with it, so a cached call reads the
        vocabulary once, in our kernel), and the next sequence; unmasked positions never
        change and [MASK] is never drawn.
    """
    return _caching_update(denoiser, x, t, dt, p_x0, mask_id, RandomStream(x.device, generator, seed), probs)


def _caching_update(denoiser, x, t, dt, p_x0, mask_id: int, stream: RandomStream, probs: bool):
    """ddpm_caching_update on a stream."""
    t, dt = _check_times(x, t, dt)
    if p_x0 is None:
        log_p = denoiser(x, t.to(torch.float32)).float()
        if probs:
            p_x0 = log_p.exp()
            p_x0._edlm_log_p = (log_p, p_x0._version)
        else:
            p_x0 = log_p
            p_x0._edlm_is_log = True  # (a flag, not a self-reference: no cycle keeps the tensor alive)
    else:
        log_p = _log_probs_of(p_x0, x)
    x0, _ = masked_sample(log_p, x, mask_id, **stream.next())
    return p_x0, unmask(x, x0, mask_id, (dt / t).clamp(max=1.0), **stream.next())


def loglinear_sigma(t: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """MDLM's log-linear noise: sigma(t) = -log1p(-(1 - eps) t), masking probability (1 - eps) t."""
    return -torch.log1p(-(1 - eps) * t)


def ddpm_update(denoiser, x: torch.Tensor, t, dt, *, mask_id: int, noise=None,
                generator: torch.Generator | None = None, seed: int | None = None) -> torch.Tensor:
    """Drop-in for MDLM's ``_ddpm_update(x, t, dt)``: one step without a cache.

    A masked position unmasks with probability (m_t - m_s) / m_t, where m = 1 - exp(-sigma)
    is the masking probability at t and at s = t - dt, and takes x0 ~ p_x0 then.

    Args:
        denoiser, x, mask_id, generator, seed: as in :func:`ddpm_caching_update`.
        t, dt: floats, [B] or [B, 1].
        noise: ``sigma(t)`` as MDLM's noise schedules compute it (a callable of a
            float64 tensor [B]; a ``(sigma, dsigma)`` tuple is accepted, as MDLM's noise
            modules return). Default: MDLM's log-linear schedule (eps = 1e-3), for which
            the probability is dt / t.

    Returns:
        x_next [B, L] int64.
    """
    return _update(denoiser, x, t, dt, mask_id, noise, RandomStream(x.device, generator, seed))


def _update(denoiser, x, t, dt, mask_id: int, noise, stream: RandomStream) -> torch.Tensor:
    """ddpm_update on a stream."""
    t, dt = _check_times(x, t, dt)

    def masking(at: torch.Tensor) -> torch.Tensor:
        sigma = loglinear_sigma(at) if noise is None else noise(at)
        sigma = sigma[0] if isinstance(sigma, (tuple, list)) else sigma
        return -torch.expm1(-torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1))

    m_t, m_s = masking(t), masking(t - dt)
    if not bool((m_t > 0).all()):
        raise ValueError("the masking probability at t must be positive")
    log_p = denoiser(x, t.to(torch.float32)).float()
    x0, _ = masked_sample(log_p, x, mask_id, **stream.next())
    return unmask(x, x0, mask_id, ((m_t - m_s) / m_t).clamp(0.0, 1.0), **stream.next())


# --------------------------------------------------------------------------- patching MDLM's module


def patch(diffusion, *, generator: torch.Generator | None = None, seed: int | None = None,
          sample_categorical_too: bool = True):
    """Make an MDLM ``Diffusion`` object sample with edlm_ext, in one line.

    Replaces, on this object, ``_ddpm_caching_update`` and ``_ddpm_update`` by
    :func:`ddpm_caching_update` / :func:`ddpm_update` (denoiser ``forward(x,
    noise(t))``, mask id ``mask_index``, noise ``noise``; the cache the loop passes back
    holds log-probabilities, ``probs=False``), and with
    ``sample_categorical_too`` the module function ``_sample_categorical`` of the
    object's class module (used by its analytic sampler) by :func:`sample_categorical`;
    that one affects every object of the module. ``diffusion._sample()`` then runs its
    own loop on edlm_ext's draws. Returns the object.

    Args:
        diffusion: an object with MDLM's ``forward(x, sigma)``, ``noise(t) -> (sigma,
            dsigma)`` and ``mask_index`` (kuleshov-group/mdlm's ``diffusion.Diffusion``).
        generator / seed: one random stream for every patched call (default: a fresh
            seed), on the device of the object's first parameter; ``seed`` draws the same
            on CPU and CUDA.
    """
    for name in ("forward", "noise", "mask_index"):
        if not hasattr(diffusion, name):
            raise TypeError(f"patch needs MDLM's Diffusion (forward, noise, mask_index); {name!r} is missing")
    params = list(diffusion.parameters()) if hasattr(diffusion, "parameters") else []
    device = params[0].device if params else torch.device("cpu")
    stream = RandomStream(device, generator, seed)

    def sigma(t):
        out = diffusion.noise(t)
        return out[0] if isinstance(out, (tuple, list)) else out

    def denoiser(x, t):
        return diffusion.forward(x, sigma(t))

    mask_id = int(diffusion.mask_index)
    diffusion._ddpm_caching_update = functools.partial(_caching_method, denoiser, mask_id, stream)
    diffusion._ddpm_update = functools.partial(_update_method, denoiser, mask_id, stream, sigma)
    if sample_categorical_too:
        module = sys.modules.get(type(diffusion).__module__)
        if module is not None and hasattr(module, "_sample_categorical"):
            module._sample_categorical = functools.partial(_sample_categorical, stream=stream)
    return diffusion


def _caching_method(denoiser, mask_id, stream, x, t, dt, p_x0=None):
    return _caching_update(denoiser, x, t, dt, p_x0, mask_id, stream, probs=False)


def _update_method(denoiser, mask_id, stream, sigma, x, t, dt):
    return _update(denoiser, x, t, dt, mask_id, sigma, stream)


# --------------------------------------------------------------------------- checkpoints


def save_mdlm(denoiser: MDLMDenoiser, path: str | os.PathLike) -> None:
    """Write ``config.json`` + ``model.safetensors`` in MDLM's Hugging Face layout."""
    _ckpt.save_hf_dir(denoiser.config, denoiser.backbone.state_dict(), path)


def load_mdlm(path: str | os.PathLike, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
              noise_eps: float = 1e-3, ema: bool | None = None, config: dict | str | os.PathLike | None = None,
              mask_index: int | None = None) -> MDLMDenoiser:
    """Load a local MDLM DiT checkpoint as a denoiser (no network access).

    Args:
        path: either
            * a Hugging Face directory: ``config.json`` (MDLM's fields: vocab_size,
              hidden_dim, cond_dim, n_blocks, n_heads, and optionally model_length,
              dropout, time_conditioning, mask_index) and ``model.safetensors`` or
              ``pytorch_model.bin`` (keys ``backbone.*``; other keys are ignored); or
            * a Lightning ``.ckpt`` file written by MDLM's training (``state_dict``
              with keys ``backbone.*``; the EMA under ``ema``). Its configuration
              comes from ``config``, else the checkpoint's ``hyper_parameters``,
              else a Hydra ``config.yaml`` beside it (the file's directory, its
              ``.hydra/``, or the run directory above ``checkpoints/``). Nothing in
              the file is executed: unknown pickled classes are read as plain data.
        device, dtype: where and in what precision the weights live.
        noise_eps: eps of MDLM's log-linear noise (used with time conditioning).
        ema: ``.ckpt`` only: True = the EMA weights (an error if absent), False = the
            trained weights, None (default) = EMA when present, as MDLM samples.
        config: ``.ckpt`` only: MDLM's Hydra config as a dict or a YAML path.
        mask_index: the [MASK] id; default: the config's, else V - 1 (MDLM appends
            [MASK] to tokenizers without one, e.g. GPT-2's; for a tokenizer with its
            own, e.g. LM1B's bert-base-uncased, pass its id, 103).

    Returns:
        an :class:`MDLMDenoiser` in eval mode; ``.mask_id`` is the [MASK] id and
        ``.time_independent`` tells :func:`edlm_ext.sample` whether it may cache.

    Raises:
        FileNotFoundError: missing path, config or weights.
        ValueError: a config without the needed fields, weights that do not match
            it, or ``ema=True`` without EMA weights.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        cfg, state = _ckpt.read_lightning(path, ema=ema, config=config)
    elif os.path.isdir(path):
        cfg, state = _ckpt.read_hf_dir(path)
    else:
        raise FileNotFoundError(f"MDLM checkpoint not found: {path}")
    if mask_index is not None:
        cfg.mask_index = int(mask_index)
    model = MDLMDenoiser(cfg, noise_eps=noise_eps)
    _ckpt.load_backbone(model.backbone, state, path)
    return model.to(device=device, dtype=dtype).eval()
