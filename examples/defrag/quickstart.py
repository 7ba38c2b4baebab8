"""The ``quickstart`` subcommand: a short DEFRAG run and the plots, in a few minutes on a CPU.

It trains six runs on part of the dataset, each resumable like ``compare``. The first is
DEFRAG with its default 8-D Grassmann feature layer, whose test accuracy and silhouette score
it prints at the end. The other five are the configurations of Figure 3 of the DEFRAG paper
(arXiv:1806.07688) with a 2-D feature layer. It then draws ``figure3.png`` (the 2-D test
features) and ``curves.png`` (training loss and test accuracy per epoch of all six runs) into
``--output-dir``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from examples.defrag import cli, plot, runner
from examples.defrag.checkpoint import CONFIG_NAME, METRICS_NAME, read_json
from examples.defrag.data import DATASET_TITLES
from examples.defrag.variants import VARIANTS

DEFAULT_OUTPUT_DIR = Path("runs", "defrag", "quickstart")

# Budget of the 8-D DEFRAG run: a third of Fashion-MNIST's training split, all of its test split.
QUICK_EPOCHS = 3
QUICK_LIMIT_TRAIN = 20_000


def add_quickstart_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the ``quickstart`` subcommand to ``parser``."""
    cli.add_grid_data_arguments(parser)
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device, e.g. cpu or cuda:0; auto = cuda when available, else cpu "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        metavar="FOLDER",
        help="folder for the runs and the PNG files (default: %(default)s)",
    )


def run_quickstart(args: argparse.Namespace) -> list[Path]:
    """Train the quick-start runs, draw the plots, and print the results.

    Returns:
        The PNG files written.

    Raises:
        examples.defrag.checkpoint.RunError: When a run folder contains a run with other settings.
        examples.defrag.data.DatasetError: When the dataset is missing or corrupt.
    """
    data = runner.data_argv(args)
    main_options = ["--epochs", str(QUICK_EPOCHS), "--limit-train", str(QUICK_LIMIT_TRAIN)]
    defrag = runner.plan_runs(
        [runner.RunSpec(VARIANTS["defrag"], 0, "polar", "rsgd")],
        runner.GridOptions(shared=(*data, *main_options)),
        args.output_dir / "feature-dim-8",
    )
    figure_options = [
        "--feature-dim", "2", "--epochs", str(plot.FIGURE3_EPOCHS),
        "--limit-train", str(plot.FIGURE3_LIMIT_TRAIN),
        "--limit-test", str(plot.FIGURE3_LIMIT_TEST),
    ]  # fmt: skip
    figure3 = plot.plan_figure3_runs(
        runner.GridOptions(shared=(*data, *figure_options)), 0, args.output_dir / "feature-dim-2"
    )

    runner.execute([*defrag, *figure3])
    written = plot.make_plots([run.output_dir for run in (*defrag, *figure3)], args.output_dir)
    _print_summary(defrag[0], written)
    return written


def _print_summary(run: runner.PlannedRun, written: list[Path]) -> None:
    """Print the DEFRAG run's final test metrics and where the plots are."""
    final = read_json(run.output_dir / METRICS_NAME)[-1]
    data = read_json(run.output_dir / CONFIG_NAME)["data"]
    silhouette = final["test_silhouette"]
    silhouette_text = "n/a" if silhouette is None else f"{silhouette:.4f}"
    epochs = f"{run.config.epochs} epoch" + ("" if run.config.epochs == 1 else "s")
    print(
        f"\nDEFRAG with 8-D Grassmann features, {epochs} on "
        f"{data['train_examples']:,} training examples of {DATASET_TITLES[run.config.dataset]}: "
        f"test accuracy {final['test_accuracy']:.4f} and test silhouette {silhouette_text} on "
        f"{data['test_examples']:,} test examples."
    )
    print(f"Run folders: {run.output_dir.parent.parent}")
    print("Plots: " + ", ".join(str(path) for path in written))
