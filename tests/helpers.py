"""What the op tests share: one case builder per kind of op input, the one tolerance
rule against the float64 reference, and the opcheck table (one entry per registered op,
used by tests/test_op_registry.py).

The tolerance rule is tests/agreement.py's (the flash-attention rule): a kernel's max
error against edlm_ext.reference's float64 value is at most twice the error of a plain
float32 computation of the same quantity (torch's own softmax / logsumexp), plus two
float32 ulps of the largest magnitude. agreement.check_close applies it to a CUDA
backend with the CPU op as the baseline; here the baseline is torch in float32.
"""
from __future__ import annotations

import torch

from edlm_ext import reference

from . import agreement

# ---------------------------------------------------------------------------------
# Cases


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sampling_case(B: int, L: int, V: int, device="cpu", dtype=torch.float32, *, mask_id: int = 0, frac: float = 0.6,
                  scale: float = 2.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of masked_sample / sample_proposals: logits [B, L, V] ~ scale * N(0, 1) in
    dtype, and x_t [B, L] int64 with ids in [0, V) other than mask_id, a fraction ~frac
    of them then set to mask_id."""
    g = _gen(seed)
    logits = (torch.randn(B, L, V, generator=g) * scale).to(dtype)
    x_t = torch.randint(0, V - 1, (B, L), generator=g)
    x_t += x_t >= mask_id  # skip mask_id
    x_t[torch.rand(B, L, generator=g) < frac] = mask_id
    return logits.to(device), x_t.to(device)


def resample_case(B: int, k: int, L: int, device="cpu", dtype=torch.float32, *, scale: float = 3.0,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of importance_resample: log_w [B, k] ~ scale * N(0, 1) in dtype and
    proposals [B, k, L] int64 in [0, 50000)."""
    g = _gen(seed)
    log_w = (torch.randn(B, k, generator=g, dtype=torch.float64) * scale).to(dtype)
    proposals = torch.randint(0, 50000, (B, k, L), generator=g)
    return log_w.to(device), proposals.to(device)


UNMASK_ID = 0  # the [MASK] id of unmask_case


def unmask_case(B: int = 2, L: int = 5, device="cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs of unmask / unmask_confident (mask id UNMASK_ID): x_t [B, L] with [MASK]
    at even positions and 4 at odd ones, x0 [B, L] all 9, confidence [B, L] ~ U(0, 1)."""
    x_t = torch.zeros(B, L, dtype=torch.long, device=device)
    x_t[:, 1::2] = 4
    x0 = torch.full((B, L), 9, dtype=torch.long, device=device)
    confidence = torch.rand(B, L, device=device, generator=torch.Generator(device=device).manual_seed(0))
    return x_t, x0, confidence


def rng(seed: int, device="cpu") -> torch.Tensor:
    """A raw op's rng argument [seed, 0]."""
    return torch.tensor([seed, 0], dtype=torch.int64, device=device)


# ---------------------------------------------------------------------------------
# The tolerance rule


def assert_close_to_reference(name: str, got: torch.Tensor, ref: torch.Tensor, baseline: torch.Tensor) -> None:
    """got (a kernel's output) against ref (float64, edlm_ext.reference) under the flash-
    attention rule, baseline being torch's own float32 computation of the same values."""
    agreement.check_close("op test", name, baseline.cpu(), got.cpu(), ref.cpu())


def float32_log_probs(logits: torch.Tensor, mask_id: int, temperature: float = 1.0, **filters) -> torch.Tensor:
    """The baseline of log-probabilities: torch's float32 log_softmax over the tokens the
    float64 reference keeps (temperature 0: the temperature-1 statistics, as the ops)."""
    T = 1.0 if temperature == 0 else temperature
    keep = torch.isfinite(reference.tempered_log_probs(logits.cpu(), mask_id, temperature, **filters))
    x = logits.cpu().float() / T
    return torch.log_softmax(torch.where(keep, x, float("-inf")), dim=-1)


def float32_entropy(logits: torch.Tensor, mask_id: int, temperature: float = 1.0, **filters) -> torch.Tensor:
    """The baseline of entropies: -Σ p log p in float32 over the kept tokens."""
    lp = float32_log_probs(logits, mask_id, temperature, **filters)
    return -(lp.exp() * torch.where(torch.isfinite(lp), lp, 0.0)).sum(-1)


def assert_logp_close(logp, logits, tokens, mask_id: int, temperature: float, ref_logp, rows, **filters) -> None:
    """A sampling op's logp [B, L] at rows (a bool mask) against the reference's, the baseline
    being torch's float32 log-probability of the same tokens."""
    rows = rows.cpu()
    base = float32_log_probs(logits, mask_id, temperature, **filters)
    baseline = base.gather(-1, tokens.cpu().clamp(0, logits.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)
    assert_close_to_reference("logp", logp.cpu()[rows], ref_logp.cpu()[rows], baseline[rows])


def assert_entropy_close(entropy, logits, mask_id: int, temperature: float, ref_entropy, rows, **filters) -> None:
    """masked_sample's entropy [B, L] at rows against the reference's."""
    rows = rows.cpu()
    baseline = float32_entropy(logits, mask_id, temperature, **filters)
    assert_close_to_reference("entropy", entropy.cpu()[rows], ref_entropy.cpu()[rows], baseline[rows])


def assert_log_q_close(log_q, logits, x_t, proposals, mask_id: int, temperature: float, ref_log_q, **filters) -> None:
    """sample_proposals' log_q [B, k] against the reference's, the baseline summing torch's
    float32 log-probabilities of the proposals' tokens (masked positions) in float64."""
    B, k, L = proposals.shape
    lp = float32_log_probs(logits, mask_id, temperature, **filters)
    V = lp.shape[-1]
    props = proposals.cpu().clamp(0, V - 1)
    per_pos = lp.unsqueeze(1).expand(B, k, L, V).gather(-1, props.unsqueeze(-1)).squeeze(-1)
    masked = (x_t.cpu() == mask_id).unsqueeze(1)
    baseline = torch.where(masked, per_pos.double(), 0.0).sum(-1)
    assert_close_to_reference("log_q", log_q, ref_log_q, baseline)


# ---------------------------------------------------------------------------------
# The opcheck table: every registered op, the raw op's argument tuples (torch.library.opcheck).


def opcheck_cases(device) -> dict[str, list[tuple]]:
    dev = torch.device(device)
    logits = torch.randn(3, 5, 40, generator=_gen(0)).to(dev)
    x_t = torch.randint(0, 40, (3, 5), generator=_gen(1)).to(dev)
    x_t[:, ::2] = 1
    plogits, px_t = sampling_case(2, 5, 33, dev)
    log_w, proposals = resample_case(3, 5, 7, dev)
    ux, ux0, uconf = unmask_case(3, 7, dev)
    key = rng(5, dev)
    return {
        "masked_sample": [(logits, x_t, 1, T, 0, 1.0, 0.0, False, rng(7, dev)) for T in (1.0, 0.0)]
        + [(logits, x_t, 1, 0.7, 5, 0.9, 0.01, True, rng(7, dev))],
        "sample_proposals": [(plogits, px_t, 0, 3, 1.0, 4, 0.8, 0.0, rng(1, dev))],
        "importance_resample": [(log_w, proposals, rng(3, dev))],
        "unmask": [(ux, ux0, UNMASK_ID, p, key) for p in (torch.tensor([0.0, 0.5, 1.0], device=dev),
                                                          torch.rand(3, dtype=torch.float64, generator=_gen(2)).to(dev))],
        "unmask_confident": [(ux, ux0, uconf, UNMASK_ID, torch.tensor([0, 2, 9], device=dev), None),
                             (ux, ux0, uconf, UNMASK_ID, None, 0.5)],
    }
