"""The markdown report of ``compare``: accuracies beside the paper's, with paired tests.

Every number in the report is read from the run folders (``config.json``, ``metrics.json``
and ``predictions.pt``), except the paper's accuracies, which are the constants
``examples.defrag.variants.PAPER_RESULTS``: Table 2 for Fashion-MNIST, Figure 3 for MNIST.
Paper: "DEFRAG: Deep Euclidean Feature Representations through Adaptation on the Grassmann
Manifold", Minnehan & Savakis, arXiv:1806.07688.

Paired tests against the Linear baseline:

- McNemar's exact test compares two runs of the same seed on the same test examples. Of the
  examples that exactly one of the two classifies correctly, it tests whether each run gets
  half (a two-sided binomial test at 1/2, ``scipy.stats.binomtest``).
- With two or more seeds, the main table gives the two-sided paired t-test of the per-seed
  accuracies (``scipy.stats.ttest_rel``) instead, because it measures the variation between
  seeds, which McNemar's test of one seed cannot see. The per-seed McNemar tests are listed
  below the table in either case.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import scipy.stats
import torch

from examples.defrag.checkpoint import (
    CONFIG_NAME,
    METRICS_NAME,
    PREDICTIONS_NAME,
    RunError,
    read_json,
)
from examples.defrag.data import DATASET_TITLES, class_names
from examples.defrag.runner import DIVERGED_NAME, PlannedRun
from examples.defrag.variants import (
    BASELINE_VARIANT,
    PAPER_RESULTS,
    PaperResults,
    PaperValue,
    Variant,
)

PAPER = "Minnehan & Savakis, arXiv:1806.07688"

# A run whose test accuracy is at most this multiple of the chance level (1/10 for ten classes)
# counts as not trained, and the verdicts on its configuration are withheld.
CHANCE_FACTOR = 1.5


@dataclass(frozen=True)
class RunResult:
    """The outputs of one finished run."""

    run: PlannedRun
    record: dict[str, Any]
    history: list[dict[str, Any]]
    correct: torch.Tensor

    @property
    def final(self) -> dict[str, Any]:
        """The metrics of the last epoch."""
        return self.history[-1]

    @property
    def chance(self) -> float:
        """The accuracy $1/K$ of guessing uniformly at random among the dataset's K classes."""
        return 1 / len(class_names(self.record["dataset"]))

    @property
    def learned(self) -> bool:
        """Whether the test accuracy is above ``CHANCE_FACTOR`` times the chance level.

        A run at or below it has not learned the task, most often because its learning rate
        does not suit it, so its accuracy is no evidence about the configuration.
        """
        return self.final["test_accuracy"] > CHANCE_FACTOR * self.chance


@dataclass(frozen=True)
class Divergence:
    """A run that stopped because its loss or a gradient became inf or NaN.

    Attributes:
        run: The planned run.
        message: The error that stopped it, as ``DIVERGED_NAME`` in its folder records it.
    """

    run: PlannedRun
    message: str


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


@dataclass(frozen=True)
class Group:
    """The runs of one configuration, one per seed, and the paper's accuracy for it."""

    label: str
    variant: Variant
    results: list[RunResult]
    paper: PaperValue | None = None
    diverged: list[Divergence] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        """The seeds of the runs, in grid order."""
        return [result.run.spec.seed for result in self.results]

    def final(self, key: str) -> list[float]:
        """Return a last-epoch metric of every seed, leaving out missing (None) values."""
        return [result.final[key] for result in self.results if result.final[key] is not None]

    @property
    def untrained_seeds(self) -> list[int]:
        """The seeds whose run stayed near the chance level (see ``RunResult.learned``)."""
        return [result.run.spec.seed for result in self.results if not result.learned]

    @property
    def learned(self) -> bool:
        """Whether every run finished and learned, so that the verdicts can be given."""
        return not self.untrained_seeds and not self.diverged


def load_result(run: PlannedRun) -> RunResult:
    """Read a finished run's config, metrics and test predictions.

    Raises:
        examples.defrag.checkpoint.RunError: When the run folder lacks one of its files.
    """
    paths = [run.output_dir / name for name in (CONFIG_NAME, METRICS_NAME, PREDICTIONS_NAME)]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise RunError(
            f"The run in {run.output_dir} has not finished: {', '.join(missing)} not found. "
            "Run the same compare command again to finish it."
        )
    outputs = torch.load(paths[2], weights_only=True)
    return RunResult(
        run=run,
        record=read_json(paths[0]),
        history=read_json(paths[1]),
        correct=outputs["predictions"] == outputs["labels"],
    )


