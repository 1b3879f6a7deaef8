"""Evaluation of generated samples: generative perplexity under an independent judge
(SmolLM2-135M, edlm_ext.judge) and under our own AR model, unigram entropy, the
sampler's cost (NFEs, wall time per sample), and the frontier comparison: a method's Gen
PPL against MDLM's temperature frontier interpolated at the method's own entropy, with
bootstrap intervals that carry the frontier's uncertainty (:func:`compare_to_frontier`)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
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


def sample_entropies(tokens: torch.Tensor) -> list[float]:
    """The entropy (nats) of each sample's token histogram (low = repetitive)."""
    ents = []
    for row in tokens:
        counts = torch.bincount(row).double()
        p = counts[counts > 0] / counts.sum()
        ents.append(float(-(p * p.log()).sum()))
    return ents


def unigram_entropy(tokens: torch.Tensor) -> dict:
    """Mean over samples of the entropy of each sample's token histogram (low = repetitive)."""
    ents = sample_entropies(tokens)
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


@torch.no_grad()
def judge_nlls(judge, texts: list[str], batch_size: int = 16) -> list[tuple[float, int]]:
    """(total NLL, token count) of each text under the judge (edlm_ext.judge.SmolLM2Judge),
    as ``judge.nll`` computes them (each text's tokens after a BOS, at most
    ``judge.max_len - 1``), in right-padded batches of similar lengths: a causal LM's
    logits at a position do not depend on the padding after it. Empty texts give (0, 0)."""
    ids = [judge.tok.encode(t).ids[: judge.max_len - 1] if t.strip() else [] for t in texts]
    out: list[tuple[float, int]] = [(0.0, 0)] * len(texts)
    order = sorted((i for i in range(len(ids)) if ids[i]), key=lambda i: len(ids[i]))
    for a in range(0, len(order), batch_size):
        group = order[a:a + batch_size]
        n = max(len(ids[i]) for i in group)
        x = torch.full((len(group), n + 1), judge.bos, dtype=torch.long)
        for r, i in enumerate(group):
            x[r, 1:len(ids[i]) + 1] = torch.tensor(ids[i])
        lp = F.log_softmax(judge.logits(x[:, :-1]), -1).gather(-1, x[:, 1:].unsqueeze(-1)).squeeze(-1)
        for r, i in enumerate(group):
            out[i] = (float(-lp[r, :len(ids[i])].double().sum()), len(ids[i]))
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
        scored = [r for r in judge_nlls(judge, decode(tokens, tok, eot_id)) if r[1] > 0]
        ppl, lo, hi = ppl_interval([a for a, _ in scored], [b for _, b in scored])
        out.update(gen_ppl_smollm2=ppl, gen_ppl_smollm2_lo=lo, gen_ppl_smollm2_hi=hi)
    if stats is not None:
        out["nfe_denoiser"] = stats.denoiser_calls
        out["nfe_energy"] = stats.energy_calls
        out["seconds_per_sample"] = stats.time_total / tokens.shape[0]
    return out


# ---------------------------------------------------------------------------------
# The frontier comparison (issue 15): Gen PPL relative to MDLM's temperature frontier


