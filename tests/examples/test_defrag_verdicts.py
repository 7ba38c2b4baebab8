"""Tests of the verdicts on the DEFRAG paper's claims, in reports of fake run folders."""

import pytest
import scipy.stats
from fake_runs import plan, render, write_diverged_run, write_fake_run

from examples.defrag import runner
from examples.defrag.report import render_report
from examples.defrag.results import group_results, load_divergence, load_result
from examples.defrag.verdicts import failure_reasons, relation


def test_verdicts_over_three_seeds(tmp_path):
    planned = plan(tmp_path, ["linear", "defrag"], seeds=(0, 1, 2))
    # Seed by seed: linear, defrag. DEFRAG is ahead by 10, 11 and 12 examples of 200.
    for run, correct in zip(planned, [170, 180, 171, 182, 172, 184], strict=True):
        write_fake_run(run, correct)

    text = render(planned)

    expected = scipy.stats.ttest_rel([0.90, 0.91, 0.92], [0.85, 0.855, 0.86]).pvalue
    assert expected < 0.05
    assert (
        f"- DEFRAG (polar, rsgd) is above Linear (paper: +0.0024): confirmed "
        f"(p = {expected:.2g}), here +0.0550." in text
    )
    assert "no, mean 0.9100 is 0.0293 below it (best seed 0.9200)." in text


def test_report_withholds_untrained_verdicts(tmp_path):
    # Field case: MNIST softplus at the shared learning rate 0.1 stayed at 0.1075 for 20 epochs,
    # and the report confirmed "Softplus is below Linear" from that failed run.
    planned = plan(tmp_path, ["softplus", "linear", "defrag"], seeds=(0, 1), dataset="mnist")
    for run, correct in zip(planned, [21, 199, 196, 22, 198, 197], strict=True):
        write_fake_run(run, correct, test_split_only=True)

    text = render(planned)

    assert (
        "- Softplus did not learn in 2 of 2 runs: test accuracy 0.1050 (seed 0), 0.1100 "
        "(seed 1), at most 1.5 times the chance level 0.1000." in text
    )
    assert "tune --variants softplus --lr ..." in text
    assert "- Softplus is below Linear (paper: more than 0.1040 below): withheld" in text
    assert "- DEFRAG (polar, rsgd) is above 0.9900, as in the paper: no" in text


def test_report_names_failed_seed_among_good(tmp_path):
    # One failed seed must not hide behind a mean that the good seed lifts above the threshold.
    planned = plan(tmp_path, ["softplus", "linear"], seeds=(0, 1), dataset="mnist")
    for run, correct in zip(planned, [21, 199, 190, 198], strict=True):
        write_fake_run(run, correct, test_split_only=True)

    text = render(planned)

    assert "- Softplus did not learn in 1 of 2 runs: test accuracy 0.1050 (seed 0)," in text
    assert "- Softplus is below Linear (paper: more than 0.1040 below): withheld" in text


def test_report_withholds_untrained_baseline(tmp_path):
    planned = plan(tmp_path, ["linear", "defrag"], dataset="mnist")
    write_fake_run(planned[0], 20, test_split_only=True)
    write_fake_run(planned[1], 198, test_split_only=True)

    text = render(planned)

    assert "- Linear is above 0.9900, as in the paper: withheld, a run did not learn" in text
    assert "| Linear (did not learn) | above 0.9900 |" in text
    assert (
        "- DEFRAG (polar, rsgd) leads the silhouette score and distance ratio: withheld, no "
        "other configuration learned" in text
    )


def test_cluster_rival_keeps_finished_runs(tmp_path):
    # Field case: MNIST center diverged in seed 1, and the cluster verdict dropped center from
    # the rivals, so DEFRAG's silhouette was compared with Linear's instead of center's better one.
    planned = plan(tmp_path, ["center", "defrag"], seeds=(0, 1, 2))
    for run in planned:
        if run.spec.variant.name == "center" and run.spec.seed == 1:
            write_diverged_run(run, "The training loss became nan.")
        else:
            write_fake_run(run, 180)
    results = [load_result(run) for run in planned if not runner.has_diverged(run)]
    divergences = [load_divergence(run) for run in planned if runner.has_diverged(run)]

    text = render_report(results, "compare", tmp_path, (), divergences)

    assert "best other: Center 0.5000" in text


@pytest.mark.parametrize(
    ("difference", "expected"),
    [(-0.0123, "0.0123 below"), (0.0123, "0.0123 above"), (0.00004, "equal to (within 0.00005)")],
    ids=["below", "above", "equal"],
)
def test_relation_wording(difference, expected):
    assert relation(difference) == expected


def test_failure_reasons_of_group(tmp_path):
    planned = plan(tmp_path, ["linear"], seeds=(0, 1, 2))
    write_fake_run(planned[0], 180)
    write_fake_run(planned[1], 20)
    write_diverged_run(planned[2], "The training loss became nan.")
    results = [load_result(run) for run in planned[:2]]

    (failed,) = group_results(results, None, [load_divergence(planned[2])])
    (clean,) = group_results(results[:1])

    assert failure_reasons(failed) == "diverged and did not learn"
    assert failure_reasons(clean) == ""
