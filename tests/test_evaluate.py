"""Evaluation metrics, and the SmolLM2 judge when its optional packages are installed."""
import math

import numpy as np
import pytest
import torch

from edlm_ext import data, evaluate


def test_unigram_entropy():
    rep = torch.zeros(2, 10, dtype=torch.long)
    uni = torch.arange(10).repeat(2, 1)
    assert evaluate.unigram_entropy(rep)["entropy_nats"] == 0.0
    e = evaluate.unigram_entropy(uni)
    assert abs(e["entropy_nats"] - math.log(10)) < 1e-9 and abs(e["entropy_bits"] - math.log2(10)) < 1e-9


def test_decode_splits_paragraphs():
    tok = data.load_tokenizer()
    eot, _ = data.special_ids(tok)
    a, b = tok.encode("Emma Woodhouse").ids, tok.encode("handsome, clever").ids
    texts = evaluate.decode(torch.tensor([[eot, *a, eot, *b]]), tok, eot)
    assert texts == ["Emma Woodhouse\nhandsome, clever"]


def test_ar_perplexity_of_a_uniform_model():
    V = 7

    def uniform(ids):
        return torch.zeros(*ids.shape, V)

    ppl = evaluate.ar_perplexity(torch.randint(0, V, (3, 5)), uniform, bos_id=0)
    assert abs(ppl - V) < 1e-4  # float32 cross-entropy


def test_smollm2_judge_prefers_real_text():
    judge_mod = pytest.importorskip("edlm_ext.judge")
    try:
        judge = judge_mod.SmolLM2Judge()
    except ImportError as e:
        pytest.skip(str(e))
    real = ["It is a truth universally acknowledged, that a single man in possession of a good fortune, "
            "must be in want of a wife."]
    shuffled = ["wife. a fortune, of want in be must good possession single that a truth It a universally man of "
                "acknowledged, in is a"]
    assert judge.perplexity(real) < judge.perplexity(shuffled) / 5
    assert judge.perplexity(real) < 60


def _coverage(interval, reps=400, m=64, seed=0):
    """How often interval(sums, counts) covers the true perplexity exp(5) when every
    sample has its own mean NLL (sample-level effect sd 0.5, token sd 1)."""
    g = torch.Generator().manual_seed(seed)
    hits = 0
    for _ in range(reps):
        counts = torch.randint(100, 141, (m,), generator=g)
        mu = 5.0 + 0.5 * torch.randn(m, generator=g, dtype=torch.float64)
        sums = [float((mu[i] + torch.randn(int(counts[i]), generator=g, dtype=torch.float64)).sum())
                for i in range(m)]
        _, lo, hi = interval(sums, counts.tolist())
        hits += lo <= math.exp(5.0) <= hi
    return hits, reps


def test_ppl_interval_covers_at_its_nominal_rate():
    from .stats import Z_CRIT, binomial_z

    ppl, lo, hi = evaluate.ppl_interval([10.0, 12.0], [5, 5])
    assert abs(ppl - math.exp(2.2)) < 1e-12 and lo < ppl < hi
    hits, reps = _coverage(evaluate.ppl_interval)
    assert abs(binomial_z(hits, reps, 0.95)) < Z_CRIT

    def tokens_as_units(sums, counts):  # known wrong: ignores that tokens of one sample share its mean
        n = sum(counts)
        mean = sum(sums) / n
        se = 1.0 / math.sqrt(n)
        return math.exp(mean), math.exp(mean - 1.96 * se), math.exp(mean + 1.96 * se)

    hits, reps = _coverage(tokens_as_units)
    assert abs(binomial_z(hits, reps, 0.95)) > Z_CRIT


def test_frontier_interpolation():
    y, out = evaluate.frontier_log_ppl([4.0, 4.2, 4.4], [5.0, 6.0, 8.0], [4.1, 4.3, 4.5, 3.9])
    assert np.allclose(y, [5.5, 7.0, 9.0, 4.5]) and out.tolist() == [False, False, True, True]
    y, _ = evaluate.frontier_log_ppl([4.4, 4.0, 4.2], [8.0, 5.0, 6.0], 4.3)  # any order of points
    assert np.allclose(y, [7.0])


def _arm(rng, h, y, n=64, L=128, sd_h=0.05, sd_y=0.3):
    return evaluate.SampleSet(L * (y + sd_y * rng.standard_normal(n)), np.full(n, L), h + sd_h * rng.standard_normal(n))


def _frontier_coverage(frontier_fixed: bool, reps=300):
    """How often compare_to_frontier's interval covers the true ratio 0.9: a linear frontier
    log ppl = 6 + 5 (h - 4.2) sampled at three temperatures, a method 10% below it."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(reps):
        front = [_arm(rng, h, 6 + 5 * (h - 4.2)) for h in (4.1, 4.2, 4.3)]
        if frontier_fixed:  # known wrong: the frontier's own uncertainty ignored
            for f in front:
                f.boot = (lambda f: lambda idx: (np.full(len(idx), f.log_ppl()), np.full(len(idx), f.entropy.mean())))(f)
        m = _arm(rng, 4.22, 6 + 5 * 0.02 + np.log(0.9))
        r = evaluate.compare_to_frontier(m, front, n_boot=1000, seed=int(rng.integers(1 << 30)))
        hits += r["rel_lo"] <= 0.9 <= r["rel_hi"]
    return hits, reps


def test_frontier_interval_covers_and_carries_the_frontiers_uncertainty():
    from .stats import Z_CRIT, binomial_z

    hits, reps = _frontier_coverage(False)
    assert abs(binomial_z(hits, reps, 0.95)) < Z_CRIT, hits / reps
    hits, reps = _frontier_coverage(True)
    assert binomial_z(hits, reps, 0.95) < -Z_CRIT, hits / reps


def test_holm():
    assert evaluate.holm([0.01, 0.04, 0.03]) == [True, False, False]
    assert evaluate.holm([0.01, 0.02, 0.015]) == [True, True, True]
