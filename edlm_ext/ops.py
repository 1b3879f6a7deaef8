"""Typed, documented wrappers over torch.ops.edlm_ext.*, each with its fake right under it.

Each op's contract — every shape, dtype, device and range check — lives once, in C++
(csrc/checks.h): the op runs it on every backend, and its fake here runs the same code
(``edlm_ext._C.check_<op>``) on meta and fake tensors, so a wrong argument is the same
TypeError / ValueError naming it whichever way the op is called. The wrappers add what
C++ cannot see: the Python type of a scalar (a bool passed as an int, an int beyond int64,
a float too large for one), the conversion of a Python number into a per-row tensor, and
the data-dependent diagnosis of invalid rows (``check=True``: one host synchronization).
They pick the random stream (see edlm_ext._rng) and call the registered op, which the
dispatcher routes to the CPU or CUDA kernel.

Each fake allocates the op's outputs with the op's ``_<op>_outputs`` helper; the C++
entry allocates the same shapes (csrc/ops.h), and tests/test_op_registry.py's opcheck
table compares the two on every case.

The ops are not differentiable: outputs never carry a ``grad_fn`` (inputs that
require grad are read detached). On meta tensors (shape inference) the ops run their
whole contract and skip the data-dependent checks, as under torch.compile.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from . import _C
from ._rng import rng_tensor

_LIMITS = _C.limits()
#: The valid sampling temperatures besides 0 (greedy): T in [1e-30, 1e30], inclusive.
#: The kernels' float32 scale log2(e) / T stays a normal float there, so draws,
#: logp and entropy are computed under T itself (read from csrc/include/edlm/temperature.h).
TEMPERATURE_RANGE = (_LIMITS["min_temperature"], _LIMITS["max_temperature"])
#: top_p < 1 needs V <= MAX_TOP_P_VOCAB (the fixed-point mass counter, csrc/include/edlm/filter.h).
MAX_TOP_P_VOCAB = _LIMITS["max_top_p_vocab"]
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _is_compiling() -> bool:
    """True while torch.compile traces or a CUDA graph captures: no data-dependent checks then."""
    if torch.compiler.is_compiling():
        return True
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _can_check(t: torch.Tensor) -> bool:
    """Whether data-dependent checks may read t: not while compiling or capturing, not on meta tensors."""
    return t.device.type != "meta" and not _is_compiling()


# ---------------------------------------------------------------------------
# What C++ cannot see: the Python types of the arguments


def _show(value) -> str:
    """A value for an error message (a huge int shortened)."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:12]}...({len(text)} digits)"


