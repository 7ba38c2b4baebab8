"""Verdicts on the DEFRAG paper's claims (Minnehan & Savakis, arXiv:1806.07688), at the 5% level.

The paper's accuracies are ``examples.defrag.variants.PAPER_RESULTS``. A verdict is withheld
for a configuration whose runs diverged or stayed near the chance level
(``examples.defrag.results.RunResult.learned``), because such a run is no evidence about the
configuration.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence

from examples.defrag.results import (
    Divergence,
    Group,
    difference_to_baseline,
    paired_accuracies,
    seed_correctness,
)
from examples.defrag.stats import format_p, mcnemar_exact, mean, paired_t_test

SIGNIFICANCE = 0.05

CLUSTER_METRICS = (
    ("test_silhouette", "the highest test silhouette score", max),
    ("test_distance_ratio", "the lowest distance ratio", min),
)


def render_verdicts(
    groups: Sequence[Group],
    baseline: Group | None,
    orphans: Mapping[str, Sequence[Divergence]],
) -> str:
    """Judge each claim of the paper that the runs can test, at the 5% level.

    The claims are the order of each configuration against Linear where the paper's numbers
    give one, the accuracy that the paper reports for DEFRAG (and, where it gives only a lower
    bound, for every configuration), and DEFRAG's lead on the cluster metrics. A claim is
    confirmed when the runs show the same direction with p < 0.05, not confirmed when they show
    the opposite direction with p < 0.05, and not distinguishable from noise otherwise.
    """
    lines = [
        f"Each verdict uses the paired test of the main table (significance level "
        f"{SIGNIFICANCE}). A difference, in either direction, that the test cannot separate "
        "from seed-to-seed or example-to-example variation is called not distinguishable from "
        "noise.",
        "",
    ]
    lines += [f"- {label}: withheld, every run diverged (see above)." for label in orphans]
    lines += _ordering_verdicts(groups, baseline)
    lines += _target_verdicts(groups)
    lines += _cluster_verdicts(groups)
    return "\n".join(lines)


def _ordering_verdicts(groups: Sequence[Group], baseline: Group | None) -> list[str]:
    """Verdicts on "configuration X is above (or below) Linear" where the paper orders the two."""
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
        if difference is None or p_value is None:
            lines.append(f"- {claim}: not testable here (no paired runs).")
            continue
        agrees = (difference > 0) == (paper_gap > 0)
        verdict = _verdict(agrees, p_value)
        if len(paired_accuracies(group, baseline)) == 1 and p_value < SIGNIFICANCE:
            verdict += " on one seed only; the variation between seeds is not tested"
        lines.append(f"- {claim}: {verdict}, here {difference:+.4f}.")
    return lines


def _p_value_against_baseline(group: Group, baseline: Group) -> float | None:
    """Return the p-value of the main table's paired test of ``group`` against Linear."""
    pairs = paired_accuracies(group, baseline)
    if not pairs:
        return None
    if len(pairs) >= 2:
        p_value = paired_t_test([a for a, _ in pairs.values()], [b for _, b in pairs.values()])
        return 1.0 if p_value is None else p_value
    seed = next(iter(pairs))
    return mcnemar_exact(seed_correctness(baseline, seed), seed_correctness(group, seed)).p_value


def _verdict(agrees: bool, p_value: float) -> str:
    """Word a verdict from the direction of a difference and its p-value."""
    if p_value >= SIGNIFICANCE:
        return f"not distinguishable from noise (p = {format_p(p_value)})"
    if agrees:
        return f"confirmed (p = {format_p(p_value)})"
    return f"not confirmed, the opposite holds (p = {format_p(p_value)})"


def _target_verdicts(groups: Sequence[Group]) -> list[str]:
    """Verdicts on reaching the paper's accuracy: DEFRAG's, and every lower bound it gives."""
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

        # Means are printed to 4 digits, so a mean that rounds to the target counts as equal.
        gap = round(mean_accuracy - target, 4)
        if gap > 0 or (gap == 0 and paper.relation == "="):
            text = claim + f"yes, mean {mean_accuracy:.4f}."
        else:
            text = claim + f"no, mean {mean_accuracy:.4f} is {relation(mean_accuracy - target)} it"
            if len(accuracies) >= 2:
                text += f" (best seed {max(accuracies):.4f})"
            text += "."
        lines.append(text)
    return lines


def _cluster_verdicts(groups: Sequence[Group]) -> list[str]:
    """Verdicts on "DEFRAG has the best silhouette score and distance ratio"."""
    defrag = [group for group in groups if group.variant.name == "defrag"]
    rivals = [group for group in groups if group.variant.name != "defrag"]
    # A rival keeps its finished runs when another of its runs diverged, because leaving it out
    # would favour DEFRAG. Only rivals with runs at chance are left out.
    others = [group for group in rivals if not group.untrained_seeds]
    if not defrag or not rivals:
        return []
    lines = []
    for group in defrag:
        claim = f"- {group.label} leads the silhouette score and distance ratio: "
        if not group.learned:
            lines.append(claim + f"withheld, a run {failure_reasons(group)} (see above).")
            continue
        if not others:
            lines.append(claim + "withheld, no other configuration learned (see above).")
            continue
        for key, claim, best_of in CLUSTER_METRICS:
            rival = best_of(others, key=lambda other: _mean_or_nan(other.final(key), best_of))
            ours, theirs = mean(group.final(key)), mean(rival.final(key))
            agrees = best_of(ours, theirs) == ours and ours != theirs
            p_value = _seed_paired_p(group, rival, key)
            text = (
                f"- {group.label} has {claim} (here {ours:.4f}, best other: {rival.label} "
                f"{theirs:.4f}): "
            )
            if p_value is None:
                if ours == theirs:
                    position = "tied"
                elif agrees:
                    position = "ahead"
                else:
                    position = "behind"
                text += f"{position}, fewer than two common seeds, so no test."
            else:
                text += _verdict(agrees, p_value) + "."
            lines.append(text)
    return lines


def _mean_or_nan(values: Sequence[float], best_of: Callable[..., float]) -> float:
    """Return the mean, or the worst value for ``best_of`` when there is none."""
    if values:
        return statistics.fmean(values)
    return -math.inf if best_of is max else math.inf


def _seed_paired_p(group: Group, rival: Group, key: str) -> float | None:
    """Return the paired t-test p-value of a metric over the seeds both groups ran."""
    ours = {result.run.spec.seed: result.final[key] for result in group.results}
    theirs = {result.run.spec.seed: result.final[key] for result in rival.results}
    seeds = [seed for seed in ours if seed in theirs and None not in (ours[seed], theirs[seed])]
    if len(seeds) < 2:
        return None
    p_value = paired_t_test([ours[seed] for seed in seeds], [theirs[seed] for seed in seeds])
    return 1.0 if p_value is None else p_value


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
