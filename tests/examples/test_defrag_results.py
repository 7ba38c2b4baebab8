"""Tests of the run records: loading run folders and grouping runs by configuration."""

import pytest
from fake_runs import plan, write_diverged_run, write_fake_run

from examples.defrag.checkpoint import RunError
from examples.defrag.results import (
    group_results,
    load_divergence,
    load_result,
    paired_accuracies,
    paired_finals,
    paper_results,
)
from examples.defrag.variants import PAPER_RESULTS


def test_unfinished_run_reported(tmp_path):
    planned = plan(tmp_path, ["linear"])

    with pytest.raises(RunError, match="has not finished"):
        load_result(planned[0])


def test_learned_at_chance_boundary(tmp_path):
    # 30 of 200 is exactly 1.5 times the chance level of ten classes: not learned.
    planned = plan(tmp_path, ["linear"], seeds=(0, 1))
    write_fake_run(planned[0], 30)
    write_fake_run(planned[1], 31)

    at_boundary, above = (load_result(run) for run in planned)

    assert at_boundary.chance == 0.1
    assert not at_boundary.learned
    assert above.learned


def test_group_results_attaches_divergences(tmp_path):
    # Grid order is seed by seed: linear, center, defrag for seed 0, then for seed 1.
    planned = plan(tmp_path, ["linear", "center", "defrag"], seeds=(0, 1))
    finished = [planned[0], planned[1], planned[3]]
    for run in finished:
        write_fake_run(run, 180)
    diverged = [planned[2], planned[4], planned[5]]
    for run in diverged:
        write_diverged_run(run, "The training loss became nan.")

    divergences = [load_divergence(run) for run in diverged]
    groups = group_results([load_result(run) for run in finished], None, divergences)

    assert divergences[0].message == "The training loss became nan."
    assert [group.label for group in groups] == ["Linear", "Center"]
    assert groups[0].seeds == [0, 1]
    assert groups[0].learned
    assert groups[1].seeds == [0]
    assert [divergence.run.spec.seed for divergence in groups[1].diverged] == [1]
    assert not groups[1].learned
    assert all(group.paper is None for group in groups)


@pytest.mark.parametrize(
    ("setups", "expected"),
    [
        ([("fashion-mnist", 8)], "fashion-mnist"),
        ([("mnist", 2)], "mnist"),
        ([("mnist", 8)], None),
        ([("mnist", 2), ("fashion-mnist", 8)], None),
    ],
    ids=["fashion-mnist", "mnist", "other-width", "mixed"],
)
def test_paper_results_per_setup(setups, expected):
    records = [{"dataset": dataset, "feature_dim": width} for dataset, width in setups]

    paper = paper_results(records)

    assert paper is (None if expected is None else PAPER_RESULTS[expected])


def test_paired_finals_common_seeds(tmp_path):
    # Grid order is seed by seed: linear, then defrag. Linear's seed 2 did not run, and
    # DEFRAG's seed 1 has no silhouette score.
    planned = plan(tmp_path, ["linear", "defrag"], seeds=(0, 1, 2))
    del planned[4]
    runs = [(180, 0.3), (190, 0.5), (180, 0.35), (190, None), (190, 0.6)]
    for run, (correct, silhouette) in zip(planned, runs, strict=True):
        write_fake_run(run, correct, silhouette=silhouette)

    linear, defrag = group_results([load_result(run) for run in planned])

    assert paired_finals(defrag, linear, "test_silhouette") == {0: (0.5, 0.3)}
    assert paired_finals(linear, defrag, "test_silhouette") == {0: (0.3, 0.5)}
    assert paired_accuracies(defrag, linear) == {0: (0.95, 0.9), 1: (0.95, 0.9)}
