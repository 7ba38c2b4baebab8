"""Verdicts on the DEFRAG paper's claims (Minnehan & Savakis, arXiv:1806.07688), at the 5% level.

The paper's accuracies are ``examples.defrag.variants.PAPER_RESULTS``. A verdict is withheld
for a configuration whose runs diverged or stayed near the chance level
(``examples.defrag.results.RunResult.learned``), because such a run is no evidence about the
configuration.

The cluster claim, that DEFRAG leads the silhouette score and distance ratio, is judged against
the configurations of the report that are not DEFRAG (its rivals). Other DEFRAG rows, such as
other retractions or optimizers, are settings of the same method and not rivals, so the report
only names the row with the best value of each metric.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from examples.defrag.results import (
    Divergence,
    Group,
    difference_to_baseline,
    paired_accuracies,
    paired_finals,
    seed_correctness,
)
from examples.defrag.stats import format_p, mcnemar_exact, mean, paired_t_test, t_interval
from examples.defrag.variants import PAPER_TEST_EXAMPLES, VARIANTS, PaperResults

SIGNIFICANCE = 0.05

# The auxiliary losses that the paper compares DEFRAG with. Each adds its loss to a linear
# feature layer, where DEFRAG adds the silhouette loss to a Grassmann feature layer.
PAPER_RIVALS = ("silhouette", "center", "contrastive-center")


@dataclass(frozen=True)
class ClusterMetric:
    """A last-epoch metric on which the paper's cluster claim puts DEFRAG ahead.

    Attributes:
        key: The column of ``metrics.json``.
        comparative: DEFRAG's claimed lead over one rival, such as "a higher test silhouette
            score".
        superlative: The lead among several rows, such as "the highest test silhouette score".
        best_of: ``max`` where higher values are better, ``min`` where lower ones are.
    """

    key: str
    comparative: str
    superlative: str
    best_of: Callable[..., Any]


@dataclass(frozen=True)
class ClaimTest:
    """One test behind a verdict, kept for Holm's correction over all the tests of a page.

    Attributes:
        claim: The paper's claim, such as "DEFRAG (polar, rsgd) is above Linear".
        p_value: The two-sided p-value of the test.
        finding: The outcome of a significant result for the claim: "confirmed", or "not
            confirmed" with the side that leads, so that a verdict that survives the
            correction is never read as support for a claim that it contradicts.
    """

    claim: str
    p_value: float
    finding: str


CLUSTER_METRICS = (
    ClusterMetric(
        "test_silhouette",
        "a higher test silhouette score",
        "the highest test silhouette score",
        max,
    ),
    ClusterMetric(
        "test_distance_ratio", "a lower distance ratio", "the lowest distance ratio", min
    ),
)


def render_verdicts(
    groups: Sequence[Group],
    baseline: Group | None,
    orphans: Mapping[str, Sequence[Divergence]],
    paper: PaperResults | None = None,
    comparable: bool = True,
) -> str:
    """Judge each claim of the paper that the runs can test, at the 5% level.

    Three kinds of claim are judged. The first is the order of each configuration against
    Linear, where the paper's numbers give one. The second is the accuracy that the paper
    reports for DEFRAG, or for every configuration where it gives only a lower bound. The
    third is DEFRAG's lead on the cluster metrics. A claim is
    confirmed when the runs show the same direction with p < 0.05, not confirmed when they show
    the opposite direction with p < 0.05, and not distinguishable from noise otherwise. A
    difference against Linear with p < 0.05 that the paper's numbers do not order is listed
    after the verdicts.

    Args:
        groups: The configurations with at least one finished run.
        baseline: The Linear configuration, or None when the grid has no finished Linear run.
        orphans: The diverged runs of configurations without a finished run, by label.
        paper: The paper's accuracies on the runs' dataset, which tell which of
            ``PAPER_RIVALS`` the paper runs there; None to expect all of them.
        comparable: Whether the runs' accuracies can be set against the paper's levels. False
            when they trained on another split than the paper's, so that the claims on an
            accuracy level are not tested.
    """
    tests: list[ClaimTest] = []
    claims = [f"- {label}: withheld, every run diverged (see above)." for label in orphans]
    claims += _ordering_verdicts(groups, baseline, tests)
    claims += _target_verdicts(groups, comparable)

    blocks = [
        f"Each verdict uses the paired test of the main table (significance level "
        f"{SIGNIFICANCE}, two-sided). A claim is confirmed when the runs show its direction with "
        f"p < {SIGNIFICANCE}, and not confirmed when they show the opposite direction with "
        f"p < {SIGNIFICANCE}. A difference, in either direction, that the test cannot "
        "separate from seed-to-seed or example-to-example variation is called not "
        f"distinguishable from noise.{_resolution(groups, baseline)}"
    ]
    if claims:
        blocks.append("\n".join(claims))
    blocks += _cluster_section(groups, orphans, paper, tests)
    blocks += _multiplicity(tests)
    blocks += _other_differences(groups, baseline)
    return "\n\n".join(blocks)


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Return Holm's step-down adjusted p-values, in the order of ``p_values``.

    The i-th smallest of m p-values is multiplied by m - i + 1 (i from 1), capped at 1, and
    made non-decreasing along the sorted order. Rejecting where the adjusted value is below the
    level controls the chance of any false rejection among the m tests at that level.
    """
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _multiplicity(tests: Sequence[ClaimTest]) -> list[str]:
    """Report which significant verdicts survive Holm's correction over all the tests.

    Returns no paragraph with fewer than two tests or without a significant one, because then
    the correction changes no verdict.
    """
    significant = [test for test in tests if test.p_value < SIGNIFICANCE]
    if len(tests) < 2 or not significant:
        return []

    adjusted = holm_adjusted([test.p_value for test in tests])
    surviving = [
        f'"{test.claim}": {test.finding} (adjusted p = {format_p(holm)})'
        for test, holm in zip(tests, adjusted, strict=True)
        if test.p_value < SIGNIFICANCE and holm < SIGNIFICANCE
    ]
    text = (
        f"The {len(tests)} tests above each use the {SIGNIFICANCE} level on their own. Holm's "
        f"correction for all {len(tests)}, which keeps the chance of any false verdict among "
        f"them below {SIGNIFICANCE}, "
    )
    if surviving:
        text += f"keeps {len(surviving)} of the {len(significant)} significant verdicts: "
        text += "; ".join(surviving) + "."
    elif len(significant) == 1:
        text += "does not keep the one significant verdict."
    else:
        text += f"keeps none of the {len(significant)} significant verdicts."
    return [text]


