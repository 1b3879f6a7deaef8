"""Pure-PyTorch float64 reference of every op: the test oracle and the benchmark baseline.

Nothing here is fast; everything here is simple enough to be obviously right.
The kernels must agree with it: on deterministic outputs to float32 tolerance,
and on random outputs exactly when given the same uniforms (the counter-based
generator is replayed by :func:`philox4x32_10` / :func:`row_uniforms`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

# ---------------------------------------------------------------------------
# Counter-based generator (Philox4x32-10), bit-exact with csrc/include/edlm/philox.h


def philox4x32_10(counters: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32-10 blocks. counters: uint array [N, 4]; key: two uint32 words -> uint64 [N, 4]."""
    c = np.asarray(counters, dtype=np.uint64) & np.uint64(0xFFFFFFFF)
    c0, c1, c2, c3 = (c[:, i].copy() for i in range(4))
    k0, k1 = np.uint64(key[0] & 0xFFFFFFFF), np.uint64(key[1] & 0xFFFFFFFF)
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    mask = np.uint64(0xFFFFFFFF)
    for _ in range(10):
        p0, p1 = m0 * c0, m1 * c2  # < 2^64: exact in uint64
        hi0, lo0 = p0 >> np.uint64(32), p0 & mask
        hi1, lo1 = p1 >> np.uint64(32), p1 & mask
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + np.uint64(0x9E3779B9)) & mask
        k1 = (k1 + np.uint64(0xBB67AE85)) & mask
    return np.stack([c0, c1, c2, c3], axis=1)


# Stream domains of the ops (csrc/include/edlm/philox.h): stream = domain + offset + j.
DOMAIN_SAMPLE = 0
DOMAIN_UNMASK = 1 << 61
DOMAIN_RESAMPLE = 1 << 62


def row_uniforms(rng: torch.Tensor | tuple[int, int], rows: int, stream: int = 0) -> torch.Tensor:
    """The uniform in (0, 1) each row r < rows draws: u = ((bits >> 11) + 1/2) 2^-53 from
    the first two words of Philox(key = seed, counter = (r, stream + offset)), where
    stream is an op's domain plus proposal index (csrc/include/edlm/philox.h).
    Returns float64 [rows]."""
    seed, offset = (int(v) for v in (rng.tolist() if isinstance(rng, torch.Tensor) else rng))
    seed &= 2**64 - 1
    stream = (stream + offset) & (2**64 - 1)
    r = np.arange(rows, dtype=np.uint64)
    ctr = np.stack([r & np.uint64(0xFFFFFFFF), r >> np.uint64(32),
                    np.full(rows, stream & 0xFFFFFFFF, dtype=np.uint64),
                    np.full(rows, stream >> 32, dtype=np.uint64)], axis=1)
    out = philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32))
    bits = (out[:, 1] << np.uint64(32)) | out[:, 0]
    u = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    return torch.from_numpy(u)


# ---------------------------------------------------------------------------
# masked_sample


def tempered_log_probs(logits: torch.Tensor, mask_id: int, temperature: float = 1.0, top_k: int = 0,
                       top_p: float = 1.0, min_p: float = 0.0) -> torch.Tensor:
    """float64 log-probabilities of softmax(logits / T) over every token but [MASK]
    (whose entry is -inf), after the filters (dropped tokens -inf), computed by
    sorting. Temperature 0 gives the temperature-1 distribution (the ops' statistics
    at greedy). Filters keep tokens with logit >= a threshold (ties kept):
    top_k the k largest; top_p, on the top-k distribution, the smallest top set with
    mass >= top_p; min_p the tokens with p >= min_p * max p."""
    T = 1.0 if temperature == 0 else temperature
    x = logits.to(torch.float64).clone()
    x[..., mask_id] = float("-inf")
    keep = torch.isfinite(x)
    if top_k > 0 and top_k < x.shape[-1]:
        kth = x.topk(top_k, dim=-1).values[..., -1:]
        keep &= x >= kth
    if top_p < 1.0:
        lp = torch.log_softmax(torch.where(keep, x / T, float("-inf")), dim=-1)
        vals = lp.sort(dim=-1, descending=True).values
        cum = torch.cumsum(vals.exp(), dim=-1)
        first = torch.searchsorted(cum, torch.full_like(cum[..., :1], top_p)).clamp_max(x.shape[-1] - 1)
        keep &= lp >= vals.gather(-1, first)
    if min_p > 0.0:
        z = x / T
        keep &= (z - z.max(dim=-1, keepdim=True).values) >= math.log(min_p)
    return torch.log_softmax(torch.where(keep, x / T, float("-inf")), dim=-1)


