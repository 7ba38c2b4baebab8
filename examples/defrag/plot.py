"""The ``plot`` subcommand: 2-D test features as in Figure 3 of the paper, and training curves.

Paper: "DEFRAG: Deep Euclidean Feature Representations through Adaptation on the Grassmann
Manifold", Minnehan & Savakis, arXiv:1806.07688. Its Figure 3 shows the MNIST test features of
networks with a 2-D feature layer, one panel per configuration: softplus, linear, center loss,
contrastive center loss and DEFRAG.

Without ``--runs``, the command trains those five configurations with ``--feature-dim 2`` on a
small budget (resumable, like ``compare``), then draws ``figure3.png`` from the runs'
``features.pt`` and ``curves.png`` (training loss and test accuracy per epoch) from their
``metrics.json``. With ``--runs``, it draws the same figures from finished run folders.
Figures are drawn with matplotlib's Agg canvas, so no display is needed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from examples.defrag import cli, runner
from examples.defrag.checkpoint import (
    CONFIG_NAME,
    FEATURES_NAME,
    METRICS_NAME,
    RunError,
    read_json,
)
from examples.defrag.data import DATASET_TITLES, class_names
from examples.defrag.variants import FIGURE3_VARIANTS, describe_run, variant_of

FIGURE3_NAME = "figure3.png"
CURVES_NAME = "curves.png"
DEFAULT_RUNS_PLOT_DIR = Path("runs", "defrag", "plots")

# The training budget of the Figure 3 runs, when ``plot`` trains them itself.
FIGURE3_EPOCHS = 3
FIGURE3_LIMIT_TRAIN = 10_000
FIGURE3_LIMIT_TEST = 2_000

_PANEL_COLUMNS = 3
_DPI = 120
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_LINE_STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class PlotRun:
    """The contents of one run folder that the figures use.

    Attributes:
        folder: The run folder.
        record: Its ``config.json``.
        history: Its ``metrics.json``, one dict per epoch.
        features: Test features (N x feature_dim) after the last epoch, or None when the run
            wrote no ``features.pt``.
        labels: True classes of the test examples, or None with ``features``.
    """

    folder: Path
    record: dict[str, Any]
    history: list[dict[str, Any]]
    features: torch.Tensor | None
    labels: torch.Tensor | None


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the ``plot`` subcommand to ``parser``."""
    parser.add_argument(
        "--runs",
        nargs="+",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="finished run folders, or folders that hold run folders such as a compare "
        "--output-dir, to plot instead of training the Figure 3 runs; the training options "
        "below are then not allowed (default: train the Figure 3 runs)",
    )
    cli.add_grid_data_arguments(parser, dataset="mnist")
    cli.add_grid_training_arguments(
        parser,
        feature_dim=2,
        epochs=FIGURE3_EPOCHS,
        limit_train=FIGURE3_LIMIT_TRAIN,
        limit_test=FIGURE3_LIMIT_TEST,
    )
    parser.add_argument(
        "--seed",
        type=cli.non_negative_int,
        default=0,
        help="seed of the Figure 3 runs (default: %(default)s)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="folder for the Figure 3 runs and the PNG files (default: "
        f"runs/defrag/figure3-DATASET, or {DEFAULT_RUNS_PLOT_DIR} with --runs)",
    )


def run_plot(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Path]:
    """Train the Figure 3 runs unless ``--runs`` is given, then draw the figures.

    Returns:
        The PNG files written.

    Raises:
        examples.defrag.cli.OptionConflict: When ``--runs`` comes with training options.
        examples.defrag.checkpoint.RunError: When a folder contains no finished run, or a run
            folder contains a run with other settings.
        examples.defrag.data.DatasetError: When the dataset is missing or corrupt.
    """
    if args.runs is not None:
        _reject_training_options(args, parser)
        output_dir = args.output_dir or DEFAULT_RUNS_PLOT_DIR
        return make_plots(find_run_folders(args.runs), output_dir)

    output_dir = args.output_dir or Path("runs", "defrag", f"figure3-{args.dataset}")
    planned = plan_figure3_runs(runner.GridOptions.from_args(args), args.seed, output_dir)
    runner.execute(planned)
    return make_plots([run.output_dir for run in planned], output_dir)


def _reject_training_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Raise OptionConflict when an option that only the training path uses was changed.

    NOTE: An option given with its default value (``--epochs 3``) cannot be distinguished from an
    option left out, so it passes silently.
    """
    names = ("dataset", "data_dir", "cache_dir", "download", "epochs", "batch_size", "lr")
    names += ("lr_schedule", "momentum", "weight_decay")
    names += ("aux_weight", "alpha", "limit_train", "limit_test", "feature_dim", "device", "seed")
    changed = [name for name in names if getattr(args, name) != parser.get_default(name)]
    if changed:
        options = ", ".join("--" + name.replace("_", "-") for name in changed)
        options = options.replace("--aux-weight", "--lambda")
        raise cli.OptionConflict(
            f"--runs conflicts with {options}: those options set up the runs that plot trains "
            "without --runs. Drop them to plot finished runs, or drop --runs."
        )


def plan_figure3_runs(
    options: runner.GridOptions, seed: int, output_dir: Path
) -> list[runner.PlannedRun]:
    """Plan the five Figure 3 configurations (DEFRAG with polar and rsgd) for one seed."""
    specs = runner.build_grid(FIGURE3_VARIANTS, ["polar"], ["rsgd"], [seed])
    return runner.plan_runs(specs, options, output_dir)


def find_run_folders(paths: Sequence[Path]) -> list[Path]:
    """Expand each path into run folders: itself if it contains config.json, else its subfolders.

    Raises:
        examples.defrag.checkpoint.RunError: When a path contains no run folder.
    """
    folders = []
    for path in paths:
        if (path / CONFIG_NAME).is_file():
            folders.append(path)
            continue
        children = sorted(child.parent for child in path.glob(f"*/{CONFIG_NAME}"))
        if not children:
            raise RunError(
                f"{path} is not a run folder and contains none: no {CONFIG_NAME} found in it "
                "or its subfolders. Pass the --output-dir of a train, compare or plot command."
            )
        folders += children
    return folders


def load_plot_run(folder: Path) -> PlotRun:
    """Read the config, metrics and (when present) test features of a run folder.

    Raises:
        examples.defrag.checkpoint.RunError: When the run has not finished one epoch.
    """
    metrics_path = folder / METRICS_NAME
    if not metrics_path.is_file():
        raise RunError(
            f"{metrics_path} not found: the run in {folder} has not finished an epoch. "
            "Finish it with train --resume, or leave it out of --runs."
        )
    features, labels = None, None
    if (folder / FEATURES_NAME).is_file():
        outputs = torch.load(folder / FEATURES_NAME, weights_only=True)
        features, labels = outputs["features"], outputs["labels"]
    return PlotRun(
        folder, read_json(folder / CONFIG_NAME), read_json(metrics_path), features, labels
    )


def make_plots(folders: Sequence[Path], output_dir: Path) -> list[Path]:
    """Draw ``figure3.png`` from the runs with 2-D features and ``curves.png`` from all runs.

    Returns:
        The PNG files written. ``figure3.png`` is left out, with a printed note, when no run
        has 2-D features.
    """
    diverged = [folder for folder in folders if (folder / runner.DIVERGED_NAME).is_file()]
    for folder in diverged:
        print(f"Skipped {folder}: the run diverged ({runner.DIVERGED_NAME} in it).")
    runs = [load_plot_run(folder) for folder in folders if folder not in diverged]
    if not runs:
        raise RunError("Every run to plot diverged, so there is nothing to draw.")
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []

    planar = [run for run in runs if run.features is not None and run.features.shape[1] == 2]
    planar.sort(key=_figure3_position)
    if planar:
        written.append(plot_features(planar, output_dir / FIGURE3_NAME))
    else:
        print(
            f"No run has 2-D features, so {FIGURE3_NAME} was not drawn. Train with "
            "--feature-dim 2 (plot without --runs does) to get it."
        )

    written.append(plot_curves(runs, output_dir / CURVES_NAME))
    for path in written:
        print(f"Wrote {path}")
    return written


def plot_features(runs: Sequence[PlotRun], path: Path) -> Path:
    """Draw one scatter panel of 2-D test features per run, coloured by class, and save a PNG."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    rows = math.ceil((len(runs) + 1) / _PANEL_COLUMNS)
    figure = Figure(figsize=(4.4 * _PANEL_COLUMNS, 4.2 * rows), layout="constrained")
    axes = figure.subplots(rows, _PANEL_COLUMNS, squeeze=False).ravel()
    colors = _class_colors()

    for axis, run, label in zip(axes, runs, _curve_labels(runs), strict=False):
        _scatter_panel(axis, run, label, colors)

    legend_axis = axes[len(runs)]
    legend_axis.axis("off")
    names = class_names(runs[0].record["dataset"])
    handles = [
        Line2D([], [], linestyle="", marker="o", markersize=7, color=colors[index])
        for index in range(len(names))
    ]
    legend_axis.legend(handles, names, title="class", loc="center", fontsize=10, frameon=False)
    for axis in axes[len(runs) + 1 :]:
        axis.axis("off")

    figure.suptitle(_features_title(runs), fontsize=13)
    figure.savefig(path, dpi=_DPI)
    return path


def _features_title(runs: Sequence[PlotRun]) -> str:
    """Title the feature plot with the dataset, the test set and the seeds of its panels."""
    first = runs[0]
    seeds = sorted({run.record["seed"] for run in runs})
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    return (
        f"Test features of a 2-D feature layer, {DATASET_TITLES[first.record['dataset']]}, "
        f"{len(first.labels):,} test examples, one run per panel ({seed_text})\n"
        "(compare Figure 3 of arXiv:1806.07688)"
    )


def _figure3_position(run: PlotRun) -> int:
    """Return the position of a run's preset among the paper's Figure 3 panels, others last."""
    variant = variant_of(run.record)
    if variant is None or variant.name not in FIGURE3_VARIANTS:
        return len(FIGURE3_VARIANTS)
    return FIGURE3_VARIANTS.index(variant.name)


def _scatter_panel(axis: Any, run: PlotRun, label: str, colors: list[Any]) -> None:
    """Draw one run's test features, one colour per class, with accuracy and silhouette."""
    features, labels = run.features.numpy(), run.labels.numpy()
    for class_index in range(len(colors)):
        points = features[labels == class_index]
        color = colors[class_index]
        axis.scatter(points[:, 0], points[:, 1], s=3, color=color, alpha=0.6, lw=0)

    final = run.history[-1]
    silhouette = final["test_silhouette"]
    silhouette_text = "n/a" if silhouette is None else f"{silhouette:.2f}"
    axis.set_title(
        f"{label}\ntest accuracy {final['test_accuracy']:.3f}, silhouette {silhouette_text}",
        fontsize=11,
    )
    axis.set_xlabel("feature 1")
    axis.set_ylabel("feature 2")
    axis.grid(alpha=0.3)


def _class_colors() -> list[Any]:
    """Return the 10 colours of matplotlib's tab10 map, one per class."""
    from matplotlib import colormaps

    return [colormaps["tab10"](index) for index in range(10)]


def plot_curves(runs: Sequence[PlotRun], path: Path) -> Path:
    """Draw training loss and test accuracy per epoch, one line per run, and save a PNG."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(13, 4.8), layout="constrained")
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    palette = colormaps["tab10" if len(runs) <= 10 else "tab20"]
    labels = _curve_labels(runs)

    for index, (run, label) in enumerate(zip(runs, labels, strict=True)):
        epochs = [row["epoch"] for row in run.history]
        # Marker and line style vary too, so that runs with equal values stay distinguishable.
        style = {
            "color": palette(index % palette.N),
            "marker": _MARKERS[index % len(_MARKERS)],
            "linestyle": _LINE_STYLES[index % len(_LINE_STYLES)],
            "markersize": 5,
            "alpha": 0.9,
        }
        loss_axis.plot(epochs, [row["loss"] for row in run.history], label=label, **style)
        accuracy_axis.plot(epochs, [row["test_accuracy"] for row in run.history], **style)

    loss_axis.set_title("Training loss (cross-entropy + lambda x auxiliary loss)")
    loss_axis.set_ylabel("mean loss per example (log scale)")
    loss_axis.set_yscale("log")
    accuracy_axis.set_title("Test accuracy")
    accuracy_axis.set_ylabel("accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    figure.legend(loc="outside right upper", fontsize=9)
    figure.suptitle(f"Training curves, {_datasets(runs)}", fontsize=13)
    figure.savefig(path, dpi=_DPI)
    return path


def _curve_labels(runs: Sequence[PlotRun]) -> list[str]:
    """Label each run by its configuration, adding feature width and seed where they vary."""
    vary_dim = len({run.record["feature_dim"] for run in runs}) > 1
    vary_seed = len({run.record["seed"] for run in runs}) > 1
    labels = []
    for run in runs:
        label = describe_run(run.record)
        if vary_dim:
            label += f", {run.record['feature_dim']}-D"
        if vary_seed:
            label += f", seed {run.record['seed']}"
        labels.append(label)
    return labels


def _datasets(runs: Sequence[PlotRun]) -> str:
    """Return the distinct dataset names of the runs, joined with commas."""
    return ", ".join(dict.fromkeys(DATASET_TITLES[run.record["dataset"]] for run in runs))