def _ordering_verdicts(
    groups: Sequence[Group], baseline: Group | None, tests: list[ClaimTest]
) -> list[str]:
    """Verdicts on "configuration X is above (or below) Linear" where the paper orders the two.

    Each test made is appended to ``tests`` as (claim, p-value).
    """
    if baseline is None or baseline.paper is None:
        return []
    lines = []
    for group in groups:
        paper = paper_gap_to_baseline(group, baseline)
        if group is baseline or paper is None:
            continue
        paper_gap, paper_text = paper
        direction = "above" if paper_gap > 0 else "below"
        claim = f"{group.label} is {direction} Linear (paper: {paper_text})"
        if not (group.learned and baseline.learned):
            failed = group if not group.learned else baseline
            lines.append(
                f"- {claim}: withheld, a run of {failed.label} "
                f"{failure_reasons(failed).replace(' and ', ' or ')} (see above)."
            )
            continue
        difference = difference_to_baseline(group, baseline)
        p_value = _p_value_against_baseline(group, baseline)
        if difference is None:
            lines.append(f"- {claim}: not testable here (no paired runs).")
            continue
        if p_value is None:
            lines.append(f"- {claim}: {_EQUAL_GAINS}, here {difference:+.4f}.")
            continue
        agrees = (difference > 0) == (paper_gap > 0)
        finding = "confirmed" if agrees else "not confirmed, the opposite holds"
        tests.append(ClaimTest(f"{group.label} is {direction} Linear", p_value, finding))
        verdict = _verdict(agrees, p_value)
        if len(paired_accuracies(group, baseline)) == 1 and p_value < SIGNIFICANCE:
            verdict += " on one seed only; the variation between seeds is not tested"
        lines.append(
            f"- {claim}: {verdict}, here {difference:+.4f}{_gap_interval(group, baseline)}"
            f"{_seed_tally(group, baseline)}."
        )
    return lines