def entropy(logits: torch.Tensor, mask_id: int, temperature: float = 1.0, **filters) -> torch.Tensor:
    """float64 entropy (nats) of :func:`tempered_log_probs` per row."""
    lp = tempered_log_probs(logits, mask_id, temperature, **filters)
    return -(lp.exp() * lp.nan_to_num(neginf=0.0)).sum(-1)


def masked_sample(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int, temperature: float = 1.0,
                  uniforms: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  **filters) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of edlm_ext.masked_sample, float64 inverse CDF in token order.

    uniforms: float64 [B, L] (or [B*L]) in (0, 1), one per row; row (b, l) takes the
    first token whose cumulative probability exceeds u. Given the kernel's own
    uniforms (row_uniforms) this reproduces its draws. Without uniforms they come
    from torch.rand(generator) in float64. temperature 0: argmax, lowest id on ties,
    with its log-probability at temperature 1. filters: top_k, top_p, min_p.
    Returns (x0 int64 [B, L], logp float64 [B, L]); logp is 0 at copied positions.
    """
    B, L, V = logits.shape
    masked = x_t == mask_id
    x0 = x_t.clone()
    logp = torch.zeros(B, L, dtype=torch.float64, device=logits.device)
    lp = tempered_log_probs(logits, mask_id, temperature, **filters)
    if temperature == 0:
        tok = lp.argmax(dim=-1)  # first maximal index; filters keep the max
    else:
        if uniforms is None:
            uniforms = torch.rand(B, L, dtype=torch.float64, generator=generator, device=logits.device)
        u = uniforms.reshape(B, L).to(torch.float64)
        cdf = torch.cumsum(lp.exp(), dim=-1)
        tok = torch.searchsorted(cdf, (u * cdf[..., -1]).unsqueeze(-1), right=True).squeeze(-1)
        tok = tok.clamp_max(V - 1)
        # never land on a zero-probability token (u*total == a cdf plateau at the end)
        tok = torch.where(lp.gather(-1, tok.unsqueeze(-1)).squeeze(-1) == float("-inf"), lp.argmax(-1), tok)
    x0[masked] = tok[masked]
    logp[masked] = lp.gather(-1, tok.unsqueeze(-1)).squeeze(-1)[masked]
    return x0, logp


def sample_proposals(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int, k: int, temperature: float = 1.0,
                     uniforms: torch.Tensor | None = None, generator: torch.Generator | None = None,
                     **filters) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of edlm_ext.sample_proposals: k independent :func:`masked_sample` draws.

    uniforms: float64 [k, B*L] (proposal j, row b*L + l), e.g. row_uniforms(rng, B*L, j)
    for j < k. Returns (proposals int64 [B, k, L], log_q float64 [B, k])."""
    B, L, _ = logits.shape
    props, log_q = [], []
    for j in range(k):
        u = None if uniforms is None else uniforms[j]
        x0, logp = masked_sample(logits, x_t, mask_id, temperature, uniforms=u, generator=generator, **filters)
        props.append(x0)
        log_q.append(logp.sum(-1))
    return torch.stack(props, 1), torch.stack(log_q, 1)


