"""The records of finished and diverged runs, read from their folders and grouped by configuration.

A finished run's folder contains ``config.json`` (its settings and machine), ``metrics.json`` (one
row of metrics per epoch) and ``predictions.pt`` (the test labels and predictions of the last
epoch). A diverged run's folder contains the error that stopped it in ``diverged.txt``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from examples.defrag.checkpoint import (
    CONFIG_NAME,
    METRICS_NAME,
    PREDICTIONS_NAME,
    RunError,
    read_json,
)
from examples.defrag.data import class_names
from examples.defrag.runner import DIVERGED_NAME, PlannedRun
from examples.defrag.variants import PAPER_RESULTS, PaperResults, PaperValue, Variant

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


def paired_finals(group: Group, other: Group, key: str) -> dict[int, tuple[float, float]]:
    """Map each seed that both groups finished to their last-epoch values of a metric.

    The seeds keep the order of ``group``. A seed where either value is missing (None) is left
    out.
    """
    theirs = {result.run.spec.seed: result.final[key] for result in other.results}
    pairs = {}
    for result in group.results:
        seed = result.run.spec.seed
        if seed in theirs and result.final[key] is not None and theirs[seed] is not None:
            pairs[seed] = (result.final[key], theirs[seed])
    return pairs


def paired_accuracies(group: Group, baseline: Group) -> dict[int, tuple[float, float]]:
    """Map each seed that both groups ran to (group accuracy, baseline accuracy)."""
    return paired_finals(group, baseline, "test_accuracy")


def difference_to_baseline(group: Group, baseline: Group) -> float | None:
    """Return the mean accuracy difference over the seeds both ran, or None without one."""
    pairs = paired_accuracies(group, baseline)
    if not pairs:
        return None
    return statistics.fmean(a - b for a, b in pairs.values())


def seed_correctness(group: Group, seed: int) -> torch.Tensor:
    """Return the per-example correctness of a group's run with ``seed``."""
    return next(result.correct for result in group.results if result.run.spec.seed == seed)