def _seed_tally(group: Group, baseline: Group) -> str:
    """Return on how many common seeds a configuration is above and below Linear.

    The paired t-test can miss a gap that every seed shows when one seed's gap is far larger
    than the others', so the verdict names the count beside it. Empty with fewer than two seeds.
    """
    pairs = paired_accuracies(group, baseline)
    if len(pairs) < 2:
        return ""

    above = sum(a > b for a, b in pairs.values())
    below = sum(a < b for a, b in pairs.values())
    every = "both" if len(pairs) == 2 else f"all {len(pairs)}"
    if above == len(pairs):
        return f", above Linear on {every}"
    if below == len(pairs):
        return f", below Linear on {every}"
    return f", above Linear on {above} of them and below on {below}"


def _resolution(groups: Sequence[Group], baseline: Group | None) -> str:
    """Compare the paper's printed gaps to Linear with the standard error of one accuracy.

    Returns a sentence, or "" when the paper prints no gap to Linear. A gap below one standard
    error of an accuracy on the paper's test set is one that its own test set cannot resolve.
    """
    if baseline is None or baseline.paper is None or baseline.paper.relation != "=":
        return ""
    # One gap per configuration: DEFRAG rows with other retractions share the paper's value.
    by_name = {
        group.variant.name: abs(gap[0])
        for group in groups
        if group is not baseline
        and group.paper is not None
        and group.paper.relation == "="
        and (gap := paper_gap_to_baseline(group, baseline)) is not None
    }
    gaps = list(by_name.values())
    if not gaps:
        return ""
    se = _paper_se(baseline.paper.accuracy)
    below = sum(1 for gap in gaps if gap < se)
    if below == 0:
        return ""

    text = (
        f" One standard error of the paper's Linear accuracy on its {PAPER_TEST_EXAMPLES:,} test "
        f"images is {se:.5f}"
    )
    if len(gaps) == 1:
        return (
            text + ", more than the paper's gap to Linear below, so its test set cannot order it."
        )
    if below == len(gaps):
        return (
            text + f", more than each of the paper's {len(gaps)} gaps to Linear below, so its "
            "test set cannot order any of them."
        )
    return (
        text + f", more than {below} of the paper's {len(gaps)} gaps to Linear below, so its "
        "test set cannot order those."
    )


def _paper_se(accuracy: float) -> float:
    """Return the binomial standard error of an accuracy on the paper's test set."""
    return math.sqrt(accuracy * (1 - accuracy) / PAPER_TEST_EXAMPLES)


def _gap_interval(group: Group, baseline: Group, name_seeds: bool = True) -> str:
    """Return ``, 95% CI a to b over n seeds`` for the mean per-seed gap to Linear.

    Empty with fewer than two common seeds. ``name_seeds`` False leaves out "over n seeds".
    """
    pairs = paired_accuracies(group, baseline)
    interval = t_interval([a - b for a, b in pairs.values()])
    if interval is None:
        return ""
    text = f", 95% CI {interval[0]:+.4f} to {interval[1]:+.4f}"
    return text + f" over {len(pairs)} seeds" if name_seeds else text


# The paired t-test has no variance to work with when every seed gives the same difference.
_EQUAL_GAINS = (
    "not testable here, the difference is the same on every common seed, so the paired t-test "
    "is undefined"
)


def _paired_p(pairs: Mapping[int, tuple[float, float]]) -> float | None:
    """Return the paired t-test's p-value over the seeds of ``pairs`` (ours, theirs).

    A difference of 0 on every seed is a tie, p = 1. None when every seed gives the same
    non-zero difference, where the test is undefined.
    """
    ours, theirs = [a for a, _ in pairs.values()], [b for _, b in pairs.values()]
    p_value = paired_t_test(ours, theirs)
    tied = all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(ours, theirs, strict=True))
    if p_value is None and tied:
        return 1.0
    return p_value