def importance_resample(log_w: torch.Tensor, proposals: torch.Tensor, uniforms: torch.Tensor | None = None,
                        generator: torch.Generator | None = None):
    """Reference of edlm_ext.importance_resample in float64.

    uniforms: float64 [B], e.g. row_uniforms(rng, B, DOMAIN_RESAMPLE). Returns
    (weights [B, k], log_z [B], ess [B], index [B], chosen [B, L]), statistics in float64."""
    lw = log_w.to(torch.float64)
    B, k = lw.shape
    log_z = torch.logsumexp(lw, dim=-1)
    weights = torch.exp(lw - log_z.unsqueeze(-1))
    ess = 1.0 / (weights**2).sum(-1)
    if uniforms is None:
        uniforms = torch.rand(B, dtype=torch.float64, generator=generator, device=lw.device)
    w = torch.exp(lw - lw.max(-1, keepdim=True).values)
    cdf = torch.cumsum(w, -1)
    index = torch.searchsorted(cdf, (uniforms.to(lw.device) * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    index = index.clamp_max(k - 1)
    last_positive = k - 1 - torch.argmax((w > 0).flip(-1).to(torch.int8), dim=-1)
    index = torch.where(w.gather(-1, index.unsqueeze(-1)).squeeze(-1) > 0, index, last_positive)
    chosen = proposals.gather(1, index.view(B, 1, 1).expand(B, 1, proposals.shape[2])).squeeze(1)
    return weights, log_z, ess, index, chosen


# ---------------------------------------------------------------------------
# unmask, unmask_confident


def _per_row(value, B: int, dtype: torch.dtype, device) -> torch.Tensor:
    """A scalar or a [B] tensor as a [B, 1] tensor of dtype."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype=dtype, device=device).reshape(B, 1)
    return torch.full((B, 1), value, dtype=dtype, device=device)


def unmask(x_t: torch.Tensor, x0: torch.Tensor, mask_id: int, p, uniforms: torch.Tensor) -> torch.Tensor:
    """Reference of edlm_ext.unmask: a masked position (b, l) takes x0 when its uniform
    u[b, l] < p_b (compared in float64), every other position keeps x_t.

    p: a float or a [B] tensor. uniforms: float64 [B, L] (or [B*L]) in (0, 1); the op's
    own are row_uniforms(rng, B * L, DOMAIN_UNMASK) (position b * L + l).
    """
    B, L = x_t.shape
    u = uniforms.reshape(B, L).to(device=x_t.device, dtype=torch.float64)
    take = (x_t == mask_id) & (u < _per_row(p, B, torch.float64, x_t.device))
    return torch.where(take, x0, x_t)


def unmask_confident(x_t: torch.Tensor, x0: torch.Tensor, confidence: torch.Tensor, mask_id: int,
                     n=None, threshold: float | None = None) -> torch.Tensor:
    """Reference of edlm_ext.unmask_confident, by sorting.

    Each row's positions are ranked masked first, then by confidence (float64)
    descending, then by position (two stable sorts). The first k masked ones take
    x0, where k = min(n_b, #masked) for a count n (int or [B] tensor), or for a
    threshold the number of masked positions with confidence > threshold, at
    least 1 when the row has a masked position.
    """
    if (n is None) == (threshold is None):
        raise ValueError("pass exactly one of n and threshold")
    B, L = x_t.shape
    masked = x_t == mask_id
    conf = confidence.to(torch.float64)
    order = torch.sort(conf, dim=1, descending=True, stable=True).indices
    order = order.gather(1, torch.sort((~masked).gather(1, order).to(torch.int8), dim=1, stable=True).indices)
    n_masked = masked.sum(dim=1, keepdim=True)
    if threshold is None:
        k = torch.minimum(_per_row(n, B, torch.int64, x_t.device), n_masked)
    else:
        above = (masked & (conf > threshold)).sum(dim=1, keepdim=True)
        k = torch.where(above > 0, above, n_masked.clamp(max=1))
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(L, device=x_t.device).expand(B, L))
    take = masked & (rank < k)
    return torch.where(take, x0, x_t)
