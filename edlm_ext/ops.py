"""Typed, documented wrappers over torch.ops.edlm_ext.*.

The wrappers validate arguments with clear Python exceptions (TypeError for a
wrong type or dtype, ValueError for a wrong shape, device or value), pick the
random stream (see edlm_ext._rng) and call the registered op, which the
dispatcher routes to the CPU or CUDA kernel.
"""
from __future__ import annotations

import math

import torch

from ._rng import rng_tensor

_LOGIT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _is_compiling() -> bool:
    return torch.compiler.is_compiling()


def _check_masked_inputs(logits, x_t, mask_id, temperature, op: str):
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{op}: logits must be a torch.Tensor, got {type(logits).__name__}")
    if not isinstance(x_t, torch.Tensor):
        raise TypeError(f"{op}: x_t must be a torch.Tensor, got {type(x_t).__name__}")
    if logits.dtype not in _LOGIT_DTYPES:
        raise TypeError(f"{op}: logits must be float32, bfloat16 or float16, got {logits.dtype}")
    if x_t.dtype != torch.int64:
        raise TypeError(f"{op}: x_t must be int64, got {x_t.dtype}")
    if logits.dim() != 3:
        raise ValueError(f"{op}: logits must be [B, L, V], got shape {tuple(logits.shape)}")
    B, L, V = logits.shape
    if V == 0:
        raise ValueError(f"{op}: logits has an empty vocabulary (V = 0)")
    if tuple(x_t.shape) != (B, L):
        raise ValueError(f"{op}: x_t must have shape [B, L] = {(B, L)}, got {tuple(x_t.shape)}")
    if x_t.device != logits.device:
        raise ValueError(f"{op}: x_t is on {x_t.device} but logits is on {logits.device}")
    if isinstance(mask_id, bool) or not isinstance(mask_id, int):
        raise TypeError(f"{op}: mask_id must be an int, got {type(mask_id).__name__}")
    if not 0 <= mask_id < V:
        raise ValueError(f"{op}: mask_id = {mask_id} is outside [0, V = {V})")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"{op}: temperature must be a float, got {type(temperature).__name__}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"{op}: temperature must be finite and >= 0, got {temperature}")


def _raise_for_invalid_rows(logits, x_t, mask_id, logp, op: str):
    """The kernels mark an invalid row with logp = NaN; find the first and say why."""
    bad = torch.isnan(logp)
    if not bool(bad.any()):
        return
    b, l = (int(i) for i in bad.nonzero()[0])
    V = logits.shape[-1]
    v = int(x_t[b, l])
    if v != mask_id:
        raise ValueError(f"{op}: x_t[{b}, {l}] = {v} is outside [0, V = {V})")
    row = logits[b, l].float().clone()
    row[mask_id] = float("-inf")
    if bool(torch.isnan(row).any()):
        raise ValueError(f"{op}: logits[{b}, {l}] (a masked position) contains NaN")
    if bool(torch.isposinf(row).any()):
        raise ValueError(f"{op}: logits[{b}, {l}] (a masked position) contains +inf")
    raise ValueError(
        f"{op}: logits[{b}, {l}] (a masked position) has no finite logit except [MASK] (id {mask_id}), "
        "so no token can be drawn"
    )


def masked_sample(
    logits: torch.Tensor,
    x_t: torch.Tensor,
    mask_id: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw x0 at every masked position of x_t from softmax(logits / temperature).

    One exact categorical draw per masked row ("subs" parameterization): the
    [MASK] token is never drawn, whatever its logit, and positions of x_t that are
    not [MASK] are copied. Only masked rows of ``logits`` are read. The draw is
    exact to float32 relative accuracy for every token, including tokens of
    probability 1e-7 and below (no float32 Gumbel noise, no float64 tensors).

    Args:
        logits: [B, L, V] float32, bfloat16 or float16, on CPU or CUDA. Any strides
            for B and L; a last dimension that is not contiguous is copied.
        x_t: [B, L] int64 token ids in [0, V), same device; ``mask_id`` marks masked positions.
        mask_id: the [MASK] token id, in [0, V).
        temperature: >= 0. 0 means greedy (argmax, lowest id on ties).
        top_k, top_p: filtering, not implemented yet (NotImplementedError unless 0 / 1.0).
        generator: a torch.Generator on the logits' device type to draw the noise
            key from (default: the device's default generator). It advances like
            torch's own random ops, so two calls never reuse noise.
        seed: an int instead of ``generator``: the same seed gives the same tokens
            on CPU and CUDA.
        check: raise on invalid rows (one host synchronization). Skipped under
            torch.compile; then invalid rows come back as x0 = mask_id, logp = NaN.

    Returns:
        x0: [B, L] int64. Drawn token at masked positions, x_t elsewhere.
        logp: [B, L] float32. Log-probability of the drawn token under the tempered
            softmax over non-[MASK] tokens (0 at greedy positions and at copied ones).

    Raises:
        TypeError: wrong argument types or dtypes.
        ValueError: wrong shapes or devices; mask_id outside [0, V); V = 0;
            temperature < 0 or not finite; an id of x_t outside [0, V); a masked
            row with NaN or +inf logits, or with no finite logit except [MASK].
        NotImplementedError: top_k / top_p filtering.
    """
    _check_masked_inputs(logits, x_t, mask_id, temperature, "masked_sample")
    if top_k != 0 or top_p != 1.0:
        raise NotImplementedError("masked_sample: top_k / top_p filtering is not implemented yet")
    if logits.stride(-1) != 1 and logits.shape[-1] > 1:
        logits = logits.contiguous()
    rng = rng_tensor(logits.device, generator, seed)
    x0, logp = torch.ops.edlm_ext.masked_sample(logits, x_t, mask_id, float(temperature), rng)
    if check and not _is_compiling():
        _raise_for_invalid_rows(logits, x_t, mask_id, logp, "masked_sample")
    return x0, logp