def _p_value_against_baseline(group: Group, baseline: Group) -> float | None:
    """Return the p-value of the main table's paired test of ``group`` against Linear.

    None without paired runs, or when the paired t-test is undefined because every seed gives
    the same difference.
    """
    pairs = paired_accuracies(group, baseline)
    if not pairs:
        return None
    if len(pairs) >= 2:
        return _paired_p(pairs)
    seed = next(iter(pairs))
    return mcnemar_exact(seed_correctness(baseline, seed), seed_correctness(group, seed)).p_value


def _verdict(agrees: bool, p_value: float) -> str:
    """Word a verdict from the direction of a difference and its p-value."""
    if p_value >= SIGNIFICANCE:
        return f"not distinguishable from noise (p = {format_p(p_value)})"
    if agrees:
        return f"confirmed (p = {format_p(p_value)})"
    return f"not confirmed, the opposite holds (p = {format_p(p_value)})"


def _target_verdicts(groups: Sequence[Group], comparable: bool) -> list[str]:
    """Verdicts on reaching the paper's accuracy: DEFRAG's, and every lower bound it gives.

    Where the runs are not ``comparable`` with the paper's, each claim is named as not tested.
    """
    lines = []
    for group in groups:
        paper = group.paper
        if paper is None or paper.relation == "~":
            continue
        if group.variant.name != "defrag" and paper.relation != ">":
            continue
        accuracies = group.final("test_accuracy")
        mean_accuracy = mean(accuracies)
        target = paper.accuracy
        claim = f"- {group.label} reaches the paper's {paper.text}: "
        if paper.relation == ">":
            claim = f"- {group.label} is above {target:.4f}, as in the paper: "
        if not group.learned:
            lines.append(claim + f"withheld, a run {failure_reasons(group)} (see above).")
            continue
        if not comparable:
            lines.append(
                claim + f"not testable here, because these runs trained on another split than "
                f"the paper's (mean {mean_accuracy:.4f})."
            )
            continue

        # Means are printed to 4 digits, so a mean that rounds to the target counts as equal.
        gap = round(mean_accuracy - target, 4)
        if gap > 0 or (gap == 0 and paper.relation == "="):
            text = claim + f"yes, mean {mean_accuracy:.4f}."
        else:
            text = claim + f"no, mean {mean_accuracy:.4f} is {relation(mean_accuracy - target)} it"
            interval = t_interval(accuracies)
            if interval is not None:
                text += (
                    f" (95% CI of the mean {interval[0]:.4f} to {interval[1]:.4f}, best seed "
                    f"{max(accuracies):.4f})"
                )
            text += "."
        lines.append(text)
    return lines


# ---------------------------------------------------------------------------------------------
# The cluster claim


def _cluster_section(
    groups: Sequence[Group],
    orphans: Mapping[str, Sequence[Divergence]],
    paper: PaperResults | None,
    tests: list[ClaimTest],
) -> list[str]:
    """Render the verdicts on DEFRAG's cluster lead: a paragraph naming the rivals, then a list.

    Without a rival, only the line on the leading DEFRAG row is left, and nothing without one.
    """
    defrag = [group for group in groups if group.variant.name == "defrag"]
    rivals = [group for group in groups if group.variant.name != "defrag"]
    leader = _defrag_leader(defrag)
    if not defrag:
        return []
    if not rivals:
        if not leader:
            return []
        paragraph = (
            "The page has no configuration other than DEFRAG, so the cluster claim is not tested."
        )
        return [paragraph, "\n".join(leader)]

    # A rival keeps its finished runs when another of its runs diverged, because leaving it out
    # would favour DEFRAG. Only rivals with runs at chance are left out.
    compared = [group for group in rivals if not group.untrained_seeds]
    items = []
    for group in defrag:
        items += _cluster_verdicts(group, compared, tests)
    paragraph = _rivals_paragraph(rivals, compared, orphans, paper)
    if len(defrag) >= 2:
        paragraph += (
            " The DEFRAG rows are one method with different settings, so they are not each "
            "other's rivals"
        )
        paragraph += (
            ", and the last line names the row with the best value of each metric, without a test."
            if leader
            else "."
        )
    return [paragraph, "\n".join(items + leader)]


