"""The ``compare`` subcommand: train a grid of configurations and write a markdown report.

The grid is presets x retractions x optimizers x seeds (the retractions and optimizers apply to
the Grassmann preset only). Each run writes into its own subfolder of ``--output-dir``, and the
command can be rerun at any time: finished runs are skipped and interrupted ones resume from
their checkpoints. A run whose loss or a gradient becomes inf or NaN is marked as diverged
(``diverged.txt`` in its folder) and the grid goes on. The report (``examples.defrag.report``)
is rewritten from all runs at the end, and it lists the diverged ones.

With ``--report-only`` nothing is trained: the report is written from the runs that have
finished so far, and it names the runs of the grid that have not.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from examples.defrag import cli, report, runner
from examples.defrag.checkpoint import RunError, write_atomically
from examples.defrag.config import OPTIMIZERS, RETRACTIONS
from examples.defrag.hparams import load_hparams
from examples.defrag.plot import CURVES_NAME, FIGURE3_NAME
from examples.defrag.results import load_divergence, load_result
from examples.defrag.variants import TABLE2_VARIANTS, VARIANTS

MANIFOLD_RETRACTIONS = tuple(name for name in RETRACTIONS if name != "none")
DEFAULT_OUTPUT_DIR = Path("runs", "defrag", "compare")
RESULTS_NAME = "RESULTS.md"


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the ``compare`` subcommand to ``parser``."""
    cli.add_grid_data_arguments(parser)

    grid = parser.add_argument_group("grid")
    grid.add_argument(
        "--variants",
        nargs="+",
        choices=tuple(VARIANTS),
        default=list(TABLE2_VARIANTS),
        metavar="NAME",
        help=f"configurations to train, from {', '.join(VARIANTS)}; each is a preset of "
        "train options (feature layer and loss), listed with every run in the report "
        f"(default: {' '.join(TABLE2_VARIANTS)}, the rows of the paper's Table 2)",
    )
    grid.add_argument(
        "--retractions",
        nargs="+",
        choices=MANIFOLD_RETRACTIONS,
        default=["polar"],
        metavar="NAME",
        help=f"retractions of the defrag runs with --optimizers rsgd, from "
        f"{', '.join(MANIFOLD_RETRACTIONS)} (default: polar)",
    )
    grid.add_argument(
        "--optimizers",
        nargs="+",
        choices=OPTIMIZERS,
        default=["rsgd"],
        metavar="NAME",
        help=f"optimizers of the defrag runs, from {', '.join(OPTIMIZERS)}; the *-then-retract "
        "optimizers run once, with polar, because they always project with the polar factor; "
        "the other configurations use rsgd (default: rsgd)",
    )
    grid.add_argument(
        "--seeds",
        nargs="+",
        type=cli.non_negative_int,
        default=[0],
        metavar="SEED",
        help="seeds; each configuration runs once per seed (default: 0)",
    )

    cli.add_grid_training_arguments(parser)
    parser.add_argument(
        "--hparams",
        type=Path,
        default=None,
        metavar="FILE",
        help="JSON file of settings per configuration, such as the one that tune writes; "
        "options given on the command line override it (default: none, every run takes the "
        "options above)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        metavar="FOLDER",
        help="folder with one subfolder per run; rerunning with the same folder skips "
        "finished runs and resumes interrupted ones (default: %(default)s)",
    )
    output.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"markdown file to write the report to (default: {RESULTS_NAME} in --output-dir)",
    )
    output.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the report from the runs of the grid that have finished, "
        "and name the others on it as not finished; use it to read a grid that is still "
        "training (default: off, train every unfinished run first)",
    )
    output.add_argument(
        "--figures",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="images to embed in the report, such as the figure3.png and curves.png that plot "
        "draws, linked relative to the report's folder; a name that starts with figure3 or "
        "curves gets the caption of that plot, any other its file name (default: none)",
    )


def _check_grid_options(args: argparse.Namespace) -> None:
    """Reject --retractions and --optimizers when no selected preset has a manifold weight."""
    if any(VARIANTS[name].has_manifold for name in args.variants):
        return
    if list(args.retractions) != ["polar"] or list(args.optimizers) != ["rsgd"]:
        raise cli.OptionConflict(
            "--retractions and --optimizers apply to the defrag preset only, and --variants "
            f"{' '.join(args.variants)} has none. Add defrag to --variants or drop them."
        )


