"""Statistical checks with thresholds from the distributions (fixed seeds in the tests)."""
from __future__ import annotations

import numpy as np
from scipy import stats


def chisquare_pvalue(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> float:
    """Pearson chi-square p-value of counts against probs. Bins whose expected count is
    below min_expected are pooled into one bin; a pool still below min_expected is
    merged into the smallest remaining bin. Draws in bins of zero probability give 0."""
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    n = counts.sum()
    expected = probs * n
    if counts[expected == 0].sum() > 0:
        return 0.0
    big = expected >= min_expected
    obs, exp = list(counts[big]), list(expected[big])
    pooled_obs, pooled_exp = counts[~big].sum(), expected[~big].sum()
    p_pool = 1.0
    if pooled_exp >= min_expected or not obs:
        obs.append(pooled_obs)
        exp.append(pooled_exp)
    elif pooled_exp > 0:
        # Too small for the chi-square approximation: merge it, and test its count
        # on its own against Poisson(pooled_exp) (two tests: Bonferroni).
        p_pool = 2 * min(stats.poisson.sf(pooled_obs - 1, pooled_exp), stats.poisson.cdf(pooled_obs, pooled_exp))
        i = int(np.argmin(exp))
        obs[i] += pooled_obs
        exp[i] += pooled_exp
    obs, exp = np.array(obs), np.array(exp)
    p_chi = 1.0
    if len(obs) >= 2:
        p_chi = float(stats.chi2.sf(((obs - exp) ** 2 / exp).sum(), df=len(obs) - 1))
    if p_pool < 1.0:
        return float(min(1.0, 2 * min(p_chi, p_pool)))
    return p_chi


def binomial_z(successes: int, n: int, p: float) -> float:
    """z-score of a binomial count against its expectation n p."""
    return (successes - n * p) / np.sqrt(n * p * (1 - p))


# Two-sided thresholds used throughout: a correct sampler fails a given check with
# probability 1e-4 (chi-square) or ~1e-5 (z), and every check runs with a fixed seed.
CHI2_ALPHA = 1e-4
Z_CRIT = float(stats.norm.isf(0.5e-5))


def homogeneity_pvalue(counts_a: np.ndarray, counts_b: np.ndarray, min_expected: float = 5.0) -> float:
    """Chi-square homogeneity p-value of two count vectors over the same outcomes (are
    they draws from one distribution?). Outcomes whose expected count in either sample
    is below min_expected are pooled into one cell (dropped if the pool is still small)."""
    a = np.asarray(counts_a, dtype=np.float64)
    b = np.asarray(counts_b, dtype=np.float64)
    total = a + b
    keep = total > 0
    a, b, total = a[keep], b[keep], total[keep]
    frac_a = a.sum() / total.sum()
    small = np.minimum(total * frac_a, total * (1 - frac_a)) < min_expected
    cols_a, cols_b = list(a[~small]), list(b[~small])
    pa, pb = a[small].sum(), b[small].sum()
    if min((pa + pb) * frac_a, (pa + pb) * (1 - frac_a)) >= min_expected:
        cols_a.append(pa)
        cols_b.append(pb)
    if len(cols_a) < 2:
        return 1.0
    return float(stats.chi2_contingency(np.array([cols_a, cols_b]), correction=False)[1])
