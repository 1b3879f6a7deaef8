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


@torch.no_grad()
def ar_perplexity(tokens: torch.Tensor, ar_model, bos_id: int, batch_size: int = 16) -> float:
    """exp(mean NLL) of the samples under a causal LM (ids -> next-token logits), each
    sample read after a BOS token."""
    total, n = 0.0, 0
    for chunk in tokens.split(batch_size):
        x = torch.cat([torch.full_like(chunk[:, :1], bos_id), chunk], dim=1)
        logits = ar_model(x[:, :-1])
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1), reduction="sum")
        total, n = total + float(nll), n + chunk.numel()
    return math.exp(total / n)


def judge_perplexity(texts: list[str], judge) -> float:
    """Generative perplexity of texts under the SmolLM2 judge (retokenized with its BPE)."""
    return judge.perplexity([t for t in texts if t.strip()])


def evaluate(tokens: torch.Tensor, tok, eot_id: int, *, ar_model=None, judge=None, stats=None) -> dict:
    """All metrics of one set of samples [N, L]: entropy, Gen PPL (our AR, the judge),
    NFEs and seconds per sample from the sampler's stats."""
    out = unigram_entropy(tokens)
    if ar_model is not None:
        out["gen_ppl_ar"] = ar_perplexity(tokens, ar_model, eot_id)
    if judge is not None:
        out["gen_ppl_smollm2"] = judge_perplexity(decode(tokens, tok, eot_id), judge)
    if stats is not None:
        out["nfe_denoiser"] = stats.denoiser_calls
        out["nfe_energy"] = stats.energy_calls
        out["seconds_per_sample"] = stats.time_total / tokens.shape[0]
    return out