def run_compare(args: argparse.Namespace, argv: Sequence[str]) -> Path:
    """Train the grid, write the report, and return the report's path.

    Args:
        args: The parsed ``compare`` options.
        argv: The command-line arguments after ``python -m examples.defrag``, quoted into
            the report as the command that produced it.

    Raises:
        examples.defrag.cli.OptionConflict: When the options contradict a preset.
        examples.defrag.checkpoint.RunError: When a run folder contains a run with other
            settings, or when every run of the grid diverged.
        examples.defrag.data.DatasetError: When the dataset is missing or corrupt.
    """
    _check_grid_options(args)
    results_path = args.results or args.output_dir / RESULTS_NAME
    if results_path.is_dir():
        raise cli.OptionConflict(
            f"--results {results_path} is a folder. Pass the markdown file to write, such as "
            f"{results_path / RESULTS_NAME}."
        )
    figures = _figure_links(args.figures, results_path)
    hparams = None if args.hparams is None else load_hparams(args.hparams)
    specs = runner.build_grid(args.variants, args.retractions, args.optimizers, args.seeds)
    planned = runner.plan_runs(specs, runner.GridOptions.from_args(args), args.output_dir, hparams)
    runs = "run" if len(planned) == 1 else "runs"
    print(f"Comparison of {len(planned)} {runs} in {args.output_dir}.")
    if args.report_only:
        pending = _unfinished(planned)
    else:
        runner.execute(planned, keep_going=True)
        pending = []

    diverged = [run for run in planned if runner.has_diverged(run)]
    reported = [run for run in planned if run not in diverged and run not in pending]
    _check_something_to_report(planned, diverged, reported, args.output_dir)
    results = [load_result(run) for run in reported]
    divergences = [load_divergence(run) for run in diverged]
    command = shlex.join(["python", "-m", "examples.defrag", *argv])
    text = report.render_report(results, command, args.output_dir, figures, divergences, pending)
    if hparams is not None:
        text += "\n" + report.render_provenance(args.hparams, hparams)

    results_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(results_path, text.encode())
    print(f"\n{text}\nReport written to {results_path}")
    return results_path


def _unfinished(planned: Sequence[runner.PlannedRun]) -> list[runner.PlannedRun]:
    """Return the runs that have neither finished nor diverged, without training any.

    Raises:
        examples.defrag.checkpoint.RunError: When a folder contains a run with other settings.
    """
    done = (runner.RunStatus.FINISHED, runner.RunStatus.DIVERGED)
    return [run for run in planned if runner.run_status(run.config) not in done]


def _check_something_to_report(
    planned: Sequence[runner.PlannedRun],
    diverged: Sequence[runner.PlannedRun],
    reported: Sequence[runner.PlannedRun],
    output_dir: Path,
) -> None:
    """Raise a RunError that says why and what to do when no run of the grid finished."""
    if reported:
        return
    if len(diverged) == len(planned):
        raise RunError(
            "Every run of the grid diverged, so there is nothing to report; "
            f"{diverged[0].output_dir / runner.DIVERGED_NAME} gives the first error. Lower "
            "--lr or --lambda, delete the run folders, and run the command again."
        )
    if not output_dir.is_dir():
        raise RunError(
            f"--report-only: --output-dir {output_dir} does not exist, so there is nothing to "
            "report. Pass the folder that the grid trained into, or run the command without "
            "--report-only to train the grid."
        )
    started = [run for run in planned if (run.output_dir / runner.CHECKPOINT_NAME).is_file()]
    names = ", ".join(run.output_dir.name for run in started)
    in_progress = (
        f" Still training or interrupted (a checkpoint, no final epoch): {names}. Wait for "
        "them, or rerun the command without --report-only to resume them."
        if started
        else ""
    )
    raise RunError(
        f"--report-only: no run of the grid has finished in {output_dir}, so there is nothing "
        f"to report.{in_progress} Otherwise check that --variants, --retractions, "
        "--optimizers and --seeds name the runs you trained, or run the command without "
        "--report-only to train the grid."
    )


# Captions of the images that plot draws, by the stem that their file names start with.
FIGURE_CAPTIONS = {
    Path(FIGURE3_NAME).stem: "2-D test features of each configuration, one run each (the "
    "figure names its seed), laid out as the paper's Figure 3",
    Path(CURVES_NAME).stem: "Training loss and test accuracy per epoch",
}


def _figure_links(figures: Sequence[Path], results_path: Path) -> list[tuple[str, str]]:
    """Return ``(link, caption)`` for each image, linked relative to the report's folder.

    Raises:
        examples.defrag.cli.OptionConflict: When an image does not exist, before any training.
    """
    folders = [str(figure) for figure in figures if figure.is_dir()]
    if folders:
        raise cli.OptionConflict(
            f"--figures {' '.join(folders)}: a folder, not an image. Pass the image files in "
            f"it, such as {Path(folders[0]) / FIGURE3_NAME}."
        )
    missing = [str(figure) for figure in figures if not figure.is_file()]
    if missing:
        raise cli.OptionConflict(
            f"--figures {' '.join(missing)}: no such file. Draw the figures first with "
            "python -m examples.defrag plot --runs ..., then pass the image files it wrote."
        )
    links = []
    for figure in figures:
        link = Path(os.path.relpath(figure.resolve(), results_path.resolve().parent)).as_posix()
        links.append((f"<{link}>", _caption(figure)))
    return links


def _caption(figure: Path) -> str:
    """Return the caption of a plot image, by the start of its file name, else the name."""
    for stem, caption in FIGURE_CAPTIONS.items():
        if figure.stem.startswith(stem):
            return caption
    return figure.stem.replace("_", " ").replace("-", " ")