def _rivals_paragraph(
    rivals: Sequence[Group],
    compared: Sequence[Group],
    orphans: Mapping[str, Sequence[Divergence]],
    paper: PaperResults | None,
) -> str:
    """Name the rivals of the cluster verdicts, and the paper's rivals that are not among them."""
    compared_labels = [group.label for group in compared]
    text = (
        "The cluster verdicts compare each DEFRAG row with its rivals, the configurations on "
        "this page that are not DEFRAG"
    )
    text += f": {join_words(compared_labels)}." if compared else "."

    left_out = [group.label for group in rivals if group.untrained_seeds]
    if left_out:
        text += (
            f" {join_words(left_out)} {_is_are(left_out)} left out, because a run did not learn."
        )

    diverged = [group.label for group in compared if group.diverged]
    if diverged:
        text += (
            f" A configuration with a diverged seed (here {join_words(diverged)}) gets no verdicts "
            "of its own but still serves as a rival over its finished seeds, because leaving "
            "it out would favour DEFRAG."
        )

    always_diverged = [
        label for label, runs in orphans.items() if runs[0].run.spec.variant.name != "defrag"
    ]
    if always_diverged:
        text += (
            f" {join_words(always_diverged)} diverged in every run, so "
            f"{'it is' if len(always_diverged) == 1 else 'they are'} no rival."
        )

    on_page = {group.label for group in rivals} | set(always_diverged)
    expected = [
        VARIANTS[name].label for name in PAPER_RIVALS if paper is None or name in paper.accuracies
    ]
    absent = [label for label in expected if label not in on_page]
    if absent:
        noun = "a rival" if len(absent) == 1 else "rivals"
        text += (
            f" {join_words(absent)}, {noun} of DEFRAG in the paper, {_is_are(absent)} not on "
            "this page"
        )
        text += (
            f", so these verdicts compare DEFRAG with {join_words(compared_labels)} only."
            if compared
            else "."
        )
    return text


def _cluster_verdicts(group: Group, compared: Sequence[Group], tests: list[ClaimTest]) -> list[str]:
    """Judge one DEFRAG row's lead on each cluster metric over every rival."""
    claim = f"- {group.label} leads the silhouette score and distance ratio: "
    if not group.learned:
        return [claim + f"withheld, a run {failure_reasons(group)} (see above)."]
    if not compared:
        return [claim + "withheld, no other configuration learned (see above)."]
    return [_cluster_verdict(group, compared, metric, tests) for metric in CLUSTER_METRICS]


def _cluster_verdict(
    group: Group,
    compared: Sequence[Group],
    metric: ClusterMetric,
    tests: list[ClaimTest],
) -> str:
    """Judge one DEFRAG row's lead on one cluster metric over every rival.

    The claim holds only when DEFRAG leads each rival, so each rival gets its own paired
    t-test over the common seeds (an intersection-union test). The claim is confirmed when
    DEFRAG leads every rival with p < 0.05, and its p-value is the largest of theirs. It is not
    confirmed when a rival leads DEFRAG with p < 0.05. The line shows the rival with the best
    mean and DEFRAG's position against it, seed by seed.
    """
    best = _best_group(compared, metric)
    ours, theirs = mean(group.final(metric.key)), mean(best.final(metric.key))
    text = (
        f"- {group.label} has {metric.comparative} than every rival (here {ours:.4f}, best "
        f"rival: {best.label} {theirs:.4f}): "
    )
    pairs = {rival.label: paired_finals(group, rival, metric.key) for rival in compared}
    short = [label for label, common in pairs.items() if len(common) < 2]
    if short:
        with_whom = "" if len(short) == len(pairs) else f" with {join_words(short)}"
        position = _position(ours, theirs, metric)
        return text + f"{position}, fewer than two common seeds{with_whom}, so no test."

    # A positive gain favours DEFRAG, whichever direction the metric improves in.
    sign = 1 if metric.best_of is max else -1
    gains = {
        label: {seed: sign * (a - b) for seed, (a, b) in common.items()}
        for label, common in pairs.items()
    }
    p_values = {label: _paired_p(common) for label, common in pairs.items()}
    claim = f"{group.label} has {metric.superlative}"
    verdict = _every_rival_verdict(gains, p_values, best.label, claim, tests)
    return text + f"{_seed_direction(gains[best.label])}, {verdict}."


