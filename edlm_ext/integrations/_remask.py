"""Confidence and selection rules shared by the LLaDA / Fast-dLLM / Dream drop-ins.

Every function works on a *region*: the rows [lo, end) of the sequence that a step may
unmask, with ``cand`` marking its masked positions. Ranking happens either in float32
(our default: the kernel's log-probabilities, ties to the lower position) or, for exact
agreement with upstream code in low precision, in the dtype upstream uses with
``torch.topk`` on the full-length confidence row, as upstream calls it.
"""
from __future__ import annotations

import math

import torch

from ..ops import unmask_confident

RANK_DTYPES = ("float32", "model", "float64")
# a float32 confidence this close to a threshold is recomputed in float64 before the comparison
_BAND = 4e-6


def check_rank_dtype(rank_dtype: str) -> None:
    if rank_dtype not in RANK_DTYPES:
        raise ValueError(f"rank_dtype must be one of {RANK_DTYPES}, got {rank_dtype!r}")


def upstream_softmax_confidence(lg: torch.Tensor, x0: torch.Tensor, dtype: torch.dtype,
                                drop: int | None = None) -> torch.Tensor:
    """softmax(lg) in `dtype` at x0, as upstream computes it (every logit counts,
    [MASK]'s too); `drop`: a token whose logit is set to -inf first."""
    lg = lg.to(dtype)
    if drop is not None:
        lg = lg.clone()
        lg[..., drop] = float("-inf")
    return torch.softmax(lg, dim=-1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)


def float64_confidence(lg: torch.Tensor, x0: torch.Tensor, mask_id: int, where: torch.Tensor,
                       conf: torch.Tensor) -> torch.Tensor:
    """conf (float64) with the positions in `where` recomputed as P(x0) in float64
    (the [MASK] logit excluded, as in the kernel)."""
    conf = conf.to(torch.float64)
    if not bool(where.any()):
        return conf
    rows = lg[where].to(torch.float64)
    rows[:, mask_id] = float("-inf")
    tok = x0[where]
    conf = conf.clone()
    conf[where] = (rows.gather(-1, tok[:, None]).squeeze(-1) - torch.logsumexp(rows, dim=-1)).exp()
    return conf


def topk_like_upstream(conf: torch.Tensor, cand: torch.Tensor, lo: int, length: int, n) -> torch.Tensor:
    """Transfer mask over the region: per row, ``torch.topk`` of the full-length row
    (confidence at candidates, -inf elsewhere, conf's dtype) with k = n[b], as LLaDA,
    Fast-dLLM and Dream call it, so ties break exactly as there."""
    B, R = cand.shape
    full = torch.full((B, length), float("-inf"), dtype=conf.dtype, device=conf.device)
    full[:, lo:lo + R] = torch.where(cand, conf, torch.tensor(float("-inf"), dtype=conf.dtype, device=conf.device))
    chosen = torch.zeros(B, length, dtype=torch.bool, device=conf.device)
    ks = n.tolist() if isinstance(n, torch.Tensor) else [int(n)] * B
    for j, k in enumerate(ks):
        if k > 0:
            chosen[j, torch.topk(full[j], k=min(int(k), length)).indices] = True
    return chosen[:, lo:lo + R] & cand


def select_count(xr, x0, conf, cand, mask_id, n, *, upstream: bool, lo: int = 0, length: int = 0):
    """The n[b] most confident candidates of each row take x0."""
    if upstream:
        return torch.where(topk_like_upstream(conf, cand, lo, length, n), x0, xr)
    conf = conf if conf.dtype in (torch.float32, torch.float64) else conf.float()
    return unmask_confident(xr, x0, conf, mask_id, n=n)


def select_threshold(xr, x0, conf, cand, mask_id, threshold: float, *, upstream: bool, lo: int = 0,
                     length: int = 0):
    """Fast-dLLM's rule: the most confident candidate of each row, and every other one
    with confidence >= threshold."""
    if upstream:
        sel = cand & (conf.to(torch.float64) >= threshold)
        none = cand.any(1) & ~sel.any(1)
        if bool(none.any()):
            sel |= topk_like_upstream(conf, cand, lo, length, none.long())
        return torch.where(sel, x0, xr)
    below = math.nextafter(float(threshold), -math.inf)  # conf > below  <=>  conf >= threshold
    return unmask_confident(xr, x0, conf, mask_id, threshold=below)


def near_threshold(conf: torch.Tensor, cand: torch.Tensor, threshold: float) -> torch.Tensor:
    """Candidates whose float32 confidence is too close to the threshold to decide in float32."""
    return cand & ((conf.to(torch.float64) - threshold).abs() <= _BAND * max(abs(threshold), 1e-30))


def factor_counts(conf: torch.Tensor, cand: torch.Tensor, factor: float) -> torch.Tensor:
    """Fast-dLLM's dynamic rule (``factor``): with the candidates' confidences sorted
    descending c_1 >= c_2 >= ..., the first n with c_n < 1 - factor / (n + 1) (n >= 2)
    stops the count at n - 1 — except that stopping at the last candidate, or not
    stopping, takes all of them (Fast-dLLM's rule as written). 0 for rows without
    candidates (where Fast-dLLM's own code raises IndexError)."""
    B, R = cand.shape
    m = cand.sum(1)
    c = torch.where(cand, conf.to(torch.float64), float("-inf")).sort(dim=1, descending=True).values
    idx = torch.arange(R, device=conf.device)
    thr = 1.0 - factor / (idx + 2.0)
    thr[0] = -1.0
    fail = (c < thr) & (idx < m[:, None])
    first = torch.where(fail.any(1), fail.to(torch.int8).argmax(1), m - 1)
    count = torch.where((first == 0) | (first == m - 1), first + 1, first)
    return torch.where(m > 0, count, torch.zeros_like(count))