def _tensor(value, name: str, op: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def _float_arg(value, name: str, op: str) -> float:
    """A Python int or float argument as a float (TypeError otherwise; ValueError if it overflows)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{op}: {name} must be a float, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{op}: {name} = {_show(value)} is too large for a float") from None


def _int64_arg(value, name: str, op: str, minimum: int | None = None) -> int:
    """A Python int argument that fits in int64 (TypeError for other types, bools included);
    `minimum` only for an int the op never sees (expanded into a tensor here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value}")
    if not _I64_MIN <= value <= _I64_MAX:
        raise ValueError(f"{op}: {name} = {_show(value)} does not fit in int64 (max 2^63 - 1)")
    return value


def check_temperature(temperature, op: str) -> float:
    """temperature as a float: 0 (greedy) or in TEMPERATURE_RANGE, else a ValueError naming
    it (the ops' own rule, csrc/checks.h; for callers that check before any op runs)."""
    t = _float_arg(temperature, "temperature", op)
    _C.check_temperature(op, t)
    return t


def _contract(check, *args) -> None:
    """Run an op's C++ contract from its fake, when every tensor argument has concrete
    sizes and strides (under symbolic shapes the real op checks when it runs)."""
    for a in args:
        if isinstance(a, torch.Tensor) and not all(
                isinstance(s, int) for s in (*a.shape, *a.stride())):
            return
    check(*args)


# ---------------------------------------------------------------------------
# masked_sample


def _sampling_args(logits, x_t, mask_id, temperature, top_k, top_p, min_p, op: str):
    """The sampling ops' arguments as the op takes them; logits detached, with a
    contiguous last dimension (a copy only if it was strided)."""
    _tensor(logits, "logits", op)
    _tensor(x_t, "x_t", op)
    mask_id = _int64_arg(mask_id, "mask_id", op)
    temperature = _float_arg(temperature, "temperature", op)
    top_k = _int64_arg(top_k, "top_k", op)
    top_p, min_p = _float_arg(top_p, "top_p", op), _float_arg(min_p, "min_p", op)
    logits = logits.detach()
    if logits.dim() >= 1 and logits.shape[-1] > 1 and logits.stride(-1) != 1:
        logits = logits.contiguous()
    return logits, mask_id, temperature, top_k, top_p, min_p


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
    min_p: float = 0.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    return_entropy: bool = False,
    check: bool = True,
):
    """Draw x0 at every masked position of x_t from softmax(logits / temperature).

    One exact categorical draw per masked row ("subs" parameterization): the
    [MASK] token is never drawn, whatever its logit, and positions of x_t that are
    not [MASK] are copied. Only masked rows of ``logits`` are read. The draw is
    exact to float32 relative accuracy for every token, including tokens of
    probability 1e-7 and below (no float32 Gumbel noise, no float64 tensors).

    Filters restrict the distribution before the draw, which stays exact under
    the filtered, renormalized distribution. Each keeps the tokens whose logit is
    at least a threshold, so ties at a threshold are all kept: ``top_k`` keeps the
    k largest logits; ``top_p`` then keeps the smallest such top set holding at
    least top_p of the (top-k) mass; ``min_p`` keeps tokens with
    p >= min_p * max p. Filtering costs extra passes over each masked row.

    Args:
        logits: [B, L, V] float32, bfloat16 or float16, on CPU or CUDA. Any strides
            for B and L; a last dimension that is not contiguous is copied.
        x_t: [B, L] int64 token ids in [0, V), same device; ``mask_id`` marks masked positions.
        mask_id: the [MASK] token id, in [0, V).
        temperature: 0 means greedy (argmax, lowest id on ties); otherwise in
            :data:`TEMPERATURE_RANGE` = [1e-30, 1e30], where every draw, logp and
            entropy is computed under that temperature (T = 1e-30 is greedy with
            logp = 0 for a unique argmax; T = 1e30 is uniform over non-[MASK] tokens).
        top_k: >= 0, 0 = off (an int64). top_p: in (0, 1], 1 = off; top_p < 1 needs
            V <= :data:`MAX_TOP_P_VOCAB` (2^24 - 1). min_p: in [0, 1], 0 = off.
        generator: a torch.Generator on the logits' device type to draw the noise
            key from (default: the device's default generator). It advances like
            torch's own random ops, so two calls never reuse noise.
        seed: an int instead of ``generator``: the same seed gives the same tokens
            on CPU and CUDA.
        return_entropy: also return the entropy (nats) of each masked row's
            (tempered, filtered) distribution, for Dream-style remasking.
        check: raise on invalid rows (one host synchronization). Skipped under
            torch.compile and CUDA-graph capture and for meta tensors; then invalid
            rows come back as x0 = mask_id, logp = NaN.

    Returns (not differentiable: ``logp`` and ``entropy`` have no ``grad_fn``, even
    for logits that require grad):
        x0: [B, L] int64. Drawn token at masked positions, x_t elsewhere.
        logp: [B, L] float32. Log-probability of the drawn token under the tempered,
            filtered softmax over non-[MASK] tokens; 0 at copied positions. At
            temperature 0 the distribution is softmax(logits) (temperature 1,
            filtered), so ``logp.exp()`` is LLaDA's confidence of the argmax.
        entropy: [B, L] float32, only with ``return_entropy`` (0 at copied positions;
            at temperature 0, of softmax(logits)).

    Raises:
        TypeError: wrong argument types or dtypes.
        ValueError: wrong shapes or devices; mask_id outside [0, V); V = 0;
            temperature neither 0 nor in TEMPERATURE_RANGE; filters out of range or
            beyond int64; an id of x_t outside [0, V); a masked row with NaN or +inf
            logits, or with no finite logit except [MASK].
    """
    op = "masked_sample"
    logits, mask_id, temperature, top_k, top_p, min_p = _sampling_args(logits, x_t, mask_id, temperature, top_k,
                                                                       top_p, min_p, op)
    rng = rng_tensor(logits.device, generator, seed)
    x0, logp, entropy = torch.ops.edlm_ext.masked_sample(
        logits, x_t, mask_id, temperature, top_k, top_p, min_p, bool(return_entropy), rng
    )
    if check and _can_check(logp):
        _raise_for_invalid_rows(logits, x_t, mask_id, logp, op)
    return (x0, logp, entropy) if return_entropy else (x0, logp)


def _masked_sample_outputs(logits, x_t, want_entropy):
    """(x0 [B, L] int64, logp [B, L] float32, entropy [B, L] float32 or [0, L]) on the logits' device."""
    B, L = x_t.shape
    return (x_t.new_empty((B, L)), logits.new_empty((B, L), dtype=torch.float32),
            logits.new_empty((B if want_entropy else 0, L), dtype=torch.float32))


@torch.library.register_fake("edlm_ext::masked_sample")
def _masked_sample_fake(logits, x_t, mask_id, temperature, top_k, top_p, min_p, want_entropy, rng):
    _contract(_C.check_masked_sample, logits, x_t, mask_id, temperature, top_k, top_p, min_p, want_entropy, rng)
    return _masked_sample_outputs(logits, x_t, want_entropy)


