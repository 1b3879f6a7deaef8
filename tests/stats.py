"""Statistical checks with thresholds from the distributions (fixed seeds in the tests)."""
from __future__ import annotations

import numpy as np
from scipy import stats


def chisquare_pvalue(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> float:
    """Pearson chi-square p-value of counts against probs. Bins whose expected count is
    below min_expected are pooled into one bin (kept only if it reaches min_expected)."""
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    n = counts.sum()
    expected = probs * n
    big = expected >= min_expected
    obs = list(counts[big])
    exp = list(expected[big])
    if expected[~big].sum() >= min_expected:
        obs.append(counts[~big].sum())
        exp.append(expected[~big].sum())
    elif counts[~big].sum() > 0 and expected[~big].sum() == 0:
        return 0.0  # draws where the target has no mass at all
    obs, exp = np.array(obs), np.array(exp)
    stat = ((obs - exp) ** 2 / exp).sum()
    return float(stats.chi2.sf(stat, df=len(obs) - 1))


def binomial_z(successes: int, n: int, p: float) -> float:
    """z-score of a binomial count against its expectation n p."""
    return (successes - n * p) / np.sqrt(n * p * (1 - p))


# Two-sided thresholds used throughout: a correct sampler fails a given check with
# probability 1e-4 (chi-square) or ~1e-5 (z), and every check runs with a fixed seed.
CHI2_ALPHA = 1e-4
Z_CRIT = float(stats.norm.isf(0.5e-5))