def load_divergence(run: PlannedRun) -> Divergence:
    """Read the error that stopped a run marked as diverged."""
    message = (run.output_dir / DIVERGED_NAME).read_text(encoding="utf-8").strip()
    return Divergence(run, message)


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


def group_results(
    results: Sequence[RunResult],
    paper: PaperResults | None = None,
    divergences: Sequence[Divergence] = (),
) -> list[Group]:
    """Group runs that differ only in the seed, in the order of the grid.

    Args:
        results: The finished runs.
        paper: The paper's accuracies on the runs' dataset, or None to attach none.
        divergences: Runs that diverged. Each joins the group of its configuration, and
            a configuration with no finished run gets no group.
    """
    groups: dict[tuple[str, str | None, str | None], Group] = {}
    for result in results:
        spec = result.run.spec
        if spec.group not in groups:
            value = None if paper is None else paper.accuracies.get(spec.variant.name)
            groups[spec.group] = Group(spec.label, spec.variant, [], value)
        groups[spec.group].results.append(result)

    for divergence in divergences:
        group = groups.get(divergence.run.spec.group)
        if group is not None:
            group.diverged.append(divergence)
    return list(groups.values())


def paper_results(records: Sequence[dict[str, Any]]) -> PaperResults | None:
    """Return the paper's accuracies for the runs' setup, or None when the paper has none.

    The paper reports accuracies for one feature width per dataset (8 on Fashion-MNIST, 2 on
    MNIST), so runs of another width, or a mix of datasets or widths, get none.
    """
    setups = {(record["dataset"], record["feature_dim"]) for record in records}
    if len(setups) != 1:
        return None
    dataset, feature_dim = setups.pop()
    paper = PAPER_RESULTS.get(dataset)
    if paper is None or paper.feature_dim != feature_dim:
        return None
    return paper


# ---------------------------------------------------------------------------------------------
# Markdown


def render_report(
    results: Sequence[RunResult],
    command: str,
    output_dir: Path,
    figures: Sequence[tuple[str, str]] = (),
    divergences: Sequence[Divergence] = (),
) -> str:
    """Render the whole report as markdown.

    Args:
        results: The finished runs of the grid, at least one.
        command: The ``compare`` command line that produced them.
        output_dir: The folder that contains the run folders.
        figures: ``(link, caption)`` of each image to embed, with links relative to the
            report's folder.
        divergences: The runs of the grid that diverged.
    """
    records = [result.record for result in results]
    paper = paper_results(records)
    groups = group_results(results, paper, divergences)
    orphans = _orphan_divergences(groups, divergences)
    baseline = next((group for group in groups if group.variant.name == BASELINE_VARIANT), None)
    dataset = _joined(records, lambda record: DATASET_TITLES[record["dataset"]])
    generated = datetime.now().astimezone().isoformat(timespec="seconds")
    source = "none" if paper is None else paper.source
    origin = f"in `{output_dir}`"
    if paper is not None:
        origin += f", except the paper's accuracies ({source} of {PAPER})"
    origin += "."
    if paper is not None and paper.caveat:
        origin += " " + paper.caveat

    sections = [
        f"# DEFRAG comparison on {dataset}",
        f"Generated on {generated} by `{command}`. Every number is read from the run folders "
        f"{origin}",
        "## Test accuracy",
        _accuracy_table(groups, baseline, source, orphans),
        _table_notes(groups, baseline),
        "## Where the results differ from the paper",
        _paper_gaps(groups, baseline, records, orphans, paper),
        "## Verdicts on the paper's claims",
        _verdicts(groups, baseline, orphans),
        *_figures(figures),
        "## Paired tests against Linear, per seed",
        _mcnemar_table(groups, baseline),
        "## Setup",
        _setup(records, command),
        _hyperparameter_table(groups),
        "## Runs",
        _runs_table(results, divergences),
    ]
    return "\n\n".join(sections) + "\n"


