"""Evaluation of generated samples: generative perplexity under an independent judge
(SmolLM2-135M, edlm_ext.judge) and under our own AR model, unigram entropy, and
the sampler's cost (NFEs, wall time per sample)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def decode(tokens: torch.Tensor, tok, eot_id: int) -> list[str]:
    """Token rows -> texts; <|endoftext|> separates paragraphs (rendered as newlines)."""
    out = []
    for row in tokens.tolist():
        parts, cur = [], []
        for t in row:
            if t == eot_id:
                parts.append(cur)
                cur = []
            else:
                cur.append(t)
        parts.append(cur)
        out.append("\n".join(tok.decode(p) for p in parts if p).strip())
    return out


def unigram_entropy(tokens: torch.Tensor) -> dict:
    """Mean over samples of the entropy of each sample's token histogram (low = repetitive)."""
    ents = []
    for row in tokens:
        counts = torch.bincount(row).double()
        p = counts[counts > 0] / counts.sum()
        ents.append(float(-(p * p.log()).sum()))
    nats = sum(ents) / len(ents)
    return {"entropy_nats": nats, "entropy_bits": nats / math.log(2)}


def ppl_interval(nll_sums: list[float], counts: list[int], z: float = 1.959964) -> tuple[float, float, float]:
    """(perplexity, lower, upper): exp(sum NLL / sum tokens) over samples and a normal
    interval (z = 1.96: 95%) for it, from the delta-method standard error of the ratio
    estimator of the mean NLL per token with samples as the independent units."""
    s = torch.tensor(nll_sums, dtype=torch.float64)
    n = torch.tensor(counts, dtype=torch.float64)
    keep = n > 0
    s, n = s[keep], n[keep]
    if n.numel() == 0:
        raise ValueError("no tokens to score")
    mean = float(s.sum() / n.sum())
    m = n.numel()
    se = float(((s - mean * n).pow(2).sum() / max(m - 1, 1)).sqrt() / (n.mean() * math.sqrt(m))) if m > 1 else 0.0
    return math.exp(mean), math.exp(mean - z * se), math.exp(mean + z * se)


@torch.no_grad()
def ar_nlls(tokens: torch.Tensor, ar_model, bos_id: int, batch_size: int = 16) -> list[float]:
    """Per-sample total NLL (nats) under a causal LM (ids -> next-token logits), each
    sample read after a BOS token."""
    out: list[float] = []
    for chunk in tokens.split(batch_size):
        x = torch.cat([torch.full_like(chunk[:, :1], bos_id), chunk], dim=1)
        logits = ar_model(x[:, :-1])
        nll = F.cross_entropy(logits.transpose(1, 2).float(), x[:, 1:], reduction="none")
        out.extend(nll.double().sum(1).tolist())
    return out


def ar_perplexity(tokens: torch.Tensor, ar_model, bos_id: int, batch_size: int = 16) -> float:
    """exp(mean NLL) of the samples under a causal LM (ids -> next-token logits), each
    sample read after a BOS token."""
    return math.exp(sum(ar_nlls(tokens, ar_model, bos_id, batch_size)) / tokens.numel())


def evaluate(tokens: torch.Tensor, tok, eot_id: int, *, ar_model=None, judge=None, stats=None) -> dict:
    """All metrics of one set of samples [N, L]: entropy, Gen PPL (our AR, the judge)
    with 95% intervals (``*_lo``, ``*_hi``), NFEs and seconds per sample from the
    sampler's stats."""
    out = unigram_entropy(tokens)
    if ar_model is not None:
        sums = ar_nlls(tokens, ar_model, eot_id)
        ppl, lo, hi = ppl_interval(sums, [tokens.shape[1]] * len(sums))
        out.update(gen_ppl_ar=ppl, gen_ppl_ar_lo=lo, gen_ppl_ar_hi=hi)
    if judge is not None:
        scored = [judge.nll(t) for t in decode(tokens, tok, eot_id) if t.strip()]
        ppl, lo, hi = ppl_interval([a for a, _ in scored], [b for _, b in scored])
        out.update(gen_ppl_smollm2=ppl, gen_ppl_smollm2_lo=lo, gen_ppl_smollm2_hi=hi)
    if stats is not None:
        out["nfe_denoiser"] = stats.denoiser_calls
        out["nfe_energy"] = stats.energy_calls
        out["seconds_per_sample"] = stats.time_total / tokens.shape[0]
    return out