def _position(ours: float, theirs: float, metric: ClusterMetric) -> str:
    """Word DEFRAG's mean against the best rival's: "ahead", "behind" or "tied"."""
    if ours == theirs:
        return "tied"
    return "ahead" if metric.best_of(ours, theirs) == ours else "behind"


def _every_rival_verdict(
    gains: Mapping[str, Mapping[int, float]],
    p_values: Mapping[str, float | None],
    best: str,
    claim: str,
    tests: list[ClaimTest],
) -> str:
    """Word the verdict on leading every rival from the per-rival gains and p-values.

    ``best`` is the rival with the best mean, named first where several rivals are ahead.
    """
    mean_gains = {
        label: statistics.fmean(seed_gains.values()) for label, seed_gains in gains.items()
    }
    leading = {label: gain > 0 for label, gain in mean_gains.items()}
    opposed = {
        label: p
        for label, p in p_values.items()
        if p is not None and p < SIGNIFICANCE and not leading[label]
    }
    if opposed:
        label = min(opposed, key=opposed.__getitem__)
        tests.append(ClaimTest(claim, opposed[label], f"not confirmed, {label} leads"))
        return f"not confirmed, {label} leads (p = {format_p(opposed[label])})"

    undefined = [label for label, p in p_values.items() if p is None]
    if undefined:
        return (
            f"not testable against {join_words(undefined)}, whose gap is the same on every common "
            "seed, so the paired t-test is undefined"
        )

    known = {label: p for label, p in p_values.items() if p is not None}

    # A rival level with or ahead of DEFRAG in the mean gives the lead no support: p = 1.
    ahead = [label for label in known if not leading[label]]
    if ahead:
        tests.append(ClaimTest(claim, 1.0, "not confirmed"))
        label = best if best in ahead else ahead[0]
        position = "is ahead" if mean_gains[label] < 0 else "ties in the mean"
        return f"not distinguishable from noise ({label} {position}, p = {format_p(known[label])})"

    weakest = max(known, key=known.__getitem__)
    p_value = known[weakest]
    tests.append(ClaimTest(claim, p_value, "confirmed against every rival"))
    if p_value < SIGNIFICANCE:
        return f"confirmed against every rival (largest p = {format_p(p_value)})"
    return f"not distinguishable from noise (p = {format_p(p_value)} against {weakest})"


def _seed_direction(gains: Mapping[int, float]) -> str:
    """Describe DEFRAG's position over the common seeds from its per-seed gains over a rival.

    The result reads as in "behind on both common seeds (0, 2)".
    """
    seeds = ", ".join(str(seed) for seed in gains)
    count = len(gains)
    mean_gain = statistics.fmean(gains.values())
    if mean_gain == 0:
        return f"tied in the mean of the {count} common seeds ({seeds})"

    position = "ahead" if mean_gain > 0 else "behind"
    same_side = sum(1 for gain in gains.values() if gain * mean_gain > 0)
    if same_side < count:
        return (
            f"{position} in the mean of the {count} common seeds ({seeds}), on {same_side} of them"
        )
    share = "both" if count == 2 else f"all {count}"
    return f"{position} on {share} common seeds ({seeds})"