def _accuracy_table(
    groups: Sequence[Group],
    baseline: Group | None,
    source: str,
    orphans: Mapping[str, Sequence[Divergence]],
) -> str:
    """Render the main table: one row per configuration, marked when a run failed."""
    header = (
        f"| Configuration | Paper ({source}) | Test accuracy | Seeds | vs paper | vs Linear "
        "| p vs Linear | Test silhouette | Distance ratio | Parameters | Train s/epoch "
        "| Eval s/epoch |"
    )
    rows = [header, "|" + "---|" * 12]
    for group in groups:
        accuracy = _mean(group.final("test_accuracy"))
        paper = group.paper
        difference, p_text = _baseline_comparison(group, baseline)
        cells = [
            group.label + _failure_mark(group),
            "n/a" if paper is None else paper.text,
            mean_std(group.final("test_accuracy")),
            ", ".join(str(seed) for seed in group.seeds),
            "n/a" if paper is None else f"{accuracy - paper.accuracy:+.4f}",
            difference,
            p_text,
            mean_std(group.final("test_silhouette")),
            mean_std(group.final("test_distance_ratio")),
            ", ".join(f"{count:,}" for count in _values(group, "parameters")),
            f"{_seconds_per_epoch(group, 'train_seconds'):.1f}",
            f"{_seconds_per_epoch(group, 'eval_seconds'):.1f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    for label, diverged in orphans.items():
        cells = [f"{label} (diverged)", "n/a", f"diverged in all {len(diverged)} runs"]
        rows.append("| " + " | ".join(cells + ["n/a"] * 9) + " |")
    return "\n".join(rows)


def _failure_mark(group: Group) -> str:
    """Return the label suffix of a configuration with failed runs, such as " (diverged)"."""
    reasons = _failure_reasons(group)
    return f" ({reasons})" if reasons else ""


def _failure_reasons(group: Group) -> str:
    """Say how the runs of a configuration failed: "diverged", "did not learn", both or ""."""
    reasons = []
    if group.diverged:
        reasons.append("diverged")
    if group.untrained_seeds:
        reasons.append("did not learn")
    return " and ".join(reasons)


def _orphan_divergences(
    groups: Sequence[Group], divergences: Sequence[Divergence]
) -> dict[str, list[Divergence]]:
    """Group the diverged runs of configurations that have no finished run, by label."""
    grouped = {id(divergence) for group in groups for divergence in group.diverged}
    orphans: dict[str, list[Divergence]] = {}
    for divergence in divergences:
        if id(divergence) not in grouped:
            orphans.setdefault(divergence.run.spec.label, []).append(divergence)
    return orphans


def _baseline_comparison(group: Group, baseline: Group | None) -> tuple[str, str]:
    """Return the accuracy difference to Linear and the p-value cell, as table text."""
    if baseline is None:
        return "n/a", "n/a (no Linear runs)"
    if group is baseline:
        return "baseline", "baseline"

    pairs = _paired_accuracies(group, baseline)
    if not pairs:
        return "n/a", "n/a (no common seed)"
    difference = _difference_to_baseline(group, baseline)

    if len(pairs) >= 2:
        p_value = paired_t_test([a for a, _ in pairs.values()], [b for _, b in pairs.values()])
        p_text = "n/a (equal differences)" if p_value is None else _format_p(p_value)
        return f"{difference:+.4f}", f"{p_text} (paired t, {len(pairs)} seeds)"

    seed = next(iter(pairs))
    test = mcnemar_exact(_correct(baseline, seed), _correct(group, seed))
    return f"{difference:+.4f}", f"{_format_p(test.p_value)} (McNemar, seed {seed})"


def _paired_accuracies(group: Group, baseline: Group) -> dict[int, tuple[float, float]]:
    """Map each seed that both groups ran to (group accuracy, baseline accuracy)."""
    base = {result.run.spec.seed: result.final["test_accuracy"] for result in baseline.results}
    return {
        result.run.spec.seed: (result.final["test_accuracy"], base[result.run.spec.seed])
        for result in group.results
        if result.run.spec.seed in base
    }


def _difference_to_baseline(group: Group, baseline: Group) -> float | None:
    """Return the mean accuracy difference over the seeds both ran, or None without one."""
    pairs = _paired_accuracies(group, baseline)
    if not pairs:
        return None
    return statistics.fmean(a - b for a, b in pairs.values())


def _correct(group: Group, seed: int) -> torch.Tensor:
    """Return the per-example correctness of a group's run with ``seed``."""
    return next(result.correct for result in group.results if result.run.spec.seed == seed)


def _table_notes(groups: Sequence[Group], baseline: Group | None) -> str:
    """Explain the columns of the main table."""
    seed_counts = sorted({len(group.results) for group in groups})
    lines = [
        "Test accuracy, silhouette score and distance ratio are those of the last epoch, as "
        "mean ± sample standard deviation over the seeds (the mean alone for one seed). "
        "The silhouette score is grassmann_nn.metrics.silhouette_score (scikit-learn's "
        "definition, computed exactly), on the test features with the true labels; "
        "the distance ratio is the mean distance to the own class center over the mean "
        "distance between class centers (lower is better). "
        "vs paper and vs Linear are differences of mean accuracy.",
        "p vs Linear: two-sided p-value of McNemar's exact test on the test predictions of "
        "the same seed when one seed ran, or of the paired t-test over the per-seed "
        f"accuracies when two or more did (seeds per configuration here: "
        f"{', '.join(map(str, seed_counts))}).",
        "Silhouette, Center and Contrastive Center add their loss to the linear feature "
        "layer of the Linear row, and DEFRAG adds the silhouette loss to a Grassmann feature "
        "layer; the paper does not name the feature layer of its center-loss rows. The exact "
        "train command of every run is under Runs.",
        "Train s/epoch and Eval s/epoch are wall-clock seconds per epoch, averaged over all "
        "epochs and seeds; the machine and its load at the start of each run are under Setup. "
        "Compare them only between runs that started at a similar load: on a shared 2-core "
        "machine the same epoch can take several times longer.",
    ]
    if baseline is None:
        lines.append("No Linear runs were in the grid, so no paired test was made.")
    return "\n\n".join(lines)


def _paper_gaps(
    groups: Sequence[Group],
    baseline: Group | None,
    records: Sequence[dict[str, Any]],
    orphans: Mapping[str, Sequence[Divergence]],
    paper: PaperResults | None,
) -> str:
    """State, computed from the runs, where each configuration is below or above the paper."""
    lines = [_budget_sentence(records), ""]
    if paper is None:
        setups = _joined(
            records,
            lambda record: (
                f"{DATASET_TITLES[record['dataset']]} with {record['feature_dim']}-D features"
            ),
        )
        lines += [
            f"The paper reports no accuracies for {setups}, so the runs are compared with "
            "each other only.",
            "",
        ]
    lines += _failure_notes(groups, orphans)
    for group in groups:
        paper = group.paper
        if paper is None:
            continue
        accuracy = _mean(group.final("test_accuracy"))
        lines.append(
            f"- {group.label}: mean test accuracy {accuracy:.4f} is "
            f"{_relation(accuracy - paper.accuracy)} {_paper_value_name(paper)}."
        )

    if baseline is not None and baseline.paper is not None:
        lines.append("")
        for group in groups:
            paper_gap = _paper_gap(group, baseline)
            gap = _difference_to_baseline(group, baseline)
            if group is baseline or paper_gap is None or gap is None:
                continue
            lines.append(
                f"- {group.label} vs Linear: the paper reports {_paper_relation(paper_gap)} "
                f"Linear; here it is {_relation(gap)} Linear."
            )
    return "\n".join(lines)


def _failure_notes(
    groups: Sequence[Group], orphans: Mapping[str, Sequence[Divergence]]
) -> list[str]:
    """Name each run that diverged or stayed near chance, before any comparison with the paper.

    Both withhold the verdicts on their configuration, because a failed run is no evidence
    about the configuration. Its settings, most often the learning rate, do not suit it.
    """
    lines = []
    for group in groups:
        lines += _diverged_note(group.label, group.diverged, len(group.results))
        lines += _untrained_note(group)
    for label, diverged in orphans.items():
        lines += _diverged_note(label, diverged, 0)

    if lines:
        lines.append("")
    return lines


def _diverged_note(label: str, diverged: Sequence[Divergence], finished: int) -> list[str]:
    """Describe the diverged runs of one configuration, or nothing without any."""
    if not diverged:
        return []
    seeds_by_message: dict[str, list[str]] = {}
    for item in diverged:
        seeds_by_message.setdefault(item.message, []).append(str(item.run.spec.seed))
    seeds = "; ".join(
        f"{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(seeds)}: {message.rstrip('.')}"
        for message, seeds in seeds_by_message.items()
    )
    total = len(diverged) + finished
    name = diverged[0].run.spec.variant.name
    return [
        f"- {label} diverged in {len(diverged)} of {total} runs ({seeds}). The verdicts on "
        f"{label} are withheld. Lower its learning rate or lambda, or tune them on the "
        f"validation split with `python -m examples.defrag tune --variants {name} ...`."
    ]


def _untrained_note(group: Group) -> list[str]:
    """Describe the runs of one configuration that stayed near chance, or nothing."""
    failed = [result for result in group.results if not result.learned]
    if not failed:
        return []
    accuracies = ", ".join(
        f"{result.final['test_accuracy']:.4f} (seed {result.run.spec.seed})" for result in failed
    )
    total = len(group.results) + len(group.diverged)
    return [
        f"- {group.label} did not learn in {len(failed)} of {total} runs: "
        f"test accuracy {accuracies}, at most {CHANCE_FACTOR} times the chance level "
        f"{failed[0].chance:.4f}. The verdicts on {group.label} are withheld. Most often "
        "the learning rate does not suit the configuration: tune it on the validation "
        f"split with `python -m examples.defrag tune --variants {group.variant.name} "
        "--lr ...` and the data options of the train commands under Runs."
    ]


def _paper_value_name(paper: PaperValue) -> str:
    """Name a paper value in a sentence: ``"the paper's 0.9393"`` or ``"the paper's lower
    bound 0.9900"``."""
    if paper.relation == ">":
        return f"the paper's lower bound {paper.accuracy:.4f}"
    return f"the paper's {paper.text}"


def _paper_gap(group: Group, baseline: Group) -> tuple[float, str] | None:
    """Return the paper's gap between a configuration and Linear, when the paper gives one."""
    if group.paper is None or baseline.paper is None:
        return None
    return group.paper.gap_to(baseline.paper)


def _paper_relation(paper_gap: tuple[float, str]) -> str:
    """Word the paper's gap to Linear as in ``"0.0024 above"`` or ``"more than 0.1 below"``."""
    gap, text = paper_gap
    return text if text.startswith("more than") else _relation(gap)


SIGNIFICANCE = 0.05

CLUSTER_METRICS = (
    ("test_silhouette", "the highest test silhouette score", max),
    ("test_distance_ratio", "the lowest distance ratio", min),
)


def _verdicts(
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
        paper = _paper_gap(group, baseline)
        if group is baseline or paper is None:
            continue
        paper_gap, paper_text = paper
        direction = "above" if paper_gap > 0 else "below"
        claim = f"{group.label} is {direction} Linear (paper: {paper_text})"
        if not (group.learned and baseline.learned):
            failed = group if not group.learned else baseline
            lines.append(
                f"- {claim}: withheld, a run of {failed.label} "
                f"{_failure_reasons(failed).replace(' and ', ' or ')} (see above)."
            )
            continue
        difference = _difference_to_baseline(group, baseline)
        p_value = _p_value_against_baseline(group, baseline)
        if difference is None or p_value is None:
            lines.append(f"- {claim}: not testable here (no paired runs).")
            continue
        agrees = (difference > 0) == (paper_gap > 0)
        verdict = _verdict(agrees, p_value)
        if len(_paired_accuracies(group, baseline)) == 1 and p_value < SIGNIFICANCE:
            verdict += " on one seed only; the variation between seeds is not tested"
        lines.append(f"- {claim}: {verdict}, here {difference:+.4f}.")
    return lines


def _p_value_against_baseline(group: Group, baseline: Group) -> float | None:
    """Return the p-value of the main table's paired test of ``group`` against Linear."""
    pairs = _paired_accuracies(group, baseline)
    if not pairs:
        return None
    if len(pairs) >= 2:
        p_value = paired_t_test([a for a, _ in pairs.values()], [b for _, b in pairs.values()])
        return 1.0 if p_value is None else p_value
    seed = next(iter(pairs))
    return mcnemar_exact(_correct(baseline, seed), _correct(group, seed)).p_value


def _verdict(agrees: bool, p_value: float) -> str:
    """Word a verdict from the direction of a difference and its p-value."""
    if p_value >= SIGNIFICANCE:
        return f"not distinguishable from noise (p = {_format_p(p_value)})"
    if agrees:
        return f"confirmed (p = {_format_p(p_value)})"
    return f"not confirmed, the opposite holds (p = {_format_p(p_value)})"


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
        mean = _mean(accuracies)
        target = paper.accuracy
        claim = f"- {group.label} reaches the paper's {paper.text}: "
        if paper.relation == ">":
            claim = f"- {group.label} is above {target:.4f}, as in the paper: "
        if not group.learned:
            lines.append(claim + f"withheld, a run {_failure_reasons(group)} (see above).")
            continue

        # Means are printed to 4 digits, so a mean that rounds to the target counts as equal.
        gap = round(mean - target, 4)
        if gap > 0 or (gap == 0 and paper.relation == "="):
            text = claim + f"yes, mean {mean:.4f}."
        else:
            text = claim + f"no, mean {mean:.4f} is {_relation(mean - target)} it"
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
            lines.append(claim + f"withheld, a run {_failure_reasons(group)} (see above).")
            continue
        if not others:
            lines.append(claim + "withheld, no other configuration learned (see above).")
            continue
        for key, claim, best_of in CLUSTER_METRICS:
            rival = best_of(others, key=lambda other: _mean_or_nan(other.final(key), best_of))
            ours, theirs = _mean(group.final(key)), _mean(rival.final(key))
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


def _relation(difference: float) -> str:
    """Return ``"0.0123 below"``, ``"0.0123 above"`` or ``"equal to"`` for a difference."""
    if round(difference, 4) == 0:
        return "equal to (within 0.00005)"
    return f"{abs(difference):.4f} {'below' if difference < 0 else 'above'}"


def _budget_sentence(records: Sequence[dict[str, Any]]) -> str:
    """Describe the training budget of the runs, the first reason for any gap to the paper."""
    epochs = _joined(records, lambda record: record["epochs"])
    epoch_word = "epoch" if epochs == "1" else "epochs"
    train = _joined(records, lambda record: f"{record['data']['train_examples']:,}")
    test = _joined(records, lambda record: f"{record['data']['test_examples']:,}")
    text = (
        f"These runs trained for {epochs} {epoch_word} on {train} training examples and were "
        f"tested on {test} test examples. The paper states neither its number of epochs nor "
        "its learning rate, batch size, lambda or alpha, so part of any gap can come from the "
        "training budget."
    )
    if any(record["data"]["test_split_only"] for record in records):
        text += (
            " Only the official test split was available, so the runs trained and tested on "
            "parts of it, and their accuracies are not comparable with the paper's."
        )
    return text


def _figures(figures: Sequence[tuple[str, str]]) -> list[str]:
    """Render the figures section, or nothing without figures."""
    if not figures:
        return []
    images = [f"![{caption}]({link})\n\n*{caption}*" for link, caption in figures]
    return ["## Figures", "\n\n".join(images)]


def _mcnemar_table(groups: Sequence[Group], baseline: Group | None) -> str:
    """Render McNemar's exact test of every run against Linear with the same seed."""
    if baseline is None:
        return "No Linear runs were in the grid."
    rows = [
        "| Configuration | Seed | Right where Linear is wrong | Wrong where Linear is right "
        "| p (McNemar, exact) |",
        "|---|---|---|---|---|",
    ]
    base_seeds = set(baseline.seeds)
    for group in groups:
        if group is baseline:
            continue
        for seed in group.seeds:
            if seed not in base_seeds:
                continue
            test = mcnemar_exact(_correct(baseline, seed), _correct(group, seed))
            rows.append(
                f"| {group.label} | {seed} | {test.wins} | {test.losses} "
                f"| {_format_p(test.p_value)} |"
            )
    return "\n".join(rows)


def _setup(records: Sequence[dict[str, Any]], command: str) -> str:
    """Describe the command, data, software and machines of the runs."""
    started = sorted(record.get("started", "not recorded") for record in records)
    data = _joined(records, lambda record: f"`{record['data']['source']}`")
    loads = [
        record["machine"]["load_average_1min"]
        for record in records
        if record.get("machine", {}).get("load_average_1min") is not None
    ]
    load_text = "not recorded"
    if loads:
        load_text = f"{min(loads):.2f} to {max(loads):.2f}"
    return "\n".join(
        [
            f"- Command: `{command}`",
            f"- Data: {_joined(records, lambda record: DATASET_TITLES[record['dataset']])} "
            f"from {data}",
            f"- Runs started between {started[0]} and {started[-1]}",
            f"- Machine: {_joined(records, _machine_text)}",
            f"- 1-minute load average at the start of the runs: {load_text}",
            f"- torch {_joined(records, lambda record: record['versions']['torch'])}, "
            f"Python {_joined(records, lambda record: record['versions']['python'])}, "
            f"device {_joined(records, lambda record: record['device'])}",
        ]
    )


def _machine_text(record: dict[str, Any]) -> str:
    """Describe the processor and thread count of one run."""
    machine = record.get("machine")
    threads = record["versions"]["torch_threads"]
    if machine is None:
        return f"not recorded, {threads} torch threads"
    text = f"{machine['cpu']} ({machine['cpu_count']} logical CPUs), {threads} torch threads"
    if "gpu" in machine:
        text += f", GPU {machine['gpu']}"
    return text


_HYPERPARAMETERS = (
    ("feature", "Feature layer"),
    ("feature_dim", "Feature dim"),
    ("loss", "Loss"),
    ("aux_weight", "lambda"),
    ("alpha", "alpha"),
    ("optimizer", "Optimizer"),
    ("retraction", "Retraction"),
    ("lr", "lr"),
    ("lr_schedule", "Schedule"),
    ("momentum", "Momentum"),
    ("weight_decay", "Weight decay"),
    ("batch_size", "Batch"),
    ("epochs", "Epochs"),
)


def _hyperparameter_table(groups: Sequence[Group]) -> str:
    """Render the settings of each configuration, as recorded in its runs' config.json."""
    header = "| Configuration | " + " | ".join(title for _, title in _HYPERPARAMETERS) + " |"
    rows = ["Hyperparameters, from each run's `config.json`:", "", header]
    rows.append("|" + "---|" * (len(_HYPERPARAMETERS) + 1))
    for group in groups:
        cells = [
            ", ".join("n/a" if value is None else str(value) for value in _values(group, key))
            for key, _ in _HYPERPARAMETERS
        ]
        rows.append(f"| {group.label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def render_provenance(path: Path, provenance: Mapping[str, str]) -> str:
    """Render where the settings of a ``--hparams`` file came from, as a markdown section."""
    lines = ["## Where the hyperparameters come from", ""]
    lines.append(f"The runs took their settings from `{path}`.")
    if provenance:
        lines.append("")
        lines += [f"- {key}: {text}" for key, text in provenance.items()]
    return "\n".join(lines) + "\n"


def _runs_table(results: Sequence[RunResult], divergences: Sequence[Divergence]) -> str:
    """Render one row per run with its folder, result and exact train command."""
    rows = ["| Run folder | Test accuracy | Device | Command |", "|---|---|---|---|"]
    for result in results:
        rows.append(
            f"| `{result.run.output_dir.name}` | {result.final['test_accuracy']:.4f} "
            f"| {_device_text(result.record)} | `{result.run.command}` |"
        )
    for divergence in divergences:
        run = divergence.run
        rows.append(f"| `{run.output_dir.name}` | diverged | n/a | `{run.command}` |")
    return "\n".join(rows)


def _device_text(record: dict[str, Any]) -> str:
    """Name the device a run trained on, with the GPU model for a CUDA run."""
    gpu = record.get("machine", {}).get("gpu")
    if str(record["device"]).startswith("cuda") and gpu:
        return f"{record['device']} ({gpu})"
    return str(record["device"])


# ---------------------------------------------------------------------------------------------
# Small helpers


def _format_p(p_value: float) -> str:
    """Format a p-value with 2 significant digits; one that underflowed to 0 as ``< 1e-300``."""
    return "< 1e-300" if p_value == 0 else f"{p_value:.2g}"


def _mean(values: Sequence[float]) -> float:
    """Return the mean, or NaN for no values."""
    return statistics.fmean(values) if values else math.nan


def mean_std(values: Sequence[float]) -> str:
    """Format ``mean ± sample std``, the mean alone for one value, n/a for none."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def _seconds_per_epoch(group: Group, key: str) -> float:
    """Return the mean of a timing column over every epoch of every run of a group."""
    return statistics.fmean(row[key] for result in group.results for row in result.history)


def _values(group: Group, key: str) -> list[Any]:
    """Return the distinct values of a config.json field over a group's runs, in run order."""
    return list(dict.fromkeys(result.record[key] for result in group.results))


def _joined(records: Sequence[dict[str, Any]], value_of: Callable[[dict[str, Any]], Any]) -> str:
    """Apply ``value_of`` to each record and join the distinct results in first-seen order."""
    values = dict.fromkeys(str(value_of(record)) for record in records)
    return ", ".join(values)
