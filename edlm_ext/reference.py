"""Pure-PyTorch float64 reference of every op: the test oracle and the benchmark baseline.

Nothing here is fast; everything here is simple enough to be obviously right.
The kernels must agree with it: on deterministic outputs to float32 tolerance,
and on random outputs exactly when given the same uniforms (the counter-based
generator is replayed by :func:`philox4x32_10` / :func:`row_uniforms`).
"""
from __future__ import annotations

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


def tempered_log_probs(logits: torch.Tensor, mask_id: int, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / T) in float64 over every token but [MASK] (whose entry is -inf)."""
    x = logits.to(torch.float64).clone()
    x[..., mask_id] = float("-inf")
    return torch.log_softmax(x / temperature, dim=-1)


def masked_sample(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int, temperature: float = 1.0,
                  uniforms: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of edlm_ext.masked_sample, float64 inverse CDF in token order.

    uniforms: float64 [B, L] (or [B*L]) in (0, 1), one per row; row (b, l) takes the
    first token whose cumulative probability exceeds u. Given the kernel's own
    uniforms (row_uniforms) this reproduces its draws. Without uniforms they come
    from torch.rand(generator) in float64. temperature 0: argmax, lowest id on ties.
    Returns (x0 int64 [B, L], logp float64 [B, L]); logp is 0 at copied positions
    and at temperature 0.
    """
    B, L, V = logits.shape
    masked = x_t == mask_id
    x0 = x_t.clone()
    logp = torch.zeros(B, L, dtype=torch.float64, device=logits.device)
    if temperature == 0:
        x = logits.to(torch.float64).clone()
        x[..., mask_id] = float("-inf")
        tok = x.argmax(dim=-1)  # first maximal index
        x0[masked] = tok[masked]
        return x0, logp
    lp = tempered_log_probs(logits, mask_id, temperature)
    if uniforms is None:
        uniforms = torch.rand(B, L, dtype=torch.float64, generator=generator, device=logits.device)
    u = uniforms.reshape(B, L).to(torch.float64)
    cdf = torch.cumsum(lp.exp(), dim=-1)
    tok = torch.searchsorted(cdf, (u * cdf[..., -1:].squeeze(-1)).unsqueeze(-1), right=True).squeeze(-1)
    tok = tok.clamp_max(V - 1)
    # never land on a zero-probability token (u*total == a cdf plateau at the end)
    tok = torch.where(lp.gather(-1, tok.unsqueeze(-1)).squeeze(-1) == float("-inf"), lp.argmax(-1), tok)
    x0[masked] = tok[masked]
    logp[masked] = lp.gather(-1, tok.unsqueeze(-1)).squeeze(-1)[masked]
    return x0, logp


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
