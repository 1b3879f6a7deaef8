"""Fake (meta) kernels so torch.compile and torch.library.opcheck can trace the ops."""
import torch


@torch.library.register_fake("edlm_ext::masked_sample")
def _masked_sample_fake(logits, x_t, mask_id, temperature, top_k, top_p, min_p, want_entropy, rng):
    torch._check(logits.dim() == 3, lambda: "logits must be [B, L, V]")
    torch._check(x_t.dim() == 2, lambda: "x_t must be [B, L]")
    torch._check(x_t.shape[0] == logits.shape[0] and x_t.shape[1] == logits.shape[1], lambda: "x_t must be [B, L]")
    torch._check(x_t.dtype == torch.int64, lambda: "x_t must be int64")
    torch._check(rng.numel() == 2 and rng.dtype == torch.int64, lambda: "rng must be int64 [2]")
    B, L = x_t.shape
    entropy = logits.new_empty((B if want_entropy else 0, L), dtype=torch.float32)
    return x_t.new_empty((B, L)), logits.new_empty((B, L), dtype=torch.float32), entropy


@torch.library.register_fake("edlm_ext::sample_proposals")
def _sample_proposals_fake(logits, x_t, mask_id, k, temperature, top_k, top_p, min_p, rng):
    torch._check(logits.dim() == 3, lambda: "logits must be [B, L, V]")
    torch._check(x_t.dim() == 2, lambda: "x_t must be [B, L]")
    torch._check(k >= 1, lambda: "k must be >= 1")
    B, L = x_t.shape
    return x_t.new_empty((B, k, L)), logits.new_empty((B, k, L), dtype=torch.float32)


@torch.library.register_fake("edlm_ext::importance_resample")
def _importance_resample_fake(log_w, proposals, rng):
    torch._check(proposals.dim() == 3, lambda: "proposals must be [B, k, L]")
    torch._check(log_w.dim() == 2, lambda: "log_w must be [B, k]")
    B, k, L = proposals.shape
    return (log_w.new_empty((B, k)), log_w.new_empty((B,)), log_w.new_empty((B,)),
            proposals.new_empty((B,)), proposals.new_empty((B, L)))


@torch.library.register_fake("edlm_ext::unmask")
def _unmask_fake(x_t, x0, mask_id, p, rng):
    torch._check(x_t.dim() == 2 and x_t.dtype == torch.int64, lambda: "x_t must be int64 [B, L]")
    torch._check(x0.shape == x_t.shape and x0.dtype == torch.int64, lambda: "x0 must be int64 [B, L]")
    torch._check(p.dim() == 1 and p.shape[0] == x_t.shape[0], lambda: "p must be [B]")
    torch._check(rng.numel() == 2 and rng.dtype == torch.int64, lambda: "rng must be int64 [2]")
    return x_t.new_empty(x_t.shape)


@torch.library.register_fake("edlm_ext::unmask_confident")
def _unmask_confident_fake(x_t, x0, confidence, mask_id, n, threshold):
    torch._check(x_t.dim() == 2 and x_t.dtype == torch.int64, lambda: "x_t must be int64 [B, L]")
    torch._check(x0.shape == x_t.shape and x0.dtype == torch.int64, lambda: "x0 must be int64 [B, L]")
    torch._check(confidence.shape == x_t.shape, lambda: "confidence must be [B, L]")
    torch._check((n is None) != (threshold is None), lambda: "pass exactly one of n and threshold")
    return x_t.new_empty(x_t.shape)
