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


# ---------------------------------------------------------------------------
# Posterior unmasking

_P_DTYPES = (torch.float32, torch.float64)
_CONFIDENCE_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_unmask_tokens(x_t, x0, mask_id, op: str):
    for name, t in (("x_t", x_t), ("x0", x0)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != torch.int64:
            raise TypeError(f"{op}: {name} must be int64, got {t.dtype}")
    if x_t.dim() != 2:
        raise ValueError(f"{op}: x_t must be [B, L], got shape {tuple(x_t.shape)}")
    if x0.shape != x_t.shape:
        raise ValueError(f"{op}: x0 must have the shape of x_t {tuple(x_t.shape)}, got {tuple(x0.shape)}")
    if x0.device != x_t.device:
        raise ValueError(f"{op}: x0 is on {x0.device} but x_t is on {x_t.device}")
    if isinstance(mask_id, bool) or not isinstance(mask_id, int):
        raise TypeError(f"{op}: mask_id must be an int, got {type(mask_id).__name__}")
    if mask_id < 0:
        raise ValueError(f"{op}: mask_id must be >= 0, got {mask_id}")


def _per_row_tensor(value, name: str, dtypes, x_t: torch.Tensor, op: str) -> torch.Tensor:
    """Check a per-row tensor argument: dtype in dtypes, shape [B], x_t's device."""
    if value.dtype not in dtypes:
        names = " or ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{op}: {name} must be {names}, got {value.dtype}")
    if tuple(value.shape) != (x_t.shape[0],):
        raise ValueError(f"{op}: {name} must have shape [B] = [{x_t.shape[0]}], got {tuple(value.shape)}")
    if value.device != x_t.device:
        raise ValueError(f"{op}: {name} is on {value.device} but x_t is on {x_t.device}")
    return value


def unmask(
    x_t: torch.Tensor,
    x0: torch.Tensor,
    mask_id: int,
    p: float | torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    check: bool = True,
) -> torch.Tensor:
    """The posterior step q(x_s | x_t, x0) of a masked diffusion model.

    Every position of x_t that is [MASK] becomes x0 there with probability p (its
    row's p), independently, else stays [MASK]; every other position keeps x_t,
    whatever x0 holds. With the log-linear schedule, going from time t to s < t
    uses p = (t - s) / t. The draw at position (b, l) is the Philox uniform of
    counter row b * L + l in the unmask stream (csrc/include/edlm/philox.h):
    x0 is taken when u < p, so p = 0 never unmasks and p = 1 always does, and
    edlm_ext.reference.unmask replays the op exactly.

    Args:
        x_t: [B, L] int64 tokens on CPU or CUDA (any strides).
        x0: [B, L] int64, same device: the tokens masked positions may take.
        mask_id: the [MASK] token id, >= 0.
        p: a float in [0, 1] for every row, or a float32/float64 tensor [B] on
            x_t's device, one probability per row.
        generator: a torch.Generator on x_t's device type to draw the noise key
            from (default: the device's default generator). It advances like
            torch's own random ops, so two calls never reuse noise.
        seed: an int instead of ``generator``: the same seed gives the same result
            on CPU and CUDA.
        check: check the values of a tensor p (one host synchronization).
            Skipped under torch.compile; unchecked, p < 0 or NaN unmasks nothing
            and p > 1 everything.

    Returns:
        x_s: [B, L] int64, contiguous.

    Raises:
        TypeError: x_t / x0 not int64 tensors, mask_id not an int, p not a float
            or a float32/float64 tensor, bad generator / seed types.
        ValueError: shapes or devices that do not match; mask_id < 0; p outside
            [0, 1] or NaN.
    """
    op = "unmask"
    _check_unmask_tokens(x_t, x0, mask_id, op)
    if isinstance(p, torch.Tensor):
        _per_row_tensor(p, "p", _P_DTYPES, x_t, op)
        if check and not _is_compiling() and p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
            bad = int((~((p >= 0) & (p <= 1))).nonzero()[0, 0])
            raise ValueError(f"{op}: p must lie in [0, 1], got p[{bad}] = {float(p[bad]):.6g}")
    elif _is_number(p):
        if not 0.0 <= p <= 1.0:  # also rejects NaN
            raise ValueError(f"{op}: p must lie in [0, 1], got {p}")
        p = torch.full((x_t.shape[0],), float(p), dtype=torch.float64, device=x_t.device)
    else:
        raise TypeError(f"{op}: p must be a float or a tensor [B], got {type(p).__name__}")
    rng = rng_tensor(x_t.device, generator, seed)
    return torch.ops.edlm_ext.unmask(x_t, x0, mask_id, p, rng)