# ---------------------------------------------------------------------------
# sample_proposals


def sample_proposals(
    logits: torch.Tensor,
    x_t: torch.Tensor,
    mask_id: int,
    k: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    check: bool = True,
    _per_position: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k independent exact draws of x0 per sequence, from ONE read of the logits.

    The proposal step of EDLM's importance sampling: proposal j of sequence b draws
    every masked position of x_t[b] from softmax(logits[b] / temperature) as
    :func:`masked_sample` does (same rules: [MASK] never drawn, unmasked positions
    copied into every proposal, exact for rare tokens), with k independent
    uniforms per row. Proposal 0 equals ``masked_sample`` with the same ``seed``.

    Args:
        logits, x_t, mask_id, temperature, top_k, top_p, min_p, generator, seed, check:
            as in :func:`masked_sample`.
        k: number of proposals, >= 1.

    Returns:
        proposals: [B, k, L] int64.
        log_q: [B, k] float32, the log-probability of each proposal under the
            factorized proposal, Σ over masked positions of the drawn tokens'
            log-probabilities (summed in float64).

    Raises:
        As :func:`masked_sample`; ValueError for k < 1 or beyond int64.
    """
    op = "sample_proposals"
    logits, mask_id, temperature, top_k, top_p, min_p = _sampling_args(logits, x_t, mask_id, temperature, top_k,
                                                                       top_p, min_p, op)
    k = _int64_arg(k, "k", op)
    rng = rng_tensor(logits.device, generator, seed)
    proposals, logp = torch.ops.edlm_ext.sample_proposals(
        logits, x_t, mask_id, k, temperature, top_k, top_p, min_p, rng
    )
    if check and _can_check(logp):
        _raise_for_invalid_rows(logits, x_t, mask_id, logp[:, 0], op)
    if _per_position:
        return proposals, logp
    log_q = logp.sum(dim=-1, dtype=torch.float64).to(torch.float32)
    return proposals, log_q


def _sample_proposals_outputs(logits, x_t, k):
    """(proposals [B, k, L] int64, logp [B, k, L] float32) on the logits' device."""
    B, L = x_t.shape
    return x_t.new_empty((B, k, L)), logits.new_empty((B, k, L), dtype=torch.float32)


@torch.library.register_fake("edlm_ext::sample_proposals")
def _sample_proposals_fake(logits, x_t, mask_id, k, temperature, top_k, top_p, min_p, rng):
    _contract(_C.check_sample_proposals, logits, x_t, mask_id, k, temperature, top_k, top_p, min_p, rng)
    return _sample_proposals_outputs(logits, x_t, k)


# ---------------------------------------------------------------------------
# importance_resample


class ResampleResult(NamedTuple):
    """Output of :func:`importance_resample` (row b of a batch of B, k candidates)."""

    weights: torch.Tensor  # [B, k] normalized weights, dtype of log_w
    log_z: torch.Tensor  # [B] logsumexp of the row's log-weights
    ess: torch.Tensor  # [B] effective sample size 1 / Σ weights², in [1, k]
    index: torch.Tensor  # [B] int64, the drawn candidate
    chosen: torch.Tensor  # [B, L] int64, proposals[b, index[b]]


def importance_resample(
    log_w: torch.Tensor,
    proposals: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    check: bool = True,
) -> ResampleResult:
    """Self-normalized importance resampling of k candidates per row, in one launch.

    For each row b: weights = softmax(log_w[b]) in float64, log_z = logsumexp(log_w[b]),
    ess = 1 / Σ weights², one draw index ~ Categorical(weights) (exact inverse CDF,
    53-bit uniform), and chosen = proposals[b, index]. -inf log-weights have
    weight 0 and are never chosen. On CUDA this is a single kernel with no host
    synchronization (CUDA-graph capturable with check skipped, as it is while capturing).

    Args:
        log_w: [B, k] float32 or float64 log-weights (EDLM: log w = -E).
        proposals: [B, k, L] int64 candidates, same device.
        generator, seed: the random stream, as in :func:`masked_sample`.
        check: raise for invalid rows (one host synchronization); skipped under
            torch.compile and CUDA-graph capture and for meta tensors, where invalid
            rows come back with NaN weights / log_z / ess and index 0.

    Returns:
        :class:`ResampleResult` (weights, log_z, ess, index, chosen); not
        differentiable (no ``grad_fn``, even for log_w that requires grad).

    Raises:
        TypeError: wrong types or dtypes. ValueError: mismatched shapes or devices,
        k = 0, a row with NaN or +inf, or a row whose log-weights are all -inf.
    """
    op = "importance_resample"
    _tensor(log_w, "log_w", op)
    _tensor(proposals, "proposals", op)
    log_w = log_w.detach()
    rng = rng_tensor(log_w.device, generator, seed)
    out = ResampleResult(*torch.ops.edlm_ext.importance_resample(log_w, proposals, rng))
    if check and _can_check(log_w):
        _raise_for_invalid_weights(log_w, out.log_z)
    return out


def _raise_for_invalid_weights(log_w, log_z):
    """The kernels mark an invalid row with log_z = NaN; find the first and say why."""
    bad = torch.isnan(log_z)
    if bool(bad.any()):
        b = int(bad.nonzero()[0])
        row = log_w[b]
        why = ("contains NaN" if bool(torch.isnan(row).any()) else
               "contains +inf" if bool(torch.isposinf(row).any()) else "is all -inf (no candidate has weight)")
        raise ValueError(f"importance_resample: log_w[{b}] {why}")


def _importance_resample_outputs(log_w, proposals):
    """(weights [B, k], log_z [B], ess [B] in log_w's dtype, index [B] int64, chosen [B, L] int64)."""
    B, k, L = proposals.shape
    return (log_w.new_empty((B, k)), log_w.new_empty((B,)), log_w.new_empty((B,)),
            proposals.new_empty((B,)), proposals.new_empty((B, L)))


@torch.library.register_fake("edlm_ext::importance_resample")
def _importance_resample_fake(log_w, proposals, rng):
    _contract(_C.check_importance_resample, log_w, proposals, rng)
    return _importance_resample_outputs(log_w, proposals)


# ---------------------------------------------------------------------------
# unmask


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
            Skipped under torch.compile and for meta tensors; unchecked, p < 0 or NaN unmasks nothing
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
    _tensor(x_t, "x_t", op)
    _tensor(x0, "x0", op)
    mask_id = _int64_arg(mask_id, "mask_id", op)
    p_is_tensor = isinstance(p, torch.Tensor)
    if p_is_tensor:
        p = p.detach()
    elif _is_number(p):  # a Python number: the op only ever sees the tensor made of it
        if not 0.0 <= p <= 1.0:  # also rejects NaN
            raise ValueError(f"{op}: p must lie in [0, 1], got {p}")
        p = torch.full((x_t.shape[0] if x_t.dim() else 0,), float(p), dtype=torch.float64, device=x_t.device)
    else:
        raise TypeError(f"{op}: p must be a float or a tensor [B], got {type(p).__name__}")
    rng = rng_tensor(x_t.device, generator, seed)
    out = torch.ops.edlm_ext.unmask(x_t, x0, mask_id, p, rng)
    if p_is_tensor and check and _can_check(p) and p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
        bad = int((~((p >= 0) & (p <= 1))).nonzero()[0, 0])
        raise ValueError(f"{op}: p must lie in [0, 1], got p[{bad}] = {float(p[bad]):.6g}")
    return out


def _unmask_outputs(x_t):
    """x_s [B, L] int64 on x_t's device."""
    return x_t.new_empty(x_t.shape)


@torch.library.register_fake("edlm_ext::unmask")
def _unmask_fake(x_t, x0, mask_id, p, rng):
    _contract(_C.check_unmask, x_t, x0, mask_id, p, rng)
    return _unmask_outputs(x_t)


# ---------------------------------------------------------------------------
# unmask_confident


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
            position (one host synchronization). Skipped under torch.compile and
            for meta tensors;
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
    _tensor(x_t, "x_t", op)
    _tensor(x0, "x0", op)
    _tensor(confidence, "confidence", op)
    mask_id = _int64_arg(mask_id, "mask_id", op)
    if threshold is not None:
        threshold = _float_arg(threshold, "threshold", op)
    if isinstance(n, int) and not isinstance(n, bool):  # a Python int: the op only sees the tensor made of it
        n = _int64_arg(n, "n", op, minimum=0)
        n = torch.full((x_t.shape[0] if x_t.dim() else 0,), n, dtype=torch.int64, device=x_t.device)
    elif n is not None and not isinstance(n, torch.Tensor):
        raise TypeError(f"{op}: n must be an int or an int64 tensor [B], got {type(n).__name__}")
    confidence = confidence.detach()
    out = torch.ops.edlm_ext.unmask_confident(x_t, x0, confidence, mask_id, n, threshold)
    if check and _can_check(confidence):
        _check_confident_values(x_t, confidence, mask_id, n if threshold is None else None, op)
    return out


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


_unmask_confident_outputs = _unmask_outputs  # x_s [B, L] int64 on x_t's device


@torch.library.register_fake("edlm_ext::unmask_confident")
def _unmask_confident_fake(x_t, x0, confidence, mask_id, n, threshold):
    _contract(_C.check_unmask_confident, x_t, x0, confidence, mask_id, n, threshold)
    return _unmask_confident_outputs(x_t)