@dataclass
class SampleSet:
    """Per-sample numbers of one arm (one method at one step count): each sample's total
    NLL under a judge and its token count, and its unigram entropy (nats)."""

    nll: np.ndarray  # [n] float64
    count: np.ndarray  # [n]
    entropy: np.ndarray  # [n]

    def __post_init__(self):
        self.nll, self.count, self.entropy = (np.asarray(a, dtype=np.float64) for a in
                                              (self.nll, self.count, self.entropy))
        if not (self.nll.shape == self.count.shape == self.entropy.shape) or self.nll.ndim != 1 or not len(self.nll):
            raise ValueError("nll, count and entropy must be equally long, non-empty 1-d arrays")

    def log_ppl(self) -> float:
        return float(self.nll.sum() / self.count.sum())

    def boot(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log Gen PPL, mean entropy) of each bootstrap resample idx [R, n]."""
        return self.nll[idx].sum(1) / self.count[idx].sum(1), self.entropy[idx].mean(1)


def frontier_log_ppl(entropies, log_ppls, h) -> tuple[np.ndarray, np.ndarray]:
    """The frontier's log Gen PPL at entropy h: piecewise linear in entropy through the
    points sorted by entropy, extended linearly beyond the outermost two. Vectorized over
    a leading axis (arrays [R, m] of points and [R] of h). Also whether h lies outside."""
    e, y, h = np.atleast_2d(entropies), np.atleast_2d(log_ppls), np.atleast_1d(np.asarray(h, dtype=np.float64))
    order = np.argsort(e, axis=1)
    e, y = np.take_along_axis(e, order, 1), np.take_along_axis(y, order, 1)
    m = e.shape[1]
    if m < 2:
        raise ValueError("a frontier needs at least two points")
    j = np.clip((e < h[:, None]).sum(1) - 1, 0, m - 2)  # segment index (outermost segments extend)
    r = np.arange(e.shape[0])
    e0, e1, y0, y1 = e[r, j], e[r, j + 1], y[r, j], y[r, j + 1]
    slope = (y1 - y0) / np.where(e1 > e0, e1 - e0, np.nan)
    out = y0 + slope * (h - e0)
    outside = (h < e[:, 0]) | (h > e[:, -1])
    return out, outside


def compare_to_frontier(method: SampleSet, frontier: list[SampleSet], *, n_boot: int = 4000,
                        seed: int = 0) -> dict:
    """A method's Gen PPL relative to the frontier interpolated at its own entropy.

    The frontier is one point per arm of ``frontier`` (MDLM at several temperatures, the
    same step count): (mean entropy, log Gen PPL). The relative number is
    rel = Gen PPL(method) / frontier(entropy(method)), < 1 when the method beats the
    frontier at equal entropy. Its 95% interval is a percentile bootstrap with samples
    as the units: every arm (the method and each frontier arm, all drawn independently)
    is resampled with replacement in each of ``n_boot`` replicates, and the frontier is
    re-interpolated at the replicate's entropy — so the interval carries the frontier's
    own uncertainty and that of the method's entropy. ``p`` is the two-sided bootstrap
    p-value of rel = 1 (twice the smaller tail), floored at 1 / n_boot.

    Returns a dict: gen_ppl (+ _lo/_hi: the method's own 95% interval, delta method as
    :func:`ppl_interval`), entropy (+ _lo/_hi), frontier_ppl (at the method's entropy),
    rel (+ rel_lo, rel_hi), p, extrapolated (the entropy lies outside the frontier's range).
    """
    rng = np.random.default_rng(seed)
    lp, ent = method.log_ppl(), float(method.entropy.mean())
    e_f = np.array([f.entropy.mean() for f in frontier])
    y_f = np.array([f.log_ppl() for f in frontier])
    y_at, outside = frontier_log_ppl(e_f, y_f, ent)
    b_lp, b_ent = method.boot(rng.integers(0, len(method.nll), (n_boot, len(method.nll))))
    b_y, b_e = np.empty((n_boot, len(frontier))), np.empty((n_boot, len(frontier)))
    for i, f in enumerate(frontier):
        b_y[:, i], b_e[:, i] = f.boot(rng.integers(0, len(f.nll), (n_boot, len(f.nll))))
    b_rel = b_lp - frontier_log_ppl(b_e, b_y, b_ent)[0]
    b_rel = b_rel[np.isfinite(b_rel)]
    ppl, lo, hi = ppl_interval(method.nll.tolist(), method.count.tolist())
    se_e = float(method.entropy.std(ddof=1) / math.sqrt(len(method.entropy))) if len(method.entropy) > 1 else 0.0
    rel = lp - float(y_at[0])
    tail = min((b_rel >= 0).mean(), (b_rel <= 0).mean())
    return {"gen_ppl": ppl, "gen_ppl_lo": lo, "gen_ppl_hi": hi, "entropy": ent, "entropy_lo": ent - 1.96 * se_e,
            "entropy_hi": ent + 1.96 * se_e, "frontier_ppl": math.exp(float(y_at[0])), "rel": math.exp(rel),
            "rel_lo": math.exp(float(np.quantile(b_rel, 0.025))), "rel_hi": math.exp(float(np.quantile(b_rel, 0.975))),
            "p": max(2 * float(tail), 1.0 / n_boot), "extrapolated": bool(outside[0])}


def holm(pvalues: list[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down rule: which of the hypotheses are rejected at family-wise level alpha."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out = [False] * len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        out[i] = True
    return out


def frontier_rows(sets: dict, is_frontier, *, n_boot: int = 4000, seed: int = 0) -> list[dict]:
    """Every arm of ``sets`` ({(label, steps): SampleSet}) against the frontier of its step
    count (the arms with ``is_frontier(label)`` at those steps): one dict per arm with
    label, steps, n, frontier (bool) and :func:`compare_to_frontier`'s numbers (frontier
    arms: their Gen PPL and entropy only), and ``holm`` (significant at family-wise 5%
    among the non-frontier arms of the table). Step counts with fewer than two frontier
    arms get no relative numbers."""
    rows = []
    for (label, steps), ss in sets.items():
        front = [v for (lab, st), v in sets.items() if st == steps and is_frontier(lab)]
        row = {"label": label, "steps": steps, "n": len(ss.nll), "frontier": bool(is_frontier(label))}
        if len(front) >= 2 and not row["frontier"]:
            row.update(compare_to_frontier(ss, front, n_boot=n_boot, seed=seed))
        else:
            ppl, lo, hi = ppl_interval(ss.nll.tolist(), ss.count.tolist())
            se = float(ss.entropy.std(ddof=1) / math.sqrt(len(ss.entropy))) if len(ss.entropy) > 1 else 0.0
            ent = float(ss.entropy.mean())
            row.update(gen_ppl=ppl, gen_ppl_lo=lo, gen_ppl_hi=hi, entropy=ent, entropy_lo=ent - 1.96 * se,
                       entropy_hi=ent + 1.96 * se)
        rows.append(row)
    tested = [i for i, r in enumerate(rows) if not r["frontier"] and "p" in r]
    for i, sig in zip(tested, holm([rows[i]["p"] for i in tested])):
        rows[i]["holm"] = sig
    return rows