def unmask_confident(
    x_t: torch.Tensor,
    x0: torch.Tensor,
    confidence: torch.Tensor,
    mask_id: int,
    *,
    n: int | torch.Tensor | None = None,
    threshold: float | None = None,
    check: bool = True,
) -> torch.Tensor:
    """Unmask the most confident masked positions of each row (deterministic).

    Among the positions of row b where x_t is [MASK], ranked by confidence
    (highest first; the lower position first on ties):

    * ``n=`` (LLaDA's low-confidence remasking): the first min(n_b, #masked_b)
      take x0; n = 0 changes nothing.
    * ``threshold=`` (Fast-dLLM's parallel decoding): every masked position with
      confidence > threshold takes x0; a row with masked positions of which none
      passes unmasks its single most confident one, so every such row progresses.

    Positions that are not [MASK] keep x_t. Exactly one of n and threshold must
    be given. A confidence of -inf ranks lowest; NaN at a masked position is an
    error (confidences at unmasked positions are never looked at).

    Args:
        x_t: [B, L] int64 tokens on CPU or CUDA (any strides).
        x0: [B, L] int64, same device: the tokens the selected positions take.
        confidence: [B, L] float32, float64, bfloat16 or float16, same device,
            e.g. the probability of x0 under the denoiser.
        mask_id: the [MASK] token id, >= 0.
        n: an int >= 0 for every row, or an int64 tensor [B] on x_t's device.
        threshold: a float (not NaN); may be +-inf.
        check: check tensor values: n >= 0 and no NaN confidence at a masked
            position (one host synchronization). Skipped under torch.compile;
            unchecked, a negative n counts as 0 and NaN ranks below -inf.

    Returns:
        x_s: [B, L] int64, contiguous.

    Raises:
        TypeError: wrong argument types or dtypes (x_t / x0 not int64,
            confidence not floating, n not an int or an int64 tensor, threshold
            not a float).
        ValueError: shapes or devices that do not match; mask_id < 0; neither or
            both of n and threshold; n < 0; NaN threshold; NaN confidence at a
            masked position.
    """
    op = "unmask_confident"
    _check_unmask_tokens(x_t, x0, mask_id, op)
    if not isinstance(confidence, torch.Tensor):
        raise TypeError(f"{op}: confidence must be a torch.Tensor, got {type(confidence).__name__}")
    if confidence.dtype not in _CONFIDENCE_DTYPES:
        raise TypeError(f"{op}: confidence must be float32, float64, bfloat16 or float16, got {confidence.dtype}")
    if confidence.shape != x_t.shape:
        raise ValueError(f"{op}: confidence must have the shape of x_t {tuple(x_t.shape)}, "
                         f"got {tuple(confidence.shape)}")
    if confidence.device != x_t.device:
        raise ValueError(f"{op}: confidence is on {confidence.device} but x_t is on {x_t.device}")
    if (n is None) == (threshold is None):
        raise ValueError(f"{op}: pass exactly one of n= and threshold=")
    if threshold is not None:
        if not _is_number(threshold):
            raise TypeError(f"{op}: threshold must be a float, got {type(threshold).__name__}")
        if math.isnan(threshold):
            raise ValueError(f"{op}: threshold is NaN")
        threshold = float(threshold)
    elif isinstance(n, torch.Tensor):
        _per_row_tensor(n, "n", (torch.int64,), x_t, op)
    elif isinstance(n, int) and not isinstance(n, bool):
        if n < 0:
            raise ValueError(f"{op}: n must be >= 0, got {n}")
        n = torch.full((x_t.shape[0],), n, dtype=torch.int64, device=x_t.device)
    else:
        raise TypeError(f"{op}: n must be an int or an int64 tensor [B], got {type(n).__name__}")
    if check and not _is_compiling():
        _check_confident_values(x_t, confidence, mask_id, n if threshold is None else None, op)
    return torch.ops.edlm_ext.unmask_confident(x_t, x0, confidence, mask_id, n, threshold)


def _check_confident_values(x_t, confidence, mask_id, n, op: str):
    """n >= 0 and no NaN confidence at a masked position: one host synchronization,
    and a second pass only when the confidence holds a NaN somewhere."""
    flags = [torch.isnan(confidence).any()] + ([(n < 0).any()] if n is not None else [])
    any_nan, *negative_n = torch.stack(flags).tolist()
    if negative_n and negative_n[0]:
        b = int((n < 0).nonzero()[0, 0])
        raise ValueError(f"{op}: n must be >= 0, got n[{b}] = {int(n[b])}")
    if any_nan:
        nan_masked = torch.isnan(confidence) & (x_t == mask_id)
        if bool(nan_masked.any()):
            b, l = (int(i) for i in nan_masked.nonzero()[0])
            raise ValueError(f"{op}: confidence[{b}, {l}] is NaN at a masked position")
