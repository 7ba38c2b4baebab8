"""Tests of the paired tests and the text forms of their statistics."""

import math
import statistics

import pytest
import scipy.stats
import torch

from examples.defrag import stats
from examples.defrag.stats import format_p, mcnemar_exact, mean, mean_std, paired_t_test


def test_mcnemar_exact_counts():
    baseline = torch.tensor([True] * 5 + [False] * 5)
    variant = torch.tensor([False] * 5 + [False] * 5)

    result = mcnemar_exact(baseline, variant)

    assert (result.wins, result.losses) == (0, 5)
    assert result.p_value == pytest.approx(2 * 0.5**5)


def test_mcnemar_identical_predictions():
    correct = torch.tensor([True, False, True])

    assert mcnemar_exact(correct, correct).p_value == 1.0


def test_mcnemar_length_mismatch():
    with pytest.raises(ValueError, match="same test examples, got 3 and 2"):
        mcnemar_exact(torch.ones(3, dtype=torch.bool), torch.ones(2, dtype=torch.bool))


def test_paired_t_test():
    variant, baseline = [0.91, 0.90, 0.93], [0.90, 0.88, 0.90]

    expected = scipy.stats.ttest_rel(variant, baseline).pvalue
    assert paired_t_test(variant, baseline) == pytest.approx(expected)
    assert paired_t_test([0.9], [0.8]) is None
    assert paired_t_test([0.9, 0.8], [0.8, 0.7]) is None


def test_format_p_underflow():
    assert format_p(0.0) == "< 1e-300"
    assert format_p(0.012345) == "0.012"


def test_mean_of_no_values():
    assert math.isnan(mean([]))
    assert mean([0.25, 0.75]) == 0.5


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], "n/a"), ([0.9], "0.9000"), ([0.9, 0.8], "0.8500 ± 0.0707")],
    ids=["none", "one", "two"],
)
def test_mean_std_text(values, expected):
    assert mean_std(values) == expected


def test_t_interval_matches_scipy():
    values = [0.91, 0.925, 0.93, 0.918]
    expected = scipy.stats.t.interval(
        0.95, len(values) - 1, loc=statistics.fmean(values), scale=scipy.stats.sem(values)
    )

    assert stats.t_interval(values) == pytest.approx(expected, rel=1e-12)
    assert stats.t_interval([0.9]) is None
