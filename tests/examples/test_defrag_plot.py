"""Tests of the plot subcommand's figure layout, on run folders written by the tests."""

import json

import pytest
import torch

from examples.defrag import plot, runner
from examples.defrag.checkpoint import RunError
from examples.defrag.variants import FIGURE3_VARIANTS, VARIANTS

TEST_EXAMPLES = 50


def record_of(name, seed=0):
    variant = VARIANTS[name]
    return {
        "dataset": "mnist",
        "feature": variant.feature,
        "loss": variant.loss,
        "feature_dim": 2,
        "seed": seed,
        "retraction": "polar" if variant.has_manifold else "none",
        "optimizer": "rsgd",
    }


def write_run(folder, name, seed=0):
    """Write a finished 2-epoch run folder with 2-D test features."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(record_of(name, seed)))
    rows = [
        {"epoch": epoch, "loss": 1.0 / epoch, "test_accuracy": 0.5, "test_silhouette": 0.1}
        for epoch in (1, 2)
    ]
    (folder / "metrics.json").write_text(json.dumps(rows))
    labels = torch.arange(TEST_EXAMPLES) % 10
    features = torch.randn(TEST_EXAMPLES, 2, generator=torch.Generator().manual_seed(seed))
    torch.save({"epoch": 2, "labels": labels, "features": features}, folder / "features.pt")


def plot_run(name, seed=0):
    return plot.PlotRun(None, record_of(name, seed), [], None, None)


def test_panels_follow_figure3_order():
    names = ["defrag", "center", "softplus", "relu", "contrastive-center", "linear"]

    ordered = sorted((plot_run(name) for name in names), key=plot._figure3_position)

    assert [run.record["loss"] for run in ordered[:5]] == [
        VARIANTS[name].loss for name in FIGURE3_VARIANTS
    ]
    assert ordered[-1].record["feature"] == "relu"


def test_panel_labels_name_seeds():
    labels = plot._curve_labels([plot_run("defrag", 0), plot_run("defrag", 1)])

    assert labels == ["DEFRAG (polar, rsgd), seed 0", "DEFRAG (polar, rsgd), seed 1"]


def test_features_title_names_the_seed():
    # Review case: the Figure 3 plot showed seed 0 only, beside a table of means over seeds,
    # without saying which run each panel is.
    runs = [
        plot.PlotRun(None, record_of(name), [], None, torch.zeros(TEST_EXAMPLES))
        for name in ("linear", "defrag")
    ]

    title = plot._features_title(runs)

    assert "MNIST, 50 test examples, one run per panel (seed 0)" in title


def test_plots_skip_diverged_runs(tmp_path, capsys):
    write_run(tmp_path / "runs" / "linear-seed0", "linear")
    diverged = tmp_path / "runs" / "defrag-polar-rsgd-seed0"
    diverged.mkdir()
    (diverged / "config.json").write_text(json.dumps(record_of("defrag")))
    (diverged / runner.DIVERGED_NAME).write_text("The training loss became nan.\n")

    written = plot.make_plots(plot.find_run_folders([tmp_path / "runs"]), tmp_path / "out")

    assert [path.name for path in written] == ["figure3.png", "curves.png"]
    assert f"Skipped {diverged}: the run diverged" in capsys.readouterr().out


def test_plots_reject_only_diverged_runs(tmp_path):
    diverged = tmp_path / "defrag-polar-rsgd-seed0"
    diverged.mkdir()
    (diverged / "config.json").write_text(json.dumps(record_of("defrag")))
    (diverged / runner.DIVERGED_NAME).write_text("The training loss became nan.\n")

    with pytest.raises(RunError, match="Every run to plot diverged"):
        plot.make_plots([diverged], tmp_path / "out")


class RecordingAxis:
    """Stand in for a matplotlib axis: keep the title, ignore everything else."""

    title = None

    def set_title(self, text, **_):
        self.title = text

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def test_panel_title_is_run_label(tmp_path):
    write_run(tmp_path / "defrag-polar-rsgd-seed1", "defrag", seed=1)
    run = plot.load_plot_run(tmp_path / "defrag-polar-rsgd-seed1")
    axis = RecordingAxis()

    plot._scatter_panel(axis, run, "DEFRAG (polar, rsgd), seed 1", plot._class_colors())

    assert axis.title.startswith("DEFRAG (polar, rsgd), seed 1\ntest accuracy 0.500")