def _defrag_leader(defrag: Sequence[Group]) -> list[str]:
    """Name the DEFRAG row that leads each cluster metric, where several DEFRAG rows learned.

    The paper's claims do not order DEFRAG settings, so the line makes no test.
    """
    candidates = [group for group in defrag if group.learned]
    if len(candidates) < 2:
        return []
    leads = []
    for metric in CLUSTER_METRICS:
        ranked = sorted(
            candidates,
            key=lambda group: _mean_or_worst(group.final(metric.key), metric.best_of),
            reverse=metric.best_of is max,
        )
        first, second = ranked[:2]
        value = f"{mean(first.final(metric.key)):.4f}"
        runner_up = f"{second.label} {mean(second.final(metric.key)):.4f}"
        leads.append((first, f"{metric.superlative} ({value}, next: {runner_up})"))

    if len({id(first) for first, _ in leads}) == 1:
        text = f"{leads[0][0].label} has " + " and ".join(phrase for _, phrase in leads)
    else:
        text = ", and ".join(f"{first.label} has {phrase}" for first, phrase in leads)
    return [f"- Of the {len(candidates)} DEFRAG rows, {text}. No test is made between them."]


def _best_group(groups: Sequence[Group], metric: ClusterMetric) -> Group:
    """Return the group with the best mean of a metric, the first one on a tie."""
    return metric.best_of(
        groups, key=lambda group: _mean_or_worst(group.final(metric.key), metric.best_of)
    )


def _mean_or_worst(values: Sequence[float], best_of: Callable[..., float]) -> float:
    """Return the mean, or the worst value for ``best_of`` when there is none."""
    if values:
        return statistics.fmean(values)
    return -math.inf if best_of is max else math.inf


# ---------------------------------------------------------------------------------------------
# Differences that the paper does not claim


def _other_differences(groups: Sequence[Group], baseline: Group | None) -> list[str]:
    """List the configurations significantly above or below Linear that the paper does not
    order against it, as a paragraph and a list, or nothing without any."""
    if baseline is None or not baseline.learned:
        return []
    items = [_other_difference(group, baseline) for group in groups]
    items = [item for item in items if item is not None]
    if not items:
        return []
    return [
        "Other significant differences against Linear, where the paper's numbers give no "
        "order (same test and level). They are not among the tests of Holm's correction above, "
        f"so each holds at the {SIGNIFICANCE} level on its own only:",
        "\n".join(items),
    ]


def _other_difference(group: Group, baseline: Group) -> str | None:
    """Word a significant difference to Linear outside the paper's claims, or return None."""
    if group is baseline or not group.learned:
        return None
    if paper_gap_to_baseline(group, baseline) is not None:
        return None
    difference = difference_to_baseline(group, baseline)
    p_value = _p_value_against_baseline(group, baseline)
    if difference is None or p_value is None or p_value >= SIGNIFICANCE:
        return None

    pairs = paired_accuracies(group, baseline)
    direction = "above" if difference > 0 else "below"
    if len(pairs) >= 2:
        test = f"paired t-test over {len(pairs)} seeds"
    else:
        test = (
            f"McNemar's test of seed {next(iter(pairs))} only, so the variation between seeds "
            "is not tested"
        )
    return (
        f"- {group.label} is {direction} Linear, here {difference:+.4f}"
        f"{_gap_interval(group, baseline, name_seeds=False)} (p = {format_p(p_value)}, {test})."
    )


# ---------------------------------------------------------------------------------------------
# Shared with the report


def relation(difference: float) -> str:
    """Return ``"0.0123 below"``, ``"0.0123 above"`` or ``"equal to (within 0.00005)"``."""
    if round(difference, 4) == 0:
        return "equal to (within 0.00005)"
    return f"{abs(difference):.4f} {'below' if difference < 0 else 'above'}"


def paper_gap_to_baseline(group: Group, baseline: Group) -> tuple[float, str] | None:
    """Return the paper's gap between a configuration and Linear, when the paper gives one."""
    if group.paper is None or baseline.paper is None:
        return None
    return group.paper.gap_to(baseline.paper)


def failure_reasons(group: Group) -> str:
    """Say how the runs of a configuration failed: "diverged", "did not learn", both or ""."""
    reasons = []
    if group.diverged:
        reasons.append("diverged")
    if group.untrained_seeds:
        reasons.append("did not learn")
    return " and ".join(reasons)


def join_words(labels: Sequence[str]) -> str:
    """Join labels as in "A", "A and B" or "A, B and C"."""
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def _is_are(labels: Sequence[str]) -> str:
    """Return the verb "is" for one label and "are" for several."""
    return "is" if len(labels) == 1 else "are"
