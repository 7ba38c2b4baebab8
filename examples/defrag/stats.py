"""The paired tests of the report, and the text forms of their statistics.

- McNemar's exact test compares two runs of the same seed on the same test examples. Of the
  examples that exactly one of the two classifies correctly, it tests whether each run gets
  half (a two-sided binomial test at 1/2, ``scipy.stats.binomtest``).
- The two-sided paired t-test (``scipy.stats.ttest_rel``) compares per-seed values of two
  configurations over the seeds that both ran, so it measures the variation between seeds,
  which McNemar's test of one seed cannot see.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import scipy.stats
import torch


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test of one run against the baseline run of the same seed.

    Attributes:
        wins: Test examples that the run classifies correctly and the baseline does not.
        losses: Test examples that the baseline classifies correctly and the run does not.
        p_value: Two-sided exact p-value; 1.0 when no example is classified differently.
    """

    wins: int
    losses: int
    p_value: float


def mcnemar_exact(baseline_correct: torch.Tensor, variant_correct: torch.Tensor) -> McNemarResult:
    """Run McNemar's exact test on two boolean vectors of per-example correctness.

    Raises:
        ValueError: When the vectors differ in length, because then they do not describe the
            same test examples.
    """
    if baseline_correct.shape != variant_correct.shape:
        raise ValueError(
            f"McNemar's test needs predictions on the same test examples, got "
            f"{baseline_correct.numel()} and {variant_correct.numel()} examples."
        )
    wins = int((variant_correct & ~baseline_correct).sum())
    losses = int((baseline_correct & ~variant_correct).sum())

    if wins + losses == 0:
        return McNemarResult(wins, losses, 1.0)
    p_value = scipy.stats.binomtest(wins, wins + losses, 0.5).pvalue
    return McNemarResult(wins, losses, float(p_value))


def paired_t_test(variant: Sequence[float], baseline: Sequence[float]) -> float | None:
    """Return the two-sided p-value of the paired t-test, or None when it is undefined.

    The test is undefined for fewer than two pairs, and when every pair has the same
    difference (the standard deviation of the differences is 0, up to rounding).
    """
    differences = [a - b for a, b in zip(variant, baseline, strict=True)]
    # Accuracies on one test set are multiples of 1 / N, so equal differences can differ by
    # rounding. The tolerance is far below 1 / N for any test set of fewer than 1e8 examples.
    if len(differences) < 2 or math.isclose(max(differences), min(differences), abs_tol=1e-9):
        return None
    return float(scipy.stats.ttest_rel(variant, baseline).pvalue)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Return the two-sided Student-t confidence interval of the mean of ``values``.

    The interval is ``mean ± t(1 - (1 - level) / 2, n - 1) * s / sqrt(n)``, with ``s`` the
    sample standard deviation. None for fewer than two values, where it is undefined.
    """
    if len(values) < 2:
        return None
    half = scipy.stats.t.ppf(0.5 + level / 2, len(values) - 1) * statistics.stdev(values)
    half /= math.sqrt(len(values))
    center = statistics.fmean(values)
    return center - half, center + half


def format_p(p_value: float) -> str:
    """Format a p-value with 2 significant digits; one that underflowed to 0 as ``< 1e-300``."""
    return "< 1e-300" if p_value == 0 else f"{p_value:.2g}"


def mean(values: Sequence[float]) -> float:
    """Return the mean, or NaN for no values."""
    return statistics.fmean(values) if values else math.nan


def mean_std(values: Sequence[float]) -> str:
    """Format ``mean ± sample std``, the mean alone for one value, n/a for none."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"
